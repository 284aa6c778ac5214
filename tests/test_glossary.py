"""The glossary: loading, matching Japanese terms, checking English renderings, lint."""

from __future__ import annotations

import dataclasses
import hashlib
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from forumtranslate.cli import main
from forumtranslate.errors import InputError
from forumtranslate.glossary import (
    COLUMNS,
    Glossary,
    GlossaryEntry,
    LintMessage,
    TermMatcher,
    avoided_found,
    check_terms,
    format_glossary,
    lemmatiser,
    lint_glossary,
    load_glossary,
    term_found,
)
from forumtranslate.records import TermMatch

ROOT = Path(__file__).resolve().parents[1]
HEADER = "\t".join(COLUMNS)


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def write_tsv(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "terms.tsv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def row(*cells: str, kind: str = "term") -> str:
    """A TSV row from id, source, source_variants, target, ... (the kind goes in after the
    id); missing optional cells are empty."""
    cells = (cells[0], kind, *cells[1:]) if cells else ()
    return "\t".join([*cells, *[""] * (len(COLUMNS) - len(cells))])


# A small glossary whose terms nest and overlap on purpose.
ENTRIES = (
    GlossaryEntry("critical-minerals", "重要鉱物", "critical minerals", (), ("critical mineral",)),
    GlossaryEntry(
        "critical-mineral-supply-chains",
        "重要鉱物サプライチェーン",
        "critical mineral supply chains",
    ),
    GlossaryEntry(
        "supply-chain", "サプライチェーン", "supply chain", ("供給網",), ("supply chains",)
    ),
    GlossaryEntry(
        "de-risking", "デリスキング", "de-risking", ("デリスクング", "デリスク"), ("derisking",)
    ),
    GlossaryEntry("economic-security", "経済安全保障", "economic security"),
    GlossaryEntry("promotion-act", "経済安全保障推進法", "Economic Security Promotion Act"),
    GlossaryEntry("security-strategy", "安全保障戦略", "security strategy"),
    GlossaryEntry("strategic-autonomy", "戦略的自律性", "strategic autonomy"),
    GlossaryEntry("autonomy", "自律性", "autonomy"),
    GlossaryEntry("cptpp", "CPTPP", "CPTPP"),
    GlossaryEntry("wto", "世界貿易機関", "World Trade Organization", ("WTO",), ("WTO",)),
    GlossaryEntry("heisei", "平成", "Heisei"),
    GlossaryEntry("growth", "成長", "growth"),
    GlossaryEntry(
        "economic-coercion", "経済的威圧", "economic coercion", avoid=("economic intimidation",)
    ),
)
GLOSSARY = Glossary(entries=ENTRIES, path="test")


def found(sentence: str, glossary: Glossary = GLOSSARY) -> list[tuple[str, str, int, int]]:
    return [(m.entry_id, m.source, m.start, m.end) for m in glossary.find_terms(sentence)]


# --- loading -------------------------------------------------------------------------


def test_load_reads_columns_variants_and_lines(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path,
        row("de-risking", "デリスキング", "デリスクング | デリスク", "de-risking", "derisking"),
        "",
        row("offtake", "オフテイク", "", "offtake", "", "take-off", "a note"),
    )
    glossary = load_glossary(path)
    first, second = glossary.entries
    assert first == GlossaryEntry(
        "de-risking", "デリスキング", "de-risking", ("デリスクング", "デリスク"), ("derisking",)
    )
    assert (first.line, second.line) == (2, 4)  # the blank line still counts
    assert second.avoid == ("take-off",) and second.note == "a note"
    assert first.allowed == ("de-risking", "derisking")
    assert glossary.path == str(path)


def test_sha256_is_the_file_hash(tmp_path: Path) -> None:
    path = write_tsv(tmp_path, row("offtake", "オフテイク", "", "offtake"))
    assert load_glossary(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_format_glossary_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "terms.tsv"
    path.write_text(format_glossary(ENTRIES), encoding="utf-8")
    assert load_glossary(path).entries == ENTRIES
    assert GLOSSARY.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("rows", "line", "expected"),
    [
        ([row("a", "あ", "", "a")[: -len("\t")]], 2, "expected 8 tab-separated fields, found 7"),
        ([row("a", "あ", "", "a") + "\textra"], 2, "expected 8 tab-separated fields, found 9"),
        ([row("a", "あ", "", "a"), "just one field"], 3, "found 1"),
        ([row("", "あ", "", "a")], 2, "empty required field 'id'"),
        ([row("a", "", "", "a")], 2, "empty required field 'source'"),
        ([row("a", "あ", "", "")], 2, "empty required field 'target'"),
        ([row("a", "\u3000", "", "a")], 2, "source '\\u3000' is empty once normalised"),
        ([row("a", "あ", "い |  | う", "a")], 2, "source_variants has an empty variant"),
        ([row("a", "あ", "", "a", "", " | ")], 2, "avoid has an empty variant"),
    ],
)
def test_load_errors_name_file_and_line(
    tmp_path: Path, rows: list[str], line: int, expected: str
) -> None:
    path = write_tsv(tmp_path, *rows)
    with pytest.raises(InputError) as err:
        load_glossary(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert expected in str(err.value)


def test_load_error_on_wrong_header(tmp_path: Path) -> None:
    path = write_tsv(tmp_path, row("a", "あ", "", "a"), header="id\tsource\ttarget")
    with pytest.raises(InputError, match=r"terms\.tsv:1: header must be id / kind / source"):
        load_glossary(path)


def test_load_error_on_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_glossary(tmp_path / "missing.tsv")
    crlf = tmp_path / "crlf.tsv"
    crlf.write_bytes(f"{HEADER}\r\n".encode())
    with pytest.raises(InputError, match=r"crlf\.tsv:1: .*CRLF"):
        load_glossary(crlf)


# --- matching ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("重要鉱物の確保", [("critical-minerals", "重要鉱物", 0, 4)]),
        # the longer entry wins where it exists; the shorter is not also reported
        (
            "重要鉱物サプライチェーンの強化",
            [("critical-mineral-supply-chains", "重要鉱物サプライチェーン", 0, 12)],
        ),
        # every source variant, and the longest variant of one entry
        ("選択的なデリスクング", [("de-risking", "デリスクング", 4, 10)]),
        ("デリスクの", [("de-risking", "デリスク", 0, 4)]),
        ("デリスキング", [("de-risking", "デリスキング", 0, 6)]),
        ("供給網の", [("supply-chain", "供給網", 0, 3)]),
        # the same term twice counts twice, in order
        (
            "重要鉱物と重要鉱物",
            [("critical-minerals", "重要鉱物", 0, 4), ("critical-minerals", "重要鉱物", 5, 9)],
        ),
        # a nested term alone still matches
        (
            "戦略的自律性と自律性",
            [("strategic-autonomy", "戦略的自律性", 0, 6), ("autonomy", "自律性", 7, 10)],
        ),
        ("経済安全保障推進法", [("promotion-act", "経済安全保障推進法", 0, 9)]),
        # overlapping terms: leftmost wins, then the scan goes on after it
        ("経済安全保障戦略", [("economic-security", "経済安全保障", 0, 6)]),
        ("安全保障戦略", [("security-strategy", "安全保障戦略", 0, 6)]),
        # NFKC: full-width Latin, half-width katakana; offsets point into the input
        ("ＣＰＴＰＰに加盟", [("cptpp", "ＣＰＴＰＰ", 0, 5)]),
        ("英国のＣＰＴＰＰ", [("cptpp", "ＣＰＴＰＰ", 3, 8)]),
        ("ﾃﾞﾘｽｷﾝｸﾞ", [("de-risking", "ﾃﾞﾘｽｷﾝｸﾞ", 0, 8)]),
        ("ｻﾌﾟﾗｲﾁｪｰﾝ", [("supply-chain", "ｻﾌﾟﾗｲﾁｪｰﾝ", 0, 9)]),
        # a Latin term does not match inside a longer Latin word
        ("WTO改革", [("wto", "WTO", 0, 3)]),
        ("WTOs", []),
        ("XWTO", []),
        ("CPTPP・WTO", [("cptpp", "CPTPP", 0, 5), ("wto", "WTO", 6, 9)]),
        # a match covers whole input characters: ㍻ is 平成, but 成長 would split it
        ("㍻の", [("heisei", "㍻", 0, 1)]),
        ("㍻長", [("heisei", "㍻", 0, 1)]),
        ("安全保障", []),
        ("", []),
    ],
)
def test_find_terms(sentence: str, expected: list[tuple[str, str, int, int]]) -> None:
    assert found(sentence) == expected
    for match in GLOSSARY.find_terms(sentence):
        assert sentence[match.start : match.end] == match.source


def test_match_carries_target_and_allowed_forms() -> None:
    (match,) = GLOSSARY.find_terms("デリスク")
    assert match.target == "de-risking"
    assert match.allowed == ("de-risking", "derisking")


def test_first_entry_wins_a_form_claimed_twice() -> None:
    glossary = Glossary(
        entries=(GlossaryEntry("one", "用語", "term"), GlossaryEntry("two", "用語", "word"))
    )
    assert found("用語", glossary) == [("one", "用語", 0, 2)]


def to_wide(text: str) -> str:
    """Full-width forms of ASCII letters and digits."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


HALF_WIDTH = {nfkc(chr(c)): chr(c) for c in range(0xFF61, 0xFFA0)}


def to_narrow(text: str) -> str:
    """Half-width forms of katakana (voiced ones as base plus half-width mark)."""
    out = []
    for char in unicodedata.normalize("NFD", text):
        out.append(HALF_WIDTH.get(char) or HALF_WIDTH.get(nfkc(char), char))
    return "".join(out)


FORMS = sorted({form for entry in ENTRIES for form in entry.sources})
PIECES = st.one_of(
    st.sampled_from(FORMS),
    st.sampled_from(FORMS).map(to_wide),
    st.sampled_from(FORMS).map(to_narrow),
    st.text(alphabet="の、。 重要鉱物安全保障ﾃﾞｽｷﾝｸﾞﾟＡＷＴＯxsＰ成長", max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=8).map("".join))
def test_matches_are_ordered_disjoint_and_survive_nfkc(sentence: str) -> None:
    matches = GLOSSARY.find_terms(sentence)
    previous_end = 0
    for match in matches:
        assert previous_end <= match.start < match.end <= len(sentence)
        assert sentence[match.start : match.end] == match.source
        entry = GLOSSARY.get(match.entry_id)
        assert nfkc(match.source) in {nfkc(form) for form in entry.sources}
        previous_end = match.end
    normalised = GLOSSARY.find_terms(nfkc(sentence))
    assert [(m.entry_id, nfkc(m.source)) for m in matches] == [
        (m.entry_id, m.source) for m in normalised
    ]


# --- English side --------------------------------------------------------------------


def match_of(entry_id: str) -> TermMatch:
    entry = GLOSSARY.get(entry_id)
    return TermMatch(entry.id, entry.source, 0, len(entry.source), entry.target, entry.allowed)


@pytest.mark.parametrize(
    ("translation", "entry_id", "expected"),
    [
        ("Securing critical minerals is urgent.", "critical-minerals", True),
        ("Critical Minerals matter.", "critical-minerals", True),
        ("critical mineral projects", "critical-minerals", True),  # listed variant
        ("critical\nminerals", "critical-minerals", True),  # any whitespace between words
        ("supercritical minerals", "critical-minerals", False),
        ("criticalminerals", "critical-minerals", False),
        ("important minerals", "critical-minerals", False),
        ("selective de-risking", "de-risking", True),
        ("Derisking is needed", "de-risking", True),
        ("de risking", "de-risking", False),
        ("supply chains", "supply-chain", True),
        ("supply-chain", "supply-chain", False),  # hyphenated only when listed
        ("the WTO's rules", "wto", True),
        ("ＷＴＯ", "wto", True),
    ],
)
def test_term_found(translation: str, entry_id: str, expected: bool) -> None:
    assert term_found(translation, match_of(entry_id)) is expected


def test_avoided_found() -> None:
    entry = GLOSSARY.get("economic-coercion")
    assert avoided_found("Acts of Economic Intimidation rose.", entry) == ["economic intimidation"]
    assert avoided_found("Economic coercion rose.", entry) == []


# One rendering, one term (issue 14): the sentence's forms are matched jointly, leftmost
# and longest first, and each English phrase is credited to one occurrence.
JOINT_CASES = [
    pytest.param(
        "戦略的自律性を高め、自律性を確保する。", "We raise strategic autonomy.", [True, False]
    ),
    pytest.param(
        "戦略的自律性を高め、自律性を確保する。",
        "We raise strategic autonomy and keep our autonomy.",
        [True, True],
        id="each its own",
    ),
    pytest.param(
        "戦略的自律性を高め、自律性を確保する。",
        "Autonomy first, then STRATEGIC AUTONOMY.",
        [True, True],
        id="any case, either order",
    ),
    pytest.param(
        "経済安全保障と経済安全保障", "Economic Security Forum", [True, False], id="twice"
    ),
    pytest.param(
        "経済安全保障と経済安全保障",
        '"Economic security" (economic security)',
        [True, True],
        id="after a quote and a bracket",
    ),
]


@pytest.mark.parametrize(("source", "translation", "expected"), JOINT_CASES)
def test_one_rendering_counts_for_one_occurrence(
    source: str, translation: str, expected: list[bool]
) -> None:
    matches = GLOSSARY.find_terms(source)
    assert check_terms(translation, matches) == expected


def test_renderings_are_the_spans_credited() -> None:
    matches = GLOSSARY.find_terms("戦略的自律性を高め、自律性を確保する。")
    matcher = TermMatcher(matches)
    assert matcher.renderings("Autonomy, and Strategic Autonomy.") == [
        "Strategic Autonomy",
        "Autonomy",
    ]


def test_a_matcher_that_has_judged_other_texts_credits_as_a_fresh_one() -> None:
    """The matching of renderings to occurrences is kept per order of renderings; the
    spans must still be this text's, wherever the renderings stand in it."""
    matches = GLOSSARY.find_terms("戦略的自律性を高め、自律性を確保する。")
    texts = [
        "Autonomy, and Strategic Autonomy.",
        "We raise autonomy first, and then, at length, strategic autonomy.",
        "Strategic autonomy and autonomy.",
        "autonomy",
        "Nothing here.",
        "Autonomy, and Strategic Autonomy.",
    ]
    used = TermMatcher(matches)
    for text in texts:
        assert used.spans(text) == TermMatcher(matches).spans(text), text
        assert used.verdict(text) == TermMatcher(matches).verdict(text), text


def test_avoided_renderings_in_any_case_but_not_inside_an_approved_one() -> None:
    [match] = GLOSSARY.find_terms("経済的威圧")
    assert match.avoid  # the glossary lists renderings to avoid for it
    avoided = match.avoid[0]
    matcher = TermMatcher([match])
    assert matcher.avoided(f"The {avoided.upper()} grew.") == [avoided]
    assert matcher.avoided(f"The {avoided.title()} grew.") == [avoided]
    assert matcher.avoided("Nothing to see.") == []
    inside = TermMatcher([dataclasses.replace(match, avoid=("coercion",))])
    assert inside.avoided("economic coercion") == []  # part of the approved rendering
    assert inside.avoided("coercion alone") == ["coercion"]


def test_lemma_tolerant_matching_accepts_inflected_forms() -> None:
    [match] = GLOSSARY.find_terms("サプライチェーン")
    exact = TermMatcher([match])
    tolerant = TermMatcher([match], fold=lemmatiser())
    for text in ("a supply chain", "two supply chains"):
        assert tolerant.found(text) == [True]
    assert exact.found("supply-chain") == tolerant.found("supply-chain") == [False]
    [minerals] = GLOSSARY.find_terms("重要鉱物")
    assert TermMatcher([dataclasses.replace(minerals, allowed=("critical minerals",))]).found(
        "a critical mineral"
    ) == [False]
    assert TermMatcher(
        [dataclasses.replace(minerals, allowed=("critical minerals",))], fold=lemmatiser()
    ).found("a critical mineral") == [True]


# --- lint ----------------------------------------------------------------------------


def lint_errors(path: Path) -> list[str]:
    return [str(m) for m in lint_glossary(path) if m.level == "error"]


GOOD = row("offtake", "オフテイク", "", "offtake")


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([GOOD, "offtake\tオフテイク"], ":3: error: expected 8 tab-separated fields, found 2"),
        (
            [GOOD, row("offtake", "引取", "", "offtake")],
            ":3: error: duplicate id 'offtake' (line 2)",
        ),
        (
            [GOOD, row("other", "オフテイク", "", "offtake")],
            ":3: error: source 'オフテイク' of 'other' is already claimed by 'offtake' (line 2)",
        ),
        (
            [
                row("a", "あ", "共通", "a"),
                row("b", "い", "共通", "b"),
            ],
            ":3: error: source '共通' of 'b' is already claimed by 'a' (line 2)",
        ),
        (
            [GOOD, row("offtake-agreement", "オフテイク契約", "オフテイク", "offtake agreement")],
            ":3: error: source 'オフテイク' of 'offtake-agreement' is already claimed by 'offtake'",
        ),
        (
            [row("cptpp", "CPTPP", "", "CPTPP"), row("cptpp-wide", "ＣＰＴＰＰ", "", "CPTPP")],
            ":3: error: source 'ＣＰＴＰＰ' of 'cptpp-wide' is already claimed by 'cptpp'",
        ),
        (
            [row("cptpp", "CPTPP", "", "CPTPP"), row("cptpp-2", "T", "CPTPP", "CPTPP")],
            ":3: error: source 'CPTPP' of 'cptpp-2' is already claimed by 'cptpp' (line 2)",
        ),
        ([row("a", "あ", "あ", "a")], ":2: error: source 'あ' listed twice in 'a'"),
        ([row("a", "", "", "a")], ":2: error: empty required field 'source'"),
        (
            [row("a", "ＣＰＴＰＰ", "", "a")],
            ":2: error: source 'ＣＰＴＰＰ' is not NFKC-normalised",
        ),
        ([row("a", "あ", "ﾃﾞﾘｽｸ", "a")], "error: source_variants 'ﾃﾞﾘｽｸ' is not NFKC-normalised"),
        ([row("a", "あ", "", "ａ")], ":2: error: target 'ａ' is not NFKC-normalised"),
        ([row("a", "あ ", "", "a")], ":2: error: source has leading or trailing spaces: 'あ '"),
        ([row("a", "あ", "", " a")], ":2: error: target has leading or trailing spaces"),
        (
            [row("a", "あ", "い|う", "a")],
            ":2: error: source_variants: separate variants with ' | '",
        ),
        ([row("a", "あ", "", "a", "b ")], "error: target_variants: separate variants with ' | '"),
        (
            [row("a", "あ", "", "a", "", "b | A")],
            ":2: error: 'a' is both allowed and to be avoided",
        ),
        ([row("a", "あ", "", "a", "b", "B")], ":2: error: 'b' is both allowed and to be avoided"),
        ([row("A b", "あ", "", "a")], ":2: error: id 'A b': use lower-case letters"),
    ],
)
def test_lint_errors(tmp_path: Path, rows: list[str], expected: str) -> None:
    path = write_tsv(tmp_path, *rows)
    errors = lint_errors(path)
    assert any(expected in error for error in errors), errors
    assert all(error.startswith(f"{path}:") for error in errors)


def test_lint_reports_every_error_at_once(tmp_path: Path) -> None:
    path = write_tsv(tmp_path, GOOD, "bad", GOOD, row("b", "い ", "", ""))
    errors = lint_errors(path)
    assert [e.split(": ", 2)[0].rsplit(":", 1)[1] for e in errors] == ["3", "4", "4", "5", "5"]


def test_lint_wrong_header(tmp_path: Path) -> None:
    path = write_tsv(tmp_path, GOOD, header="id\tsource")
    assert lint_errors(path) == [
        f"{path}:1: error: header must be {' / '.join(COLUMNS)}, found id / source"
    ]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([row("a", "あ", "", "a", kind="")], ":2: error: empty required field 'kind'"),
        (
            [row("a", "あ", "", "a", kind="law")],
            ":2: error: kind 'law' is not one of term, organisation, person, programme, title",
        ),
        (
            [row("tsutsui", "筒井義信", "", "Yoshinobu Tsutsui", kind="person")],
            ":2: error: person 'Yoshinobu Tsutsui': write a Japanese name FAMILY Given",
        ),
        (
            [row("mori", "森田 隆之", "", "MORITA Takayuki", "Takayuki Morita", kind="person")],
            ":2: error: person 'Takayuki Morita': write a Japanese name FAMILY Given",
        ),
        (
            [row("klevis", "セブラニ・クレビス", "", "SEVRANI Klevis", kind="person")],
            ":2: error: person 'SEVRANI Klevis': a non-Japanese name keeps its own order",
        ),
        ([row("a", "あ\x14", "", "a")], ":2: error: source has a control character U+0014"),
        ([row("a", "あ", "", "a", "", "", "note\x07")], ":2: error: note has a control character"),
    ],
)
def test_lint_checks_the_kind_and_names(tmp_path: Path, rows: list[str], expected: str) -> None:
    path = write_tsv(tmp_path, *rows)
    errors = lint_errors(path)
    assert any(expected in error for error in errors), errors


def test_lint_accepts_names_in_the_house_order(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path,
        row("akazawa", "赤澤亮正", "赤澤 亮正", "AKAZAWA Ryosei", kind="person"),
        row("abe", "安倍", "", "Abe", kind="person"),  # a family name alone, as running text
        row("janne", "ヤンネ・カンカネン", "", "Janne Känkänen", kind="person"),
        row(
            "jogmec",
            "エネルギー・金属鉱物資源機構",
            "JOGMEC | JOCMEC",
            "JOGMEC",
            kind="organisation",
        ),
        row("chair", "会長", "", "Chair", kind="title"),
        row("pli", "生産連動型インセンティブ", "", "production-linked incentive", kind="programme"),
    )
    assert lint_glossary(path) == []
    assert [e.kind for e in load_glossary(path).entries] == [
        "person",
        "person",
        "person",
        "organisation",
        "title",
        "programme",
    ]


def test_a_glossary_without_the_kind_column_loads_as_terms_but_does_not_lint(
    tmp_path: Path,
) -> None:
    """An older revision (the impact report's base) still loads; lint asks for the kind."""
    legacy = "\t".join(c for c in COLUMNS if c != "kind")
    path = write_tsv(tmp_path, "offtake\tオフテイク\t\tofftake\t\t\t", header=legacy)
    (entry,) = load_glossary(path).entries
    assert (entry.id, entry.source, entry.target, entry.kind) == (
        "offtake",
        "オフテイク",
        "offtake",
        "term",
    )
    assert lint_errors(path) == [
        f"{path}:1: error: header has no kind column (add it after id: {' / '.join(COLUMNS)})"
    ]


def test_matches_carry_the_kind_but_compare_without_it() -> None:
    entry = GlossaryEntry("meti", "経済産業省", "METI", kind="organisation")
    (match,) = Glossary(entries=(entry,)).find_terms("経済産業省の発表")
    assert match.kind == "organisation"
    assert match == TermMatch("meti", "経済産業省", 0, 5, "METI", ("METI",))  # kind: no constraint


def test_lint_a_note_may_hold_anything(tmp_path: Path) -> None:
    path = write_tsv(tmp_path, row("a", "あ", "", "a", "", "", "（全角）ＯＫ"))
    assert lint_glossary(path) == []


def test_lint_message_format() -> None:
    assert str(LintMessage("g.tsv", 3, "error", "bad")) == "g.tsv:3: error: bad"
    assert str(LintMessage("en.txt", None, "warning", "hm")) == "en.txt: warning: hm"


def make_corpus(tmp_path: Path, docs: dict[str, tuple[str, str | None]]) -> Path:
    """A data folder: doc_id -> (Japanese, English or None for not written yet)."""
    data = tmp_path / "data"
    (data / "ja").mkdir(parents=True)
    (data / "en").mkdir()
    manifest = ["doc_id\tsection\tspeaker\trole\ttitle\tstart_time"]
    for doc_id, (ja, en) in docs.items():
        manifest.append(f"{doc_id}\tS\t-\t-\tT\t13:00")
        (data / "ja" / f"{doc_id}.txt").write_text(ja, encoding="utf-8")
        if en is not None:
            (data / "en" / f"{doc_id}.txt").write_text(en, encoding="utf-8")
    (data / "manifest.tsv").write_text("\n".join(manifest) + "\n", encoding="utf-8")
    return data


def test_lint_corpus_warnings(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path,
        row("critical-minerals", "重要鉱物", "", "critical minerals", "critical mineral"),
        row("cmsc", "重要鉱物サプライチェーン", "", "critical mineral supply chains"),
        row("coercion", "経済的威圧", "", "economic coercion", "", "economic intimidation"),
        row("supply-chain", "サプライチェーン", "", "supply chain"),
        row("unused", "未使用語", "", "unused"),
    )
    data = make_corpus(
        tmp_path,
        {
            "a": (
                "前置き\n重要鉱物と経済的威圧。\n",
                "Preface\n\nCritical minerals and economic\nintimidation.\n",
            ),
            "b": ("重要鉱物サプライチェーン。重要鉱物。\n", "Key mineral supply chains.\n"),
            "c": ("重要鉱物。\n", None),  # reference not written yet: no finding
        },
    )
    found = sorted(str(m) for m in lint_glossary(path, data))
    assert found == sorted(
        [
            f"{data}/en/a.txt:3: warning: uses avoided rendering 'economic intimidation' for "
            "経済的威圧 [coercion]; approved: 'economic coercion'",
            f"{data}/en/a.txt: warning: never renders 経済的威圧 [coercion] as economic coercion; "
            f"{data}/ja/a.txt:2 has it 1 time",
            f"{data}/en/b.txt: warning: never renders 重要鉱物 [critical-minerals] as "
            f"critical minerals | critical mineral; {data}/ja/b.txt:1 has it 1 time",
            f"{data}/en/b.txt: warning: never renders 重要鉱物サプライチェーン [cmsc] as "
            f"critical mineral supply chains; {data}/ja/b.txt:1 has it 1 time",
            f"{path}:5: warning: 'supply-chain' never occurs in {data}/ja; "
            "サプライチェーン occurs only inside longer terms",
            f"{path}:6: warning: 'unused' never occurs in {data}/ja",
        ]
    )
    assert all(m.level == "warning" for m in lint_glossary(path, data))


# --- the real glossary ---------------------------------------------------------------

REAL = ROOT / "glossary" / "terms.tsv"


def test_real_glossary_lints_without_errors() -> None:
    messages = lint_glossary(REAL, ROOT / "data")
    assert [str(m) for m in messages if m.level == "error"] == []
    assert not any("never occurs" in m.message for m in messages)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("戦略的自律性", "strategic autonomy"),
        ("戦略的不可欠性", "strategic indispensability"),
        ("デリスキング", "de-risking"),
        ("デリスクング", "de-risking"),
        ("デリスク", "de-risking"),
        ("オフテイク", "offtake"),
        ("経済的威圧", "economic coercion"),
        ("経済の武器化", "weaponization of the economy"),
        ("重要鉱物", "critical minerals"),
        ("官民連携", "public-private partnership"),
        ("ＣＰＴＰＰ", "CPTPP"),
    ],
)
def test_real_glossary_required_terms(source: str, target: str) -> None:
    glossary = load_glossary(REAL)
    assert len(glossary.entries) >= 60
    (match,) = glossary.find_terms(source)
    assert (match.source, match.target) == (source, target)


@pytest.mark.parametrize(
    ("sentence", "entry_id", "kind", "target"),
    [
        ("筒井義信 日本経済団体連合会会長", "tsutsui-yoshinobu", "person", "TSUTSUI Yoshinobu"),
        ("筒井 義信", "tsutsui-yoshinobu", "person", "TSUTSUI Yoshinobu"),
        ("セブラニ・クレビス氏", "klevis-sevrani", "person", "Klevis Sevrani"),
        ("ヤンネ・カンカネン氏", "janne-kankanen", "person", "Janne Känkänen"),
        (
            "日仏政府やJOCMECの支援",
            "jogmec",
            "organisation",
            "Japan Organization for Metals and Energy Security",
        ),
        (
            "経済産業研究所=RINETI=理事長",
            "rieti",
            "organisation",
            "Research Institute of Economy, Trade and Industry",
        ),
        (
            "英国は「サプライチェーンセンター」を",
            "supply-chain-centre",
            "organisation",
            "Supply Chain Centre",
        ),
        (
            "メイド・イン・オーストラリア・イニシアティブ",
            "future-made-in-australia",
            "programme",
            "Future Made in Australia",
        ),
        ("理事長", "chairman", "title", "Chairman"),
        ("半導体", "semiconductors", "term", "semiconductors"),
        ("地政学的な", "geopolitics", "term", "geopolitics"),
        ("量子技術", "quantum-technology", "term", "quantum technology"),
        (
            "産業・技術基盤強化",
            "industrial-and-technological-foundations",
            "term",
            "industrial and technological foundations",
        ),
        (
            "総合的なシンクタンク機能",
            "comprehensive-think-tank",
            "term",
            "comprehensive think tank",
        ),
        ("自由貿易を守り", "free-trade", "term", "free trade"),
        ("供給源の多角化", "diversification", "term", "diversification"),
    ],
)
def test_real_glossary_names_and_recurring_terms(
    sentence: str, entry_id: str, kind: str, target: str
) -> None:
    match = load_glossary(REAL).find_terms(sentence)[0]
    assert (match.entry_id, match.kind, match.target) == (entry_id, kind, target)


def test_real_glossary_every_speaker_is_a_person_row() -> None:
    """Every speaker in the manifest is a person row whose target is the manifest's name."""
    from forumtranslate.corpus import read_manifest

    people = {e.target for e in load_glossary(REAL).entries if e.kind == "person"}
    speakers = {i.speaker for i in read_manifest(ROOT / "data" / "manifest.tsv")} - {"-"}
    assert speakers <= people, speakers - people


def test_real_glossary_allows_no_loose_renderings() -> None:
    """Rows the issue found too permissive: 'coercive' for 威圧行為, a refinery for refining,
    and an everyday word as an avoid form."""
    glossary = load_glossary(REAL)
    assert "coercive" not in glossary.get("coercion").allowed
    assert "refinery" not in glossary.get("refining").allowed
    assert "intimidation" not in glossary.get("coercion").avoid
    assert {e.kind for e in glossary.entries} == {
        "term",
        "organisation",
        "person",
        "programme",
        "title",
    }


def test_real_glossary_nested_terms() -> None:
    glossary = load_glossary(REAL)
    ids = [
        m.entry_id
        for m in glossary.find_terms("豪州は重要鉱物戦略備蓄を創設し、英国は重要鉱物戦略を公表")
    ]
    assert ids == ["critical-minerals-strategic-reserve", "critical-minerals-strategy"]


# --- command line --------------------------------------------------------------------


def test_cli_lint(tmp_path: Path) -> None:
    runner = CliRunner()
    data = make_corpus(tmp_path, {"a": ("オフテイク。\n", "Offtake.\n")})
    good = write_tsv(tmp_path, GOOD)
    result = runner.invoke(main, ["glossary", "lint", str(good), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output

    (data / "en" / "a.txt").write_text("Take-off.\n", encoding="utf-8")
    result = runner.invoke(main, ["glossary", "lint", str(good), "--data", str(data)])
    assert result.exit_code == 0 and "never renders オフテイク" in result.output
    strict = runner.invoke(main, ["glossary", "lint", str(good), "--data", str(data), "--strict"])
    assert strict.exit_code == 1

    bad = write_tsv(tmp_path, GOOD, GOOD)
    result = runner.invoke(main, ["glossary", "lint", str(bad), "--data", str(data)])
    assert result.exit_code == 1 and "duplicate id 'offtake'" in result.output

    missing = runner.invoke(main, ["glossary", "lint", str(tmp_path / "no.tsv")])
    assert missing.exit_code == 2 and "file not found" in missing.output


def test_cli_lint_real_glossary() -> None:
    result = CliRunner().invoke(main, ["glossary", "lint", str(REAL), "--data", str(ROOT / "data")])
    assert result.exit_code == 0, result.output
