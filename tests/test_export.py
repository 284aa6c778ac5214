"""Exports parsed back by independent, maintained libraries (csv, translate-toolkit, lxml),
every segment round-tripped with its Japanese intact; post-edits read back with errors that
name file and line; HTER stored in the run."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from forumtranslate.cli import main
from forumtranslate.errors import InputError
from forumtranslate.export import (
    TSV_COLUMNS,
    XLIFF_NS,
    export_tmx,
    export_tsv,
    export_xliff,
    from_spreadsheet_cell,
    import_postedits,
    read_postedit_file,
    spreadsheet_cell,
)
from forumtranslate.review import (
    HTER_FILE,
    POSTEDITS_FILE,
    RunView,
    join_english,
    join_japanese,
    load_run_view,
    read_postedits,
    render_review,
)

from .conftest import GLOSSARY
from .test_review import MARKUP, expected_problems, review_run_dir

etree = pytest.importorskip("lxml.etree", reason="lxml (dev extra)")
tmx_storage = pytest.importorskip("translate.storage.tmx", reason="translate-toolkit (dev extra)")
xliff2_storage = pytest.importorskip("translate.storage.xliff2", reason="translate-toolkit")

pytestmark = pytest.mark.slow  # every test here reads a tiny-model run

# The TMX 1.4b DTD (LISA, 2005), transcribed for the elements and attributes TMX defines
# outside inline markup; a <seg> here holds text only, since forumtranslate writes no
# inline codes, so any inline element is an error too.
TMX14_DTD = """
<!ENTITY % segtypes "block|paragraph|sentence|phrase">
<!ELEMENT tmx (header, body)>
<!ATTLIST tmx version CDATA #FIXED "1.4">
<!ELEMENT header (note|ude|prop)*>
<!ATTLIST header
  creationtool CDATA #REQUIRED
  creationtoolversion CDATA #REQUIRED
  segtype (%segtypes;) #REQUIRED
  o-tmf CDATA #REQUIRED
  adminlang CDATA #REQUIRED
  srclang CDATA #REQUIRED
  datatype CDATA #REQUIRED
  o-encoding CDATA #IMPLIED
  creationdate CDATA #IMPLIED
  creationid CDATA #IMPLIED
  changedate CDATA #IMPLIED
  changeid CDATA #IMPLIED>
<!ELEMENT ude (map*)>
<!ATTLIST ude name CDATA #REQUIRED base CDATA #IMPLIED>
<!ELEMENT map EMPTY>
<!ATTLIST map unicode CDATA #REQUIRED code CDATA #IMPLIED ent CDATA #IMPLIED
  subst CDATA #IMPLIED>
<!ELEMENT body (tu*)>
<!ELEMENT tu ((note|prop)*, tuv+)>
<!ATTLIST tu
  tuid CDATA #IMPLIED
  o-encoding CDATA #IMPLIED
  datatype CDATA #IMPLIED
  usagecount CDATA #IMPLIED
  lastusagedate CDATA #IMPLIED
  creationtool CDATA #IMPLIED
  creationtoolversion CDATA #IMPLIED
  creationdate CDATA #IMPLIED
  creationid CDATA #IMPLIED
  changedate CDATA #IMPLIED
  segtype (%segtypes;) #IMPLIED
  changeid CDATA #IMPLIED
  o-tmf CDATA #IMPLIED
  srclang CDATA #IMPLIED>
<!ELEMENT tuv ((note|prop)*, seg)>
<!ATTLIST tuv
  xml:lang CDATA #REQUIRED
  o-encoding CDATA #IMPLIED
  datatype CDATA #IMPLIED
  usagecount CDATA #IMPLIED
  lastusagedate CDATA #IMPLIED
  creationtool CDATA #IMPLIED
  creationtoolversion CDATA #IMPLIED
  creationdate CDATA #IMPLIED
  creationid CDATA #IMPLIED
  changedate CDATA #IMPLIED
  changeid CDATA #IMPLIED
  o-tmf CDATA #IMPLIED>
<!ELEMENT seg (#PCDATA)>
<!ELEMENT note (#PCDATA)>
<!ATTLIST note xml:lang CDATA #IMPLIED o-encoding CDATA #IMPLIED>
<!ELEMENT prop (#PCDATA)>
<!ATTLIST prop type CDATA #REQUIRED xml:lang CDATA #IMPLIED o-encoding CDATA #IMPLIED>
"""

# XLIFF 2.0 core (OASIS Standard, 2014), section 4.2: the attributes each structural
# element may carry, and the order of its children.
XML = "{http://www.w3.org/XML/1998/namespace}"
XLIFF_ATTRIBUTES = {
    "xliff": {"version", "srcLang", "trgLang", f"{XML}space"},
    "file": {"id", "canResegment", "original", "translate", "srcDir", "trgDir", f"{XML}space"},
    "notes": set(),
    "note": {"id", "appliesTo", "category", "priority"},
    "unit": {"id", "name", "canResegment", "translate", "srcDir", "trgDir", f"{XML}space"},
    "segment": {"id", "canResegment", "state", "subState"},
    "source": {f"{XML}lang", f"{XML}space"},
    "target": {f"{XML}lang", f"{XML}space", "order"},
    "cp": {"hex"},  # inline: a character XML cannot hold (section 4.3.1.1)
}
SEGMENT_STATES = {"initial", "translated", "reviewed", "final"}


@pytest.fixture(scope="module")
def review_run(tmp_path_factory: pytest.TempPathFactory, tiny_marian: Path) -> Path:
    return review_run_dir(tmp_path_factory, tiny_marian)


@pytest.fixture(scope="module")
def view(review_run: Path) -> RunView:
    return load_run_view(review_run, glossary_path=GLOSSARY)


@pytest.fixture
def run_copy(review_run: Path, tmp_path: Path) -> Path:
    """A copy of the run that a test may change (post-edits) without touching the others."""
    return Path(shutil.copytree(review_run, tmp_path / "run"))


def records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "translations.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def tsv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), delimiter="\t"))


# --- TSV ---------------------------------------------------------------------------------


def test_tsv_has_one_clean_row_per_bead(view: RunView, review_run: Path) -> None:
    text = export_tsv(view)
    assert text.startswith("\ufeff")  # Excel needs it to read UTF-8
    rows = tsv_rows(text.removeprefix("\ufeff"))
    assert text.count("\r\n") == len(rows)
    assert tuple(rows[0]) == TSV_COLUMNS
    beads = list(view.beads)
    assert len(rows) == len(beads) + 1
    column = {name: k for k, name in enumerate(TSV_COLUMNS)}
    for row, bead in zip(rows[1:], beads):
        assert len(row) == len(TSV_COLUMNS)
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row)
        assert row[column["seg_ids"]].split() == list(bead.bead.src_seg_ids)
        japanese = from_spreadsheet_cell(row[column["japanese"]])
        assert japanese == join_japanese([s.source for s in bead.sentences])
        assert from_spreadsheet_cell(row[column["reference"]]) == join_english(bead.bead.ref)
        assert float(row[column["chrF2"]]) == pytest.approx(bead.chrf, abs=0.005)
        assert row[column["post_edit"]] == row[column["machine"]]
    problems = [int(row[column["term_problems"]]) for row in rows[1:]]
    assert problems == expected_problems(review_run)
    assert any(MARKUP in row[column["machine"]] for row in rows)
    assert any("MISSING" in row[column["terms"]] for row in rows)


def test_exports_show_each_terms_kind(view: RunView) -> None:
    rows = tsv_rows(export_tsv(view).removeprefix("\ufeff"))
    terms = " ".join(row[TSV_COLUMNS.index("terms")] for row in rows[1:])
    assert "赤澤亮正 → AKAZAWA Ryosei [person]" in terms
    assert (
        "経済産業研究所 → Research Institute of Economy, Trade and Industry [organisation]" in terms
    )
    root = etree.fromstring(export_xliff(view).encode("utf-8"))
    notes = [n.text for n in root.iter(f"{{{XLIFF_NS}}}note") if n.get("category") == "terminology"]
    assert any(
        n.startswith("経済産業大臣 → Minister of Economy, Trade and Industry (title)")
        for n in notes
    )


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("plain", "plain"),
        ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
        ("+81 3", "'+81 3"),
        ("- bullet", "'- bullet"),
        ("@home", "'@home"),
        ("'quoted'", "''quoted'"),
        ("経済安全保障", "経済安全保障"),
        ("", ""),
        ("\tcmd", "'\tcmd"),  # a tab or CR first: some spreadsheets still run a formula
        ("\r=1+1", "'\r=1+1"),
        ("a\x14b", "a\\u{0014}b"),  # what XML cannot hold: escaped, visibly
        ("\x00", "\\u{0000}"),
        ("lone \ud800", "lone \\u{D800}"),
        ("\uffff", "\\u{FFFF}"),
        ("\\u{0041} stays", "\\u{005C}u{0041} stays"),  # the escape's own form is escaped
        ("C:\\path\\u1", "C:\\path\\u1"),  # any other backslash is left alone
        ("-\x1f", "'-\\u{001F}"),
    ],
)
def test_spreadsheet_cells_are_safe_and_round_trip(text: str, cell: str) -> None:
    assert spreadsheet_cell(text) == cell
    assert from_spreadsheet_cell(cell) == text


# --- TMX ---------------------------------------------------------------------------------


def test_tmx_round_trips_every_bead_through_translate_toolkit(view: RunView) -> None:
    data = export_tmx(view).encode("utf-8")
    pairs = [b for b in view.beads if b.sentences and b.bead.ref]
    store = tmx_storage.tmxfile.parsestring(data)
    assert len(store.units) == len(pairs) > 0
    for unit, bead in zip(store.units, pairs):
        assert unit.getid() == "+".join(bead.bead.src_seg_ids)
        assert unit.source == join_japanese([s.source for s in bead.sentences])
        assert unit.target == join_english(bead.bead.ref)


def test_tmx_is_valid_against_the_tmx14_dtd(view: RunView) -> None:
    root = etree.fromstring(export_tmx(view).encode("utf-8"))
    dtd = etree.DTD(io.StringIO(TMX14_DTD))
    assert dtd.validate(root), dtd.error_log.filter_from_errors()
    header = root.find("header")
    assert header.get("srclang") == "ja" and header.get("segtype") == "sentence"
    assert header.get("datatype") == "plaintext" and header.get("o-tmf")
    machine = [p.text for p in root.iter("prop") if p.get("type") == "x-machine-translation"]
    assert any(MARKUP.strip() in text for text in machine)  # markup is text, kept exactly


# --- XLIFF 2.0 ---------------------------------------------------------------------------


def local(element: etree._Element) -> str:
    return etree.QName(element).localname


def check_xliff2(root: etree._Element) -> None:
    """XLIFF 2.0 core structure: namespace, required attributes, child order, ids."""
    for element in root.iter(etree.Element):
        assert etree.QName(element).namespace == XLIFF_NS, element.tag
        allowed = XLIFF_ATTRIBUTES[local(element)]
        assert set(element.attrib) <= allowed, (local(element), element.attrib)
    assert local(root) == "xliff"
    assert (root.get("version"), root.get("srcLang"), root.get("trgLang")) == ("2.0", "ja", "en")
    files = list(root)
    assert files and {local(f) for f in files} == {"file"}
    assert len({f.get("id") for f in files}) == len(files)
    for file in files:
        children = [local(c) for c in file]
        skip = 1 if children[:1] == ["notes"] else 0  # notes first, then one or more units
        assert children[skip:] and set(children[skip:]) == {"unit"}
        ids = [u.get("id") for u in file.iter(f"{{{XLIFF_NS}}}unit")]
        assert all(ids) and len(set(ids)) == len(ids)
        for unit in file.iter(f"{{{XLIFF_NS}}}unit"):
            assert [local(c) for c in unit] in (["notes", "segment"], ["segment"])
            segment = unit.find(f"{{{XLIFF_NS}}}segment")
            assert segment.get("state") in SEGMENT_STATES
            assert [local(c) for c in segment] in (["source", "target"], ["source"])
        for notes in file.iter(f"{{{XLIFF_NS}}}notes"):
            assert len(notes) > 0 and {local(n) for n in notes} == {"note"}


def test_xliff_round_trips_every_segment_through_translate_toolkit(
    view: RunView, review_run: Path
) -> None:
    data = export_xliff(view).encode("utf-8")
    check_xliff2(etree.fromstring(data))
    store = xliff2_storage.Xliff2File.parsestring(data)
    assert (store.sourcelanguage, store.targetlanguage) == ("ja", "en")
    expected = records(review_run)
    assert [u.getid() for u in store.units] == [r["seg_id"] for r in expected]
    for unit, record in zip(store.units, expected):
        assert unit.source == record["source"]
        assert unit.target == record["translation"]
        assert unit.istranslated()
    assert any(unit.target.endswith(MARKUP) for unit in store.units)


@pytest.mark.parametrize(("fmt", "suffix"), [("tsv", "tsv"), ("tmx", "tmx"), ("xliff", "xlf")])
def test_cli_export_writes_each_format(run_copy: Path, fmt: str, suffix: str) -> None:
    result = CliRunner().invoke(
        main, ["export", str(run_copy), "--format", fmt, "--glossary", str(GLOSSARY)]
    )
    assert result.exit_code == 0, result.output
    written = run_copy / f"export.{suffix}"
    render = {"tsv": export_tsv, "tmx": export_tmx, "xliff": export_xliff}[fmt]
    assert written.read_bytes().decode("utf-8") == render(
        load_run_view(run_copy, glossary_path=GLOSSARY)
    )


# --- post-edits --------------------------------------------------------------------------


def edited_tsv(view: RunView, path: Path, edits: dict[int, str], encoding: str) -> None:
    """The TSV export as a reviewer saves it: rows in ``edits`` corrected, all others
    cleared (not reviewed)."""
    rows = tsv_rows(export_tsv(view).removeprefix("\ufeff"))
    column = TSV_COLUMNS.index("post_edit")
    for k, row in enumerate(rows[1:]):
        row[column] = edits.get(k, "")
    buffer = io.StringIO()
    csv.writer(buffer, delimiter="\t", lineterminator="\r\n").writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "utf-16"])
def test_tsv_post_edits_are_stored_and_scored(
    view: RunView, run_copy: Path, tmp_path: Path, encoding: str
) -> None:
    from sacrebleu.metrics import TER

    beads = [b for b in view.beads if b.sentences]
    kept = join_english([s.translation for s in beads[0].sentences])
    path = tmp_path / "edited.tsv"
    edited_tsv(view, path, {0: kept, 3: "'- Economic security matters."}, encoding)
    postedits, hter = import_postedits(run_copy, path)
    assert [pe.seg_ids for pe in postedits] == [
        view_bead.bead.src_seg_ids for view_bead in (beads[0], list(view.beads)[3])
    ]
    assert postedits[1].post_edit == "- Economic security matters."  # the ' came off
    assert read_postedits(run_copy) == postedits
    expected = TER(case_sensitive=True).corpus_score(
        [pe.machine for pe in postedits], [[pe.post_edit for pe in postedits]]
    )
    assert hter["corpus"]["score"] == pytest.approx(expected.score)
    assert (hter["units"], hter["edited"]) == (2, 1)
    assert json.loads((run_copy / HTER_FILE).read_text()) == hter


def test_xliff_post_edits_replace_earlier_ones_segment_by_segment(
    view: RunView, run_copy: Path, tmp_path: Path
) -> None:
    root = etree.fromstring(export_xliff(view).encode("utf-8"))
    units = list(root.iter(f"{{{XLIFF_NS}}}unit"))
    for k, unit in enumerate(units):
        target = unit.find(f".//{{{XLIFF_NS}}}target")
        if k == 1:
            target.text = "Ministry of Economy, Trade and Industry"
        elif k > 2:
            target.text = ""
    path = tmp_path / "edited.xlf"
    path.write_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    postedits, hter = import_postedits(run_copy, path)
    assert [pe.seg_ids[0] for pe in postedits] == [u.get("id") for u in units[:3]]
    assert (hter["units"], hter["edited"]) == (3, 1)
    # a TSV row over the first bead replaces those segments' post-edits, keeps the rest
    first = next(b for b in view.beads if b.sentences)
    tsv = tmp_path / "edited.tsv"
    edited_tsv(view, tsv, {0: "AKAZAWA Ryosei, Minister"}, "utf-8-sig")
    import_postedits(run_copy, tsv)
    stored = read_postedits(run_copy)
    assert stored[0].seg_ids == first.bead.src_seg_ids
    assert not set(first.bead.src_seg_ids) & {s for pe in stored[1:] for s in pe.seg_ids}
    assert len((run_copy / POSTEDITS_FILE).read_text().splitlines()) == len(stored)


def test_cli_postedit_import_prints_hter(view: RunView, run_copy: Path, tmp_path: Path) -> None:
    path = tmp_path / "edited.tsv"
    edited_tsv(view, path, {0: "Fixed by a reviewer."}, "utf-8-sig")
    result = CliRunner().invoke(main, ["postedit", "import", str(run_copy), str(path)])
    assert result.exit_code == 0, result.output
    assert "HTER" in result.output and "case:mixed" in result.output


XLIFF_HEAD = f'<?xml version="1.0"?>\n<xliff xmlns="{XLIFF_NS}" version="2.0" srcLang="ja">\n'


@pytest.mark.parametrize(
    ("name", "content", "line", "message"),
    [
        ("no-column.tsv", "seg_ids\tmachine\nx\ty\n", 1, "no 'post_edit' column"),
        (
            "unknown.tsv",
            "seg_ids\tpost_edit\n\nopening-akazawa-001\tfine\nnope-001\tfixed\n",
            4,
            "'nope-001' is not in this run",
        ),
        (
            "wrong-japanese.tsv",
            "seg_ids\tjapanese\tpost_edit\nopening-akazawa-001\t別の文\tfixed\n",
            2,
            "the Japanese differs",
        ),
        (
            "orphan.tsv",
            "seg_ids\tpost_edit\n\tA reference-only row.\n",
            2,
            "no seg_ids",
        ),
        (
            "twice.tsv",
            "seg_ids\tpost_edit\nopening-akazawa-001\ta\nopening-akazawa-001\tb\n",
            3,
            "post-edited twice (also line 2)",
        ),
        (
            "unknown.xlf",
            XLIFF_HEAD + '<file id="f">\n<unit id="nope-001">\n<segment><source>x</source>'
            "<target>y</target></segment></unit></file></xliff>\n",
            4,
            "unit 'nope-001' is not a segment of this run",
        ),
        (
            "entity.xlf",
            '<?xml version="1.0"?>\n<!DOCTYPE xliff [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
            f'<xliff xmlns="{XLIFF_NS}" version="2.0" srcLang="ja"/>\n',
            2,
            "has a DOCTYPE",
        ),
        ("broken.xlf", XLIFF_HEAD + "<file>\n</xliff>\n", 4, "not well-formed XML"),
        (
            "old.xlf",
            '<?xml version="1.0"?>\n<xliff xmlns="urn:oasis:names:tc:xliff:document:1.2" '
            'version="1.2"/>\n',
            2,
            "not an XLIFF 2 file",
        ),
    ],
)
def test_bad_post_edit_files_name_file_and_line(
    review_run: Path, tmp_path: Path, name: str, content: str, line: int, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        import_postedits(review_run, path)
    assert (caught.value.path, caught.value.line) == (str(path), line)
    assert message in caught.value.message
    assert not (review_run / POSTEDITS_FILE).exists()
    result = CliRunner().invoke(main, ["postedit", "import", str(review_run), str(path)])
    assert result.exit_code == 2
    assert f"{path}:{line}:" in result.output


# --- any text a model writes --------------------------------------------------------------

C0 = "".join(chr(code) for code in range(0x20))
NASTY = (
    f"A{C0}B",  # every C0 control character, the three XML allows among them
    "lone \ud800 and \udfff surrogates",
    "nonchars \ufffe\uffff end",
    "\u200fRTL\u202e marks\u202c ]]> <x/> &amp; ]]",
    "=SUM(A1) \x14 formula",
    "\r\tstarts with CR",
)


def xml_cannot_hold(char: str) -> bool:
    """XML 1.0's Char production, written out here independently of the code under test."""
    code = ord(char)
    return not (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def stand_in(text: str) -> str:
    """What TMX writes for a character XML cannot hold: its control picture, or U+FFFD."""
    return "".join(
        (chr(0x2400 + ord(c)) if ord(c) < 0x20 else "\ufffd") if xml_cannot_hold(c) else c
        for c in text
    )


@pytest.fixture(scope="module")
def nasty_run(review_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The review run with every machine translation replaced by text no XML can hold."""
    run = Path(shutil.copytree(review_run, tmp_path_factory.mktemp("nasty") / "run"))
    lines = []
    for k, record in enumerate(records(run)):
        record["translation"] = NASTY[k % len(NASTY)]
        lines.append(json.dumps(record))  # ASCII JSON: a lone surrogate is \\ud800
    (run / "translations.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run


def xliff_text(element: etree._Element) -> str:
    """The content of a source or target, ``<cp hex>`` read as XLIFF 2 defines it."""
    parts = [element.text or ""]
    for child in element:
        assert local(child) == "cp", child.tag
        parts += [chr(int(child.get("hex"), 16)), child.tail or ""]
    return "".join(parts)


def test_any_machine_output_exports_to_tsv(nasty_run: Path) -> None:
    view = load_run_view(nasty_run, glossary_path=GLOSSARY)
    text = export_tsv(view)
    text.encode("utf-8")  # a lone surrogate would make the file unwritable
    rows = tsv_rows(text.removeprefix("\ufeff"))
    column = {name: k for k, name in enumerate(TSV_COLUMNS)}
    beads = list(view.beads)
    assert len(rows) == len(beads) + 1
    for row, bead in zip(rows[1:], beads):
        machine = join_english([s.translation for s in bead.sentences])
        assert from_spreadsheet_cell(row[column["machine"]]) == machine
        assert not any(xml_cannot_hold(c) for cell in row for c in cell)
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)
    assert any("\\u{0014}" in row[column["machine"]] for row in rows)


def test_any_machine_output_exports_to_tmx_with_stand_ins_it_names(nasty_run: Path) -> None:
    view = load_run_view(nasty_run, glossary_path=GLOSSARY)
    data = export_tmx(view).encode("utf-8")
    root = etree.fromstring(data)
    assert etree.DTD(io.StringIO(TMX14_DTD)).validate(root)
    pairs = [b for b in view.beads if b.sentences and b.bead.ref]
    store = tmx_storage.tmxfile.parsestring(data)
    assert len(store.units) == len(pairs) > 0
    replaced_somewhere = False
    for unit, tu, bead in zip(store.units, root.iter("tu"), pairs):
        assert unit.source == join_japanese([s.source for s in bead.sentences])
        assert unit.target == join_english(bead.bead.ref)
        props = {p.get("type"): p.text for p in tu.iter("prop")}
        machine = join_english([s.translation for s in bead.sentences])
        assert props["x-machine-translation"] == stand_in(machine)
        bad = list(dict.fromkeys(c for c in machine if xml_cannot_hold(c)))
        if bad:
            replaced_somewhere = True
            listed = props["x-replaced-characters"]
            assert all(f"U+{ord(c):04X}" in listed for c in bad), listed
        else:
            assert "x-replaced-characters" not in props
    assert replaced_somewhere


def test_any_machine_output_exports_to_xliff_as_cp_elements(nasty_run: Path) -> None:
    view = load_run_view(nasty_run, glossary_path=GLOSSARY)
    data = export_xliff(view).encode("utf-8")
    root = etree.fromstring(data)
    check_xliff2(root)
    expected = {r["seg_id"]: r for r in records(nasty_run)}
    targets = {
        unit.get("id"): unit.find(f".//{{{XLIFF_NS}}}target")
        for unit in root.iter(f"{{{XLIFF_NS}}}unit")
    }
    assert targets.keys() == expected.keys()
    for seg_id, target in targets.items():
        assert xliff_text(target) == expected[seg_id]["translation"]  # exact, CR included
    hexes = {cp.get("hex") for cp in root.iter(f"{{{XLIFF_NS}}}cp")}
    assert {f"{c:04X}" for c in range(0x20) if c not in (9, 10, 13)} <= hexes
    assert {"D800", "DFFF", "FFFE", "FFFF"} <= hexes
    # translate-toolkit reads every unit; a <cp> is an inline element it shows as nothing
    store = xliff2_storage.Xliff2File.parsestring(data)
    assert [u.getid() for u in store.units] == list(expected)
    for unit in store.units:
        record = expected[unit.getid()]
        assert unit.source == record["source"]
        visible = "".join(c for c in record["translation"] if not xml_cannot_hold(c))
        assert unit.target == visible


POSTEDIT_CANNOT_HOLD = "\x00\t\n\r"  # a post-edit is one line of text, and NUL is refused


def test_the_importer_reads_cp_back(nasty_run: Path, tmp_path: Path) -> None:
    """The XLIFF a reviewer returns untouched reads back as the machine output, control
    characters and noncharacters included, wherever a post-edit can hold them. A unit holding
    a NUL, a tab, a line break or a lone surrogate (which postedits.jsonl, being UTF-8, could
    not store, and no model's decoder writes) is refused with its line."""
    path = tmp_path / "back.xlf"
    view = load_run_view(nasty_run, glossary_path=GLOSSARY)
    path.write_bytes(export_xliff(view).encode("utf-8"))
    with pytest.raises(InputError, match=r"back\.xlf:\d+: "):
        read_postedit_file(path, nasty_run)

    holdable = [
        t
        for t in NASTY
        if not any(c in POSTEDIT_CANNOT_HOLD or 0xD800 <= ord(c) <= 0xDFFF for c in t)
    ]
    holdable.append("".join(c for c in f"A{C0}B" if c not in POSTEDIT_CANNOT_HOLD))
    run = Path(shutil.copytree(nasty_run, tmp_path / "run"))
    lines = []
    for k, record in enumerate(records(run)):
        record["translation"] = holdable[k % len(holdable)]
        lines.append(json.dumps(record))
    (run / "translations.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    view = load_run_view(run, glossary_path=GLOSSARY)
    path.write_bytes(export_xliff(view).encode("utf-8"))
    postedits = read_postedit_file(path, run)
    machine = {r["seg_id"]: r["translation"] for r in records(run)}
    assert len(postedits) == len(machine)
    for pe in postedits:
        assert pe.post_edit == machine[pe.seg_ids[0]].strip()  # the reader strips the ends
        assert pe.machine == machine[pe.seg_ids[0]]


def test_manifest_text_with_a_control_character_is_refused(tmp_path: Path) -> None:
    from forumtranslate.corpus import read_manifest

    path = tmp_path / "manifest.tsv"
    path.write_text(
        "doc_id\tsection\tspeaker\trole\ttitle\tstart_time\n"
        "a\tS\tX\tChair\tT\t13:00\n"
        "b\tS\tX\tChair\x14\tT\t13:00\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError) as caught:
        read_manifest(path)
    assert (caught.value.path, caught.value.line) == (str(path), 3)
    assert "role (column 4) has a control character U+0014" in caught.value.message


# --- how each term got there -------------------------------------------------------------


def test_terms_edited_in_or_appended_are_marked_filtered_and_exported(run_copy: Path) -> None:
    """A record says a term was edited in, another that one was appended: the review page
    marks each its own way and can filter for it, and every export carries the flag."""
    lines = records(run_copy)
    with_terms = [r for r in lines if any(t["found"] for t in r["terms"])]
    assert len(with_terms) >= 2
    with_terms[0]["terms"][0]["how"] = "edited"
    with_terms[1]["terms"][0]["how"] = "appended"
    (run_copy / "translations.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8"
    )
    view = load_run_view(run_copy, glossary_path=GLOSSARY)
    page = render_review(view)
    legend = page.index('<p class="legend">'), page.index("</p>", page.index('<p class="legend">'))
    rows = page[legend[1] :]
    assert '<mark class="term edited"' in page[legend[0] : legend[1]]  # the legend explains it
    assert rows.count('<mark class="term edited"') == 1
    assert rows.count('<mark class="term appended"') == 1
    assert 'id="f-edited"' in page and 'id="f-appended"' in page
    assert page.count('data-edited="1"') == 1 and page.count('data-appended="1"') == 1

    rows = tsv_rows(export_tsv(view).removeprefix("\ufeff"))
    column = rows[0].index("term_how")
    cells = [row[column] for row in rows[1:]]
    first = with_terms[0]["terms"][0]
    assert any(f"{first['source']} → {first['target']}: edited" in c for c in cells)
    assert sum(": appended" in c for c in cells) == 1
    assert "(edited in after decoding)" in export_xliff(view)
    assert "(appended)" in export_xliff(view)
    assert 'type="x-term-how"' in export_tmx(view)
