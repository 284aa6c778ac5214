"""Term editing: every glossary term put into an unconstrained hypothesis, on word boundaries.

For a backend that decodes without constraints (CTranslate2, which has none), the terms
are enforced after decoding, on the hypothesis' tokens (the method: ``ct2``'s docstring):
an avoided rendering is replaced by the approved form; each term still missing replaces the
run of tokens the attention aligns to its source (or, without attention, goes where it sits
in the source, proportionally); should the edited text fail ``check_terms``, the whole
hypothesis is followed by the missing terms. Each term's ``how`` says which of these made
it (decoded, edited, appended).

This is pure logic on tokens, attention and word boundaries: a ``TermEditor`` needs the
model's tokenizer only, so any backend that decodes freely can use it, and its tests need
no model at all.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from forumtranslate.glossary import TermMatcher, capitalised, check_terms
from forumtranslate.records import TermMatch
from forumtranslate.wordpieces import PieceText


@dataclass
class SourcePiece:
    """One piece of a sentence on its way through the decoder (``split_to_fit``'s)."""

    text: str  # the Japanese
    source: list[str]  # its source tokens, special tokens included
    terms: tuple[TermMatch, ...]  # empty with --terms off
    limit: int  # target tokens, the target-language token excluded


@dataclass(frozen=True)
class Hypothesis:
    """A piece's English: the target tokens and their text (which the run records), and
    per term how it got there (``translate.Translation``)."""

    tokens: tuple[str, ...]
    text: str
    how: tuple[str, ...] = ()
    decoded: tuple[str, ...] = ()  # the decoder's own tokens, before any term edit


class TermEditor:
    """Edits a tokenizer's hypotheses so that they hold every term (module docstring)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.pieces = PieceText.from_tokenizer(tokenizer)
        self._special = set(tokenizer.all_special_tokens)
        self._target_tokens: dict[str, tuple[str, ...]] = {}
        self._ids: dict[str, int] = {}

    def _id(self, token: str) -> int:
        if token not in self._ids:
            self._ids[token] = self.tokenizer.convert_tokens_to_ids(token)
        return self._ids[token]

    def target_tokens(self, text: str) -> tuple[str, ...]:
        """``text`` as target-side pieces, a word sequence that starts a new word (with the
        leading space where the tokenizer spells one, as byte-level BPE does)."""
        if text not in self._target_tokens:
            tokenizer = self.tokenizer
            ids: list[int] = []
            for variant in (text, " " + text):
                ids = tokenizer(text_target=variant, add_special_tokens=False)["input_ids"]
                if ids and not self.pieces.glue[ids[0]]:
                    break
            self._target_tokens[text] = tuple(tokenizer.convert_ids_to_tokens(ids))
        return self._target_tokens[text]

    def detokenize(self, tokens: Sequence[str]) -> str:
        """The text of target tokens, decoded as the transformers backend decodes ids."""
        tokenizer = self.tokenizer
        ids = tokenizer.convert_tokens_to_ids(list(tokens))
        return tokenizer.decode(ids, skip_special_tokens=True).strip()

    def is_glue(self, token: str) -> bool:
        """Whether ``token`` continues the previous word (``wordpieces``' rule, the one the
        transformers backend uses)."""
        if token in self._special:
            return False
        i = self._id(token)
        return 0 <= i < len(self.pieces.glue) and self.pieces.glue[i]

    def enforce(
        self, piece: SourcePiece, tokens: list[str], attention: list[list[float]] | None
    ) -> Hypothesis:
        """The hypothesis with every term of ``piece`` in it, checked by ``check_terms``."""
        text = self.detokenize(tokens)
        found = check_terms(text, piece.terms)
        entries = {m.entry_id: m for m in piece.terms}
        avoided = [
            (span, entries[entry_id])
            for entry_id in entries
            for form in entries[entry_id].avoid
            for span in self.find(tokens, form, exact=True)
        ]
        if all(found) and not avoided:
            return Hypothesis(tuple(tokens), text, ("decoded",) * len(found))
        occupied = [
            span for m in piece.terms for form in _allowed(m) for span in self.find(tokens, form)
        ]
        missing = [m for m, ok in zip(piece.terms, found) if not ok]
        edits: list[tuple[int, int, int, TermMatch]] = []  # start, end, order, term
        for (start, end), match in sorted(avoided, key=lambda item: item[0]):
            if any(start < b and end > a for a, b in occupied):
                continue
            edits.append((start, end, len(edits), match))
            occupied.append((start, end))
            if match in missing:
                missing.remove(match)
        boundaries = [i for i in range(len(tokens) + 1) if self._is_boundary(tokens, i)]
        weights = None
        if missing and attention:
            import numpy as np

            weights = np.asarray(attention[: len(tokens)], dtype=np.float32)
        for match in missing:
            start, end = self.place(piece, match, tokens, weights, boundaries, occupied)
            edits.append((start, end, len(edits), match))
            occupied.append((start, end))
        edited = self.apply(tokens, edits)
        text = self.detokenize(edited)
        how = tuple("decoded" if ok else "edited" for ok in found)
        if all(check_terms(text, piece.terms)) and not self._avoided_in(text, piece):
            return Hypothesis(tuple(edited), text, how)
        # The placement failed the check: the whole hypothesis, then the missing terms.
        missing = [m for m, ok in zip(piece.terms, found) if not ok]
        appended = list(tokens) + [t for m in missing for t in self.target_tokens(m.target)]
        text = self.detokenize(appended)
        if not all(check_terms(text, piece.terms)):
            # A term whose tokens do not decode back to it: add it as text.
            text = " ".join([self.detokenize(tokens), *(m.target for m in missing)]).strip()
        if not all(check_terms(text, piece.terms)):  # each missing form is now in the text
            raise AssertionError(f"glossary constraint lost in {text!r}")
        how = tuple("decoded" if ok else "appended" for ok in found)
        return Hypothesis(tuple(appended), text, how)

    @staticmethod
    def _avoided_in(text: str, piece: SourcePiece) -> bool:
        return bool(TermMatcher(piece.terms).avoided(text))

    def apply(self, tokens: list[str], edits: list[tuple[int, int, int, TermMatch]]) -> list[str]:
        """Replace each edit's tokens by its term's approved form, left to right."""
        out: list[str] = []
        cursor = 0
        for start, end, _order, match in sorted(edits, key=lambda e: (e[0], e[2])):
            start = max(start, cursor)
            form = match.target
            if start == 0 and not out:  # the sentence's first word: capitalised
                form = capitalised(form)
            out += tokens[cursor:start]
            out += self.target_tokens(form)
            cursor = max(end, start)
        return out + tokens[cursor:]

    def _is_boundary(self, tokens: Sequence[str], i: int) -> bool:
        """Whether a word may start at ``i``: the end, or a token that does not glue."""
        return i == len(tokens) or not self.is_glue(tokens[i])

    def find(self, tokens: Sequence[str], form: str, exact: bool = False) -> list[tuple[int, int]]:
        """Token ranges holding ``form`` as whole words (ignoring case).

        With ``exact``, only ranges whose tokens hold the form and nothing more, so that
        replacing them removes exactly the form.
        """
        # Character offsets of each token in the text the pieces decode to (wordpieces).
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        spans, raw = [], ""
        for token in tokens:
            piece = b""
            if token not in self._special:
                i = self._id(token)
                piece = self.pieces.pieces[i] if 0 <= i < len(self.pieces.pieces) else b""
            start = len(raw)
            raw += decoder.decode(piece)
            spans.append((start, len(raw)))
        words = [re.escape(word) for word in form.split()]
        if not words:
            return []
        pattern = r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)"
        ranges = []
        for hit in re.finditer(pattern, raw, re.IGNORECASE):
            covered = [i for i, (a, b) in enumerate(spans) if a < hit.end() and b > hit.start()]
            if not covered:
                continue
            first, last = covered[0], covered[-1] + 1
            if exact and raw[spans[first][0] : spans[last - 1][1]].strip() != hit.group():
                continue
            ranges.append((first, last))
        return ranges

    def place(
        self,
        piece: SourcePiece,
        match: TermMatch,
        tokens: list[str],
        weights: Any,
        boundaries: list[int],
        occupied: list[tuple[int, int]],
    ) -> tuple[int, int]:
        """Where a missing term goes: the (start, end) of the tokens its form replaces.

        ``weights`` is the attention, target tokens × source tokens. The target position
        attending most to the term's source tokens is where the model rendered it; the form
        goes at the start of that word and replaces the run of tokens whose strongest
        attention is on the term (at most the form's length + 2, then to the end of the
        word). Ranges that hold a term, or are being replaced, are left whole.
        """
        import numpy as np

        n = len(tokens)
        if n == 0:
            return 0, 0
        source_ids = sorted(self.source_span(piece, match))
        if weights is not None and source_ids and weights.shape[0] == n:
            peak = int(weights[:, source_ids].sum(axis=1).argmax())  # the first, if tied
            aligned = np.isin(weights.argmax(axis=1), source_ids).tolist()
        else:  # no attention: where the term sits in the source, proportionally
            peak = min(n - 1, n * match.start // max(1, len(piece.text)))
            aligned = [False] * n
        before = [b for b in boundaries if b <= peak]
        start = before[-1] if before else min(b for b in boundaries if b >= peak)
        last, cap = peak, peak + len(self.target_tokens(match.target)) + 2
        while last < min(n, cap) and aligned[last]:
            last += 1
        end = min(b for b in boundaries if b >= last) if last > peak else start
        for a, b in sorted(occupied):  # never inside a term's range: after it
            if a < start < b:
                start = b
        end = max(end, start)
        for a, b in sorted(occupied):  # and never over one
            if start < b and end > a:
                end = max(start, a)
        return start, end

    def source_span(self, piece: SourcePiece, match: TermMatch) -> set[int]:
        """Source token indices that cover the term's characters.

        Pieces are counted without their "▁", so offsets are taken without whitespace; the
        tokenizer's normalisation can shift them by a character, which moves the placement,
        never the guarantee.
        """
        start = len(re.sub(r"\s", "", piece.text[: match.start]))
        end = start + len(re.sub(r"\s", "", match.source))
        position, covered = 0, set()
        for j, token in enumerate(piece.source):
            text = "" if token in self._special else token.replace("▁", "")
            if text and position < end and position + len(text) > start:
                covered.add(j)
            position += len(text)
        return covered


def _allowed(match: TermMatch) -> tuple[str, ...]:
    return match.allowed or (match.target,)
