"""Text for XML writers: the one place that decides what XML 1.0 cannot hold.

A model writes whatever its vocabulary holds, and a random or damaged one writes control
characters (U+0014) or, through a broken detokeniser, lone surrogates. XML 1.0 has no way
to carry those (its ``Char`` production leaves out C0 controls other than tab, line feed
and carriage return, the surrogates, U+FFFE and U+FFFF), so a writer that passes them on
makes a file no parser reads, and one that refuses them makes a run impossible to export.

``xml_pieces`` cuts a string into what XML can hold and the code points it cannot; every
XML writer (XLIFF, TMX, TBX) sends every string through it. XLIFF 2 has ``<cp hex>`` for
exactly this and writes the pieces as they are; a format without it writes
``visible(code)``, a character that shows what was there (the Unicode control pictures,
␔ for U+0014) and says so. TSV is not XML: ``tsv_escape`` writes the same characters as
``\\u{0014}``, reversibly.
"""

from __future__ import annotations

import re

# What XML 1.0 (5th edition) cannot hold, as in its Char production.
XML_UNWRITABLE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
REPLACEMENT = "\ufffd"
_TSV_ESCAPE = re.compile(r"\\u\{([0-9A-F]{4,6})\}")


def xml_pieces(text: str) -> list[str | int]:
    """``text`` as runs of characters XML can hold (str) and the code points between
    them that it cannot (int), in order; a text XML can hold whole is ``[text]``."""
    pieces: list[str | int] = []
    position = 0
    for bad in XML_UNWRITABLE.finditer(text):
        if bad.start() > position:
            pieces.append(text[position : bad.start()])
        pieces.append(ord(bad.group()))
        position = bad.end()
    if position < len(text) or not pieces:
        pieces.append(text[position:])
    return pieces


def visible(code: int) -> str:
    """A character that stands in for ``code`` where XML has no ``<cp>``: the control
    picture of a C0 control (␀ … ␟), else U+FFFD."""
    return chr(0x2400 + code) if code < 0x20 else REPLACEMENT


def xml_visible(text: str) -> tuple[str, tuple[int, ...]]:
    """``text`` with what XML cannot hold made ``visible``, and the code points replaced
    (distinct, in order of first appearance) so the writer can say so."""
    pieces = xml_pieces(text)
    replaced = tuple(dict.fromkeys(p for p in pieces if isinstance(p, int)))
    return "".join(p if isinstance(p, str) else visible(p) for p in pieces), replaced


def describe_replaced(codes: tuple[int, ...]) -> str:
    """``U+0014 as ␔, U+D800 as �``: what a TMX property or XLIFF note says was replaced."""
    return ", ".join(f"U+{code:04X} as {visible(code)}" for code in codes)


def tsv_escape(text: str) -> str:
    """``text`` with what XML cannot hold written ``\\u{0014}`` (a backslash that starts
    such a sequence already is written ``\\u{005C}``), so ``tsv_unescape`` restores it
    exactly; text without either is unchanged."""

    def escape(match: re.Match[str]) -> str:
        return f"\\u{{{ord(match.group()):04X}}}"

    return re.sub(r"\\(?=u\{[0-9A-F]{4,6}\})|" + XML_UNWRITABLE.pattern, escape, text)


def tsv_unescape(text: str) -> str:
    """Undo ``tsv_escape``."""

    def unescape(match: re.Match[str]) -> str:
        code = int(match.group(1), 16)
        return chr(code) if code <= 0x10FFFF else match.group()

    return _TSV_ESCAPE.sub(unescape, text)
