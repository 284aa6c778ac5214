"""The core every translation backend shares: options, the interface, batching, splitting.

``Translator`` is the one interface every backend implements: ``translate_batch`` turns a
batch of source sentences, each with the glossary terms found in it, into English.
``ModelTranslator`` is the core of the model backends, which add model loading and one
decode call: ``hf`` (transformers, constrained beam search), ``causal`` (decoder-only
models), ``ct2`` and ``ct2_causal`` (CTranslate2, terms edited in after decoding).

Around the model: sentences are batched by a token budget over length-sorted input and put
back in order, and a sentence longer than the encoder accepts is cut at clause boundaries,
translated piece by piece and rejoined — never truncated.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from forumtranslate.confidence import Confidence, combine
from forumtranslate.errors import ForumTranslateError
from forumtranslate.glossary import check_terms
from forumtranslate.records import TermMatch
from forumtranslate.shortlist import DEFAULT_SIZE

TERM_MODES = ("hard", "off")
# Where a long sentence may be cut, best first: sentence ends, then clause marks, then spaces.
CUT_PREFERENCE = ("。！？!?", "；;：:", "、，,", " 　")


@dataclass(frozen=True)
class DecodingOptions:
    """Everything that changes the output; recorded in run.json."""

    beam_size: int = 4
    terms: str = "hard"
    max_batch_tokens: int = 4096  # padded source tokens × beam, per batch
    max_batch_sentences: int = 64
    length_ratio: float = 2.0  # max_new_tokens = ratio × source tokens + extra (+ term tokens)
    length_extra: int = 10
    length_penalty: float = 1.0
    max_input_tokens: int | None = None  # default: what the model accepts
    exact_length: bool = False  # benchmarks only: every sentence runs to its length limit
    shortlist: int = DEFAULT_SIZE  # target pieces kept by score (``shortlist``); 0: off
    confidence: bool = True  # score the output once more (``confidence.py``); off: faster

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ForumTranslateError(f"beam size must be at least 1, got {self.beam_size}")
        if self.terms not in TERM_MODES:
            raise ForumTranslateError(f"--terms must be one of {', '.join(TERM_MODES)}")
        if self.shortlist < 0:
            raise ForumTranslateError(f"--shortlist must be 0 (off) or more, not {self.shortlist}")


@dataclass(frozen=True)
class Translation:
    """A sentence's English and, per glossary term, how the term got there.

    ``how`` is ``decoded`` (the model's search wrote it), ``edited`` (put in after decoding
    where the model rendered the term: the ct2 backend), ``appended`` (added after the
    sentence: the last-resort fallback) or ``missing``. ``confidence`` is the model's own
    score of the tokens it decoded (``confidence.py``), None where the backend gives none.
    """

    text: str
    how: tuple[str, ...] = ()
    confidence: Confidence | None = None


def plain_how(text: str, terms: Sequence[TermMatch]) -> tuple[str, ...]:
    """``how`` for a text nothing was put into: what is there was decoded."""
    return tuple("decoded" if ok else "missing" for ok in check_terms(text, terms))


class Translator(ABC):
    """A backend: translates one batch; batching, order and resume happen around it."""

    options: DecodingOptions

    @abstractmethod
    def translate_batch(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> list[str]:
        """English for each source sentence, every term in ``terms`` honoured if hard."""

    def translate_batch_terms(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> list[Translation]:
        """Like ``translate_batch``, with how each term got there and the model's confidence
        in its output. A backend that edits or appends terms, or can score its output, says
        so by overriding this; by default every term found was decoded, and no confidence."""
        texts = self.translate_batch(sources, terms)
        return [Translation(text, plain_how(text, found)) for text, found in zip(texts, terms)]

    def translate_batch_scored(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> tuple[list[str], list[Confidence | None]]:
        """``translate_batch_terms`` as texts and their confidences (``confidence.py``)."""
        done = self.translate_batch_terms(sources, terms)
        return [t.text for t in done], [t.confidence for t in done]

    @abstractmethod
    def count_tokens(self, sources: Sequence[str]) -> list[int]:
        """Source tokens per sentence, for batching."""

    @abstractmethod
    def signature(self) -> dict[str, Any]:
        """Model id, revision, backend and options: what a run records."""

    def plan_batches(self, sources: Sequence[str]) -> list[list[int]]:
        """Indices of ``sources`` grouped into batches of similar length.

        Sorting by length keeps padding low; the plan depends only on the sentences and
        options, so a resumed run forms the same batches as an uninterrupted one.
        """
        lengths = self.count_tokens(sources)
        order = sorted(range(len(sources)), key=lambda i: (lengths[i], i))
        budget = self.options.max_batch_tokens
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order:
            longest = max([lengths[j] for j in current] + [lengths[i]])
            cost = longest * (len(current) + 1) * self.options.beam_size
            if current and (cost > budget or len(current) >= self.options.max_batch_sentences):
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    def translate(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]] | None = None
    ) -> list[str]:
        """Translate any number of sentences; the result is in input order."""
        terms = terms if terms is not None else [[] for _ in sources]
        out: list[str] = [""] * len(sources)
        for batch in self.plan_batches(sources):
            translated = self.translate_batch(
                [sources[i] for i in batch], [terms[i] for i in batch]
            )
            for i, text in zip(batch, translated):
                out[i] = text
        return out

    def translate_scored(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]] | None = None
    ) -> tuple[list[str], list[Confidence | None]]:
        """``translate`` with each output's confidence, in input order."""
        terms = terms if terms is not None else [[] for _ in sources]
        out: list[str] = [""] * len(sources)
        scores: list[Confidence | None] = [None] * len(sources)
        for batch in self.plan_batches(sources):
            translated, confidences = self.translate_batch_scored(
                [sources[i] for i in batch], [terms[i] for i in batch]
            )
            for i, text, confidence in zip(batch, translated, confidences):
                out[i], scores[i] = text, confidence
        return out, scores


class ModelTranslator(Translator):
    """The core every model backend shares; a backend adds model loading and one decode call.

    It owns what does not depend on the engine: counting tokens with the model's tokenizer,
    cutting a sentence the encoder cannot take into pieces and joining their English again
    (``split_to_fit``: never inside a term), the length limit, and collecting each term's
    ``how`` and the confidence per sentence. A backend supplies ``tokenizer``,
    ``max_input_tokens``, ``signature`` and ``translate_pieces``; term editing for a backend
    that decodes without constraints is ``termedit``; the word-boundary rule ``wordpieces``.
    """

    tokenizer: Any
    max_input_tokens: int

    @abstractmethod
    def translate_pieces(
        self,
        texts: list[str],
        terms: Sequence[Sequence[TermMatch]],
        context: Sequence[Sequence[str]],
    ) -> list[Translation]:
        """The backend's decode: each piece's English, how its terms got there and the
        model's confidence. ``terms`` are the piece's (constraints if ``terms`` is hard);
        ``context`` the preceding sentences, for a backend whose prompt shows them."""

    def translate_batch(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> list[str]:
        return [t.text for t in self.translate_batch_terms(sources, terms)]

    def translate_batch_terms(
        self,
        sources: Sequence[str],
        terms: Sequence[Sequence[TermMatch]],
        context: Sequence[Sequence[str]] | None = None,
    ) -> list[Translation]:
        """``context``: per source, the preceding sentences of its document, for a backend
        whose prompt can show them (``causal``); a seq2seq model has no use for it."""
        limit = self.max_input_tokens
        pieces = [
            piece
            for i, (text, found) in enumerate(zip(sources, terms))
            for piece in split_to_fit(text, found, self._count_one, limit, i, self._terms_fit)
        ]
        done = self.translate_pieces(
            [p.text for p in pieces],
            [p.terms for p in pieces],
            [tuple(context[p.sentence]) if context else () for p in pieces],
        )
        joined: list[list[str]] = [[] for _ in sources]
        how: list[list[str]] = [[] for _ in sources]
        parts: list[list[Confidence | None]] = [[] for _ in sources]
        for piece, result in zip(pieces, done):
            joined[piece.sentence].append(result.text.strip())
            how[piece.sentence].extend(result.how)
            parts[piece.sentence].append(result.confidence)
        return [
            Translation(" ".join(part for part in texts if part), tuple(h), combine(c))
            for texts, h, c in zip(joined, how, parts)
        ]

    def count_tokens(self, sources: Sequence[str]) -> list[int]:
        encoded = self.tokenizer(list(sources), add_special_tokens=True)["input_ids"]
        return [len(ids) for ids in encoded]

    def _count_one(self, text: str) -> int:
        """A sentence's own tokens, which the encoder limit applies to (``split_to_fit``)."""
        return self.count_tokens([text])[0]

    def _terms_fit(self, text: str, terms: Sequence[TermMatch]) -> bool:
        """Whether the decoder has room for a piece's terms; if not, it is cut further."""
        return True

    def length_limit(self, source_tokens: int) -> int:
        """Target tokens a piece may take before its terms' tokens: ``length_ratio`` ×
        source tokens + ``length_extra``, for every backend (their parity depends on it)."""
        return math.ceil(self.options.length_ratio * source_tokens) + self.options.length_extra


@dataclass(frozen=True)
class Piece:
    """A part of a source sentence short enough for the encoder, with its terms."""

    sentence: int
    text: str
    terms: tuple[TermMatch, ...] = field(default_factory=tuple)


def split_to_fit(
    text: str,
    terms: Sequence[TermMatch],
    count_tokens: Any,
    max_tokens: int,
    sentence: int = 0,
    fits: Any = None,
) -> list[Piece]:
    """Cut ``text`` at the best boundary near its middle until every piece fits.

    Cuts are never made inside a glossary term, so each term lands whole in one piece. A
    piece that cannot be cut (a single over-long token run) is an error, not a truncation.
    ``fits(text, terms)``, if given, must hold too: the room the terms need on the output.
    """
    too_long = count_tokens(text) > max_tokens
    if not too_long and (fits is None or fits(text, terms)):
        return [Piece(sentence, text, tuple(terms))]
    cut = _best_cut(text, terms)
    if cut is None:
        what = (
            f"of {count_tokens(text)} tokens exceeds the model's {max_tokens}"
            if too_long
            else "has more glossary terms than the model's output length holds"
        )
        raise ForumTranslateError(f"a sentence {what} and has no place to cut it: {text[:60]}…")
    left = [t for t in terms if t.end <= cut]
    right = [
        TermMatch(**{**asdict(t), "start": t.start - cut, "end": t.end - cut})
        for t in terms
        if t.start >= cut
    ]
    return split_to_fit(text[:cut], left, count_tokens, max_tokens, sentence, fits) + (
        split_to_fit(text[cut:], right, count_tokens, max_tokens, sentence, fits)
    )


def _best_cut(text: str, terms: Sequence[TermMatch]) -> int | None:
    inside_term = {i for t in terms for i in range(t.start + 1, t.end)}
    middle = len(text) / 2
    for marks in CUT_PREFERENCE:
        cuts = [i + 1 for i, ch in enumerate(text[:-1]) if ch in marks and i + 1 not in inside_term]
        if cuts:
            return min(cuts, key=lambda c: (abs(c - middle), c))
    cuts = [i for i in range(1, len(text)) if i not in inside_term]
    return min(cuts, key=lambda c: (abs(c - middle), c)) if cuts else None


# Names that lived here before the transformers backend had its own module: still
# importable from ``translate``, loaded only when asked for (``hf`` imports this module).
_MOVED = {
    "TransformersTranslator": "forumtranslate.hf",
    "DecoderStepper": "forumtranslate.hf",
    "TextJudge": "forumtranslate.constrain",
    "term_forms": "forumtranslate.constrain",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
