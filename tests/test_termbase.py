"""Glossary export (TBX, CSV) and the impact of a glossary change, read from git."""

from __future__ import annotations

import csv
import html
import io
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from forumtranslate.cli import main
from forumtranslate.errors import ForumTranslateError
from forumtranslate.glossary import (
    Glossary,
    GlossaryEntry,
    contains_form,
    format_glossary,
    load_glossary,
)
from forumtranslate.termbase import (
    FieldChange,
    glossary_diff,
    impact_report,
    impacted_sentences,
    load_glossary_at,
    to_csv,
    to_tbx,
)

from .conftest import GLOSSARY, REPO, make_corpus

NS = {"tbx": "urn:iso:std:iso:30042:ed-2"}
LANG = "{http://www.w3.org/XML/1998/namespace}lang"

# --- export --------------------------------------------------------------------------


def read_tbx(text: str) -> list[GlossaryEntry]:
    """Glossary entries back from a TBX export, by administrative status; the kind from
    the concept's last note, checked against the terms' part of speech (properNoun for
    the names of organisations, people and programmes, nothing otherwise)."""
    root = ET.fromstring(text.encode("utf-8"))
    assert (root.get("type"), root.get("style"), root.get(LANG)) == ("TBX-Basic", "dca", "ja")
    entries = []
    for concept in root.iterfind("tbx:text/tbx:body/tbx:conceptEntry", NS):
        terms: dict[tuple[str, str], list[str]] = {}
        notes = [note.text or "" for note in concept.iterfind("tbx:note", NS)]
        assert notes and notes[-1].startswith("kind: ") and len(notes) <= 2
        kind = notes[-1].removeprefix("kind: ")
        parts = {n.text for n in concept.iterfind(".//tbx:termNote[@type='partOfSpeech']", NS)}
        assert parts == (
            {"properNoun"} if kind in ("organisation", "person", "programme") else set()
        )
        for lang_sec in concept.iterfind("tbx:langSec", NS):
            for term_sec in lang_sec.iterfind("tbx:termSec", NS):
                status = term_sec.findtext("tbx:termNote[@type='administrativeStatus']", "", NS)
                key = (lang_sec.get(LANG, ""), status.split("Term")[0])
                terms.setdefault(key, []).append(term_sec.findtext("tbx:term", "", NS))
        assert set(terms) <= {("ja", "preferred"), ("ja", "admitted"), *EN_KEYS}
        entry_id = concept.get("id", "")
        entries.append(
            GlossaryEntry(
                id=entry_id.removeprefix("_"),
                source=terms[("ja", "preferred")][0],
                target=terms[("en", "preferred")][0],
                source_variants=tuple(terms.get(("ja", "admitted"), ())),
                target_variants=tuple(terms.get(("en", "admitted"), ())),
                avoid=tuple(terms.get(("en", "deprecated"), ())),
                note=notes[0] if len(notes) == 2 else "",
                kind=kind,
            )
        )
    return entries


EN_KEYS = {("en", "preferred"), ("en", "admitted"), ("en", "deprecated")}


def test_tbx_round_trips_every_entry_of_the_real_glossary() -> None:
    glossary = load_glossary(GLOSSARY)
    back = read_tbx(to_tbx(glossary))
    assert back == list(glossary.entries)
    counts = {
        name: sum(len(getattr(e, name)) for e in back)
        for name in ("source_variants", "target_variants", "avoid")
    }
    expected = {
        name: sum(len(getattr(e, name)) for e in glossary.entries)
        for name in ("source_variants", "target_variants", "avoid")
    }
    assert counts == expected
    assert sum(bool(e.note) for e in back) == sum(bool(e.note) for e in glossary.entries)


def test_tbx_escapes_markup_and_turns_digit_ids_into_xml_names() -> None:
    entry = GlossaryEntry(
        "17-fields",
        "研究開発<R&D>",
        'R&D "fields" <17>',
        ("R&D",),
        ("R & D",),
        ("]]> & <",),
        note="a < b & c > d \"quoted\" 'single'",
    )
    text = to_tbx(Glossary(entries=(entry,), path="x.tsv"))
    assert 'id="_17-fields"' in text
    assert read_tbx(text) == [entry]


def test_tbx_is_the_same_for_the_same_file() -> None:
    glossary = load_glossary(GLOSSARY)
    assert to_tbx(glossary) == to_tbx(load_glossary(GLOSSARY))
    assert glossary.sha256 in to_tbx(glossary)


def test_csv_has_a_header_and_one_row_per_source_form() -> None:
    glossary = load_glossary(GLOSSARY)
    rows = list(csv.reader(io.StringIO(to_csv(glossary))))
    assert rows[0] == ["ja", "en"]
    expected = [[form, e.target] for e in glossary.entries for form in e.sources]
    assert rows[1:] == expected
    assert len(rows) - 1 == sum(len(e.sources) for e in glossary.entries)


def test_csv_quotes_commas_and_keeps_the_first_claim_of_a_form() -> None:
    entries = (
        GlossaryEntry("a", "法", "Act on A, B and C", ("ＡＢ",)),
        GlossaryEntry("b", "AB", "something else"),  # claims ＡＢ again once normalised
    )
    rows = list(csv.reader(io.StringIO(to_csv(Glossary(entries=entries)))))
    assert rows == [["ja", "en"], ["法", "Act on A, B and C"], ["ＡＢ", "Act on A, B and C"]]


@pytest.mark.parametrize("fmt", ["tbx", "csv"])
def test_cli_export_to_stdout_and_to_a_file(fmt: str, tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(main, ["glossary", "export", str(GLOSSARY), "--format", fmt])
    assert printed.exit_code == 0, printed.output
    out = tmp_path / f"terms.{fmt}"
    written = runner.invoke(main, ["glossary", "export", str(GLOSSARY), "--format", fmt, "-o", out])
    assert written.exit_code == 0, written.output
    assert out.read_text(encoding="utf-8") == printed.stdout
    expected = (to_tbx if fmt == "tbx" else to_csv)(load_glossary(GLOSSARY))
    assert printed.stdout == expected


def test_cli_export_of_a_missing_file_is_one_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["glossary", "export", str(tmp_path / "no.tsv"), "--format", "csv"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "file not found" in result.stderr


# --- diff and impacted sentences -----------------------------------------------------

BASE = (
    GlossaryEntry("economic-security", "経済安全保障", "economic security", ("経済安保",)),
    GlossaryEntry("think-tank", "シンクタンク", "think tank", (), ("think tanks",)),
    GlossaryEntry("strategic-autonomy", "戦略的自律性", "strategic autonomy"),
    GlossaryEntry(
        "public-private-partnership", "官民連携", "public-private partnership", note="panel 2"
    ),
    GlossaryEntry("critical-minerals", "重要鉱物", "critical minerals"),
)


def changed(
    entry_id: str, entries: tuple[GlossaryEntry, ...] = BASE, **fields: Any
) -> tuple[GlossaryEntry, ...]:
    """``entries`` with one entry's fields replaced."""
    return tuple(replace(e, **fields) if e.id == entry_id else e for e in entries)


INTERNATIONAL = GlossaryEntry("international-cooperation", "国際連携", "international cooperation")
PROMOTION_ACT = GlossaryEntry(
    "economic-security-promotion-act", "経済安全保障推進法", "Economic Security Promotion Act"
)

# (what changes, the new entries, the sentences of the small corpus whose terms change)
IMPACT_CASES = [
    (
        "target",
        changed("think-tank", target="policy institute"),
        ("opening-onoda-007", "opening-onoda-009", "opening-onoda-010"),
    ),
    (
        "avoid",
        changed("strategic-autonomy", avoid=("strategic independence",)),
        ("opening-akazawa-008", "opening-akazawa-009"),
    ),
    (
        "source variant",  # シンクタンク機能 now matches whole, where シンクタンク did
        changed("think-tank", source_variants=("シンクタンク機能",)),
        ("opening-onoda-007",),
    ),
    ("note only", changed("public-private-partnership", note="title of panel 2"), ()),
    ("removed", BASE[:-1], ("opening-akazawa-009",)),
    ("added", (*BASE, INTERNATIONAL), ("opening-akazawa-011", "opening-akazawa-013")),
    ("longer term added", (*BASE, PROMOTION_ACT), ("opening-onoda-005",)),
    ("rows reordered", tuple(reversed(BASE)), ()),
]


def write_glossary(path: Path, entries: tuple[GlossaryEntry, ...]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_glossary(entries), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("what", "new", "expected"), IMPACT_CASES, ids=[c[0] for c in IMPACT_CASES]
)
def test_impacted_sentences_are_exactly_those_whose_terms_change(
    what: str, new: tuple[GlossaryEntry, ...], expected: tuple[str, ...], tmp_path: Path
) -> None:
    data = make_corpus(tmp_path)
    old_glossary = load_glossary(write_glossary(tmp_path / "old.tsv", BASE))
    new_glossary = load_glossary(write_glossary(tmp_path / "new.tsv", new))
    found = impacted_sentences(old_glossary, new_glossary, data)
    assert tuple(item.segment.seg_id for item in found) == expected
    for item in found:
        assert item.old_terms == tuple(old_glossary.find_terms(item.segment.text))
        assert item.new_terms == tuple(new_glossary.find_terms(item.segment.text))


def test_glossary_diff_by_id_and_field(tmp_path: Path) -> None:
    new = changed("think-tank", target="policy institute", target_variants=("think tanks", "lab"))
    new = changed("public-private-partnership", new, note="")
    new = (INTERNATIONAL, *reversed(new[:-1]))  # critical-minerals removed, the rest reordered
    old = load_glossary(write_glossary(tmp_path / "old.tsv", BASE))
    diff = glossary_diff(old, load_glossary(write_glossary(tmp_path / "new.tsv", new)))
    assert [e.id for e in diff.added] == ["international-cooperation"]
    assert [e.id for e in diff.removed] == ["critical-minerals"]
    assert {c.id: c.fields for c in diff.changed} == {
        "public-private-partnership": (FieldChange("note", "panel 2", ""),),
        "think-tank": (
            FieldChange("target", "think tank", "policy institute"),
            FieldChange("target_variants", "think tanks", "think tanks | lab"),
        ),
    }
    assert not diff.empty
    assert glossary_diff(old, old).empty


def test_report_escapes_markdown(tmp_path: Path) -> None:
    data = make_corpus(tmp_path)
    old = load_glossary(write_glossary(tmp_path / "old.tsv", BASE))
    new_entries = changed("think-tank", target="think_tank", target_variants=("a | b",))
    new = load_glossary(write_glossary(tmp_path / "new.tsv", new_entries))
    report = impact_report(old, new, data, base="main")
    assert "| target | think tank | think\\_tank |" in report
    assert "| target_variants | think tanks | a \\| b |" in report
    assert report.count("\n**`opening-onoda-0") == 3


# --- from git, through the command line ----------------------------------------------


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_SYSTEM": os.devnull}
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid"]
    subprocess.run(["git", *identity, *args], cwd=repo, env=env, check=True, capture_output=True)


@pytest.fixture
def glossary_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository whose committed glossary is BASE and whose working copy changes
    think-tank's English, removes critical-minerals and adds international-cooperation."""
    repo = tmp_path / "repo"
    repo.mkdir()
    make_corpus(repo)
    git(repo, "init", "-q")
    write_glossary(repo / "glossary" / "terms.tsv", BASE)
    git(repo, "add", "glossary/terms.tsv")
    git(repo, "commit", "-q", "-m", "glossary")
    new = (
        *changed("think-tank", target="policy institute", target_variants=())[:-1],
        INTERNATIONAL,
    )
    write_glossary(repo / "glossary" / "terms.tsv", new)
    monkeypatch.chdir(repo)
    return repo


def test_cli_impact_without_translations(glossary_repo: Path) -> None:
    result = CliRunner().invoke(main, ["glossary", "impact", "--base", "HEAD", "--no-translate"])
    assert result.exit_code == 0, result.output
    report = result.stdout
    assert report.startswith("## Glossary impact: `glossary/terms.tsv` against `HEAD`")
    assert "| base `HEAD:glossary/terms.tsv` | 5 |" in report
    assert "### Entries: 1 added, 1 removed, 1 changed" in report
    assert "| changed | `think-tank` | target | think tank | policy institute |" in report
    assert "### Sentences whose terms change: 6 of 23" in report
    assert "- terms before: シンクタンク → think tank / think tanks" in report
    assert "- terms after: シンクタンク → policy institute" in report
    assert "translation" not in report


def test_cli_impact_translates_under_the_old_and_the_new_glossary(
    glossary_repo: Path, tiny_marian: Path
) -> None:
    (glossary_repo / "forumtranslate.toml").write_text(
        '[run]\ndevice = "cpu"\nbeam_size = 1\n', encoding="utf-8"
    )
    args = ["glossary", "impact", "--base", "HEAD", "--model", str(tiny_marian)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    blocks = result.stdout.split("\n**`")[1:]
    think_tank = [b for b in blocks if "シンクタンク → policy institute" in b]
    assert len(think_tank) == 3
    for block in think_tank:
        lines = dict(line[2:].split(": ", 1) for line in block.splitlines() if line[:2] == "- ")
        # the base entry allows "think tank | think tanks"; hard decoding may pick either
        assert any(contains_form(lines["translation before"], f) for f in BASE[1].allowed)
        assert contains_form(lines["translation after"], "policy institute")
        assert not contains_form(lines["translation after"], "think tank")
    assert "beam 1" in result.stdout and "terms hard" in result.stdout


def test_cli_impact_page_without_translations_lists_the_term_changes(
    glossary_repo: Path,
) -> None:
    args = ["glossary", "impact", "--base", "HEAD", "--no-translate", "--html", "page.html"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    page = html.unescape((glossary_repo / "page.html").read_text(encoding="utf-8"))
    assert page.count('<tr class="unit ') == 6
    assert page.count("シンクタンク: “think tank” → “policy institute”") == 3
    assert "Not translated" in page


def test_cli_impact_writes_the_comparison_page_beside_the_markdown(
    glossary_repo: Path, tiny_marian: Path
) -> None:
    (glossary_repo / "forumtranslate.toml").write_text(
        '[run]\ndevice = "cpu"\nbeam_size = 1\n', encoding="utf-8"
    )
    args = ["glossary", "impact", "--base", "HEAD", "--model", str(tiny_marian)]
    result = CliRunner().invoke(main, [*args, "--html", "impact.html"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("## Glossary impact:")  # the Markdown, as without --html
    blocks = result.stdout.split("\n**`")[1:]
    page = (glossary_repo / "impact.html").read_text(encoding="utf-8")
    rows = re.findall(r'<tr class="unit [a-z]+" data-doc="[^"]+".*?</tr>', page, re.S)
    assert len(rows) == len(blocks) == 6
    for block, row in zip(blocks, rows):
        seg_id = block.split("`", 1)[0]
        assert f"</span>{seg_id}</td>" in row
        lines = dict(line[2:].split(": ", 1) for line in block.splitlines() if line[:2] == "- ")
        cells = re.findall(r'<td class="(?:a|b)" lang="en">(.*?)</td>', row)
        words = [re.sub(r"</?(?:ins|del)>", "", html.unescape(c)) for c in cells]
        # the Markdown escapes its special characters; the page shows the text
        assert [" ".join(w.split()) for w in words] == [
            re.sub(r"\\(.)", r"\1", lines["translation before"]),
            re.sub(r"\\(.)", r"\1", lines["translation after"]),
        ]
        assert "conf −" in row  # each side's confidence
    think_tank = [r for r in rows if "シンクタンク" in r]
    assert len(think_tank) == 3
    assert all(
        "“think tank” found → “policy institute” found" in html.unescape(r) for r in think_tank
    )
    assert "<th>reference</th>" not in page and "by confidence" in page


@pytest.mark.parametrize(
    ("rev", "message"),
    [
        ("no-such-branch", "unknown git revision 'no-such-branch'"),
        ("-p", "not a git revision: '-p'"),
    ],
)
def test_cli_impact_unknown_revision_is_one_line_exit_2(
    glossary_repo: Path, rev: str, message: str
) -> None:
    result = CliRunner().invoke(main, ["glossary", "impact", "--base", rev, "--no-translate"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"forumtranslate: error: {message}\n"


def test_glossary_missing_at_the_revision(glossary_repo: Path) -> None:
    other = glossary_repo / "glossary" / "other.tsv"
    write_glossary(other, BASE)
    with pytest.raises(ForumTranslateError, match=r"glossary/other.tsv does not exist at revision"):
        load_glossary_at(other, "HEAD")


def test_malformed_glossary_at_the_revision_is_named_by_revision(glossary_repo: Path) -> None:
    path = glossary_repo / "glossary" / "terms.tsv"
    path.write_text(format_glossary(BASE) + "broken\trow\n", encoding="utf-8")
    git(glossary_repo, "commit", "-q", "-am", "break it")
    with pytest.raises(ForumTranslateError, match=r"^HEAD:glossary/terms.tsv:7: expected 8"):
        load_glossary_at(path, "HEAD")
    assert load_glossary_at(path, "HEAD~1").entries == BASE


def test_outside_a_git_repository(tmp_path: Path) -> None:
    path = write_glossary(tmp_path / "terms.tsv", BASE)
    with pytest.raises(ForumTranslateError, match="not a git repository"):
        load_glossary_at(path, "HEAD")


def test_the_real_glossary_at_head() -> None:
    """Run from anywhere, the path is taken relative to its repository's root."""
    try:
        old = load_glossary_at(GLOSSARY, "HEAD")
    except ForumTranslateError as err:
        pytest.skip(f"no git history here: {err}")
    assert old.path == "HEAD:glossary/terms.tsv"
    assert old.entries


# --- CI ------------------------------------------------------------------------------


def test_workflow_lints_and_reports_impact_on_glossary_changes() -> None:
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "glossary.yml").read_text())
    trigger = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare on as true
    assert trigger["pull_request"]["paths"] == ["glossary/**"]
    steps = workflow["jobs"]["impact"]["steps"]
    assert steps[0]["with"]["fetch-depth"] == 0
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "forumtranslate glossary lint --strict" in runs
    assert "forumtranslate glossary impact --base" in runs and "--no-translate" in runs
    assert "--html glossary-impact.html" in runs  # the page, uploaded for the reviewers
    [upload] = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert upload["with"]["path"] == "glossary-impact.html"


def test_a_change_of_kind_is_a_change_but_no_impact(tmp_path: Path) -> None:
    """The kind is shown to people and kept in TBX; it constrains no decoding."""
    old = Glossary(entries=BASE, path="old")
    new = Glossary(entries=changed("think-tank", kind="organisation"), path="new")
    (change,) = glossary_diff(old, new).changed
    assert change.fields == (FieldChange("kind", "term", "organisation"),)
    assert impacted_sentences(old, new, make_corpus(tmp_path)) == []
