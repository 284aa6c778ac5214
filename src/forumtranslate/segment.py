"""Sentence segmentation: cut a document into sentences, bullet items and headings.

The Japanese documents are PDF extractions, so layout has to be told apart from sentences
before sentences can be split. The rules, in the order they apply (the same for English,
except where noted):

1. **Lines.** A line starting with ``- `` is a bullet item; the marker is layout and belongs
   to no segment. A line starting with a label in 【…】 (or […], the English files' form) is a
   heading: the label is one segment of kind ``heading``, and any text after it on the line
   (``【狙い・概要】 text…``) is a paragraph of its own. Any other line is plain text: a time,
   a title, a name, or a paragraph.
2. **Stacked lines.** Plain lines with no blank line between them are separate layout units
   (a name block: name / post / "(ビデオレター)"), unless one of them ends in a connector
   (``・``, ``、``, ``,``): that shows the layout wrapped one title over several lines
   (``経済安全保障 / グローバルフォーラム・ / ウィークス``), and the lines are one unit.
3. **Page breaks.** A unit that stops mid-sentence continues on the next non-blank line,
   unless that line starts a new block (a bullet or a heading). A unit stops mid-sentence when
   it ends in a connector, or when it is prose -- a bullet, or text in which a sentence has
   already ended -- and its last sentence has no final punctuation. A title line without
   punctuation is therefore never glued to what follows it. The line break and any blank lines
   are removed in Japanese (a space is kept only between two narrow characters, as in
   ``Ministry of / Economy``) and become one space in English.
4. **Sentences.** Japanese: a sentence ends at 。｡！？!? together with any closing brackets,
   quotes and further end marks after it (``。」``, ``！？``). A period is never a sentence end
   in Japanese text, so ``1.5`` and ``U.S.`` stay whole. Inside brackets (「…」, （…）, (…),
   『…』 …) nothing is split, except that a quote which itself ends a sentence (``「…。」``)
   ends it there unless a quotative particle follows (``「…。」と述べた``). A bracket without a
   partner (the ``1)`` of a numbered list) is an ordinary character. English: pysbd, within
   each unit.

Kinds: a heading label is ``heading``; the first sentence of a bullet item is ``bullet`` and
its later sentences are ``sentence``; everything else is ``sentence``.

Offsets: ``start``/``end`` delimit the segment in the original text, so every character of
the input other than whitespace and bullet markers lies in exactly one segment.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, replace
from types import MappingProxyType

import pysbd

from forumtranslate.records import Document, Segment

LANGUAGES = ("ja", "en")
BULLET_MARKER = "- "
HEADING_BRACKETS = MappingProxyType({"【": "】", "[": "]"})
BRACKET_PAIRS = MappingProxyType(
    {
        "「": "」",
        "『": "』",
        "（": "）",
        "(": ")",
        "【": "】",
        "［": "］",
        "[": "]",
        "〔": "〕",
        "〈": "〉",
        "《": "》",
        "｢": "｣",
        "“": "”",
        "‘": "’",
        "｛": "｝",
        "{": "}",
    }
)
CLOSERS = frozenset(BRACKET_PAIRS.values()) | frozenset("\"'»")
JA_SENTENCE_ENDS = frozenset("。｡！？!?‼⁉")
EN_SENTENCE_ENDS = frozenset(".!?…")
CONNECTORS = frozenset("、，,・･")
# After a quote that ends in 。！？, these mean the sentence goes on: 「…。」と述べた.
QUOTATIVES = ("と", "って", "など")

_LINE_BREAK = re.compile(r"\s*\n\s*")


@dataclass(frozen=True)
class _Span:
    """A stretch of the document: a line's content while reading, then a unit to split."""

    kind: str  # bullet | heading | text
    start: int
    end: int
    after_blank: bool = True  # a blank line (or the start of the text) comes before it


def segment_text(text: str, doc_id: str = "doc", language: str = "ja") -> list[Segment]:
    """Cut ``text`` into sentences, bullets and headings, in document order."""
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    segments: list[Segment] = []
    for unit in _units(text, language):
        if unit.kind == "heading":
            pieces = [(unit.start, unit.end)]
        else:
            pieces = _sentence_spans(text, unit.start, unit.end, language)
        for n, (start, end) in enumerate(pieces):
            kind = unit.kind if n == 0 and unit.kind != "text" else "sentence"
            index = len(segments)
            segments.append(
                Segment(
                    doc_id=doc_id,
                    seg_id=f"{doc_id}-{index + 1:03d}",
                    index=index,
                    text=repair_line_breaks(text[start:end], language),
                    start=start,
                    end=end,
                    kind=kind,
                )
            )
    return segments


def segment_document(document: Document, language: str) -> list[Segment]:
    """Segment a loaded document; its doc_id names the segments."""
    return segment_text(document.text, doc_id=document.doc_id, language=language)


def repair_line_breaks(raw: str, language: str) -> str:
    """Undo the PDF's line and page breaks inside one segment (rule 3)."""
    stripped = raw.strip()

    def join(match: re.Match[str]) -> str:
        if language == "en":
            return " "
        before, after = stripped[match.start() - 1], stripped[match.end()]
        return "" if _is_wide(before) or _is_wide(after) else " "

    return _LINE_BREAK.sub(join, stripped)


# --- layout: lines -> units ----------------------------------------------------------


def _units(text: str, language: str) -> list[_Span]:
    """Group the document's lines into units that hold whole sentences (rules 1-3)."""
    units: list[_Span] = []
    for piece in _join_stacked_lines(text, list(_line_pieces(text))):
        if piece.kind == "text" and units and _stops_mid_sentence(text, units[-1], language):
            units[-1] = replace(units[-1], end=piece.end)
        else:
            units.append(piece)
    return units


def _line_pieces(text: str) -> Iterator[_Span]:
    """Read each line as a bullet, a heading label (and the text after it), or plain text."""
    after_blank = True
    line_start = 0
    for line in text.split("\n"):
        line_end = line_start + len(line)
        from_start = line.lstrip()  # keeps a trailing space: "- " alone is an (empty) bullet
        content = from_start.rstrip()
        start = line_end - len(from_start)
        if not content:
            after_blank = True
        elif from_start.startswith(BULLET_MARKER):
            # an empty bullet still ends the unit before it, so it is kept as an empty span
            marker_end = start + len(BULLET_MARKER)
            body = _strip_span(text, marker_end, line_end) or (marker_end, marker_end)
            yield _Span("bullet", *body, after_blank)
            after_blank = False
        elif content[0] in HEADING_BRACKETS and HEADING_BRACKETS[content[0]] in content:
            label_end = start + content.index(HEADING_BRACKETS[content[0]]) + 1
            yield _Span("heading", start, label_end, after_blank)
            rest = _strip_span(text, label_end, line_end)
            if rest:
                yield _Span("text", *rest, after_blank=False)
            after_blank = False
        else:
            yield _Span("text", start, start + len(content), after_blank)
            after_blank = False
        line_start = line_end + 1


def _join_stacked_lines(text: str, pieces: list[_Span]) -> list[_Span]:
    """Make one unit of stacked plain lines when one of them ends in a connector (rule 2)."""
    stacks: list[list[_Span]] = []
    for piece in pieces:
        stacked = piece.kind == "text" and not piece.after_blank
        if stacks and stacked and stacks[-1][-1].kind == "text":
            stacks[-1].append(piece)
        else:
            stacks.append([piece])
    joined: list[_Span] = []
    for stack in stacks:
        if any(text[piece.end - 1] in CONNECTORS for piece in stack[:-1]):
            joined.append(replace(stack[0], end=stack[-1].end))
        else:
            joined.extend(stack)
    return joined


def _stops_mid_sentence(text: str, unit: _Span, language: str) -> bool:
    """Whether the next line continues this unit across a line or page break (rule 3)."""
    body = text[unit.start : unit.end]
    if unit.kind == "heading" or not body:
        return False
    if body[-1] in CONNECTORS:
        return True
    cuts = _sentence_cuts(body, language)
    is_prose = unit.kind == "bullet" or len(cuts) > 1
    last_sentence = body[cuts[-2] if len(cuts) > 1 else 0 :]
    return is_prose and not _ends_sentence(last_sentence, language)


# --- sentences within a unit ---------------------------------------------------------


def _sentence_spans(text: str, start: int, end: int, language: str) -> list[tuple[int, int]]:
    """Document offsets of the sentences of text[start:end], without surrounding whitespace."""
    spans = []
    previous = 0
    body = text[start:end]
    for cut in _sentence_cuts(body, language):
        span = _strip_span(text, start + previous, start + cut)
        if span:
            spans.append(span)
        previous = cut
    return spans


def _sentence_cuts(body: str, language: str) -> list[int]:
    """Offsets in ``body`` where its sentences end; the last one is ``len(body)``."""
    cuts = _ja_cuts(body) if language == "ja" else _en_cuts(body)
    if not cuts or cuts[-1] != len(body):
        cuts.append(len(body))
    return cuts


def _ja_cuts(body: str) -> list[int]:
    """Japanese sentence ends (rule 4): 。！？ outside brackets, with what closes after them."""
    matched = _matched_brackets(body)
    cuts = []
    depth = 0
    i = 0
    while i < len(body):
        char = body[i]
        if i in matched:
            depth += 1 if char in BRACKET_PAIRS else -1
        i += 1
        if char not in JA_SENTENCE_ENDS:
            continue
        closed_quote = False
        while i < len(body) and (body[i] in JA_SENTENCE_ENDS or body[i] in CLOSERS):
            if i in matched:
                depth -= 1
                closed_quote = True
            i += 1
        if depth == 0 and not (closed_quote and body.startswith(QUOTATIVES, i)):
            cuts.append(i)
    return cuts


def _matched_brackets(body: str) -> frozenset[int]:
    """Positions of the brackets that have a partner, so a stray one cannot hide the rest."""
    open_at: list[int] = []
    matched: set[int] = set()
    for i, char in enumerate(body):
        if char in BRACKET_PAIRS:
            open_at.append(i)
        elif char in CLOSERS:
            for k in range(len(open_at) - 1, -1, -1):
                if BRACKET_PAIRS[body[open_at[k]]] == char:
                    matched.update((open_at[k], i))
                    del open_at[k:]
                    break
    return frozenset(matched)


def _en_cuts(body: str) -> list[int]:
    """English sentence ends from pysbd, mapped back onto ``body``'s own characters.

    pysbd may drop or alter whitespace, so its sentences are matched to ``body`` by their
    non-space characters; if it changed anything else, the unit is left whole rather than
    risk losing a character.
    """
    sentences = pysbd.Segmenter(language="en", clean=False).segment(repair_line_breaks(body, "en"))
    if _non_space("".join(sentences)) != _non_space(body):
        return []
    # position in body just after its k-th non-space character
    after = [i + 1 for i, char in enumerate(body) if not char.isspace()]
    cuts = []
    seen = 0
    for sentence in sentences[:-1]:
        seen += len(_non_space(sentence))
        if seen:
            cuts.append(after[seen - 1])
    return cuts


def _ends_sentence(sentence: str, language: str) -> bool:
    """Whether the sentence has its final punctuation (closing brackets and quotes aside)."""
    ends = JA_SENTENCE_ENDS if language == "ja" else EN_SENTENCE_ENDS | JA_SENTENCE_ENDS
    core = sentence.rstrip()
    while core and core[-1] in CLOSERS:
        core = core[:-1].rstrip()
    return bool(core) and core[-1] in ends


# --- small helpers -------------------------------------------------------------------


def _strip_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span without leading and trailing whitespace, or None if nothing is left."""
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return None
    first = start + len(piece) - len(piece.lstrip())
    return first, first + len(stripped)


def _non_space(text: str) -> str:
    return "".join(char for char in text if not char.isspace())


def _is_wide(char: str) -> bool:
    """Japanese (full-width) characters are written without spaces between them."""
    return unicodedata.east_asian_width(char) in ("W", "F")
