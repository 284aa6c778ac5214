"""Pictures of a run for the review page: matplotlib figures as inline SVG.

Why matplotlib: it is the most widely kept plotting library in Python, draws on a CPU with
no display and no browser, and its SVG backend writes vector pictures that go into the
page as markup, so the page stays one self-contained file. (Vega-Lite or Plotly would need
their JavaScript in the page; a hand-written SVG writer is the code we should not own.)

The SVG is made safe and stable for the page here: its ``style`` attributes become SVG
presentation attributes and its ``<style>`` element goes (the page's Content-Security-Policy
allows no inline style), its metadata (with a date) goes, its ids get a prefix per picture
so that several pictures can share a page, and ids are hashed with a fixed salt, so the
same run always gives the same bytes.

Every picture comes with a text alternative and the numbers behind it as rows of a table,
which the page renders for screen readers and for anyone who wants the figures.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import re
import unicodedata
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ParamSpec

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
INK = "#1d2228"
BLUE = "#2f5fb3"
# how a term got into the output (issue 14's values), with the colours the page uses
TERM_KINDS = (
    ("decoded", "#1e6b2a"),
    ("edited", "#8a5a00"),
    ("appended", "#c77d00"),
    ("missing", "#a3261b"),
)
CHRF_BINS = tuple(range(0, 101, 10))
P = ParamSpec("P")


@dataclass(frozen=True)
class Chart:
    """One picture: its id on the page, a caption, a text alternative, the SVG markup, and
    the numbers behind it (``columns``, ``rows``)."""

    key: str
    title: str
    alt: str
    svg: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


# --- the pictures ------------------------------------------------------------------------


@contextmanager
def _drawing() -> Iterator[None]:
    """matplotlib's defaults, whatever a matplotlibrc or another library set, and the same
    font for measuring text everywhere (matplotlib's own DejaVu Sans): the same run gives
    the same SVG on any machine. The text stays text (``svg.fonttype`` none) that the
    browser sets in the page's fonts, so a Japanese glyph missing from DejaVu is no loss."""
    import matplotlib

    with matplotlib.rc_context(), warnings.catch_warnings():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update(
            {
                "svg.hashsalt": "forumtranslate",
                "svg.fonttype": "none",
                "font.family": ["DejaVu Sans"],
                "text.color": INK,
            }
        )
        warnings.filterwarnings(
            "ignore", message="Glyph .* missing from font", category=UserWarning
        )
        yield


def _styled(draw: Callable[P, Chart]) -> Callable[P, Chart]:
    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Chart:
        with _drawing():
            return draw(*args, **kwargs)

    return wrapper


@_styled
def chrf_per_document(documents: Sequence[tuple[str, float]]) -> Chart:
    """Bars: each document's corpus chrF2, on a fixed 0–100 axis."""
    key = "chart-chrf-doc"
    figure, axes = _figure(max(4.0, 1.0 + 0.55 * len(documents)), 3.2)
    names = [shown(doc) for doc, _ in documents]
    values = [value for _, value in documents]
    bars = axes.bar(range(len(values)), values, color=BLUE, width=0.7)
    for k, bar in enumerate(bars):
        bar.set_gid(f"bar-{k}")
    for k, label in enumerate(axes.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)):
        label.set_gid(f"label-{k}")
    axes.set_ylim(0, 100)
    axes.set_ylabel("chrF2")
    axes.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    axes.patch.set_gid("axes")
    alt = "Bar chart of chrF2 per document: " + "; ".join(
        f"{name} {value:.1f}" for name, value in zip(names, values)
    )
    rows = tuple((doc, f"{value:.1f}") for doc, value in documents)
    return Chart(
        key, "chrF2 per document", alt, _svg(figure, key, alt), ("document", "chrF2"), rows
    )


@_styled
def histogram(
    key: str,
    title: str,
    values: Sequence[float],
    bins: Sequence[float],
    label: str,
    fmt: str = "{:g}",
) -> Chart:
    """Bars of how many values fall in each bin (a bin holds its left edge; the last one
    holds its right edge too), each bar labelled with its count."""
    counts = bin_counts(values, bins)
    figure, axes = _figure(5.0, 3.0)
    lefts = list(bins[:-1])
    widths = [b - a for a, b in itertools.pairwise(bins)]
    bars = axes.bar(lefts, counts, width=widths, align="edge", color=BLUE, edgecolor="#ffffff")
    for k, bar in enumerate(bars):
        bar.set_gid(f"bar-{k}")
    labels = axes.bar_label(
        bars, labels=[str(c) if c else "" for c in counts], fontsize=8, padding=2
    )
    for k, text in enumerate(labels):
        text.set_gid(f"label-{k}")
    axes.set_ylim(0, max(1, max(counts, default=0)) * 1.15)
    axes.set_xlabel(label)
    axes.set_ylabel("count")
    axes.patch.set_gid("axes")
    ranges = [_range(a, b, fmt, last=k == len(counts) - 1) for k, (a, b) in _edges(bins)]
    alt = f"Histogram of {label} over {len(values)} values: " + "; ".join(
        f"{r}: {c}" for r, c in zip(ranges, counts) if c
    )
    rows = tuple((r, str(c)) for r, c in zip(ranges, counts))
    return Chart(key, title, alt, _svg(figure, key, alt), (label, "count"), rows)


def confidence_bins(values: Sequence[float], width: float = 0.5) -> list[float]:
    """Bins of ``width`` from below the lowest value up to 0 (log-probabilities are ≤ 0)."""
    low = min(values, default=-width)
    start = math.floor(low / width) * width
    if start >= 0:
        start = -width
    count = round(-start / width)
    return [round(start + k * width, 6) for k in range(count + 1)]


@_styled
def confidence_vs_chrf(points: Sequence[tuple[str, float, float]]) -> Chart:
    """A scatter of beads: the model's mean token log-probability against chrF2, so the
    beads where the model was unsure and far from the reference stand out (lower left)."""
    key = "chart-scatter"
    figure, axes = _figure(5.0, 3.4)
    xs = [conf for _, conf, _ in points]
    ys = [chrf for _, _, chrf in points]
    collection = axes.scatter(xs, ys, s=12, color=BLUE, alpha=0.6, linewidths=0)
    collection.set_gid("points")
    axes.set_ylim(0, 100)
    axes.set_xlabel("confidence: mean token log-probability")
    axes.set_ylabel("chrF2")
    axes.patch.set_gid("axes")
    unsure = sorted(points, key=lambda p: (p[1], p[2]))[:3]
    alt = (
        f"Scatter of {len(points)} beads, confidence against chrF2. Least confident: "
        + "; ".join(f"{shown(label)} (confidence {c:.2f}, chrF2 {f:.1f})" for label, c, f in unsure)
    )
    rows = tuple((label, f"{c:.4f}", f"{f:.1f}") for label, c, f in points)
    return Chart(
        key,
        "Confidence against chrF2, per bead",
        alt,
        _svg(figure, key, alt),
        ("bead", "confidence", "chrF2"),
        rows,
    )


@_styled
def terms_per_document(documents: Sequence[tuple[str, dict[str, int]]]) -> Chart:
    """Stacked bars: each document's term occurrences by how they got into the output
    (decoded by the model, edited in, appended, or missing)."""
    key = "chart-terms"
    figure, axes = _figure(max(4.0, 1.5 + 0.55 * len(documents)), 3.2)
    bottoms = [0] * len(documents)
    for how, colour in TERM_KINDS:
        heights = [counts.get(how, 0) for _, counts in documents]
        bars = axes.bar(
            range(len(documents)), heights, bottom=bottoms, color=colour, width=0.7, label=how
        )
        for k, bar in enumerate(bars):
            bar.set_gid(f"{how}-{k}")
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    axes.set_ylim(0, max(1, max(bottoms, default=0)))
    axes.set_ylabel("term occurrences")
    axes.set_xticks(
        range(len(documents)), [shown(d) for d, _ in documents], rotation=35, ha="right", fontsize=8
    )
    axes.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.patch.set_gid("axes")
    rows = []
    for doc, counts in documents:
        total = sum(counts.get(how, 0) for how, _ in TERM_KINDS)
        found = total - counts.get("missing", 0)
        rows.append(
            (
                doc,
                *(str(counts.get(how, 0)) for how, _ in TERM_KINDS),
                f"{100 * found / total:.1f}%" if total else "–",
            )
        )
    alt = "Stacked bars of term occurrences per document by how they got there: " + "; ".join(
        f"{shown(row[0])}: " + ", ".join(f"{n} {how}" for (how, _), n in zip(TERM_KINDS, row[1:]))
        for row in rows
    )
    return Chart(
        key,
        "Term accuracy per document, by how the terms got there",
        alt,
        _svg(figure, key, alt),
        ("document", *(how for how, _ in TERM_KINDS), "accuracy"),
        tuple(rows),
    )


def shown(text: str) -> str:
    """A label for a picture: control characters (which XML cannot hold) as escapes."""
    return "".join(
        ch.encode("unicode_escape").decode() if unicodedata.category(ch) == "Cc" else ch
        for ch in text
    )


def bin_counts(values: Sequence[float], bins: Sequence[float]) -> list[int]:
    counts = [0] * (len(bins) - 1)
    for value in values:
        for k, (a, b) in _edges(bins):
            if a <= value < b or (k == len(counts) - 1 and value == b):
                counts[k] += 1
                break
    return counts


def _edges(bins: Sequence[float]) -> list[tuple[int, tuple[float, float]]]:
    return list(enumerate(itertools.pairwise(bins)))


def _range(a: float, b: float, fmt: str, last: bool) -> str:
    return f"{fmt.format(a)} to {fmt.format(b)}" + (" (inclusive)" if last else "")


# --- matplotlib to page-ready SVG ---------------------------------------------------------


def _figure(width: float, height: float):  # type: ignore[no-untyped-def]
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.add_subplot()
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def _svg(figure, prefix: str, alt: str) -> str:  # type: ignore[no-untyped-def]
    """``figure`` as inline SVG markup for the page (see the module's docstring)."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    out = io.StringIO()
    FigureCanvasSVG(figure).print_svg(out, metadata={"Date": None})
    return page_svg(out.getvalue(), prefix, alt)


_REFERENCE = re.compile(r"url\(#([^)]+)\)")


def page_svg(raw: str, prefix: str, alt: str) -> str:
    """matplotlib's SVG document as an element for an HTML page with a strict CSP."""
    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", XLINK_NS)
    root = ET.fromstring(raw)
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in (f"{{{SVG_NS}}}metadata", f"{{{SVG_NS}}}style"):
                parent.remove(child)
    root.set("stroke-linejoin", "round")  # what the removed <style> said
    root.set("stroke-linecap", "butt")
    href = f"{{{XLINK_NS}}}href"
    for element in root.iter():
        style = element.attrib.pop("style", None)
        if style:
            for declaration in style.split(";"):
                name, _, value = declaration.partition(":")
                name, value = name.strip(), value.strip()
                if name == "font-family":
                    continue  # the page's font, as for the text around the picture
                if name:
                    element.set(name, value)
        if "id" in element.attrib:
            element.set("id", f"{prefix}-{element.get('id')}")
        if element.get(href, "").startswith("#"):
            element.set(href, f"#{prefix}-{element.get(href)[1:]}")
        for name, value in list(element.attrib.items()):
            if "url(#" in value:
                element.set(name, _REFERENCE.sub(lambda m: f"url(#{prefix}-{m.group(1)})", value))
    root.set("class", "chart")
    root.set("role", "img")
    root.set("aria-labelledby", f"{prefix}-alt")
    for name in ("width", "height"):
        root.attrib.pop(name, None)
    title = ET.Element(f"{{{SVG_NS}}}title", {"id": f"{prefix}-alt"})
    title.text = alt
    root.insert(0, title)
    text = ET.tostring(root, encoding="unicode")
    return re.sub(r">\s+<", "><", text)
