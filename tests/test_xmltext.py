"""What XML cannot hold, decided in one place: pieces for <cp>, stand-ins, TSV escapes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forumtranslate.xmltext import (
    describe_replaced,
    tsv_escape,
    tsv_unescape,
    xml_pieces,
    xml_visible,
)

# Any code point, lone surrogates included (hypothesis leaves those out of st.text()).
ANY_TEXT = st.lists(st.integers(0, 0x10FFFF).map(chr)).map("".join)


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("", [""]),
        ("plain ]]> <&>", ["plain ]]> <&>"]),
        ("tab\tLF\nCR\r", ["tab\tLF\nCR\r"]),
        ("a\x14b", ["a", 0x14, "b"]),
        ("\x00\x1f", [0x00, 0x1F]),
        ("x\ud800\udfffy", ["x", 0xD800, 0xDFFF, "y"]),
        ("\ufffe\uffff\ufffd", [0xFFFE, 0xFFFF, "\ufffd"]),
        ("\u200f\u202e\x7f\x85\U0001f600", ["\u200f\u202e\x7f\x85\U0001f600"]),  # XML holds these
    ],
)
def test_pieces(text: str, pieces: list[str | int]) -> None:
    assert xml_pieces(text) == pieces


@given(ANY_TEXT)
def test_pieces_rebuild_the_text_and_hold_only_what_xml_can(text: str) -> None:
    pieces = xml_pieces(text)
    assert "".join(p if isinstance(p, str) else chr(p) for p in pieces) == text
    for piece in pieces:
        if isinstance(piece, str):
            ET.fromstring(f"<a>{escape(piece)}</a>")  # parses, so XML holds it
        else:
            with pytest.raises(ET.ParseError):
                ET.fromstring(f"<a>&#{piece};</a>")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")


def test_stand_ins_are_visible_and_named() -> None:
    text, replaced = xml_visible("a\x14b\x00\ud800\x14")
    assert text == "a\u2414b\u2400\ufffd\u2414"
    assert replaced == (0x14, 0x00, 0xD800)
    assert describe_replaced(replaced) == "U+0014 as ␔, U+0000 as ␀, U+D800 as \ufffd"


@given(ANY_TEXT)
def test_tsv_escape_round_trips_any_text(text: str) -> None:
    escaped = tsv_escape(text)
    assert tsv_unescape(escaped) == text
    assert not any(isinstance(p, int) for p in xml_pieces(escaped))
    escaped.encode("utf-8")  # no lone surrogate is left to break the file


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a\x14b", "a\\u{0014}b"),
        ("\\u{0014}", "\\u{005C}u{0014}"),
        ("\\u{zz} \\n C:\\temp", "\\u{zz} \\n C:\\temp"),
        ("\ud83d", "\\u{D83D}"),
    ],
)
def test_tsv_escape_touches_only_what_it_must(text: str, escaped: str) -> None:
    assert tsv_escape(text) == escaped
    assert tsv_unescape(escaped) == text


def test_an_escape_beyond_unicode_is_left_as_written() -> None:
    assert tsv_unescape("\\u{110000}") == "\\u{110000}"
