"""What the review page shows: a run folder joined and checked once into plain views.

Why apart from the page: export builds its files from the same ``RunView`` that the page
renders, so the joining (translations, alignment, scores, manifest, glossary, post-edits)
and the checks on hand-edited JSON live here, in one place, with no HTML in them.

The highlighting lives here too: glossary terms are marked by character offsets into the
original text, escaping each slice, so a sentence can never inject markup.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forumtranslate.align import read_beads, read_translations
from forumtranslate.confidence import Confidence, combine
from forumtranslate.corpus import read_manifest, read_text
from forumtranslate.errors import InputError
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
from forumtranslate.review.postedits import HTER_FILE, read_postedits
from forumtranslate.storage import check_shape

LOW_CHRF = 30.0  # below: shown red, and the filter's default threshold


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
