"""Export a scored run for people and tools, and read reviewers' post-edits back.

Three formats, each for its reader:

* **TSV** for a spreadsheet, one row per aligned bead: document, segment ids, Japanese,
  machine output, reference, sentence chrF2 and BLEU, term flags, and a ``post_edit``
  column holding the machine output for the reviewer to correct in place. UTF-8 *with* a
  byte-order mark, because Excel reads a BOM-less file as the local ANSI code page and
  turns the Japanese into mojibake (LibreOffice and Python's ``utf-8-sig`` accept the BOM);
  CRLF line ends as RFC 4180 has them; ``csv`` quoting. Every cell that starts with
  ``= + - @``, a tab or a carriage return (which a spreadsheet would run as a formula) or
  with ``'`` gets one leading ``'``; a character XML cannot hold (a control character, a
  lone surrogate) is written ``\\u{0014}``; the importer undoes both, so every text
  survives the round trip.
  The bead's shape (1-1, 2-1) is left out: Excel turns "1-1" into a date.
* **TMX 1.4b**, a translation memory: one ``<tu>`` per aligned bead pairing the Japanese
  with the *human reference* (a memory should hold approved translations); the machine
  output rides along in a ``<prop type="x-machine-translation">``, with the bead's ids and
  chrF2 in other ``x-`` props. Beads with no reference or no Japanese (1-0, 0-1) pair
  nothing and are left out; the header's note counts them. TMX has no element for a
  character XML cannot hold, so one is written as a visible stand-in (␔ for U+0014) and
  the unit's ``x-replaced-characters`` prop says which.
* **XLIFF 2.0**, a bilingual file for CAT tools (OmegaT, Trados): one ``<file>`` per
  document, one ``<unit id=seg_id>`` per Japanese segment whose ``<target>`` is the
  machine output (``state="translated"``), with the reference of its bead and its glossary
  terms (and their kind) as notes. A character XML cannot hold is a ``<cp hex>`` element
  in a source or target, which the importer reads back; a note, which holds text only,
  shows a visible stand-in and says so. A reviewer edits the targets and sends the file
  back.

Post-edits come back as that TSV (its ``post_edit`` column) or that XLIFF (its targets).
Every row or unit with a non-empty post-edit counts as reviewed, unchanged ones included
(HTER 0): the file a reviewer returns is what they reviewed. An empty cell or target
means "not reviewed". The Japanese in the file must match the run's, which catches a file
from another run. XML is written with the standard library and read with expat, which
refuses a DOCTYPE here, so no entity can be expanded or fetched.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.parsers import expat

from forumtranslate import __version__
from forumtranslate.align import read_translations
from forumtranslate.errors import ForumTranslateError, InputError
from forumtranslate.records import PostEdit
from forumtranslate.review.postedits import save_postedits
from forumtranslate.review.view import (
    BeadView,
    RunView,
    join_english,
    join_japanese,
    load_run_view,
)
from forumtranslate.storage import refuse_run_record, write_output
from forumtranslate.xmltext import (
    describe_replaced,
    tsv_escape,
    tsv_unescape,
    xml_pieces,
    xml_visible,
)

FORMATS = {"tsv": "tsv", "tmx": "tmx", "xliff": "xlf"}  # format -> file extension
TSV_COLUMNS = (
    "doc_id",
    "seg_ids",
    "ref_ids",
    "japanese",
    "machine",
    "reference",
    "chrF2",
    "BLEU",
    "term_problems",
    "terms",
    "term_how",
    "post_edit",
)
XLIFF_NS = "urn:oasis:names:tc:xliff:document:2.0"
XML_NS = "http://www.w3.org/XML/1998/namespace"
_FORMULA_START = tuple("=+-@'\t\r")
_NMTOKEN = re.compile(r"[\w.:\-]+")


def write_export(
    run_dir: str | Path,
    fmt: str,
    out: str | Path | None = None,
    *,
    data_dir: str | Path | None = None,
    glossary_path: str | Path | None = None,
) -> Path:
    """Write a run as ``fmt`` (tsv, tmx, xliff) to ``out`` (default RUN/export.EXT)."""
    if fmt not in FORMATS:
        raise ForumTranslateError(f"unknown export format {fmt!r} (use {', '.join(FORMATS)})")
    view = load_run_view(run_dir, data_dir, glossary_path)
    text = {"tsv": export_tsv, "tmx": export_tmx, "xliff": export_xliff}[fmt](view)
    path = Path(out) if out is not None else Path(run_dir) / f"export.{FORMATS[fmt]}"
    refuse_run_record(path, run_dir)
    write_output(path, text)
    return path


# --- TSV -------------------------------------------------------------------------------


def spreadsheet_cell(text: str) -> str:
    """``text`` made safe from formula evaluation, with what XML cannot hold escaped;
    ``from_spreadsheet_cell`` undoes both."""
    text = tsv_escape(text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def from_spreadsheet_cell(text: str) -> str:
    """Undo ``spreadsheet_cell``: a ``'`` goes only where it guards a formula character
    (or another ``'``), so a reviewer's own "'Tis" keeps its apostrophe; escapes are undone."""
    guarded = text.startswith("'") and text[1:].startswith(_FORMULA_START)
    return tsv_unescape(text[1:] if guarded else text)


def term_cell(bead: BeadView) -> str:
    """Every glossary term of the bead with its kind and verdict, e.g. ``経済安全保障 →
    economic security [term]: ok``, then any avoided rendering used."""
    items = [
        f"{term.source} → {term.target} [{term.kind}]: {'ok' if hit else 'MISSING'}"
        for sentence in bead.sentences
        for term, hit in zip(sentence.terms, sentence.found)
    ]
    items += [
        f"{flag.source} → {flag.target}: AVOID “{flag.form}”"
        for flag in bead.flags
        if flag.problem == "avoid"
    ]
    return "; ".join(items)


def how_cell(bead: BeadView) -> str:
    """How each glossary term of the bead got into the machine output (records.HOW), e.g.
    ``経済安全保障 → economic security: decoded; 重要鉱物 → critical minerals: appended``."""
    return "; ".join(
        f"{term.source} → {term.target}: {how}"
        for sentence in bead.sentences
        for term, how in zip(sentence.terms, sentence.how)
    )


def export_tsv(view: RunView) -> str:
    """One row per bead, for a spreadsheet (see the module docstring for the choices)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\r\n")
    writer.writerow(TSV_COLUMNS)
    for bead in view.beads:
        machine = join_english([s.translation for s in bead.sentences])
        cells = [
            bead.bead.doc_id,
            " ".join(bead.bead.src_seg_ids),
            " ".join(bead.bead.ref_ids),
            join_japanese([s.source for s in bead.sentences]),
            machine,
            join_english(bead.bead.ref),
            f"{bead.chrf:.2f}",
            f"{bead.bleu:.2f}",
            str(bead.problems),
            term_cell(bead),
            how_cell(bead),
            machine if bead.sentences else "",
        ]
        writer.writerow([spreadsheet_cell(cell) for cell in cells])
    return "\ufeff" + buffer.getvalue()


# --- XML helpers -------------------------------------------------------------------------


def _visible(value: str, replaced: dict[int, None]) -> str:
    """``value`` with what XML cannot hold made visible; the code points go into
    ``replaced`` so the writer can say so."""
    text, codes = xml_visible(value)
    replaced.update(dict.fromkeys(codes))
    return text


def _mixed(element: ET.Element, value: str) -> None:
    """``value`` as the content of ``element``: text, with a ``<cp hex>`` child for each
    character XML cannot hold (XLIFF 2's inline element for them)."""
    element.text = ""
    last: ET.Element | None = None
    for piece in xml_pieces(value):
        if isinstance(piece, int):
            last = ET.SubElement(element, _q("cp"), {"hex": f"{piece:04X}"})
            last.tail = ""
        elif last is None:
            element.text += piece
        else:
            last.tail = (last.tail or "") + piece


def _xml(root: ET.Element, fill: Sequence[tuple[ET.Element, str]] = ()) -> str:
    """The document, indented; ``fill`` is mixed content set after indenting, which would
    otherwise put whitespace into it. A carriage return in text is written ``&#13;``,
    which a parser keeps (a literal one it reads as a line feed); ElementTree writes one in
    an attribute that way already, and indenting adds none."""
    ET.indent(root, space=" ")
    for element, value in fill:
        _mixed(element, value)
    body = ET.tostring(root, encoding="unicode").replace("\r", "&#13;")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def _nmtoken(value: str, what: str) -> str:
    if not _NMTOKEN.fullmatch(value):
        raise ForumTranslateError(f"{what} {value!r} is not a valid XML NMTOKEN id")
    return value


# --- TMX ---------------------------------------------------------------------------------


def export_tmx(view: RunView) -> str:
    """TMX 1.4b: Japanese ↔ reference per bead, the machine output in a prop."""
    translator = view.settings.get("translator") or {}
    root = ET.Element("tmx", {"version": "1.4"})
    header = ET.SubElement(
        root,
        "header",
        {
            "creationtool": "forumtranslate",
            "creationtoolversion": __version__,
            "segtype": "sentence",
            "o-tmf": "forumtranslate-run",
            "adminlang": "en",
            "srclang": "ja",
            "datatype": "plaintext",
        },
    )
    props = {
        "x-model": str(translator.get("model", "")),
        "x-model-revision": str(translator.get("revision") or ""),
        "x-glossary-sha256": str((view.settings.get("glossary") or {}).get("sha256", "")),
    }
    replaced: dict[int, None] = {}
    for kind, value in props.items():
        ET.SubElement(header, "prop", {"type": kind}).text = _visible(value, replaced)
    if replaced:
        ET.SubElement(header, "prop", {"type": "x-replaced-characters"}).text = describe_replaced(
            tuple(replaced)
        )
    note = ET.SubElement(header, "note")
    body = ET.SubElement(root, "body")
    left_out = 0
    for bead in view.beads:
        if not bead.sentences or not bead.bead.ref:
            left_out += 1
            continue
        tuid = xml_visible("+".join(bead.bead.src_seg_ids))[0]  # ids are checked; belt and braces
        tu = ET.SubElement(body, "tu", {"tuid": tuid})
        tu_props = {
            "x-document": bead.bead.doc_id,
            "x-source-ids": " ".join(bead.bead.src_seg_ids),
            "x-reference-ids": " ".join(bead.bead.ref_ids),
            "x-bead": bead.bead.kind,
            "x-chrF2": f"{bead.chrf:.2f}",
            "x-machine-translation": join_english([s.translation for s in bead.sentences]),
        }
        if any(s.terms for s in bead.sentences):
            tu_props["x-term-how"] = how_cell(bead)
        sides = (
            ("ja", join_japanese([s.source for s in bead.sentences])),
            ("en", join_english(bead.bead.ref)),
        )
        replaced = {}
        for kind, value in tu_props.items():
            ET.SubElement(tu, "prop", {"type": kind}).text = _visible(value, replaced)
        segs = [(lang, _visible(text, replaced)) for lang, text in sides]
        if replaced:  # TMX wants every prop before the first tuv
            ET.SubElement(tu, "prop", {"type": "x-replaced-characters"}).text = describe_replaced(
                tuple(replaced)
            )
        for lang, text in segs:
            tuv = ET.SubElement(tu, "tuv", {f"{{{XML_NS}}}lang": lang})
            ET.SubElement(tuv, "seg").text = text
    note.text = (
        "Source: the Japanese of each aligned bead; target: its human reference translation. "
        "The machine translation is in the prop x-machine-translation. "
        f"{left_out} beads with no reference or no Japanese are left out. "
        "Characters XML cannot hold are shown by a stand-in, listed in x-replaced-characters."
    )
    return _xml(root)


# --- XLIFF 2.0 ---------------------------------------------------------------------------


def _q(name: str) -> str:
    """An XLIFF element name. Elements are built unqualified under a root carrying
    ``xmlns``: ElementTree cannot write a default namespace with unqualified attributes,
    and ``ns0:`` prefixes would be valid but unreadable."""
    return name


def export_xliff(view: RunView) -> str:
    """XLIFF 2.0: one file per document, one unit per segment, machine output as target."""
    root = ET.Element(
        _q("xliff"), {"xmlns": XLIFF_NS, "version": "2.0", "srcLang": "ja", "trgLang": "en"}
    )
    fill: list[tuple[ET.Element, str]] = []
    for document in view.documents:
        if not any(bead.sentences for bead in document.beads):
            continue  # a file needs a unit; this document has no Japanese segment
        file = ET.SubElement(
            root,
            _q("file"),
            {
                "id": _nmtoken(document.doc_id, "document id"),
                "original": f"ja/{document.doc_id}.txt",
                f"{{{XML_NS}}}space": "preserve",
            },
        )
        info = document.info
        if info is not None:
            notes = ET.SubElement(file, _q("notes"))
            for category, value in (
                ("title", info.title),
                ("speaker", info.speaker),
                ("role", info.role),
                ("section", info.section),
            ):
                if value and value != "-":
                    _note(notes, category, value)
        for bead in document.beads:
            for sentence in bead.sentences:
                fill += _xliff_unit(file, bead, sentence.seg_id)
    return _xml(root, fill)


def _note(notes: ET.Element, category: str, value: str) -> None:
    """A note: XLIFF 2 notes hold text only, so what XML cannot hold is made visible and
    the note says which characters were."""
    replaced: dict[int, None] = {}
    text = _visible(value, replaced)
    if replaced:
        text += f" [{describe_replaced(tuple(replaced))}]"
    ET.SubElement(notes, _q("note"), {"category": category}).text = text


def _xliff_unit(file: ET.Element, bead: BeadView, seg_id: str) -> list[tuple[ET.Element, str]]:
    """Add the unit of ``seg_id``; return its source and target, to be filled in after
    indenting."""
    sentence = next(s for s in bead.sentences if s.seg_id == seg_id)
    unit = ET.SubElement(file, _q("unit"), {"id": _nmtoken(seg_id, "segment id")})
    notes = ET.SubElement(unit, _q("notes"))
    shared = (
        f" (shared by segments {', '.join(bead.bead.src_seg_ids)})"
        if len(bead.bead.src_seg_ids) > 1
        else ""
    )
    reference = join_english(bead.bead.ref)
    _note(
        notes,
        "reference",
        f"reference{shared}: {reference}" if reference else "no reference sentence",
    )
    how = sentence.how or ("",) * len(sentence.terms)
    for term, hit, h in zip(sentence.terms, sentence.found, how):
        _note(
            notes,
            "terminology",
            f"{term.source} → {term.target} ({term.kind})"
            + ("" if hit else " (missing)")
            + {"edited": " (edited in after decoding)", "appended": " (appended)"}.get(h, ""),
        )
    translated = bool(sentence.translation)
    segment = ET.SubElement(
        unit,
        _q("segment"),
        {"state": "translated" if translated else "initial", "canResegment": "no"},
    )
    fill = [(ET.SubElement(segment, _q("source")), sentence.source)]
    if translated:
        fill.append((ET.SubElement(segment, _q("target")), sentence.translation))
    return fill


# --- post-edits back in ------------------------------------------------------------------


def import_postedits(
    run_dir: str | Path, path: str | Path
) -> tuple[list[PostEdit], dict[str, Any]]:
    """Read the post-edits in ``path`` (an exported TSV or XLIFF, edited), store them in
    the run and score it; return them and the run's HTER."""
    postedits = read_postedit_file(path, run_dir)
    if not postedits:
        raise InputError("holds no post-edits (every post_edit cell or target is empty)", path)
    return postedits, save_postedits(run_dir, postedits)


def read_postedit_file(path: str | Path, run_dir: str | Path) -> list[PostEdit]:
    """The post-edits in an edited TSV or XLIFF export of the run in ``run_dir``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", path) from None
    records = {str(r["seg_id"]): r for r in read_translations(Path(run_dir))}
    head = raw.lstrip(b"\xef\xbb\xbf \t\r\n")
    if path.suffix.lower() in (".xlf", ".xliff", ".xml") or head.startswith(b"<"):
        return read_postedits_xliff(raw, path, records)
    return read_postedits_tsv(_decode(raw, path), path, records)


def _decode(raw: bytes, path: Path) -> str:
    """Text of a spreadsheet's save: UTF-8 with or without a BOM, or UTF-16 with one
    (Excel's "Unicode text")."""
    encoding = "utf-16" if raw.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputError(f"not valid {encoding.upper()} text", path, line) from None


def _same_text(a: str, b: str) -> bool:
    return a.split() == b.split()


def _machine(seg_ids: Sequence[str], records: Mapping[str, Mapping[str, Any]]) -> str:
    return join_english([str(records[s]["translation"]) for s in seg_ids])


def _tsv_rows(text: str, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first line, cells) of each row, parsed strictly: an unbalanced ``"`` would make
    csv swallow the rows after it into one cell, so a cell that spans lines, a stray
    quote and an over-long cell are errors at the line where their row starts."""
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise InputError("holds a NUL character (U+0000); remove it", path, line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            reason = str(err).replace("\t", "\\t")  # csv's message holds the tab itself
            raise InputError(
                f'not a well-formed TSV row ({reason}); is a " unbalanced?', path, start
            ) from None
        if any("\n" in cell or "\r" in cell for cell in row):
            raise InputError(
                'a cell spans several lines (an unbalanced " swallows the rows after it); '
                "a post-edit must be one line",
                path,
                start,
            )
        yield start, row
        start = reader.line_num + 1


def read_postedits_tsv(
    text: str, path: Path, records: Mapping[str, Mapping[str, Any]]
) -> list[PostEdit]:
    """Rows with a non-empty ``post_edit``; an error names the file and the row's line."""
    rows = _tsv_rows(text, path)
    _, header = next(rows, (1, None))
    if header is None:
        raise InputError("is empty", path)
    header = [cell.strip() for cell in header]
    missing = [name for name in ("seg_ids", "post_edit") if name not in header]
    if missing:
        raise InputError(
            f"has no {' or '.join(repr(m) for m in missing)} column (columns: {', '.join(header)})",
            path,
            1,
        )
    column = {name: header.index(name) for name in header}
    seen: dict[str, int] = {}
    postedits = []
    for start, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header) and any(cell.strip() for cell in row[len(header) :]):
            raise InputError(f"{len(row)} fields but the header has {len(header)}", path, start)
        row = row + [""] * (len(header) - len(row))
        post_edit = from_spreadsheet_cell(row[column["post_edit"]]).strip()
        seg_ids = from_spreadsheet_cell(row[column["seg_ids"]]).split()
        if not post_edit:
            continue
        if "\t" in post_edit:
            raise InputError(
                "the post-edit holds a tab; a post-edit is one line of text", path, start
            )
        if not seg_ids:
            raise InputError(
                "has a post-edit but no seg_ids: a bead with no machine output has nothing "
                "to post-edit",
                path,
                start,
            )
        for seg_id in seg_ids:
            if seg_id not in records:
                raise InputError(f"segment {seg_id!r} is not in this run", path, start)
            if seg_id in seen:
                raise InputError(
                    f"segment {seg_id!r} is post-edited twice (also line {seen[seg_id]})",
                    path,
                    start,
                )
            seen[seg_id] = start
        docs = {str(records[s]["doc_id"]) for s in seg_ids}
        if len(docs) > 1:
            raise InputError(f"segments of several documents: {', '.join(docs)}", path, start)
        if "japanese" in column:
            given = from_spreadsheet_cell(row[column["japanese"]])
            expected = join_japanese([str(records[s]["source"]) for s in seg_ids])
            if not _same_text(given, expected):
                raise InputError(
                    f"the Japanese differs from the run's {' '.join(seg_ids)}; "
                    "is this file from another run?",
                    path,
                    start,
                )
        postedits.append(
            PostEdit(
                doc_id=docs.pop(),
                seg_ids=tuple(seg_ids),
                machine=_machine(seg_ids, records),
                post_edit=post_edit,
                origin=f"{path.name}:{start}",
            )
        )
    return postedits


def _code_point(value: str | None, fail: Any) -> str:
    """The character of an XLIFF ``<cp hex="..."/>``: a Unicode scalar value in hex, and
    not NUL, which no file or C library downstream can hold."""
    if value is None or not re.fullmatch(r"[0-9A-Fa-f]{1,6}", value):
        raise fail(f"<cp hex={value!r}> is not a hexadecimal code point")
    number = int(value, 16)
    if number > 0x10FFFF or 0xD800 <= number <= 0xDFFF:
        raise fail(f"<cp hex={value!r}> is not a Unicode character (U+{number:04X})")
    if number == 0:
        raise fail('<cp hex="0"> is a NUL character, which a post-edit cannot hold')
    return chr(number)


def read_postedits_xliff(
    raw: bytes, path: Path, records: Mapping[str, Mapping[str, Any]]
) -> list[PostEdit]:
    """Units with a non-empty target, read with expat so errors name their line."""
    parser = expat.ParserCreate(namespace_separator=" ")
    units: list[dict[str, Any]] = []
    stack: list[str | None] = []  # local names of XLIFF elements; None for others
    state: dict[str, Any] = {"unit": None, "capture": None, "buffer": []}

    def fail(message: str, line: int | None = None) -> InputError:
        return InputError(message, path, line or parser.CurrentLineNumber)

    def refuse_doctype(*_: Any) -> None:
        raise fail("has a DOCTYPE; XLIFF 2 files have none, and entities are not read")

    def start(name: str, attrs: dict[str, str]) -> None:
        ns, _, local = name.rpartition(" ")
        if not stack:
            if ns != XLIFF_NS or local != "xliff":
                raise fail(f"not an XLIFF 2 file: the root is {local!r} in {ns or 'no'} namespace")
            if not attrs.get("version", "").startswith("2."):
                raise fail(f"XLIFF version {attrs.get('version')!r}; expected 2.x")
        stack.append(local if ns == XLIFF_NS else None)
        if ns != XLIFF_NS:
            return
        if local == "unit":
            if not attrs.get("id"):
                raise fail("a unit has no id")
            state["unit"] = {
                "id": attrs["id"],
                "line": parser.CurrentLineNumber,
                "source": [],
                "target": [],
            }
        elif local in ("source", "target") and state["unit"] is not None:
            state["capture"], state["buffer"] = local, []
        elif local == "cp" and state["capture"]:
            state["buffer"].append(_code_point(attrs.get("hex"), fail))

    def end(name: str) -> None:
        local = stack.pop()
        if local in ("source", "target") and state["capture"] == local:
            state["unit"][local].append("".join(state["buffer"]))
            state["capture"] = None
        elif local == "unit":
            units.append(state["unit"])
            state["unit"] = None

    def text(data: str) -> None:
        if state["capture"]:
            state["buffer"].append(data)

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(raw, True)
    except expat.ExpatError as err:
        raise InputError(
            f"not well-formed XML: {expat.ErrorString(err.code)}", path, err.lineno
        ) from None

    postedits = []
    seen: dict[str, int] = {}
    for unit in units:
        seg_id, line = unit["id"], unit["line"]
        post_edit = " ".join(t.strip() for t in unit["target"] if t.strip())
        if not post_edit:
            continue
        if any(char in post_edit for char in "\t\n\r"):  # as in the TSV
            raise InputError(
                "the post-edit holds a tab or a line break; a post-edit is one line of text",
                path,
                line,
            )
        record = records.get(seg_id)
        if record is None:
            raise InputError(f"unit {seg_id!r} is not a segment of this run", path, line)
        if seg_id in seen:
            raise InputError(f"unit {seg_id!r} twice (also line {seen[seg_id]})", path, line)
        seen[seg_id] = line
        if not _same_text("".join(unit["source"]), str(record["source"])):
            raise InputError(
                f"the source of {seg_id!r} differs from the run's; is this file from another run?",
                path,
                line,
            )
        postedits.append(
            PostEdit(
                doc_id=str(record["doc_id"]),
                seg_ids=(seg_id,),
                machine=str(record["translation"]),
                post_edit=post_edit,
                origin=f"{path.name}:{line}",
            )
        )
    return postedits
