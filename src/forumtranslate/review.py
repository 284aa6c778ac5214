"""Review a run: one self-contained HTML page, the reviewer's post-edits, and their HTER.

Why a single file: a reviewer opens it from a run folder, mails it, or prints it, with no
network and no server; ``serve`` exists only for browsers that restrict ``file://``. The
page is deterministic (no timestamp), so a resumed run writes the same bytes.

Safety: every piece of text enters the page through ``html.escape``. Glossary terms are
highlighted by character offsets into the original text, escaping each slice, so a
sentence can never inject markup. The page's Content-Security-Policy allows no network
at all and only the page's own script and style (by hash).

Post-edits (a reviewer's corrections of the machine output) are stored in the run as
``postedits.jsonl``; ``score_postedits`` measures the editing effort as HTER: sacrebleu's
TER of the machine output against its post-edit (case-sensitive, since fixing case is
work the reviewer did), per unit and over the corpus, written to ``hter.json``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import json
import math
import re
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forumtranslate import __version__
from forumtranslate.align import read_beads, read_jsonl, read_translations
from forumtranslate.charts import Chart
from forumtranslate.confidence import Confidence, combine
from forumtranslate.corpus import read_manifest, read_text
from forumtranslate.errors import ForumTranslateError, InputError
from forumtranslate.glossary import (
    Glossary,
    GlossaryEntry,
    _form_pattern,
    _normalise_with_offsets,
    avoided_found,
    check_terms,
    load_glossary,
)
from forumtranslate.records import Bead, DocumentInfo, PostEdit, TermMatch
from forumtranslate.score import hter_scores
from forumtranslate.storage import (
    check_shape,
    dumps_line,
    refuse_run_record,
    write_atomic,
    write_output,
)

REVIEW_FILE = "review.html"
POSTEDITS_FILE = "postedits.jsonl"
HTER_FILE = "hter.json"
DEFAULT_PORT = 8765
LOW_CHRF = 30.0  # below: shown red, and the filter's default threshold
MID_CHRF = 50.0  # below: amber; at or above: green
FONT_STACK = (
    '"Noto Sans CJK JP", "Noto Sans JP", "Hiragino Sans", "Hiragino Kaku Gothic ProN", '
    '"Yu Gothic", "YuGothic", "Meiryo", sans-serif'
)


# --- what the page shows ----------------------------------------------------------------


@dataclass(frozen=True)
class TermFlag:
    """A term problem in the machine output: an approved rendering missing, or an avoided
    one used. ``form`` is the avoided rendering found (empty for a missing term)."""

    entry_id: str
    source: str
    target: str
    problem: str  # missing | avoid
    form: str = ""
    kind: str = "term"  # the glossary entry's kind: a wrong name reads worse than a term

    def describe(self) -> str:
        what = "" if self.kind == "term" else f" ({self.kind})"
        if self.problem == "avoid":
            return f"avoid “{self.form}” for {self.source}{what}: write “{self.target}”"
        return f"missing “{self.target}” for {self.source}{what}"


@dataclass(frozen=True)
class SentenceView:
    """One Japanese segment of a bead with its machine translation and glossary terms."""

    seg_id: str
    source: str
    translation: str
    terms: tuple[TermMatch, ...]
    found: tuple[bool, ...]  # per term: whether the translation renders it
    how: tuple[str, ...] = ()  # per term: decoded | edited | appended | missing (records.HOW)


@dataclass(frozen=True)
class BeadView:
    """An aligned bead as the reviewer sees it: sentences, scores, term problems, and
    the post-edits (with their HTER, when scored) that cover its segments."""

    number: int  # position in alignment.jsonl, 0-based
    bead: Bead
    sentences: tuple[SentenceView, ...]
    chrf: float
    bleu: float
    flags: tuple[TermFlag, ...]
    entries: tuple[GlossaryEntry, ...] = ()  # terms found in its Japanese, in order
    postedits: tuple[tuple[PostEdit, float | None], ...] = ()
    confidence: Confidence | None = None  # over its sentences' tokens (confidence.py)
    term_edits: int = 0  # terms put in after decoding: records' how = edited | appended

    @property
    def problems(self) -> int:
        return len(self.flags)

    def urgency(self, unsure_below: float | None) -> int:
        """How many signs say "review me": confidence at or below ``unsure_below`` (the
        run's lowest quarter), a term problem or a term edited in, chrF below LOW_CHRF."""
        unsure = (
            self.confidence is not None
            and unsure_below is not None
            and self.confidence.mean_logprob <= unsure_below
        )
        return int(unsure) + int(self.problems + self.term_edits > 0) + int(self.chrf < LOW_CHRF)

    def count_how(self, how: str) -> int:
        """Terms of the bead that got into the translation this way (edited, appended)."""
        return sum(h == how for s in self.sentences for h in s.how)


@dataclass(frozen=True)
class DocumentView:
    doc_id: str
    info: DocumentInfo | None  # None: the manifest could not be found
    scores: Mapping[str, Any]
    beads: tuple[BeadView, ...]


@dataclass(frozen=True)
class RunView:
    """Everything in a run folder that review and export need, joined and checked once."""

    run_dir: Path
    settings: Mapping[str, Any]
    scores: Mapping[str, Any]
    glossary: Glossary
    glossary_changed: bool  # the glossary file is not the one the run used
    documents: tuple[DocumentView, ...]
    records: Mapping[str, Mapping[str, Any]]  # seg_id -> translations.jsonl record
    postedits: tuple[PostEdit, ...]
    hter: Mapping[str, Any] | None
    notes: tuple[str, ...] = ()  # what the page should warn about

    @property
    def beads(self) -> Iterator[BeadView]:
        for document in self.documents:
            yield from document.beads

    @property
    def unsure_below(self) -> float | None:
        """The lower quartile of the beads' confidence: at or below it a bead counts as one
        the model was unsure of (None when the run recorded no confidence)."""
        values = sorted(b.confidence.mean_logprob for b in self.beads if b.confidence)
        return values[(len(values) - 1) // 4] if values else None


NUMBER = (float, type(None))
# The parts of a run's JSON files that the page and the exports read (see check_shape).
JSON_SHAPES: dict[str, Any] = {
    "run.json": {
        "data_dir": str,
        "forumtranslate": str,
        "glossary": {"path": str, "sha256": str},
        "translator": {"decoding": dict, "versions": ("map", (str, type(None)))},
    },
    "scores.json": {
        "segments": int,
        "corpus": ("map", {"score": NUMBER, "signature": str}),
        "terminology": {"found": int, "total": int, "accuracy": NUMBER},
        "documents": ("map", dict),
        "beads": [{"src_seg_ids": [str], "ref_ids": [str], "chrF2": NUMBER, "BLEU": NUMBER}],
        "signature": {"sacrebleu": str, "alignment": str},
    },
    HTER_FILE: {
        "units": int,
        "corpus": {"score": NUMBER, "signature": str},
        "segments": [{"seg_ids": [str], "HTER": NUMBER}],
    },
}


def _read_json(path: Path, what: str) -> dict[str, Any]:
    """A run folder's JSON file, which must hold an object of the expected shape (a
    hand-edited ``[]`` or ``5`` is not one)."""
    if not path.exists():
        raise InputError(f"no {path.name}: {what}", path)
    try:
        value = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err.msg}", path, err.lineno) from None
    check_shape(value, JSON_SHAPES.get(path.name, dict), path)
    return value


def load_run_view(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    glossary_path: str | Path | None = None,
) -> RunView:
    """Join a scored run folder: translations, alignment, scores, manifest and glossary.

    ``data_dir`` and ``glossary_path`` default to what run.json records (paths relative
    to where the run was started). A glossary that differs from the run's is used but
    flagged, since its highlighting may disagree with the run's terms.
    """
    run_dir = Path(run_dir)
    settings = _read_json(run_dir / "run.json", "not a run folder")
    scores = _read_json(
        run_dir / "scores.json", f"score the run first (forumtranslate score {run_dir})"
    )
    if not (run_dir / "alignment.jsonl").exists():
        raise InputError(
            f"no alignment.jsonl: align the run first (forumtranslate align {run_dir})",
            run_dir,
        )
    beads = read_beads(run_dir / "alignment.jsonl")
    bead_scores = scores.get("beads") or []
    if len(bead_scores) != len(beads) or any(
        list(b.src_seg_ids) != s.get("src_seg_ids") or list(b.ref_ids) != s.get("ref_ids")
        for b, s in zip(beads, bead_scores)
    ):
        raise InputError(
            f"does not match alignment.jsonl; score again (forumtranslate score {run_dir})",
            run_dir / "scores.json",
        )
    records = {str(r["seg_id"]): r for r in read_translations(run_dir)}

    recorded = settings.get("glossary") or {}
    glossary = load_glossary(glossary_path or recorded.get("path") or "glossary/terms.tsv")
    notes: list[str] = []
    changed = bool(recorded.get("sha256")) and recorded.get("sha256") != glossary.sha256
    if changed:
        notes.append(
            f"The glossary {glossary.path} has changed since this run; term highlighting "
            "follows the current file."
        )
    data_dir = Path(data_dir or settings.get("data_dir") or "data")
    infos: dict[str, DocumentInfo] = {}
    if (data_dir / "manifest.tsv").exists():
        infos = {info.doc_id: info for info in read_manifest(data_dir / "manifest.tsv")}
    else:
        notes.append(f"No manifest at {data_dir / 'manifest.tsv'}: speakers are not shown.")

    hter_path = run_dir / HTER_FILE
    hter = _read_json(hter_path, "") if hter_path.exists() else None
    postedits = read_postedits(run_dir)
    unit_hter = {
        tuple(unit.get("seg_ids") or ()): unit.get("HTER")
        for unit in (hter or {}).get("segments") or ()
    }
    by_segment: dict[str, list[tuple[PostEdit, float | None]]] = {}
    for pe in postedits:
        for seg_id in pe.seg_ids:
            by_segment.setdefault(seg_id, []).append((pe, unit_hter.get(pe.seg_ids)))
    views: dict[str, list[BeadView]] = {}
    for number, (bead, row) in enumerate(zip(beads, bead_scores)):
        attached = dict.fromkeys(
            item for seg_id in bead.src_seg_ids for item in by_segment.get(seg_id, ())
        )
        views.setdefault(bead.doc_id, []).append(
            _bead_view(number, bead, row, records, glossary, tuple(attached))
        )
    documents = tuple(
        DocumentView(
            doc_id=doc_id,
            info=infos.get(doc_id),
            scores=(scores.get("documents") or {}).get(doc_id, {}),
            beads=tuple(items),
        )
        for doc_id, items in views.items()
    )
    return RunView(
        run_dir=run_dir,
        settings=settings,
        scores=scores,
        glossary=glossary,
        glossary_changed=changed,
        documents=documents,
        records=records,
        postedits=tuple(postedits),
        hter=hter,
        notes=tuple(notes),
    )


def _bead_view(
    number: int,
    bead: Bead,
    row: Mapping[str, Any],
    records: Mapping[str, Mapping[str, Any]],
    glossary: Glossary,
    postedits: tuple[tuple[PostEdit, float | None], ...] = (),
) -> BeadView:
    sentences = []
    flags: list[TermFlag] = []
    for seg_id in bead.src_seg_ids:
        record = records.get(seg_id)
        if record is None:
            raise InputError(f"alignment names segment {seg_id!r}, which translations lack")
        source, translation = str(record["source"]), str(record["translation"])
        terms = tuple(glossary.find_terms(source))
        found = tuple(check_terms(translation, terms))
        sentences.append(
            SentenceView(
                seg_id, source, translation, terms, found, _record_how(record, terms, found)
            )
        )
        flags += [
            TermFlag(t.entry_id, t.source, t.target, "missing", kind=t.kind)
            for t, hit in zip(terms, found)
            if not hit
        ]
        for entry_id in dict.fromkeys(t.entry_id for t in terms):
            entry = glossary.get(entry_id)
            flags += [
                TermFlag(entry.id, entry.source, entry.target, "avoid", form, entry.kind)
                for form in avoided_found(translation, entry)
            ]
    segment_records = [records[seg_id] for seg_id in bead.src_seg_ids]
    return BeadView(
        number=number,
        bead=bead,
        sentences=tuple(sentences),
        chrf=float(row.get("chrF2") or 0.0),
        bleu=float(row.get("BLEU") or 0.0),
        flags=tuple(flags),
        entries=tuple(
            glossary.get(entry_id)
            for entry_id in dict.fromkeys(t.entry_id for s in sentences for t in s.terms)
        ),
        postedits=postedits,
        confidence=combine([Confidence.from_json(r.get("confidence")) for r in segment_records]),
        term_edits=sum(
            term_how(term) in ("edited", "appended")
            for r in segment_records
            for term in r.get("terms") or ()
        ),
    )


def term_how(term: Mapping[str, Any]) -> str:
    """How a record's term got into the output: its ``how`` where the run recorded one
    (decoded, edited, appended), else decoded if found; missing whenever it is not found
    (``found`` wins over a ``how`` that disagrees, as in a hand-edited record)."""
    if not term.get("found"):
        return "missing"
    how = term.get("how")
    return str(how) if how and how != "missing" else "decoded"


def _record_how(
    record: Mapping[str, Any], terms: Sequence[TermMatch], found: Sequence[bool]
) -> tuple[str, ...]:
    """The run's ``how`` per term, where the record's terms are these terms (a glossary
    changed since the run may find others: then only found/missing is known)."""
    recorded = record.get("terms") or []
    if [t.get("entry_id") for t in recorded] == [t.entry_id for t in terms]:
        how = [str(t.get("how") or "") for t in recorded]
        return tuple(h if h else ("decoded" if hit else "missing") for h, hit in zip(how, found))
    return tuple("decoded" if hit else "missing" for hit in found)


def join_japanese(sentences: Sequence[str]) -> str:
    """Japanese sentences as one string: no space between CJK text, one next to Latin
    (after ASCII text other than an opening bracket, before an ASCII letter or digit)."""
    out = ""
    for sentence in sentences:
        if out and sentence:
            after, before = out[-1], sentence[0]
            if (after.isascii() and after not in "([{") or (before.isascii() and before.isalnum()):
                out += " "
        out += sentence
    return out


def join_english(sentences: Sequence[str]) -> str:
    """English sentences as one line, as score.py joins a bead's sentences."""
    return " ".join(" ".join(sentences).split())


# --- highlighting ------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    css: str  # term | term miss | avoid
    title: str


def english_spans(text: str, entries: Sequence[GlossaryEntry]) -> list[Span]:
    """Allowed and avoided renderings of ``entries`` in ``text``, as offsets into ``text``.

    Matching is glossary.py's (whole words, NFKC, any case); the offsets map back from
    the normalised text so they cut the original exactly.
    """
    if not text:
        return []
    norm, starts, ends = _normalise_with_offsets(text)
    spans = []
    for entry in entries:
        kinds = [(form, "term") for form in entry.allowed] + [(f, "avoid") for f in entry.avoid]
        for form, css in kinds:
            for m in re.finditer(_form_pattern(form), norm, re.IGNORECASE):
                if m.end() > m.start():
                    title = (
                        f"{entry.source} → {entry.target} [{entry.kind}: {entry.id}]"
                        if css == "term"
                        else f"avoided rendering of {entry.source}: write “{entry.target}” "
                        f"[{entry.kind}: {entry.id}]"
                    )
                    spans.append(Span(starts[m.start()], ends[m.end() - 1], css, title))
    return spans


HOW_NOTES = {
    "edited": ": edited into the translation after decoding",
    "appended": ": appended after the sentence, not placed by the model",
}


def japanese_spans(sentence: SentenceView) -> list[Span]:
    how = sentence.how or ("",) * len(sentence.terms)
    return [
        Span(
            t.start,
            t.end,
            ("term" if hit else "term miss") + (f" {h}" if h in HOW_NOTES else ""),
            f"{t.source} → {t.target} [{t.kind}: {t.entry_id}]"
            + ("" if hit else ": missing from the machine translation")
            + HOW_NOTES.get(h, ""),
        )
        for t, hit, h in zip(sentence.terms, sentence.found, how)
    ]


def highlight(text: str, spans: Sequence[Span]) -> str:
    """``text`` as escaped HTML with ``spans`` marked; overlapping spans keep the first
    (leftmost, then longest, avoided before allowed)."""
    ordered = sorted(spans, key=lambda s: (s.start, -(s.end - s.start), s.css != "avoid"))
    out, position = [], 0
    for span in ordered:
        if span.start < position or span.end <= span.start:
            continue
        out.append(html.escape(text[position : span.start]))
        out.append(
            f'<mark class="{span.css}" title="{html.escape(span.title, quote=True)}">'
            f"{html.escape(text[span.start : span.end])}</mark>"
        )
        position = span.end
    out.append(html.escape(text[position:]))
    return "".join(out)


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


def render_review(view: RunView) -> str:
    """The review page for ``view``, as one HTML document with its CSS and script inline."""
    title = f"Review: {view.run_dir.resolve().name}"
    csp = (
        f"default-src 'none'; style-src {_csp_hash(_CSS)}; script-src {_csp_hash(_JS)}; "
        "img-src 'none'; base-uri 'none'; form-action 'none'"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">',
        f'<meta name="generator" content="forumtranslate {_e(__version__)}">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
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


# --- post-edits and HTER -----------------------------------------------------------------


def read_postedits(run_dir: str | Path) -> list[PostEdit]:
    """The post-edits stored in a run (none if it has no ``postedits.jsonl``)."""
    path = Path(run_dir) / POSTEDITS_FILE
    if not path.exists():
        return []
    postedits = []
    shape = {"doc_id": str, "seg_ids": [str], "machine": str, "post_edit": str, "origin": str}
    for line_no, record in enumerate(read_jsonl(path), start=1):
        check_shape(record, shape, path, line_no)
        try:
            postedits.append(
                PostEdit(
                    doc_id=str(record["doc_id"]),
                    seg_ids=tuple(str(s) for s in record["seg_ids"]),
                    machine=str(record["machine"]),
                    post_edit=str(record["post_edit"]),
                    origin=str(record.get("origin", "")),
                )
            )
        except (KeyError, TypeError) as err:
            raise InputError(f"malformed post-edit ({err})", path, line_no) from None
    return postedits


def save_postedits(run_dir: str | Path, new: Sequence[PostEdit]) -> dict[str, Any]:
    """Merge ``new`` into the run's post-edits, then score them all; return the HTER.

    A new post-edit replaces every stored one that shares a segment with it, so a
    reviewer can send a document back twice, or move from the TSV to XLIFF, and each
    segment keeps only its latest correction. Written atomically, in corpus order.
    """
    run_dir = Path(run_dir)
    order = {str(r["seg_id"]): k for k, r in enumerate(read_translations(run_dir))}
    taken = {seg_id for pe in new for seg_id in pe.seg_ids}
    kept = [pe for pe in read_postedits(run_dir) if not taken & set(pe.seg_ids)]
    merged = sorted([*kept, *new], key=lambda pe: min(order.get(s, -1) for s in pe.seg_ids))
    write_atomic(
        run_dir / POSTEDITS_FILE, "".join(dumps_line(pe.to_json()) + "\n" for pe in merged)
    )
    return score_postedits(run_dir)


def score_postedits(run_dir: str | Path) -> dict[str, Any]:
    """HTER of a run's stored post-edits; writes ``hter.json`` beside them."""
    run_dir = Path(run_dir)
    postedits = read_postedits(run_dir)
    if not postedits:
        raise InputError(
            f"no post-edits to score; import some (forumtranslate postedit import {run_dir} FILE)",
            run_dir,
        )
    result = hter_scores(postedits)
    write_atomic(run_dir / HTER_FILE, json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    return result


# --- serving the page on loopback --------------------------------------------------------


class ReviewServer(http.server.ThreadingHTTPServer):
    """Serves one file, on 127.0.0.1 only: the review page, read afresh on each request."""

    daemon_threads = True

    def __init__(self, page: Path, port: int = DEFAULT_PORT):
        self.page = Path(page)
        try:
            super().__init__(("127.0.0.1", port), _ReviewHandler)
        except OSError as err:
            raise ForumTranslateError(
                f"cannot listen on 127.0.0.1:{port}: {err.strerror}; pick another --port "
                "(0 picks a free one)"
            ) from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{self.page.name}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-request (a closed tab, a reload) is no error; anything
        else is one line on stderr, not the standard library's traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        print(
            f"forumtranslate: warning: request from {client_address[0]} failed: "
            f"{type(error).__name__}: {error}",
            file=sys.stderr,
        )


class _ReviewHandler(http.server.BaseHTTPRequestHandler):
    server: ReviewServer

    def do_GET(self) -> None:
        self._send(body=True)

    def do_HEAD(self) -> None:
        self._send(body=False)

    def _send(self, body: bool) -> None:
        host = self.headers.get("Host", "").rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost"):  # refuse DNS-rebinding pages
            self.send_error(403, "only http://127.0.0.1 serves this page")
            return
        if self.path.split("?", 1)[0] not in ("/", f"/{self.server.page.name}"):
            self.send_error(404)
            return
        try:
            data = self.server.page.read_bytes()
        except OSError:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI prints the URL
        return


def serve_in_background(server: ReviewServer) -> threading.Thread:
    """Run ``server`` on a daemon thread (for tests and embedding); stop with shutdown()."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


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
