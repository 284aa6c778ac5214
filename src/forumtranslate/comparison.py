"""Two sets of translations side by side, as one self-contained HTML page.

Who reads it: whoever decides between two runs (another model, beam, glossary) or approves
a glossary pull request. For each unit (the stretch of reference both runs can be scored
on, or, for a glossary change, each sentence whose terms change) the page shows the
Japanese, both translations with their word-level differences marked, the change in
sentence chrF2 and in the model's confidence, and which terms changed how; above them, the
paired significance tests ``compare`` computes. Filters show the changed, better or worse
units. "Better" is a higher chrF2 where there is a reference, else a higher confidence
(the page says which).

The page follows the review page's rules (review/page.py): every text through
``html.escape``, no network, only its own script and style (by hash), no timestamp, so the
same inputs give the same bytes.
"""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forumtranslate.confidence import Confidence, combine
from forumtranslate.records import TermMatch
from forumtranslate.review.page import FONT_STACK, _csp_hash, page_head
from forumtranslate.review.view import join_japanese, term_how
from forumtranslate.storage import write_atomic

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class TermChange:
    """A term whose rendering differs between the sides: ``how`` in A and in B (decoded,
    edited, appended, missing, or "not a term" where that side's glossary lacks it)."""

    source: str
    target_a: str
    target_b: str
    how_a: str
    how_b: str

    def describe(self) -> str:
        if self.how_a == self.how_b == "a term":  # not translated: the English changed
            return f"{self.source}: “{self.target_a}” → “{self.target_b}”"
        if self.target_a and self.target_b and self.target_a != self.target_b:
            return f"{self.source}: “{self.target_a}” {self.how_a} → “{self.target_b}” {self.how_b}"
        target = self.target_b or self.target_a
        return f"{self.source} → “{target}”: {self.how_a} → {self.how_b}"


@dataclass(frozen=True)
class ComparedUnit:
    doc_id: str
    label: str  # segment or reference ids
    source: str  # the Japanese
    reference: str | None
    text_a: str
    text_b: str
    chrf_a: float | None = None
    chrf_b: float | None = None
    confidence_a: Confidence | None = None
    confidence_b: Confidence | None = None
    term_changes: tuple[TermChange, ...] = ()

    @property
    def changed(self) -> bool:
        return self.text_a != self.text_b

    @property
    def delta(self) -> float | None:
        """B minus A: chrF2 where both have it, else confidence; None if neither."""
        if self.chrf_a is not None and self.chrf_b is not None:
            return self.chrf_b - self.chrf_a
        if self.confidence_a is not None and self.confidence_b is not None:
            return self.confidence_b.mean_logprob - self.confidence_a.mean_logprob
        return None

    @property
    def verdict(self) -> str:
        """better | worse | same, by the delta as the page prints it (chrF2 to 0.1,
        confidence to 0.01), so a change shown as ±0.0 is never called better or worse."""
        delta = self.delta
        if not self.changed or delta is None:
            return "same"
        by_chrf = self.chrf_a is not None and self.chrf_b is not None
        shown = round(delta, 1 if by_chrf else 2)
        if shown == 0:
            return "same"
        return "better" if shown > 0 else "worse"


@dataclass(frozen=True)
class Comparison:
    """Everything the page shows; ``significance`` is ``score.compare_runs``'s result."""

    title: str
    name_a: str
    name_b: str
    units: tuple[ComparedUnit, ...]
    better_by: str  # chrF2 | confidence
    significance: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()


# --- building it -------------------------------------------------------------------------


def compare_run_folders(
    run_a: str | Path, run_b: str | Path, significance: Mapping[str, Any] | None = None
) -> Comparison:
    """Two scored runs over the same references, unit by unit."""
    from sacrebleu.metrics import CHRF

    from forumtranslate.align import read_translations, run_beads
    from forumtranslate.score import paired_unit_details

    run_a, run_b = Path(run_a), Path(run_b)
    records_a = {str(r["seg_id"]): r for r in read_translations(run_a)}
    records_b = {str(r["seg_id"]): r for r in read_translations(run_b)}
    sources = {s: str(r["source"]) for s, r in [*records_b.items(), *records_a.items()]}
    metric = CHRF()
    units = []
    for unit in paired_unit_details(run_beads(run_a), run_beads(run_b)):
        picked_a = [records_a[s] for s in unit.seg_ids_a if s in records_a]
        picked_b = [records_b[s] for s in unit.seg_ids_b if s in records_b]
        seg_ids = list(dict.fromkeys([*unit.seg_ids_a, *unit.seg_ids_b]))
        units.append(
            ComparedUnit(
                doc_id=unit.doc_id,
                label=", ".join(seg_ids) or ", ".join(unit.ref_ids),
                source=join_japanese([sources.get(s, "") for s in seg_ids]),
                reference=unit.ref,
                text_a=unit.hyp_a,
                text_b=unit.hyp_b,
                chrf_a=float(metric.sentence_score(unit.hyp_a, [unit.ref]).score),
                chrf_b=float(metric.sentence_score(unit.hyp_b, [unit.ref]).score),
                confidence_a=_confidence(picked_a),
                confidence_b=_confidence(picked_b),
                term_changes=record_term_changes(picked_a, picked_b),
            )
        )
    name_a = str((significance or {}).get("a") or run_a.resolve().name)
    name_b = str((significance or {}).get("b") or run_b.resolve().name)
    return Comparison(
        title=f"{name_a} against {name_b}",
        name_a=name_a,
        name_b=name_b,
        units=tuple(units),
        better_by="chrF2",
        significance=significance,
    )


def _confidence(records: Sequence[Mapping[str, Any]]) -> Confidence | None:
    return combine([Confidence.from_json(r.get("confidence")) for r in records])


def record_term_changes(
    records_a: Sequence[Mapping[str, Any]], records_b: Sequence[Mapping[str, Any]]
) -> tuple[TermChange, ...]:
    """Terms whose ``how`` differs between the two runs' records of the same text."""
    changes = []
    terms_a = _term_list(records_a)
    terms_b = _term_list(records_b)
    for key in dict.fromkeys([*terms_a, *terms_b]):
        a, b = terms_a.get(key), terms_b.get(key)
        how_a = a[1] if a else "not a term"
        how_b = b[1] if b else "not a term"
        if how_a != how_b:
            changes.append(TermChange(key[1], a[0] if a else "", b[0] if b else "", how_a, how_b))
    return tuple(changes)


def _term_list(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, int], tuple[str, str]]:
    """(segment, Japanese, occurrence) -> (approved English, how)."""
    out: dict[tuple[str, str, int], tuple[str, str]] = {}
    for record in records:
        seen: dict[str, int] = {}
        for term in record.get("terms") or ():
            source = str(term.get("source", ""))
            seen[source] = seen.get(source, 0) + 1
            key = (str(record["seg_id"]), source, seen[source])
            out[key] = (str(term.get("target", "")), term_how(term))
    return out


def impact_term_changes(
    terms_a: Sequence[TermMatch],
    terms_b: Sequence[TermMatch],
    found_a: Sequence[bool] | None,
    found_b: Sequence[bool] | None,
) -> tuple[TermChange, ...]:
    """The terms of one sentence under the old and the new glossary, where they differ;
    ``found_*`` None: not translated, so only the approved English is compared."""

    def keyed(terms: Sequence[TermMatch], found: Sequence[bool] | None) -> dict:
        hits = found if found is not None else [None] * len(terms)
        return {
            (t.start, t.end): (
                t.source,
                t.target,
                "a term" if hit is None else "found" if hit else "missing",
            )
            for t, hit in zip(terms, hits)
        }

    a, b = keyed(terms_a, found_a), keyed(terms_b, found_b)
    changes = []
    for span in sorted({*a, *b}):
        old, new = a.get(span), b.get(span)
        if old is not None and new is not None and old == new:
            continue
        source = (new or old or ("", "", ""))[0]
        changes.append(
            TermChange(
                source,
                old[1] if old else "",
                new[1] if new else "",
                old[2] if old else "not a term",
                new[2] if new else "not a term",
            )
        )
    return tuple(changes)


# --- the page ----------------------------------------------------------------------------


def word_diff(a: str, b: str) -> tuple[str, str]:
    """``a`` and ``b`` as escaped HTML with the words only A has in ``<del>`` and the
    words only B has in ``<ins>`` (difflib on whitespace-separated words)."""
    words_a, words_b = _WORD.findall(a), _WORD.findall(b)
    matcher = difflib.SequenceMatcher(None, words_a, words_b, autojunk=False)
    out_a: list[str] = []
    out_b: list[str] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        left = html.escape(" ".join(words_a[i1:i2]))
        right = html.escape(" ".join(words_b[j1:j2]))
        if op == "equal":
            out_a.append(left)
            out_b.append(right)
            continue
        if left:
            out_a.append(f"<del>{left}</del>")
        if right:
            out_b.append(f"<ins>{right}</ins>")
    return " ".join(out_a), " ".join(out_b)


_CSS = """
:root { --line: #d8dbe0; --muted: #5c6470; --good: #1e6b2a; --good-bg: #e3f4e4;
  --bad: #a3261b; --bad-bg: #fbe3e1; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
html { font-size: 15px; }
body { margin: 0; color: #1d2228; background: #fff; line-height: 1.5;
  font-family: system-ui, "Segoe UI", Roboto, "Helvetica Neue", Arial, FONTS; }
[lang="ja"] { font-family: FONTS; }
header { padding: 1rem 1.5rem .5rem; border-bottom: 1px solid var(--line); }
h1 { font-size: 1.35rem; margin: 0 0 .5rem; }
table.sig { border-collapse: collapse; font-size: .9rem; margin: .5rem 0; }
table.sig caption { text-align: left; color: var(--muted); }
table.sig th, table.sig td { border: 1px solid var(--line); padding: .2rem .6rem;
  text-align: right; }
table.sig th { background: #f4f5f7; }
p.note, p.legend { font-size: .85rem; color: var(--muted); margin: .3rem 0; }
nav { position: sticky; top: 0; z-index: 2; background: #f4f5f7; padding: .5rem 1.5rem;
  border-bottom: 1px solid var(--line); display: flex; gap: 1.5rem; align-items: center;
  font-size: .9rem; flex-wrap: wrap; }
#shown { font-weight: 600; }
main { padding: 0 1.5rem 2rem; }
table.units { width: 100%; border-collapse: collapse; table-layout: fixed; margin-top: 1rem; }
table.units th { text-align: left; font-size: .8rem; color: var(--muted);
  border-bottom: 2px solid var(--line); padding: .25rem .5rem; }
table.units td { vertical-align: top; border-bottom: 1px solid var(--line);
  padding: .4rem .5rem; overflow-wrap: anywhere; }
col.meta { width: 8.5rem; } col.delta { width: 11rem; }
td.meta { font-size: .75rem; color: var(--muted); }
td.meta .doc { display: block; font-weight: 600; color: #1d2228; }
del { background: var(--bad-bg); color: var(--bad); text-decoration: line-through; }
ins { background: var(--good-bg); color: var(--good); text-decoration: none;
  border-bottom: 2px solid var(--good); }
td.delta span { display: block; font-size: .8rem; }
tr.better td.delta { background: var(--good-bg); }
tr.worse td.delta { background: var(--bad-bg); }
ul.terms { margin: .3rem 0 0; padding: 0; list-style: none; font-size: .75rem; }
ul.terms li { margin: 0 0 .2rem; padding: 0 .3rem; background: #eef2fa; border-radius: 3px; }
#empty { color: var(--muted); font-style: italic; }
@media print { nav { display: none; } tr { break-inside: avoid; } }
""".replace("FONTS", FONT_STACK)

_JS = """
(() => {
  "use strict";
  const rows = Array.from(document.querySelectorAll("tr.unit"));
  const filter = document.querySelector("#c-filter");
  const doc = document.querySelector("#c-doc");
  function apply() {
    let shown = 0;
    for (const row of rows) {
      const keep = filter.value === "all"
        || (filter.value === "changed" && row.dataset.changed === "1")
        || row.dataset.verdict === filter.value;
      const visible = keep && (!doc.value || row.dataset.doc === doc.value);
      row.hidden = !visible;
      if (visible) shown += 1;
    }
    document.querySelector("#shown").textContent = `${shown} of ${rows.length} units shown`;
    document.querySelector("#empty").hidden = shown > 0;
  }
  filter.addEventListener("change", apply);
  doc.addEventListener("change", apply);
  apply();
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _signed(value: float | None, width: int) -> str:
    if value is None:
        return "–"
    return f"{value:+.{width}f}".replace("-", "\u2212")


def render_comparison(comparison: Comparison) -> str:
    """The comparison page as one HTML document with its CSS and script inline."""
    csp = (
        f"default-src 'none'; style-src {_csp_hash(_CSS)}; script-src {_csp_hash(_JS)}; "
        "img-src 'none'; base-uri 'none'; form-action 'none'"
    )
    units = comparison.units
    has_ref = any(u.reference is not None for u in units)
    counts = {v: sum(u.verdict == v for u in units) for v in ("better", "worse")}
    changed = sum(u.changed for u in units)
    docs = "".join(
        f'<option value="{_e(d)}">{_e(d)}</option>' for d in dict.fromkeys(u.doc_id for u in units)
    )
    head = "<th>unit</th><th>Japanese</th>"
    head += f"<th>A: {_e(comparison.name_a)}</th><th>B: {_e(comparison.name_b)}</th>"
    head += "<th>reference</th>" if has_ref else ""
    head += "<th>B − A</th>"
    cols = '<col class="meta"><col><col><col>' + ("<col>" if has_ref else "")
    cols += '<col class="delta">'
    parts = [
        *page_head("Comparison: " + comparison.title, _CSS, csp),
        "<header>",
        f"<h1>{_e(comparison.title)}</h1>",
        f'<p class="legend">{len(units)} units; {changed} changed, {counts["better"]} better '
        f"and {counts['worse']} worse by {_e(comparison.better_by)} (as printed: a change "
        "shown as ±0 is neither). "
        "<del>words only A has</del> <ins>words only B has</ins>. Confidence is each model's "
        "mean log-probability per token of its own output, not a calibrated probability.</p>",
        _render_significance(comparison.significance),
        *(f'<p class="note">{_e(n)}</p>' for n in comparison.notes),
        "</header>",
        '<nav aria-label="Filters"><label>show <select id="c-filter">'
        '<option value="all">all units</option><option value="changed">changed</option>'
        '<option value="better">better in B</option><option value="worse">worse in B</option>'
        "</select></label>"
        f'<label>document <select id="c-doc"><option value="">all</option>{docs}</select>'
        '</label><span id="shown"></span></nav>',
        "<main>",
        '<p id="empty" hidden>No unit matches this filter.</p>',
        f'<table class="units"><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead>',
        "<tbody>",
        *(_render_unit(u, has_ref) for u in units),
        "</tbody></table>",
        "</main>",
        f"<script>{_JS}</script>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _render_unit(unit: ComparedUnit, has_ref: bool) -> str:
    a, b = word_diff(unit.text_a, unit.text_b) if unit.changed else (_e(unit.text_a),) * 2
    none = '<p class="none">none</p>'
    deltas = []
    if unit.chrf_a is not None and unit.chrf_b is not None:
        deltas.append(
            f'<span class="chrf">chrF2 {unit.chrf_a:.1f} → {unit.chrf_b:.1f} '
            f"({_signed(unit.chrf_b - unit.chrf_a, 1)})</span>"
        )
    ca, cb = unit.confidence_a, unit.confidence_b
    if ca is not None or cb is not None:
        diff = cb.mean_logprob - ca.mean_logprob if ca and cb else None
        deltas.append(
            f'<span class="conf">conf {_conf(ca)} → {_conf(cb)} ({_signed(diff, 2)})</span>'
        )
    terms = ""
    if unit.term_changes:
        terms = (
            '<ul class="terms" aria-label="term changes">'
            + "".join(f"<li>{_e(c.describe())}</li>" for c in unit.term_changes)
            + "</ul>"
        )
    delta = unit.delta
    return (
        f'<tr class="unit {unit.verdict}" data-doc="{_e(unit.doc_id)}" '
        f'data-changed="{int(unit.changed)}" data-verdict="{unit.verdict}" '
        f'data-delta="{"" if delta is None else repr(delta)}">'
        f'<td class="meta"><span class="doc">{_e(unit.doc_id)}</span>{_e(unit.label)}</td>'
        f'<td class="ja" lang="ja">{_e(unit.source) or none}</td>'
        f'<td class="a" lang="en">{a or none}</td>'
        f'<td class="b" lang="en">{b or none}</td>'
        + (f'<td class="ref" lang="en">{_e(unit.reference or "") or none}</td>' if has_ref else "")
        + f'<td class="delta">{"".join(deltas) or "–"}{terms}</td>'
        "</tr>"
    )


def _conf(confidence: Confidence | None) -> str:
    return "–" if confidence is None else f"{confidence.mean_logprob:.2f}".replace("-", "\u2212")


def _render_significance(result: Mapping[str, Any] | None) -> str:
    if not result:
        return ""
    tests = list(result.get("tests") or ())
    names = {"bs": "p (paired bootstrap)", "ar": "p (approximate randomization)"}
    head = "<th>metric</th><th>A</th><th>B</th><th>B − A</th>" + "".join(
        f"<th>{_e(names.get(t, t))}</th>" for t in tests
    )
    rows = []
    for name, item in (result.get("metrics") or {}).items():

        def side(s: Mapping[str, Any]) -> str:
            text = f"{s['score']:.1f}"
            if s.get("mean") is not None:
                text += f" ({s['mean']:.1f} ± {s['ci']:.1f})"
            return text

        rows.append(
            f'<tr><th scope="row" title="{_e(item.get("signature_bs", ""))}">{_e(name)}</th>'
            f"<td>{_e(side(item['a']))}</td><td>{_e(side(item['b']))}</td>"
            f"<td>{_e(_signed(item['difference'], 1))}</td>"
            + "".join(f"<td>{item[f'p_{t}']:.4f}</td>" for t in tests)
            + "</tr>"
        )
    ta = (result.get("terminology") or {}).get("a") or {}
    tb = (result.get("terminology") or {}).get("b") or {}
    terms = ""
    if ta.get("total") or tb.get("total"):
        terms = (
            f'<p class="legend">terminology accuracy: A {ta.get("found")}/{ta.get("total")}, '
            f"B {tb.get('found')}/{tb.get('total')}</p>"
        )
    return (
        f'<table class="sig"><caption>Paired significance on {_e(result.get("units"))} units '
        "(sacrebleu; lower TER is better; seed from SACREBLEU_SEED)</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{terms}"
    )


def write_comparison(comparison: Comparison, out: str | Path) -> Path:
    path = Path(out)
    write_atomic(path, render_comparison(comparison))
    return path
