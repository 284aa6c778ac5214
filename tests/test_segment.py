"""Sentence segmentation: one table row per rule, the invariants on every document, a
property test on arbitrary text, the CLI, and the score against the hand-made gold."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from forumtranslate.cli import main
from forumtranslate.corpus import load_documents, read_text
from forumtranslate.records import Segment
from forumtranslate.segment import repair_line_breaks, segment_document, segment_text

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [path for lang in ("ja", "en") for path in sorted((REPO / "data" / lang).glob("*.txt"))]
BULLET_MARKER = re.compile(r"(?m)^\s*- ")


def non_space(text: str) -> str:
    return "".join(char for char in text if not char.isspace())


def check_invariants(text: str, segments: list[Segment], language: str) -> None:
    """What every segmentation must satisfy, whatever the rules decide."""
    # no character lost or repeated: only whitespace and bullet markers are left out
    assert non_space("".join(seg.text for seg in segments)) == non_space(
        BULLET_MARKER.sub("", text)
    )
    previous_end = 0
    for i, seg in enumerate(segments):
        assert seg.text and seg.text == seg.text.strip() and "\n" not in seg.text
        assert (seg.index, seg.seg_id) == (i, f"{seg.doc_id}-{i + 1:03d}")
        assert previous_end <= seg.start < seg.end <= len(text)
        assert text[seg.start : seg.end] == text[seg.start : seg.end].strip()
        assert seg.text == repair_line_breaks(text[seg.start : seg.end], language)
        assert seg.kind in ("sentence", "bullet", "heading")
        previous_end = seg.end


# --- one row per rule ----------------------------------------------------------------

S, B, H = "sentence", "bullet", "heading"

RULES = [
    # id, language, text, expected (kind, text) pairs
    ("ja-period", "ja", "晴れだ。雨だ。", [(S, "晴れだ。"), (S, "雨だ。")]),
    ("ja-halfwidth-period", "ja", "晴れだ｡雨だ｡", [(S, "晴れだ｡"), (S, "雨だ｡")]),
    (
        "ja-fullwidth-!?",
        "ja",
        "本当か？そうだ！終わり。",
        [(S, "本当か？"), (S, "そうだ！"), (S, "終わり。")],
    ),
    (
        "ja-halfwidth-!?",
        "ja",
        "本当か?そうだ!終わり",
        [(S, "本当か?"), (S, "そうだ!"), (S, "終わり")],
    ),
    ("ja-end-marks-kept-together", "ja", "本当か！？はい。", [(S, "本当か！？"), (S, "はい。")]),
    (
        "ja-quote-ends-sentence",
        "ja",
        "「行くぞ。」彼は言った。",
        [(S, "「行くぞ。」"), (S, "彼は言った。")],
    ),
    (
        "ja-quote-then-quotative",
        "ja",
        "「行くぞ。」と彼は言った。",
        [(S, "「行くぞ。」と彼は言った。")],
    ),
    (
        "ja-no-split-in-quote",
        "ja",
        "彼は「晴れ。明日は雨」と言った。",
        [(S, "彼は「晴れ。明日は雨」と言った。")],
    ),
    (
        "ja-no-split-in-parens",
        "ja",
        "開いた（詳細は後述。資料あり）。次へ。",
        [(S, "開いた（詳細は後述。資料あり）。"), (S, "次へ。")],
    ),
    (
        "ja-no-split-in-ascii-parens",
        "ja",
        "実施(詳細。別紙)。以上。",
        [(S, "実施(詳細。別紙)。"), (S, "以上。")],
    ),
    ("ja-stray-closer-kept", "ja", "以上だ。」次へ。", [(S, "以上だ。」"), (S, "次へ。")]),
    ("ja-stray-opener-ignored", "ja", "資料(別紙。次へ。", [(S, "資料(別紙。"), (S, "次へ。")]),
    (
        "ja-numbers-abbreviations",
        "ja",
        "成長率は1.5%だった。U.S.の政策も変わった。",
        [(S, "成長率は1.5%だった。"), (S, "U.S.の政策も変わった。")],
    ),
    (
        "ja-numbered-list",
        "ja",
        "4点ある。1)第一。2)第二。",
        [(S, "4点ある。"), (S, "1)第一。"), (S, "2)第二。")],
    ),
    (
        "ja-bullets",
        "ja",
        "- 第一文。第二文。\n- 次の項目。",
        [(B, "第一文。"), (S, "第二文。"), (B, "次の項目。")],
    ),
    (
        "ja-heading-alone",
        "ja",
        "【今後について】\n\n- 続く。",
        [(H, "【今後について】"), (B, "続く。")],
    ),
    (
        "ja-heading-with-text",
        "ja",
        "【狙い・概要】 説明する。開催。",
        [(H, "【狙い・概要】"), (S, "説明する。"), (S, "開催。")],
    ),
    (
        "ja-heading-no-space",
        "ja",
        "【登壇者】写真左より 白石氏",
        [(H, "【登壇者】"), (S, "写真左より 白石氏")],
    ),
    (
        "ja-page-break-in-bullet",
        "ja",
        "- 不可欠な存在にな\n\n\nる「戦略的不可欠性」の確保だ。次。",
        [(B, "不可欠な存在になる「戦略的不可欠性」の確保だ。"), (S, "次。")],
    ),
    (
        "ja-page-break-in-paragraph",
        "ja",
        "前の文。次の文は途中で切\n\nれている。",
        [(S, "前の文。"), (S, "次の文は途中で切れている。")],
    ),
    ("ja-page-break-after-comma", "ja", "しかし、\n\n続く。", [(S, "しかし、続く。")]),
    (
        "ja-page-break-latin",
        "ja",
        "- 英語名は Ministry of\n\nEconomy である。",
        [(B, "英語名は Ministry of Economy である。")],
    ),
    (
        "ja-sentence-after-page-break",
        "ja",
        "- 第4に「ショック」。\n\n認識が広まった。",
        [(B, "第4に「ショック」。"), (S, "認識が広まった。")],
    ),
    (
        "ja-no-join-into-new-bullet",
        "ja",
        "- 途中で切れ\n\n- 新しい項目。",
        [(B, "途中で切れ"), (B, "新しい項目。")],
    ),
    (
        "ja-empty-bullet-ends-unit",
        "ja",
        "しかし、\n- \n続く。",
        [(S, "しかし、"), (S, "続く。")],
    ),
    (
        "ja-no-join-into-heading",
        "ja",
        "- 途中で切れ\n\n【見出し】",
        [(B, "途中で切れ"), (H, "【見出し】")],
    ),
    (
        "ja-title-lines-apart",
        "ja",
        "13:35～\n\nパネル 1\n\n経済安全保障に関する政策・戦略",
        [(S, "13:35～"), (S, "パネル 1"), (S, "経済安全保障に関する政策・戦略")],
    ),
    (
        "ja-name-block",
        "ja",
        "赤澤 亮正\n経済産業大臣\n(ビデオレター)",
        [(S, "赤澤 亮正"), (S, "経済産業大臣"), (S, "(ビデオレター)")],
    ),
    (
        "ja-wrapped-title",
        "ja",
        "経済安全保障\nグローバルフォーラム・\nウィークス\n\n経済産業省",
        [(S, "経済安全保障グローバルフォーラム・ウィークス"), (S, "経済産業省")],
    ),
    (
        "en-sentences",
        "en",
        "The U.S. economy grew 1.5 percent. Then it slowed!",
        [(S, "The U.S. economy grew 1.5 percent."), (S, "Then it slowed!")],
    ),
    ("en-!?", "en", "Is it? Yes! Fine.", [(S, "Is it?"), (S, "Yes!"), (S, "Fine.")]),
    (
        "en-closing-quote-kept",
        "en",
        'Fourth, the "innovation shock." It spread.',
        [(S, 'Fourth, the "innovation shock."'), (S, "It spread.")],
    ),
    (
        "en-heading-and-bullet",
        "en",
        "[Venue] Nikkei Hall\n\n- First. Second.",
        [(H, "[Venue]"), (S, "Nikkei Hall"), (B, "First."), (S, "Second.")],
    ),
    (
        "en-page-break",
        "en",
        "- The rules are being\n\nrewritten. Next.",
        [(B, "The rules are being rewritten."), (S, "Next.")],
    ),
    (
        "en-title-lines-apart",
        "en",
        "13:35–\n\nPanel 1\n\nEconomic Security Policy and Strategy",
        [(S, "13:35–"), (S, "Panel 1"), (S, "Economic Security Policy and Strategy")],
    ),
]


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [pytest.param(lang, text, expected, id=rule) for rule, lang, text, expected in RULES],
)
def test_rule(language: str, text: str, expected: list[tuple[str, str]]) -> None:
    segments = segment_text(text, doc_id="t", language=language)
    assert [(seg.kind, seg.text) for seg in segments] == expected
    check_invariants(text, segments, language)


def test_offsets_point_into_the_text() -> None:
    text = "- 第一文。第二文。\n\n【見出し】 本文。"
    segments = segment_text(text, doc_id="d")
    assert [(seg.seg_id, seg.start, seg.end) for seg in segments] == [
        ("d-001", 2, 6),
        ("d-002", 6, 10),
        ("d-003", 12, 17),
        ("d-004", 18, 21),
    ]


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        segment_text("text", language="fr")


def test_empty_and_blank_text_have_no_segments() -> None:
    assert segment_text("") == []
    assert segment_text(" \n\n- \n") == []


# --- every document ------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_invariants_on_every_document(path: Path) -> None:
    text = read_text(path)
    language = path.parent.name
    check_invariants(text, segment_text(text, doc_id=path.stem, language=language), language)


def test_corpus_has_every_document_in_both_languages() -> None:
    assert len(DOCUMENTS) == 18


def test_segment_document_names_segments_by_doc_id() -> None:
    document = load_documents(REPO / "data", "ja")[0]
    segments = segment_document(document, "ja")
    assert segments[0].seg_id == f"{document.doc_id}-001"
    assert segments == segment_text(document.text, document.doc_id, "ja")


# --- arbitrary text ------------------------------------------------------------------

PIECES = [
    *'経済安保あいうアイウ。｡、，！？!?「」『』（）()【】[]・.,15USab"“” \u3000\t\n',
    *("- ", "\n- ", "\n\n", "\n【", "\n[", "1.5", "U.S.", "。」", "」と"),
]
LAYOUT_TEXT = st.lists(st.sampled_from(PIECES), max_size=60).map("".join)


@given(text=LAYOUT_TEXT, language=st.sampled_from(["ja", "en"]))
@settings(deadline=None)
def test_property_layout_like_text(text: str, language: str) -> None:
    check_invariants(text, segment_text(text, language=language), language)


@given(text=st.text(max_size=120), language=st.sampled_from(["ja", "en"]))
@settings(deadline=None)
def test_property_any_text(text: str, language: str) -> None:
    check_invariants(text, segment_text(text, language=language), language)


# --- command line --------------------------------------------------------------------


def test_cli_prints_one_sentence_per_line() -> None:
    path = REPO / "data" / "ja" / "panel-1.txt"
    result = CliRunner().invoke(main, ["segment", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines == [seg.text for seg in segment_text(read_text(path), "panel-1", "ja")]
    page_break_repaired = (
        "日本が目指すのは、他国に過度に依存しない「戦略的自律性」、"
        "他国にとって不可欠な存在になる「戦略的不可欠性」の確保だ。"
    )
    assert page_break_repaired in lines


def test_cli_guesses_english_from_the_path() -> None:
    result = CliRunner().invoke(main, ["segment", str(REPO / "data" / "en" / "panel-1.txt")])
    assert result.exit_code == 0, result.output
    assert "US economic security policy is undergoing a major shift." in result.output.splitlines()


def test_cli_missing_file_is_a_clean_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "missing.txt")])
    assert result.exit_code == 2
    assert "file not found" in result.output


# --- against the gold ----------------------------------------------------------------


def _scorer() -> ModuleType:
    """Import eval/segmentation_f1.py, a script outside the package."""
    path = REPO / "eval" / "segmentation_f1.py"
    spec = importlib.util.spec_from_file_location("segmentation_f1", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_scorer_counts_exact_spans() -> None:
    scorer = _scorer()
    counts = scorer.score(["あ。", "い。う。"], ["あ。", "い。", "う。"])
    assert (counts.gold, counts.predicted, counts.correct) == (2, 3, 1)
    assert (round(counts.precision, 3), counts.recall) == (0.333, 0.5)


def test_gold_scores(capsys: pytest.CaptureFixture[str]) -> None:
    """Every gold file matches its document, and the segmenter stays close to the gold."""
    assert _scorer().main([]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    overall = {row[0]: float(row[-1]) for row in rows if row[1] == "ALL"}
    assert overall["ja"] >= 0.99
    assert overall["en"] >= 0.99
