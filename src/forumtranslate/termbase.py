"""The glossary for other tools and for review: TBX and CSV export, and a change's impact.

Export turns ``glossary/terms.tsv`` into the two forms other software reads: TBX
(ISO 30042:2019, the TBX-Basic dialect in its DCA style) for CAT tools and terminology
managers, and a two-column CSV for machine translation services' custom terminology.

Impact answers what a reviewer of a glossary pull request needs to know: which entries
changed field by field, which corpus sentences now match other terms, and, with a model,
how their translations change. The old glossary is read from git, so the report compares
the working copy with any revision (``origin/main`` in CI).
"""

from __future__ import annotations

import csv
import io
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forumtranslate import __version__
from forumtranslate.confidence import Confidence
from forumtranslate.corpus import load_documents
from forumtranslate.errors import ForumTranslateError, InputError
from forumtranslate.glossary import (
    VARIANT_SEPARATOR,
    Glossary,
    GlossaryEntry,
    load_glossary,
    nfkc,
)
from forumtranslate.records import Segment, TermMatch
from forumtranslate.segment import segment_document
from forumtranslate.xmltext import xml_visible

if TYPE_CHECKING:  # hints only: export and --no-translate import no translation code
    from forumtranslate.comparison import Comparison
    from forumtranslate.translate import Translator

# --- export --------------------------------------------------------------------------

TBX_NS = "urn:iso:std:iso:30042:ed-2"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
TBX_BASIC_SCHEMAS = (  # where validators find the dialect's schemas (TBX-Basic, DCA style)
    ("https://raw.githubusercontent.com/LTAC-Global/TBX-Basic_dialect/master/DCA/"
     "TBXcoreStructV03_TBX-Basic_integrated.rng", "http://relaxng.org/ns/structure/1.0"),
    ("https://raw.githubusercontent.com/LTAC-Global/TBX-Basic_dialect/master/DCA/"
     "TBX-Basic_DCA.sch", "http://purl.oclc.org/dsdl/schematron"),
)  # fmt: skip
PREFERRED = "preferredTerm-admn-sts"
ADMITTED = "admittedTerm-admn-sts"
DEPRECATED = "deprecatedTerm-admn-sts"
NAME_KINDS = ("organisation", "person", "programme")  # TBX partOfSpeech: properNoun
KIND_NOTE = "kind: "
CSV_HEADER = ("ja", "en")


def concept_id(entry_id: str) -> str:
    """The entry id as an XML ID: an id may start with a digit (17-strategic-fields), an
    XML name may not, so such an id gets a leading "_", which glossary ids never have."""
    return entry_id if entry_id[:1].isalpha() else f"_{entry_id}"


def to_tbx(glossary: Glossary) -> str:
    """The glossary as a TBX-Basic document: one conceptEntry per entry.

    Japanese: the source is the preferred term, its variants admitted terms. English: the
    approved rendering is preferred, acceptable variants admitted, renderings to avoid
    deprecated. The note goes on the concept, and after it a ``kind: …`` note; the terms
    of a name (organisation, person, programme) are marked ``partOfSpeech`` properNoun,
    TBX-Basic's category for names. The header names the file and its SHA-256, and
    nothing varies between exports of the same file, so exports can be diffed.
    """

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
        """TBX has no ``<cp>``: a character XML cannot hold (which lint refuses in the
        glossary) is written as a visible stand-in rather than making the file unreadable."""
        element = ET.SubElement(parent, tag, attrib)
        element.text = None if text is None else xml_visible(text)[0]
        return element

    # The namespace goes in as a plain xmlns attribute: ElementTree's default_namespace
    # refuses unprefixed attributes, and register_namespace would change global state.
    root = ET.Element("tbx", {"type": "TBX-Basic", "style": "dca", XML_LANG: "ja", "xmlns": TBX_NS})
    file_desc = sub(sub(root, "tbxHeader"), "fileDesc")
    sub(sub(file_desc, "titleStmt"), "title", "forumtranslate glossary (ja → en)")
    sub(
        sub(file_desc, "sourceDesc"),
        "p",
        f"Exported by forumtranslate {__version__} from {glossary.path or 'a glossary'} "
        f"(sha256 {glossary.sha256}).",
    )
    body = sub(sub(root, "text"), "body")
    for entry in glossary.entries:
        concept = sub(body, "conceptEntry", id=concept_id(entry.id))
        if entry.note:
            sub(concept, "note", entry.note)
        sub(concept, "note", KIND_NOTE + entry.kind)
        for lang, terms in (
            ("ja", [(entry.source, PREFERRED)] + [(v, ADMITTED) for v in entry.source_variants]),
            (
                "en",
                [(entry.target, PREFERRED)]
                + [(v, ADMITTED) for v in entry.target_variants]
                + [(v, DEPRECATED) for v in entry.avoid],
            ),
        ):
            lang_sec = sub(concept, "langSec", **{XML_LANG: lang})
            for term, status in terms:
                term_sec = sub(lang_sec, "termSec")
                sub(term_sec, "term", term)
                sub(term_sec, "termNote", status, type="administrativeStatus")
                if entry.kind in NAME_KINDS:
                    sub(term_sec, "termNote", "properNoun", type="partOfSpeech")
    ET.indent(root)
    models = "".join(
        f'<?xml-model href="{href}" type="application/xml" schematypens="{ns}"?>\n'
        for href, ns in TBX_BASIC_SCHEMAS
    )
    xml = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{models}{xml}\n'


def to_csv(glossary: Glossary) -> str:
    """The glossary as a ``ja,en`` CSV: one row per Japanese form, approved English only.

    This is Amazon Translate's custom terminology layout (a header row of language codes);
    drop the header for DeepL's glossary CSV (source,target). Variants of the English and
    the renderings to avoid have no place in either, so they are left out. A form that
    two entries claim (a lint error) keeps its first entry, as matching does.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    seen: set[str] = set()
    for entry in glossary.entries:
        for form in entry.sources:
            if nfkc(form) not in seen:
                seen.add(nfkc(form))
                writer.writerow((form, entry.target))
    return out.getvalue()


EXPORTERS: dict[str, Callable[[Glossary], str]] = {"tbx": to_tbx, "csv": to_csv}


def export_glossary(glossary: Glossary, fmt: str) -> str:
    """The glossary in format ``fmt`` (one of ``EXPORTERS``)."""
    if fmt not in EXPORTERS:
        raise ForumTranslateError(f"unknown export format {fmt!r} (known: {', '.join(EXPORTERS)})")
    return EXPORTERS[fmt](glossary)


# --- the glossary at a git revision --------------------------------------------------


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, check=False)
    except FileNotFoundError:
        raise ForumTranslateError(
            "git is not installed (or not on PATH); it is needed to read --base"
        ) from None


def load_glossary_at(path: str | Path, rev: str) -> Glossary:
    """The glossary file ``path`` as it was at git revision ``rev``.

    The file's bytes are read with ``git cat-file`` (what ``git show REV:PATH`` prints for
    a file) and checked exactly as ``load_glossary`` checks the working copy; messages
    name it ``REV:PATH``.
    """
    path = Path(path)
    if not rev or rev.startswith("-"):
        raise ForumTranslateError(f"not a git revision: {rev!r}")
    folder = path.parent.resolve()
    if not folder.is_dir():
        raise InputError("folder not found", path.parent)
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        reason = top.stderr.decode(errors="replace").strip().splitlines()
        raise ForumTranslateError(
            f"cannot read --base {rev}: not a git repository"
            + (f" ({reason[0]})" if reason else ""),
            folder,
        )
    try:
        relative = (folder / path.name).relative_to(top.stdout.decode().strip()).as_posix()
    except ValueError:
        raise ForumTranslateError("is not inside its git repository", path) from None
    commit = _git(folder, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if commit.returncode != 0:
        raise ForumTranslateError(f"unknown git revision {rev!r}")
    sha = commit.stdout.decode().strip()
    blob = _git(folder, "cat-file", "blob", f"{sha}:{relative}")
    if blob.returncode != 0:
        raise ForumTranslateError(f"{relative} does not exist at revision {rev} ({sha[:12]})")
    name = f"{rev}:{relative}"
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        copy.write_bytes(blob.stdout)
        try:
            old = load_glossary(copy)
        except InputError as err:
            raise InputError(err.message, name, err.line) from None
    return Glossary(entries=old.entries, path=name, text=old.text)


# --- what changed --------------------------------------------------------------------

FIELDS = ("kind", "source", "source_variants", "target", "target_variants", "avoid", "note")


@dataclass(frozen=True)
class FieldChange:
    """One field of an entry, before and after, as it is written in the TSV."""

    field: str
    old: str
    new: str


@dataclass(frozen=True)
class EntryChange:
    """An entry whose id stayed while some of its fields changed."""

    old: GlossaryEntry
    new: GlossaryEntry
    fields: tuple[FieldChange, ...]

    @property
    def id(self) -> str:
        return self.new.id


@dataclass(frozen=True)
class GlossaryDiff:
    """Entries by id: added and changed in the new file's order, removed in the old's.

    Moving a row is no change; renaming an id is one entry removed and one added.
    """

    added: tuple[GlossaryEntry, ...]
    removed: tuple[GlossaryEntry, ...]
    changed: tuple[EntryChange, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def _cell(entry: GlossaryEntry, name: str) -> str:
    value = getattr(entry, name)
    return VARIANT_SEPARATOR.join(value) if isinstance(value, tuple) else value


def _by_id(glossary: Glossary) -> dict[str, GlossaryEntry]:
    """First entry of each id; a duplicate id is a lint error, not a second entry."""
    entries: dict[str, GlossaryEntry] = {}
    for entry in glossary.entries:
        entries.setdefault(entry.id, entry)
    return entries


def glossary_diff(old: Glossary, new: Glossary) -> GlossaryDiff:
    """Entries added, removed and changed (field by field) from ``old`` to ``new``."""
    before, after = _by_id(old), _by_id(new)
    changed = []
    for entry_id, entry in after.items():
        previous = before.get(entry_id)
        if previous is None:
            continue
        fields = tuple(
            FieldChange(name, _cell(previous, name), _cell(entry, name))
            for name in FIELDS
            if _cell(previous, name) != _cell(entry, name)
        )
        if fields:
            changed.append(EntryChange(previous, entry, fields))
    return GlossaryDiff(
        added=tuple(e for i, e in after.items() if i not in before),
        removed=tuple(e for i, e in before.items() if i not in after),
        changed=tuple(changed),
    )


@dataclass(frozen=True)
class ImpactedSentence:
    """A corpus sentence whose glossary matches differ: what the translator must honour."""

    segment: Segment
    old_terms: tuple[TermMatch, ...]
    new_terms: tuple[TermMatch, ...]


def _scan(old: Glossary, new: Glossary, data_dir: str | Path) -> tuple[list[ImpactedSentence], int]:
    impacted: list[ImpactedSentence] = []
    total = 0
    for document in load_documents(data_dir, "ja"):
        for segment in segment_document(document, "ja"):
            total += 1
            before = tuple(old.find_terms(segment.text))
            after = tuple(new.find_terms(segment.text))
            if before != after:
                impacted.append(ImpactedSentence(segment, before, after))
    return impacted, total


def impacted_sentences(
    old: Glossary, new: Glossary, data_dir: str | Path
) -> list[ImpactedSentence]:
    """Every sentence of ``data_dir/ja``, in corpus order, whose matches differ.

    Matches are compared whole (span, approved and allowed English, renderings to avoid),
    so a sentence is listed exactly when the constraints its translation is decoded under
    change; a change to a note alone lists none.
    """
    return _scan(old, new, data_dir)[0]


def impact_translator(settings: Mapping[str, Any]) -> Translator:
    """The model ``forumtranslate run`` would load with these settings (its ``[run]`` keys).

    Terms are always hard: the report shows what the glossary makes the model write.
    """
    from forumtranslate.models import DEFAULT_MODEL
    from forumtranslate.run import RunConfig, make_translator
    from forumtranslate.translate import DecodingOptions

    if "threads" in settings:
        import torch

        torch.set_num_threads(settings["threads"])
    decoding = DecodingOptions(
        terms="hard",
        **{key: settings[key] for key in ("beam_size", "max_batch_tokens") if key in settings},
    )
    config = RunConfig(
        out_dir=Path("."),  # unused: nothing is written
        model=settings.get("model", DEFAULT_MODEL),
        revision=settings.get("revision"),
        backend=settings.get("backend", "transformers"),
        device=settings.get("device", "auto"),
        dtype=settings.get("dtype", "float32"),
        decoding=decoding,
    )
    return make_translator(config)


@dataclass(frozen=True)
class Impact:
    """A glossary change and what it does to the corpus: the report's and the page's data.

    ``translations`` and ``confidences`` are (under the old glossary, under the new one),
    None when nothing was translated."""

    old: Glossary
    new: Glossary
    base: str
    diff: GlossaryDiff
    impacted: list[ImpactedSentence]
    total: int
    translations: tuple[list[str], list[str]] | None = None
    confidences: tuple[list[Confidence | None], list[Confidence | None]] | None = None
    signature: Mapping[str, Any] | None = None


def glossary_impact(
    old: Glossary,
    new: Glossary,
    data_dir: str | Path,
    load_translator: Callable[[], Translator] | None = None,
    base: str = "",
) -> Impact:
    """The change from ``old`` to ``new``: entries, impacted sentences and, with
    ``load_translator``, their translations under the old and under the new glossary; the
    model is loaded only if some sentence is impacted."""
    diff = glossary_diff(old, new)
    impacted, total = _scan(old, new, data_dir)
    if load_translator is None or not impacted:
        return Impact(old, new, base, diff, impacted, total)
    translator = load_translator()
    texts = [item.segment.text for item in impacted]
    before = translator.translate_scored(texts, [item.old_terms for item in impacted])
    after = translator.translate_scored(texts, [item.new_terms for item in impacted])
    return Impact(
        old,
        new,
        base,
        diff,
        impacted,
        total,
        translations=(before[0], after[0]),
        confidences=(before[1], after[1]),
        signature=translator.signature(),
    )


def impact_markdown(impact: Impact) -> str:
    """A Markdown report of a glossary change, for a pull-request comment."""
    lines = _header(impact.old, impact.new, impact.base)
    lines += _diff_table(impact.diff)
    lines += _sentences(impact.impacted, impact.total, impact.translations)
    lines += _footer(impact.old, impact.new, impact.signature or {})
    return "\n".join(lines) + "\n"


def impact_report(
    old: Glossary,
    new: Glossary,
    data_dir: str | Path,
    load_translator: Callable[[], Translator] | None = None,
    base: str = "",
) -> str:
    """A Markdown report of the change from ``old`` to ``new`` (``glossary_impact``)."""
    return impact_markdown(glossary_impact(old, new, data_dir, load_translator, base))


def impact_comparison(impact: Impact) -> Comparison:
    """The impacted sentences as a comparison page: old glossary (A) against new (B),
    without references, so "better" means a higher confidence."""
    from forumtranslate.comparison import ComparedUnit, Comparison, impact_term_changes
    from forumtranslate.glossary import check_terms

    units = []
    for k, item in enumerate(impact.impacted):
        text_a = impact.translations[0][k] if impact.translations else ""
        text_b = impact.translations[1][k] if impact.translations else ""
        found_a = check_terms(text_a, item.old_terms) if impact.translations else None
        found_b = check_terms(text_b, item.new_terms) if impact.translations else None
        units.append(
            ComparedUnit(
                doc_id=item.segment.doc_id,
                label=item.segment.seg_id,
                source=item.segment.text,
                reference=None,
                text_a=text_a,
                text_b=text_b,
                confidence_a=impact.confidences[0][k] if impact.confidences else None,
                confidence_b=impact.confidences[1][k] if impact.confidences else None,
                term_changes=impact_term_changes(item.old_terms, item.new_terms, found_a, found_b),
            )
        )
    notes = [f"{len(impact.impacted)} of {impact.total} corpus sentences match other terms."]
    if impact.translations is None:
        notes.append("Not translated (--no-translate, or no sentence is impacted).")
    base = impact.base or str(impact.old.path)
    return Comparison(
        title=f"Glossary impact: {impact.new.path} against {base}",
        name_a=f"glossary at {base} ({impact.old.sha256[:12]})",
        name_b=f"working copy ({impact.new.sha256[:12]})",
        units=tuple(units),
        better_by="confidence",
        notes=tuple(notes),
    )


# --- Markdown ------------------------------------------------------------------------

_MD_SPECIAL = set("\\`*_[]<>|#~")


def md(text: str) -> str:
    """``text`` as literal Markdown on one line: special characters backslash-escaped."""
    flat = " ".join(text.split())
    return "".join(f"\\{ch}" if ch in _MD_SPECIAL else ch for ch in flat)


def _header(old: Glossary, new: Glossary, base: str) -> list[str]:
    return [
        f"## Glossary impact: `{new.path}` against `{base or old.path}`",
        "",
        "| | entries | sha256 |",
        "|---|---:|---|",
        f"| base `{old.path}` | {len(old.entries)} | `{old.sha256[:12]}` |",
        f"| working copy | {len(new.entries)} | `{new.sha256[:12]}` |",
        "",
    ]


def _entry_summary(entry: GlossaryEntry) -> str:
    return f"{' / '.join(entry.sources)} → {' / '.join(entry.allowed)} ({entry.kind})"


def _diff_table(diff: GlossaryDiff) -> list[str]:
    title = (
        f"### Entries: {len(diff.added)} added, {len(diff.removed)} removed, "
        f"{len(diff.changed)} changed"
    )
    if diff.empty:
        return [title, "", "No entry changed.", ""]
    rows = ["| change | id | field | base | working copy |", "|---|---|---|---|---|"]
    for entry in diff.added:
        rows.append(f"| added | `{entry.id}` | | | {md(_entry_summary(entry))} |")
    for entry in diff.removed:
        rows.append(f"| removed | `{entry.id}` | | {md(_entry_summary(entry))} | |")
    for change in diff.changed:
        for number, field in enumerate(change.fields):
            label = f"| changed | `{change.id}` " if number == 0 else "| | "
            rows.append(f"{label}| {field.field} | {md(field.old)} | {md(field.new)} |")
    return [title, "", *rows, ""]


def _terms(matches: Sequence[TermMatch]) -> str:
    if not matches:
        return "*none*"
    return "; ".join(md(f"{m.source} → {' / '.join(m.allowed or (m.target,))}") for m in matches)


def _sentences(
    impacted: list[ImpactedSentence],
    total: int,
    translations: tuple[list[str], list[str]] | None,
) -> list[str]:
    lines = [f"### Sentences whose terms change: {len(impacted)} of {total}", ""]
    if not impacted:
        return [*lines, "No sentence in the corpus matches other terms.", ""]
    for number, item in enumerate(impacted):
        lines += [
            f"**`{item.segment.seg_id}`** {md(item.segment.text)}",
            "",
            f"- terms before: {_terms(item.old_terms)}",
            f"- terms after: {_terms(item.new_terms)}",
        ]
        if translations is not None:
            lines += [
                f"- translation before: {md(translations[0][number])}",
                f"- translation after: {md(translations[1][number])}",
            ]
        lines.append("")
    return lines


def _footer(old: Glossary, new: Glossary, signature: Mapping[str, Any]) -> list[str]:
    parts = [
        f"forumtranslate {__version__}",
        f"base sha256 {old.sha256[:12]}",
        f"new sha256 {new.sha256[:12]}",
    ]
    if signature:
        decoding = signature.get("decoding", {})
        parts += [
            f"model {signature.get('model')} @ {signature.get('revision')}",
            f"beam {decoding.get('beam_size')}",
            f"terms {decoding.get('terms')}",
        ]
    return ["---", "", f"<sub>{md(' · '.join(parts))}</sub>"]
