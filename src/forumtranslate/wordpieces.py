"""What each vocabulary piece decodes to, and the one word-boundary rule built on it.

Why one module: a glossary term counts only as whole words ("critical minerals" is not in
"critical mineralsq"), and both backends must decide the same way which pieces continue
the word before them. Deciding by a piece's spelling goes wrong on real vocabularies:
a byte-fallback piece ``<0x71>`` decodes to "q" and glues, a SentencePiece piece ``,``
without "▁" does not, and a byte-level BPE piece (``Ġsecurity``, as in GPT-2, Llama 3 or
Qwen) spells its leading space as "Ġ". So every piece is mapped to the *bytes* it decodes
to in the middle of a sentence, and the rule reads those bytes:

* a piece glues onto the previous word when its text starts with a word character
  (``\\w``, the class ``glossary.contains_form`` uses for whole words), or with a byte of a
  multi-byte UTF-8 character (a CJK or accented letter, split into byte pieces);
* the text of a token sequence is its pieces' bytes, joined and decoded as UTF-8, with the
  leading space a tokenizer strips.

``tests/test_wordpieces.py`` holds this equal to the tokenizer's own ``decode`` on every
tokenizer kind the tests build.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

WORD_CHAR = re.compile(r"\w")
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def starts_with_word_char(data: bytes) -> bool:
    """Whether text starting with ``data`` would continue a word written just before it."""
    if not data:
        return False
    if data[0] >= 0x80:  # a multi-byte character, or a byte of one: a letter, to be safe
        return True
    return WORD_CHAR.match(chr(data[0])) is not None


@lru_cache(maxsize=1)
def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-to-character table, reversed: "Ġ" → 0x20 (the table byte-level BPE uses
    to spell every byte as a printable character)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def is_byte_level(tokenizer: Any) -> bool:
    """Whether a (fast) tokenizer decodes with byte-level BPE's ByteLevel decoder."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return decoder is not None and "ByteLevel" in type(decoder).__name__


@dataclass(frozen=True)
class PieceText:
    """Every vocabulary id's bytes in mid-sentence, and whether it glues onto a word."""

    pieces: tuple[bytes, ...]
    glue: tuple[bool, ...]

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, size: int | None = None) -> PieceText:
        """Read the pieces of ``tokenizer``'s vocabulary (ids ``0 .. size-1``)."""
        size = size or len(tokenizer)
        tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
        special = set(tokenizer.all_special_ids)
        # Added special tokens (NLLB's language codes) decode to nothing, as in decode().
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        special.update(i for i, token in added.items() if getattr(token, "special", False))
        byte_level = is_byte_level(tokenizer)
        alphabet = byte_level_alphabet() if byte_level else {}
        pieces = []
        for i, token in enumerate(tokens):
            if i in special or token is None:
                pieces.append(b"")
            else:
                pieces.append(piece_bytes(token, alphabet))
        glue = tuple(starts_with_word_char(p) for p in pieces)
        return cls(tuple(pieces), glue)

    def data(self, ids: Sequence[int]) -> bytes:
        pieces = self.pieces
        return b"".join(pieces[i] for i in ids if 0 <= i < len(pieces))

    def text(self, ids: Sequence[int], final: bool = False) -> str:
        """The text of ``ids`` (the leading space a tokenizer drops, dropped; a character
        whose bytes are not all there yet left out, or with ``final`` a U+FFFD, as the
        tokenizer's own ``decode`` gives)."""
        return decode_bytes(self.data(ids), final=final)


def piece_bytes(token: str, alphabet: dict[str, int]) -> bytes:
    """One piece's bytes: ``<0xNN>`` is a byte; a byte-level piece maps back through
    ``alphabet``; otherwise SentencePiece's "▁" is a space."""
    byte = _BYTE_PIECE.fullmatch(token)
    if byte:
        return bytes([int(byte.group(1), 16)])
    if alphabet and all(ch in alphabet for ch in token):
        return bytes(alphabet[ch] for ch in token)
    return token.replace("▁", " ").encode("utf-8")


def decode_bytes(data: bytes, strip: bool = True, final: bool = False) -> str:
    """UTF-8 text of ``data``: an incomplete character at the end is left out (more bytes
    may come), any other invalid byte becomes U+FFFD, and the leading space goes (with
    ``strip``, as tokenizers drop it)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(data, final=final)
    return text.lstrip(" ") if strip else text
