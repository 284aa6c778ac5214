"""The review page: one self-contained HTML file of a run, with its CSS and script inline.

Why a single file: a reviewer opens it from a run folder, mails it, or prints it, with no
network and no server. The page is deterministic (no timestamp), so a resumed run writes
the same bytes.

Safety: every piece of text enters the page through ``html.escape``. The page's
Content-Security-Policy allows no network at all and only the page's own script and style
(by hash).
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forumtranslate import __version__
from forumtranslate.charts import Chart
from forumtranslate.confidence import Confidence
from forumtranslate.glossary import GlossaryEntry
from forumtranslate.records import PostEdit
from forumtranslate.review.view import (
    LOW_CHRF,
    BeadView,
    DocumentView,
    RunView,
    english_spans,
    highlight,
    japanese_spans,
    load_run_view,
    term_how,
)
from forumtranslate.storage import refuse_run_record, write_output

REVIEW_FILE = "review.html"
MID_CHRF = 50.0  # below: amber; at or above: green
FONT_STACK = (
    '"Noto Sans CJK JP", "Noto Sans JP", "Hiragino Sans", "Hiragino Kaku Gothic ProN", '
    '"Yu Gothic", "YuGothic", "Meiryo", sans-serif'
)


# --- the page ----------------------------------------------------------------------------

_CSS = """
:root { --low: #fbe3e1; --low-ink: #a3261b; --mid: #fdf1d6; --mid-ink: #8a5a00;
  --high: #e3f4e4; --high-ink: #1e6b2a; --line: #d8dbe0; --muted: #5c6470; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
html { font-size: 15px; }
body { margin: 0; color: #1d2228; background: #fff; line-height: 1.5;
  font-family: system-ui, "Segoe UI", Roboto, "Helvetica Neue", Arial, FONTS; }
[lang="ja"] { font-family: FONTS; }
header.summary { padding: 1rem 1.5rem .5rem; border-bottom: 1px solid var(--line); }
h1 { font-size: 1.35rem; margin: 0 0 .5rem; }
h1 code { font-size: 1.1rem; }
h2 { font-size: 1.15rem; margin: 0; }
div.overview { display: flex; flex-wrap: wrap; gap: 0 2rem; align-items: flex-start; }
dl.settings { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem;
  margin: .5rem 0; font-size: .85rem; }
dl.settings dt { color: var(--muted); }
dl.settings dd { margin: 0; overflow-wrap: anywhere; max-width: 60rem; }
table.corpus { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
table.corpus th, table.corpus td { border: 1px solid var(--line); padding: .2rem .6rem;
  text-align: right; }
table.corpus th { background: #f4f5f7; font-weight: 600; }
p.note { background: var(--mid); color: var(--mid-ink); padding: .3rem .6rem; margin: .3rem 0; }
p.legend { font-size: .85rem; color: var(--muted); }
nav.controls { position: sticky; top: 0; z-index: 2; background: #f4f5f7;
  border-bottom: 1px solid var(--line); padding: .5rem 1.5rem; display: flex;
  flex-wrap: wrap; gap: .5rem 1.5rem; align-items: center; font-size: .9rem; }
nav.controls input[type="number"] { width: 4.5rem; }
#shown { font-weight: 600; }
main { padding: 0 1.5rem 2rem; }
section.doc, section.sorted { margin-top: 1.25rem; }
p.docmeta { margin: .15rem 0 .5rem; color: var(--muted); font-size: .9rem; }
table.beads { width: 100%; border-collapse: collapse; table-layout: fixed; }
table.beads th { text-align: left; font-size: .8rem; color: var(--muted); font-weight: 600;
  border-bottom: 2px solid var(--line); padding: .25rem .5rem; }
table.beads td { vertical-align: top; border-bottom: 1px solid var(--line);
  padding: .4rem .5rem; overflow-wrap: anywhere; }
col.meta { width: 9.5rem; } col.score { width: 6.5rem; }
td.meta { font-size: .75rem; color: var(--muted); overflow-wrap: normal; }
td.meta .kind { display: block; font-weight: 600; color: #1d2228; }
td p { margin: 0 0 .3rem; }
td p.none { color: var(--muted); font-style: italic; }
td.score { text-align: right; }
td.score .chrf { display: block; font-size: 1.15rem; font-weight: 700; }
td.score .bleu, td.score .label { display: block; font-size: .75rem; color: var(--muted); }
tr.low td.score { background: var(--low); color: var(--low-ink); }
tr.mid td.score { background: var(--mid); color: var(--mid-ink); }
tr.high td.score { background: var(--high); color: var(--high-ink); }
tr.low td.meta { box-shadow: inset 4px 0 var(--low-ink); }
mark { background: none; color: inherit; padding: 0 .05em; border-radius: 2px; }
mark.term { background: #dfe9fb; border-bottom: 2px solid #2f5fb3; }
mark.miss { background: #fbe3e1; border-bottom: 2px dashed #a3261b; }
mark.edited { background: #fdf1d6; border-bottom: 2px dotted #8a5a00; }
mark.appended { background: #fdf1d6; border-bottom: 3px double #8a5a00; }
mark.avoid { background: #fbe3e1; border-bottom: 2px solid #a3261b; text-decoration: line-through;
  text-decoration-color: #a3261b; }
ul.flags { list-style: none; margin: .3rem 0 0; padding: 0; }
ul.flags li { display: inline-block; font-size: .75rem; margin: 0 .3rem .2rem 0;
  padding: 0 .4rem; border-radius: 3px; background: var(--low); color: var(--low-ink); }
div.pe { margin-top: .3rem; padding-top: .3rem; border-top: 1px dashed var(--line);
  font-size: .9rem; }
div.pe .label { font-size: .75rem; color: var(--muted); }
#empty { color: var(--muted); font-style: italic; }
td.score .conf { display: block; font-size: .75rem; color: var(--muted); }
td.score .conf.unsure { color: var(--low-ink); font-weight: 600; }
section.charts { display: flex; flex-wrap: wrap; gap: 1rem 2rem; padding: .75rem 1.5rem;
  border-bottom: 1px solid var(--line); }
figure.chart { margin: 0; flex: 1 1 20rem; max-width: 30rem; }
figure.chart figcaption { font-weight: 600; font-size: .9rem; }
svg.chart { display: block; width: 100%; height: auto; max-height: 18rem; }
figure.chart details { font-size: .8rem; }
table.numbers { border-collapse: collapse; margin: .3rem 0; }
table.numbers th, table.numbers td { border: 1px solid var(--line); padding: .1rem .4rem;
  text-align: right; font-weight: normal; }
table.numbers thead th { background: #f4f5f7; font-weight: 600; }
table.numbers caption { text-align: left; color: var(--muted); }
@media print {
  @page { size: A4 landscape; margin: 10mm; }
  html { font-size: 9pt; }
  nav.controls, figure.chart details { display: none; }
  section.charts { break-after: page; }
  header.summary { padding: 0 0 .3rem; }
  main { padding: 0; }
  tr.bead { break-inside: avoid; }
  thead { display: table-header-group; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
""".replace("FONTS", FONT_STACK)

_JS = """
(() => {
  "use strict";
  const $ = (selector) => document.querySelector(selector);
  const rows = Array.from(document.querySelectorAll("tr.bead"));
  const homes = rows.map((row) => row.parentNode);
  const sections = Array.from(document.querySelectorAll("section.doc"));
  const sorted = $("#sorted"), sortedBody = $("#sorted-body");
  const below = $("#f-below"), threshold = $("#f-threshold"), terms = $("#f-terms");
  const edited = $("#f-edited"), appended = $("#f-appended");
  const doc = $("#f-doc"), sort = $("#f-sort");
  const unsure = $("#f-unsure"), confLimit = $("#f-conf");
  // a bead without confidence (no machine text, or none recorded) sorts last
  const conf = (row) => row.dataset.confidence === "" ? Infinity : Number(row.dataset.confidence);
  const orders = {
    asc: (a, b) => a.dataset.chrf - b.dataset.chrf,
    desc: (a, b) => b.dataset.chrf - a.dataset.chrf,
    conf: (a, b) => conf(a) - conf(b) || 0,
    first: (a, b) => b.dataset.urgency - a.dataset.urgency || conf(a) - conf(b) || 0
      || a.dataset.chrf - b.dataset.chrf,
  };
  function apply() {
    const limit = parseFloat(threshold.value);
    const confMax = parseFloat(confLimit.value);
    let shown = 0;
    for (const row of rows) {
      const visible = (!doc.value || row.dataset.doc === doc.value)
        && (!below.checked || !(Number(row.dataset.chrf) >= limit))
        && (!terms.checked || Number(row.dataset.problems) + Number(row.dataset.edits) > 0)
        && (!unsure.checked || conf(row) < confMax)
        && (!edited.checked || Number(row.dataset.edited) > 0)
        && (!appended.checked || Number(row.dataset.appended) > 0);
      row.hidden = !visible;
      if (visible) shown += 1;
    }
    if (sort.value === "corpus") {
      rows.forEach((row, i) => homes[i].appendChild(row));
      for (const section of sections) {
        section.hidden = !section.querySelector("tr.bead:not([hidden])");
      }
      sorted.hidden = true;
    } else {
      const order = orders[sort.value];
      rows.slice()
        .sort((a, b) => order(a, b) || a.dataset.order - b.dataset.order)
        .forEach((row) => sortedBody.appendChild(row));
      sections.forEach((section) => { section.hidden = true; });
      sorted.hidden = shown === 0;
    }
    $("#shown").textContent = `${shown} of ${rows.length} beads shown`;
    $("#empty").hidden = shown > 0;
  }
  for (const control of [below, terms, unsure, edited, appended, doc, sort]) {
    control.addEventListener("change", apply);
  }
  threshold.addEventListener("input", apply);
  confLimit.addEventListener("input", apply);
  apply();
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _band(chrf: float) -> str:
    return "low" if chrf < LOW_CHRF else "mid" if chrf < MID_CHRF else "high"


def _fmt(value: Any, width: int = 1) -> str:
    return f"{value:.{width}f}" if isinstance(value, int | float) else "–"


def page_head(title: str, css: str, csp: str) -> list[str]:
    """A self-contained page's opening, up to ``<body>``: its Content-Security-Policy, its
    style inline, and the version that wrote it (the review and comparison pages)."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">',
        f'<meta name="generator" content="forumtranslate {_e(__version__)}">',
        f"<title>{_e(title)}</title>",
        f"<style>{css}</style>",
        "</head>",
        "<body>",
    ]


def render_review(view: RunView) -> str:
    """The review page for ``view``, as one HTML document with its CSS and script inline."""
    title = f"Review: {view.run_dir.resolve().name}"
    csp = (
        f"default-src 'none'; style-src {_csp_hash(_CSS)}; script-src {_csp_hash(_JS)}; "
        "img-src 'none'; base-uri 'none'; form-action 'none'"
    )
    parts = [
        *page_head(title, _CSS, csp),
        _render_summary(view),
        _render_charts(view),
        _render_controls(view),
        "<main>",
        '<p id="empty" hidden>No bead matches these filters.</p>',
        *(_render_document(document, view.unsure_below) for document in view.documents),
        '<section class="sorted" id="sorted" hidden>',
        "<h2>All documents, sorted</h2>",
        _table_open(),
        '<tbody id="sorted-body"></tbody></table>',
        "</section>",
        "</main>",
        f"<script>{_JS}</script>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _minus(value: float, width: int = 2) -> str:
    """A number with a typographic minus sign, as the pictures print it."""
    return f"{value:.{width}f}".replace("-", "\u2212")


def _conf_default(view: RunView) -> str:
    unsure = view.unsure_below
    return f"{math.floor(unsure * 10) / 10 + 0.1:.1f}" if unsure is not None else "-1.0"


def run_charts(view: RunView) -> tuple[list[Chart], list[str]]:
    """The pictures of a run, and notes for the ones it has no data for."""
    from forumtranslate import charts

    notes: list[str] = []
    documents = view.scores.get("documents") or {}
    out = [
        charts.chrf_per_document(
            [
                (d.doc_id, float(documents.get(d.doc_id, {}).get("chrF2") or 0.0))
                for d in view.documents
            ]
        ),
        charts.histogram(
            "chart-chrf-hist",
            "Distribution of sentence chrF2 (per bead)",
            [b.chrf for b in view.beads],
            charts.CHRF_BINS,
            "chrF2",
        ),
    ]
    sentence_confidence = [
        c.mean_logprob
        for r in view.records.values()
        if (c := Confidence.from_json(r.get("confidence"))) is not None
    ]
    if sentence_confidence:
        out.append(
            charts.histogram(
                "chart-conf-hist",
                "Distribution of confidence (per sentence)",
                sentence_confidence,
                charts.confidence_bins(sentence_confidence),
                "mean token log-probability",
            )
        )
        out.append(
            charts.confidence_vs_chrf(
                [
                    ("+".join(b.bead.src_seg_ids), b.confidence.mean_logprob, b.chrf)
                    for b in view.beads
                    if b.confidence is not None
                ]
            )
        )
    else:
        notes.append("This run recorded no confidence, so its two pictures are left out.")
    per_document: list[tuple[str, dict[str, int]]] = []
    for document in view.documents:
        counts: dict[str, int] = {}
        for bead in document.beads:
            for seg_id in bead.bead.src_seg_ids:
                for term in view.records[seg_id].get("terms") or ():
                    how = term_how(term)
                    counts[how] = counts.get(how, 0) + 1
        per_document.append((document.doc_id, counts))
    if any(counts for _, counts in per_document):
        out.append(charts.terms_per_document(per_document))
    else:
        notes.append("No glossary term occurs in this run's sources.")
    return out, notes


def render_chart(chart: Chart) -> str:
    """A picture in a figure, with its caption and the table of its numbers."""
    head = "".join(f'<th scope="col">{_e(c)}</th>' for c in chart.columns)
    body = "".join(
        "<tr>"
        + f'<th scope="row">{_e(row[0])}</th>'
        + "".join(f"<td>{_e(cell)}</td>" for cell in row[1:])
        + "</tr>"
        for row in chart.rows
    )
    return (
        f'<figure class="chart" id="{_e(chart.key)}">'
        f"<figcaption>{_e(chart.title)}</figcaption>"
        f"{chart.svg}"
        f"<details><summary>The numbers behind “{_e(chart.title)}”</summary>"
        f'<table class="numbers"><caption>{_e(chart.title)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></details>"
        "</figure>"
    )


def _render_charts(view: RunView) -> str:
    pictures, notes = run_charts(view)
    return "\n".join(
        [
            '<section class="charts" aria-label="Pictures of the run">',
            *(render_chart(chart) for chart in pictures),
            *(f'<p class="note">{_e(note)}</p>' for note in notes),
            "</section>",
        ]
    )


def _render_summary(view: RunView) -> str:
    settings, scores = view.settings, view.scores
    translator = settings.get("translator") or {}
    decoding = translator.get("decoding") or {}
    glossary = settings.get("glossary") or {}
    versions = translator.get("versions") or {}
    rows = [
        ("model", f"{translator.get('model', '?')} ({translator.get('family', '?')})"),
        ("revision", translator.get("revision") or "–"),
        (
            "options",
            f"terms {decoding.get('terms', '?')}, beam {decoding.get('beam_size', '?')}, "
            f"device {translator.get('device', '?')}, dtype {translator.get('dtype', '?')}, "
            f"max batch tokens {decoding.get('max_batch_tokens', '?')}",
        ),
        ("glossary", f"{glossary.get('path', '?')} (sha256 {str(glossary.get('sha256'))[:12]})"),
        ("data", str(settings.get("data_dir", "?"))),
        (
            "versions",
            ", ".join(
                f"{name} {version}"
                for name, version in {
                    "forumtranslate": settings.get("forumtranslate"),
                    **versions,
                    "sacrebleu": (scores.get("signature") or {}).get("sacrebleu"),
                }.items()
                if version
            ),
        ),
        ("alignment", (scores.get("signature") or {}).get("alignment", "–")),
    ]
    corpus = scores.get("corpus") or {}
    metrics = [name for name in ("BLEU", "chrF2", "chrF2++", "TER") if name in corpus]
    head = "".join(
        f'<th title="{_e(corpus[n].get("signature", ""))}">{_e(n)}</th>' for n in metrics
    )
    cells = "".join(f"<td>{_fmt(corpus[n].get('score'))}</td>" for n in metrics)
    terms = scores.get("terminology") or {}
    if terms.get("total"):
        head += "<th>terms</th>"
        cells += f"<td>{terms['found']}/{terms['total']} ({_fmt(100 * terms['accuracy'])}%)</td>"
        if "decoded" in terms:
            consistency = terms.get("consistency") or {}
            head += (
                "<th>terms as decoded</th><th>edited in</th><th>appended</th>"
                "<th>lemma-tolerant</th><th>consistent</th>"
            )
            rate = consistency.get("rate")
            cells += (
                f"<td>{terms['decoded']}/{terms['total']} "
                f"({_fmt(100 * terms['decoded_accuracy'])}%)</td>"
                f"<td>{terms['edited']}</td><td>{terms['appended']}</td>"
                f"<td>{terms['lemma_found']}/{terms['total']} "
                f"({_fmt(100 * terms['lemma_accuracy'])}%)</td>"
                f"<td>{consistency.get('consistent', 0)}/{consistency.get('repeated', 0)}"
                + (f" ({_fmt(100 * rate)}%)" if rate is not None else "")
                + "</td>"
            )
    if view.hter and view.hter.get("corpus"):
        hter = view.hter["corpus"]
        head += f'<th title="{_e(hter.get("signature", ""))}">HTER</th>'
        cells += f"<td>{_fmt(hter.get('score'))} ({view.hter.get('units', 0)} post-edits)</td>"
    out = [
        '<header class="summary">',
        f"<h1>Review of <code>{_e(view.run_dir.resolve().name)}</code></h1>",
        '<div class="overview">',
        '<table class="corpus"><thead><tr><th>segments</th>'
        f"{head}</tr></thead><tbody><tr><td>{_e(scores.get('segments', '–'))}</td>"
        f"{cells}</tr></tbody></table>",
        '<dl class="settings">',
        *(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows),
        "</dl>",
        "</div>",
        *(f'<p class="note">{_e(note)}</p>' for note in view.notes),
        '<p class="legend">Scores are sacrebleu sentence chrF2 and BLEU per aligned bead '
        f"(red below {LOW_CHRF:g}, amber below {MID_CHRF:g}). "
        '<mark class="term">glossary term</mark> rendered as approved, '
        '<mark class="term miss">term</mark> missing from the machine translation, '
        '<mark class="term edited">term</mark> edited into the translation after decoding, '
        '<mark class="term appended">term</mark> appended after the sentence, '
        '<mark class="avoid">avoided rendering</mark> used. '
        "Confidence is the model's mean log-probability per token of its own output "
        "(0 is certain; lower is less sure); a ranking aid, not a calibrated probability. "
        "Review first puts first the beads with most of: confidence in the run's lowest "
        f"quarter, a term problem or a term put in after decoding, chrF below {LOW_CHRF:g}."
        "</p>",
        "</header>",
    ]
    return "\n".join(out)


def _render_controls(view: RunView) -> str:
    options = "".join(
        f'<option value="{_e(d.doc_id)}">{_e(d.doc_id)}'
        + (f" ({_e(d.info.speaker)})" if d.info and d.info.speaker not in ("", "-") else "")
        + "</option>"
        for d in view.documents
    )
    return (
        '<nav class="controls" aria-label="Filters">'
        '<label><input type="checkbox" id="f-below"> only chrF below</label>'
        f'<input type="number" id="f-threshold" value="{LOW_CHRF:g}" min="0" max="100" '
        'step="1" aria-label="chrF threshold">'
        '<label><input type="checkbox" id="f-terms"> only term problems</label>'
        '<label><input type="checkbox" id="f-unsure"> only confidence below</label>'
        f'<input type="number" id="f-conf" value="{_conf_default(view)}" max="0" step="0.1" '
        'aria-label="confidence threshold (mean log-probability per token)">'
        '<label><input type="checkbox" id="f-edited"> only terms edited in</label>'
        '<label><input type="checkbox" id="f-appended"> only terms appended</label>'
        '<label>document <select id="f-doc"><option value="">all</option>'
        f"{options}</select></label>"
        '<label>order <select id="f-sort"><option value="corpus">corpus order</option>'
        '<option value="asc">chrF, lowest first</option>'
        '<option value="desc">chrF, highest first</option>'
        '<option value="conf">confidence, lowest first</option>'
        '<option value="first">review first</option></select></label>'
        '<span id="shown"></span>'
        "</nav>"
    )


def _table_open() -> str:
    return (
        '<table class="beads"><colgroup><col class="meta"><col class="ja"><col class="mt">'
        '<col class="ref"><col class="score"></colgroup>'
        "<thead><tr><th>bead</th><th>Japanese</th><th>machine translation</th>"
        "<th>reference</th><th>chrF · confidence</th></tr></thead>"
    )


def _render_document(document: DocumentView, unsure_below: float | None = None) -> str:
    info = document.info
    heading = info.title if info and info.title else document.doc_id
    if info and info.speaker and info.speaker != "-":
        heading += f" — {info.speaker}"
    meta = [document.doc_id]
    if info:
        meta += [
            value
            for value in (info.speaker, info.role, info.section, info.start_time)
            if value and value != "-"
        ]
    s = document.scores
    terms = s.get("terminology") or {}
    score_line = (
        f"{s.get('beads', len(document.beads))} beads · BLEU {_fmt(s.get('BLEU'))} · "
        f"chrF2 {_fmt(s.get('chrF2'))} · TER {_fmt(s.get('TER'))}"
    )
    if terms.get("total"):
        score_line += f" · terms {terms['found']}/{terms['total']}"
        if "decoded" in terms:
            consistency = terms.get("consistency") or {}
            score_line += (
                f" (decoded {terms['decoded']}, edited {terms['edited']}, "
                f"appended {terms['appended']}; lemma-tolerant {terms['lemma_found']}; "
                f"consistent {consistency.get('consistent', 0)}/"
                f"{consistency.get('repeated', 0)})"
            )
    return "\n".join(
        [
            f'<section class="doc" id="doc-{_e(document.doc_id)}" '
            f'data-doc="{_e(document.doc_id)}">',
            f"<h2>{_e(heading)}</h2>",
            f'<p class="docmeta">{" · ".join(_e(m) for m in meta)}<br>{_e(score_line)}</p>',
            _table_open(),
            "<tbody>",
            *(_render_bead(bead, document.doc_id, unsure_below) for bead in document.beads),
            "</tbody></table>",
            "</section>",
        ]
    )


def _render_bead(bead: BeadView, doc_id: str, unsure_below: float | None = None) -> str:
    entries = bead.entries
    ja = "".join(
        f'<p id="seg-{_e(s.seg_id)}">{highlight(s.source, japanese_spans(s))}</p>'
        for s in bead.sentences
    )
    mt = "".join(
        f"<p>{highlight(s.translation, english_spans(s.translation, entries))}</p>"
        for s in bead.sentences
    )
    if bead.flags:
        mt += (
            '<ul class="flags">'
            + "".join(
                f'<li class="flag {_e(f.problem)}">{_e(f.describe())}</li>' for f in bead.flags
            )
            + "</ul>"
        )
    mt += "".join(
        _render_postedit(pe, pe_hter, entries, bead.bead.src_seg_ids)
        for pe, pe_hter in bead.postedits
    )
    ref = "".join(
        f"<p>{highlight(text, english_spans(text, entries))}</p>" for text in bead.bead.ref
    )
    none = '<p class="none">none</p>'
    ids = "<br>".join(_e(i) for i in bead.bead.src_seg_ids) or "–"
    confidence = bead.confidence
    conf = ""
    if confidence is not None:
        unsure = unsure_below is not None and confidence.mean_logprob <= unsure_below
        conf = (
            f'<span class="conf{" unsure" if unsure else ""}" '
            f'title="{confidence.tokens} tokens; lowest '
            f"{confidence.min_logprob:.2f} at token {confidence.min_position} "
            f'({_e(confidence.min_token)})">conf {_minus(confidence.mean_logprob)}</span>'
        )
    return (
        f'<tr class="bead {_band(bead.chrf)}" data-doc="{_e(doc_id)}" '
        f'data-chrf="{bead.chrf!r}" data-problems="{bead.problems}" '
        f'data-confidence="{confidence.mean_logprob if confidence else ""}" '
        f'data-urgency="{bead.urgency(unsure_below)}" data-edits="{bead.term_edits}" '
        f'data-edited="{bead.count_how("edited")}" data-appended="{bead.count_how("appended")}" '
        f'data-order="{bead.number}">'
        f'<td class="meta"><span class="kind">{_e(bead.bead.kind)}</span>{ids}</td>'
        f'<td class="ja" lang="ja">{ja or none}</td>'
        f'<td class="mt" lang="en">{mt or none}</td>'
        f'<td class="ref" lang="en">{ref or none}</td>'
        f'<td class="score"><span class="label">chrF2</span>'
        f'<span class="chrf">{bead.chrf:.1f}</span>'
        f'<span class="bleu">BLEU {bead.bleu:.1f}</span>{conf}</td>'
        "</tr>"
    )


def write_review(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    out: str | Path | None = None,
    *,
    glossary_path: str | Path | None = None,
) -> Path:
    """Write the review page of a scored run (default ``RUN/review.html``); return its path."""
    view = load_run_view(run_dir, data_dir, glossary_path)
    path = Path(out) if out is not None else Path(run_dir) / REVIEW_FILE
    refuse_run_record(path, run_dir)
    write_output(path, render_review(view))
    return path


def _render_postedit(
    pe: PostEdit,
    hter: float | None,
    entries: Sequence[GlossaryEntry],
    bead_seg_ids: Sequence[str],
) -> str:
    """A reviewer's post-edit under the machine output; an accepted one takes a word."""
    scope = f" of {', '.join(pe.seg_ids)}" if tuple(pe.seg_ids) != tuple(bead_seg_ids) else ""
    if pe.post_edit == pe.machine:
        return (
            f'<div class="pe"><span class="label">post-edit{_e(scope)}: accepted as is</span></div>'
        )
    label = f"post-edit{scope}" + (f" · HTER {hter:.1f}" if hter is not None else "")
    text = highlight(pe.post_edit, english_spans(pe.post_edit, entries))
    return f'<div class="pe"><span class="label">{_e(label)}</span><p>{text}</p></div>'
