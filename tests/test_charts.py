"""The pictures: SVG that a strict CSP lets render, stable bytes, and the numbers they draw
read back from the drawing itself."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from forumtranslate import charts

NS = {"svg": charts.SVG_NS}
XLINK_HREF = f"{{{charts.XLINK_NS}}}href"
ODD_NAMES = ["panel-1", 'a<b>&"c"', "経済安全保障", "tab\there", "bell\x07"]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def group(root: ET.Element, gid: str) -> ET.Element:
    [found] = [g for g in root.iter() if g.get("id") == gid]
    return found


def rect_height(root: ET.Element, gid: str) -> float:
    """Height of the rectangle path inside the group ``gid`` (matplotlib draws a bar, and
    the axes' background, as one closed path of four corners)."""
    path = group(root, gid).find("svg:path", NS)
    assert path is not None
    ys = [float(y) for y in re.findall(r"[ML] [-\d.e]+ ([-\d.e]+)", path.get("d", ""))]
    return max(ys) - min(ys)


def test_bars_are_drawn_to_the_values_on_a_0_to_100_axis() -> None:
    values = [0.0, 23.45, 51.2, 100.0, 7.0]
    chart = charts.chrf_per_document(list(zip(ODD_NAMES, values)))
    root = parse(chart.svg)
    axes = rect_height(root, "chart-chrf-doc-axes")
    for k, value in enumerate(values):
        drawn = rect_height(root, f"chart-chrf-doc-bar-{k}") / axes * 100
        assert drawn == pytest.approx(value, abs=0.01)
        label = "".join(group(root, f"chart-chrf-doc-label-{k}").itertext()).strip()
        assert float(label) == pytest.approx(value, abs=0.051)  # printed to 0.1
    assert [row[0] for row in chart.rows] == ODD_NAMES  # the table keeps them as they are
    assert "bell\\x07" in chart.svg  # a control character is shown, not written raw


def test_histogram_counts_what_falls_in_each_bin() -> None:
    values = [0.0, 9.99, 10.0, 55.5, 99.9, 100.0, 100.0]
    chart = charts.histogram("h", "t", values, charts.CHRF_BINS, "chrF2")
    expected = [2, 1, 0, 0, 0, 1, 0, 0, 0, 3]  # by hand: 100 falls in the last bin
    assert [int(row[1]) for row in chart.rows] == expected
    root = parse(chart.svg)
    labels = {
        int(e.get("id", "").rsplit("-", 1)[1]): "".join(e.itertext()).strip()
        for e in root.iter()
        if e.get("id", "").startswith("h-label-")
    }
    assert labels == {k: str(c) for k, c in enumerate(expected) if c}  # empty bins unlabelled
    heights = [rect_height(root, f"h-bar-{k}") for k in range(10)]
    tallest = max(heights)
    assert [round(3 * h / tallest) for h in heights] == expected


def test_confidence_bins_run_from_below_the_lowest_value_to_zero() -> None:
    assert charts.confidence_bins([-0.1, -1.26]) == [-1.5, -1.0, -0.5, 0.0]
    assert charts.confidence_bins([0.0]) == [-0.5, 0.0]
    assert charts.confidence_bins([]) == [-0.5, 0.0]


def test_scatter_draws_a_point_per_bead_and_names_the_least_confident() -> None:
    points = [("a-001", -0.2, 80.0), ("a-002", -3.5, 12.0), ("b-001", -1.0, 40.0)]
    chart = charts.confidence_vs_chrf(points)
    root = parse(chart.svg)
    assert len(group(root, "chart-scatter-points").findall(".//svg:use", NS)) == 3
    assert chart.alt.index("a-002") < chart.alt.index("b-001") < chart.alt.index("a-001")


def test_term_bars_stack_by_how_the_terms_got_there() -> None:
    documents = [
        ("d1", {"decoded": 3, "missing": 1}),
        ("d2", {"decoded": 1, "edited": 1, "appended": 2}),
    ]
    chart = charts.terms_per_document(documents)
    root = parse(chart.svg)
    axes = rect_height(root, "chart-terms-axes")
    for k, (_, counts) in enumerate(documents):
        for how, _colour in charts.TERM_KINDS:
            drawn = rect_height(root, f"chart-terms-{how}-{k}") / axes * 4  # the tallest is 4
            assert drawn == pytest.approx(counts.get(how, 0), abs=0.01)
    assert chart.rows == (("d1", "3", "0", "0", "1", "75.0%"), ("d2", "1", "1", "2", "0", "100.0%"))


def test_svg_is_fit_for_a_page_with_a_strict_csp_and_is_stable() -> None:
    first = charts.chrf_per_document([("x", 10.0), ("y", 20.0)])
    again = charts.chrf_per_document([("x", 10.0), ("y", 20.0)])
    assert first.svg == again.svg
    svg = first.svg
    assert "style=" not in svg and "<style" not in svg and "<metadata" not in svg
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg
    root = parse(svg)
    assert root.get("role") == "img"
    title = group(root, root.get("aria-labelledby", ""))
    assert title.tag == f"{{{charts.SVG_NS}}}title" and title.text == first.alt
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids)) and all(i.startswith("chart-chrf-doc-") for i in ids)
    references = re.findall(r"url\(#([^)]+)\)", svg) + [
        e.get(XLINK_HREF, "")[1:] for e in root.iter() if e.get(XLINK_HREF)
    ]
    assert references and set(references) <= set(ids)


def test_markup_in_a_name_stays_text() -> None:
    chart = charts.chrf_per_document([("<script>alert(1)</script>", 50.0)])
    assert "<script>" not in chart.svg
    assert "&lt;script&gt;" in chart.svg


def test_a_users_matplotlib_settings_change_nothing() -> None:
    """A matplotlibrc (or a library that styles matplotlib) must not change the page."""
    import matplotlib

    before = charts.chrf_per_document([("x", 10.0), ("y", 20.0)])
    settings = {"font.size": 17, "font.family": "serif", "axes.grid": True, "figure.dpi": 200}
    with matplotlib.rc_context(settings):
        during = charts.chrf_per_document([("x", 10.0), ("y", 20.0)])
    assert during.svg == before.svg
