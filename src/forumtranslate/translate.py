"""Translate sentences with a MarianMT or NLLB model, under the glossary's constraints.

``Translator`` is the one interface every backend implements: ``translate_batch`` turns a
batch of source sentences, each with the glossary terms found in it, into English. The
``transformers`` backend decodes with ``constrain.constrained_beam_search`` over the
model's own decoder, so the same loop serves ``--terms hard`` and ``--terms off``.

With a shortlist (``shortlist``, on by default) each batch decodes over the list's pieces
for its source, every piece its constraints can force and the special tokens: the output
projection is sliced to them and the search works on positions in that list, mapped back
to vocabulary ids at the end.

Around the model: sentences are batched by a token budget over length-sorted input and put
back in order, and a sentence longer than the encoder accepts is cut at clause boundaries,
translated piece by piece and rejoined — never truncated.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from forumtranslate.confidence import Confidence, combine, summarise, teacher_forced_logprobs
from forumtranslate.constrain import Constraint, SearchOptions, constrained_beam_search
from forumtranslate.errors import ForumTranslateError
from forumtranslate.glossary import TermMatcher, check_terms, contains_form
from forumtranslate.models import LoadedModel
from forumtranslate.records import TermMatch
from forumtranslate.shortlist import DEFAULT_SIZE, Shortlist, build_shortlist
from forumtranslate.wordpieces import PieceText, decode_bytes

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


def term_forms(match: TermMatch) -> list[str]:
    """The English strings that satisfy a term: each allowed form, also capitalised."""
    forms: list[str] = []
    for form in match.allowed or (match.target,):
        for variant in (form, form[:1].upper() + form[1:]):
            if variant not in forms:
                forms.append(variant)
    return forms


class TextJudge:
    """What a hypothesis meets, read from its decoded text (``glossary.TermMatcher``).

    The search's ``memo`` is the hypothesis's bytes (``wordpieces.PieceText``), so a term
    counts however the model segmented or cased it, after a quote or a bracket.
    """

    def __init__(self, matcher: TermMatcher, pieces: PieceText):
        self.matcher = matcher
        self.pieces = pieces
        self._scans: dict[bytes, Any] = {}
        self._parents: dict[bytes, bytes] = {}
        self._verdicts: dict[bytes, tuple[tuple[bool, ...], bool, bool]] = {}

    def start(self) -> bytes:
        return b""

    def extend(self, memo: bytes, tokens: Sequence[int]) -> bytes:
        data = memo + self.pieces.data(tokens)
        self._parents.setdefault(data, memo)
        return data

    def verdict(self, memo: bytes) -> tuple[tuple[bool, ...], bool, bool]:
        found = self._verdicts.get(memo)
        if found is None:
            parent = self._scans.get(self._parents.get(memo, b""))
            scanned = self.matcher.scan(decode_bytes(memo), parent)
            self._scans[memo] = scanned
            found = self.matcher.verdict("", scanned)
            self._verdicts[memo] = found
        return found


class TransformersTranslator(ModelTranslator):
    """MarianMT and NLLB through ``transformers``, decoded step by step with constraints.

    With hard terms each batch is decoded as with ``--terms off`` first; a sentence whose
    text holds every term (and no avoided rendering) keeps that translation, so the
    constraints never touch what the model already does right. The others are decoded again
    with the constraints, which are tracked by the decoded text.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        options: DecodingOptions | None = None,
        forms: Sequence[str] = (),
        shortlist: Shortlist | None = None,
    ):
        """``forms``: the glossary's English forms, always in the shortlist; ``shortlist``:
        a ready-made list (benchmarks), else one is built when ``options.shortlist``."""
        self.loaded = loaded
        self.options = options or DecodingOptions()
        self.max_input_tokens = self.options.max_input_tokens or loaded.max_input_tokens
        self._target_ids: dict[str, tuple[int, ...]] = {}
        self.pieces = PieceText.from_tokenizer(loaded.tokenizer, loaded.model.config.vocab_size)
        self._word_continuation = self._glue_tokens()
        self._filler = self._find_filler()
        if shortlist is None and self.options.shortlist:
            shortlist = build_shortlist(
                loaded.tokenizer, loaded.folder, self.options.shortlist, forms
            )
        self.shortlist = shortlist
        self._piece_ids: dict[str, int | None] = {}
        self.vocabulary_size: int | None = None  # the last batch's, with a shortlist

    # -- tokens ---------------------------------------------------------------------------

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    def sentence_tokens(self, sources: Sequence[str]) -> list[int]:
        """Tokens of the sentences themselves, from which the length limits are set (a
        backend that adds a prompt counts it for batching, not here)."""
        return self.count_tokens(sources)

    def target_ids(self, text: str) -> tuple[int, ...]:
        """Token ids of ``text`` on the target side, as a word sequence that starts a new
        word (with its leading space where the tokenizer spells one, as byte-level BPE does)."""
        if text not in self._target_ids:
            tokenizer = self.loaded.tokenizer
            ids: tuple[int, ...] = ()
            for variant in (text, " " + text):
                ids = tuple(tokenizer(text_target=variant, add_special_tokens=False)["input_ids"])
                if ids and not self.pieces.glue[ids[0]]:
                    break
            self._target_ids[text] = ids
        return self._target_ids[text]

    def _glue_tokens(self) -> Any:
        """Mark vocabulary pieces that continue the previous word (``wordpieces``' rule)."""
        import torch

        return torch.tensor(self.pieces.glue, dtype=torch.bool)

    def _find_filler(self) -> int | None:
        """A piece that separates words (a comma), for the plans that finish a sentence."""
        wanted = [b",", b" ,", b";", b" ;", b".", b" .", b" "]
        for want in wanted:
            for i, piece in enumerate(self.pieces.pieces):
                if piece == want:
                    return i
        return None

    def spellable(self, form: str) -> bool:
        """Whether the form's tokens decode back to it, as whole words."""
        ids = self.target_ids(form)
        return bool(ids) and contains_form(self.pieces.text(ids), form)

    # -- decoding -------------------------------------------------------------------------

    def translate_pieces(
        self,
        texts: list[str],
        terms: Sequence[Sequence[TermMatch]],
        context: Sequence[Sequence[str]],
    ) -> list[Translation]:
        decoded, token_ids = self._translate_pieces(texts, terms, context)
        if not self.options.confidence:
            return decoded
        scored = self._confidence(texts, token_ids)
        return [replace(t, confidence=c) for t, c in zip(decoded, scored)]

    def _confidence(
        self, texts: list[str], token_ids: Sequence[Sequence[int]]
    ) -> list[Confidence | None]:
        """The model's log-probability of the tokens it decoded (``confidence.py``), less the
        forced target-language token; a term appended after decoding is not among them."""
        loaded, config = self.loaded, self.loaded.model.config
        encoded = loaded.tokenizer(texts, return_tensors="pt", padding=True)
        logprobs = teacher_forced_logprobs(
            loaded.model,
            encoded,
            token_ids,
            config.decoder_start_token_id,
            config.pad_token_id,
            loaded.device,
        )
        skip = 1 if loaded.forced_first_id is not None else 0
        return [
            summarise(values[skip:], loaded.tokenizer.convert_ids_to_tokens(list(ids[skip:])))
            for ids, values in zip(token_ids, logprobs)
        ]

    def _terms_fit(self, text: str, terms: Sequence[TermMatch]) -> bool:
        """Whether the decoder's positions hold the terms of a piece and a translation as
        long as its source; if not, the piece is cut further (``split_to_fit``)."""
        if self.options.terms != "hard" or not terms:
            return True
        first = 1 if self.loaded.forced_first_id is not None else 0
        # the same room as ``_search``'s length limit gives the terms
        term_tokens = (
            sum(max(len(self.target_ids(f)) for f in term_forms(m)) + 1 for m in terms) + 1
        )
        need = first + self.options.length_extra + self._count_one(text) + term_tokens
        return need <= self.loaded.max_output_tokens

    def _decode(self, texts: list[str], terms: Sequence[Sequence[TermMatch]]) -> list[list[int]]:
        """One search over ``texts`` (constrained with hard terms): the token ids."""
        return self._search(texts, terms, hard=self.options.terms == "hard")

    def _translate_pieces(
        self,
        texts: list[str],
        terms: Sequence[Sequence[TermMatch]],
        context: Sequence[Sequence[str]] = (),
    ) -> tuple[list[Translation], list[list[int]]]:
        """Plain beam search for all; then, with hard terms, constrained search for the
        sentences whose plain translation misses a term or writes an avoided rendering.
        Also the token ids each text was decoded from (an appended term is not among them)."""
        context = context or [() for _ in texts]
        token_ids = self._search(texts, terms, hard=False, context=context)
        out = []
        redo = []
        for i, (ids, found) in enumerate(zip(token_ids, terms)):
            text = self._text(ids)
            matcher = TermMatcher(found)
            if self.options.terms == "hard" and (
                not all(matcher.found(text)) or matcher.avoided(text)
            ):
                redo.append(i)
            out.append(Translation(text, plain_how(text, found)))
        if redo:
            forced = self._search(
                [texts[i] for i in redo],
                [terms[i] for i in redo],
                hard=True,
                context=[context[i] for i in redo],
            )
            for i, ids in zip(redo, forced):
                out[i] = self._checked(self._text(ids), terms[i])
                token_ids[i] = ids
        return out, token_ids

    def _text(self, ids: Sequence[int]) -> str:
        """The translation that decoded token ids spell."""
        return self.loaded.tokenizer.decode(ids, skip_special_tokens=True)

    def _checked(self, text: str, found: Sequence[TermMatch]) -> Translation:
        """The constrained search's text; should it miss a term (a form the vocabulary
        cannot spell), the term is appended after it, and says so."""
        ok = check_terms(text, found)
        if all(ok):
            return Translation(text, ("decoded",) * len(found))
        missing = [m.target for m, hit in zip(found, ok) if not hit]
        text = " ".join([text.strip(), *missing]).strip()
        how = tuple("decoded" if hit else "appended" for hit in ok)
        if not all(check_terms(text, found)):
            raise AssertionError(f"glossary constraint lost in {text!r}")
        return Translation(text, how)

    def _search(
        self,
        texts: list[str],
        terms: Sequence[Sequence[TermMatch]],
        hard: bool,
        context: Sequence[Sequence[str]] = (),
    ) -> list[list[int]]:
        """One batched search; ``terms`` are the sentences' terms (constraints only if
        ``hard``; a backend whose prompt shows the glossary reads them either way)."""
        import torch

        loaded = self.loaded
        source_lengths = self.sentence_tokens(texts)
        constraints = []
        judges = []
        blocked = []
        for found in terms if hard else [[] for _ in texts]:
            spellable = [m for m in found if any(self.spellable(f) for f in term_forms(m))]
            constraints.append(
                [
                    Constraint(
                        tuple(self.target_ids(f) for f in term_forms(m) if self.spellable(f)),
                        label=m.entry_id,
                    )
                    for m in spellable
                ]
            )
            judges.append(TermMatcher(spellable))
            blocked.append(
                [
                    self.target_ids(v)
                    for m in found
                    for a in m.avoid
                    for v in {a, a[:1].upper() + a[1:], a.lower(), a.title(), a.upper()}
                    if self.target_ids(v)
                ]
            )
        search = self._search_options()
        special = {
            "eos": search.eos_id,
            "start": search.start_id,
            "first": search.forced_first_id,
            "filler": self._filler,
            **{f"banned-{k}": b for k, b in enumerate(search.banned_ids)},
        }
        vocab = self._batch_vocabulary(texts, constraints, special)
        pieces, glue = self.pieces, self._word_continuation
        if vocab is not None:
            local = {g: i for i, g in enumerate(vocab.tolist())}
            constraints = [
                [
                    Constraint(tuple(tuple(local[t] for t in a) for a in c.alternatives), c.label)
                    for c in cs
                ]
                for cs in constraints
            ]
            blocked = [
                [tuple(local[t] for t in seq) for seq in seqs if all(t in local for t in seq)]
                for seqs in blocked
            ]
            chosen = vocab.tolist()
            pieces = PieceText(
                tuple(self.pieces.pieces[g] for g in chosen),
                tuple(self.pieces.glue[g] for g in chosen),
            )
            glue = glue[vocab]
            special = {k: (None if v is None else local[v]) for k, v in special.items()}
        judges = [TextJudge(matcher, pieces) for matcher in judges]
        first = 1 if loaded.forced_first_id is not None else 0
        max_new = [  # never past the decoder's position embeddings
            min(
                loaded.max_output_tokens,
                first
                + self.length_limit(n)
                + sum(max(len(alt) for alt in c.alternatives) + 1 for c in cs)
                + (1 if cs else 0),
            )
            for n, cs in zip(source_lengths, constraints)
        ]
        search = replace(  # the same ids, local to the batch's vocabulary where it has one
            search,
            eos_id=special["eos"],
            start_id=special["start"],
            forced_first_id=special["first"],
            banned_ids=tuple(special[f"banned-{k}"] for k in range(len(search.banned_ids))),
        )
        with torch.inference_mode():
            stepper = self._stepper(texts, terms, max_new, context or [() for _ in texts], vocab)
            results = constrained_beam_search(
                stepper.step,
                stepper.reorder,
                search,
                constraints,
                max_new,
                blocked=blocked if hard else None,
                word_continuation=glue,
                judges=judges if hard else None,
                filler=special["filler"],
            )
        if vocab is not None:
            chosen = vocab.tolist()
            results = [[chosen[t] for t in ids] for ids in results]
        return results

    def _batch_vocabulary(
        self, texts: list[str], constraints: Sequence[Sequence[Constraint]], special: dict
    ) -> Any:
        """The global ids the batch decodes over (sorted), or None without a shortlist:
        the shortlist for these source pieces, the special tokens and every piece the
        batch's constraints can force (so a constraint never needs a dropped piece)."""
        import torch

        if self.shortlist is None:
            return None
        tokenizer = self.loaded.tokenizer
        input_ids = {
            i for ids in tokenizer(texts, add_special_tokens=True)["input_ids"] for i in ids
        }
        sources = tokenizer.convert_ids_to_tokens(sorted(input_ids))
        ids = {self._piece_id(p) for p in self.shortlist.candidates(sources)}
        ids.discard(None)
        ids.update(v for v in special.values() if v is not None)
        ids.update(t for cs in constraints for c in cs for alt in c.alternatives for t in alt)
        self.vocabulary_size = len(ids)
        return torch.tensor(sorted(ids), dtype=torch.long)

    def _piece_id(self, piece: str) -> int | None:
        if piece not in self._piece_ids:
            i = self.loaded.tokenizer.convert_tokens_to_ids(piece)
            ok = isinstance(i, int) and 0 <= i < len(self.pieces.pieces)
            self._piece_ids[piece] = i if ok else None
        return self._piece_ids[piece]

    def _stepper(
        self,
        texts: list[str],
        terms: Sequence[Sequence[TermMatch]],
        max_new: Sequence[int],
        context: Sequence[Sequence[str]],
        vocab: Any = None,
    ) -> Any:
        """What runs the model for one search: ``step`` and ``reorder`` (see ``constrain``),
        over the ``vocab`` ids only where a shortlist gives them."""
        encoded = self.loaded.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=True
        )
        return DecoderStepper(
            self.loaded.model, encoded, self.options.beam_size, self.loaded.device, vocab
        )

    def _search_options(self) -> SearchOptions:
        loaded, options = self.loaded, self.options
        model = loaded.model
        config = model.config
        return SearchOptions(
            beam_size=options.beam_size,
            eos_id=config.eos_token_id,
            start_id=config.decoder_start_token_id,
            forced_first_id=loaded.forced_first_id,
            banned_ids=(config.pad_token_id,),
            length_penalty=options.length_penalty,
            eos_at_limit=getattr(model.generation_config, "forced_eos_token_id", None) is not None,
            exact_length=options.exact_length,
        )

    def signature(self) -> dict[str, Any]:
        import torch
        import transformers

        signature: dict[str, Any] = {
            "backend": "transformers",
            "model": self.loaded.name,
            "revision": self.loaded.revision,
            "family": self.loaded.family,
            "device": self.loaded.device,
            "dtype": self.loaded.dtype,
            "decoding": asdict(self.options),
            "max_input_tokens": self.max_input_tokens,
            "shortlist": self.shortlist.signature() if self.shortlist else None,
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        }
        if self.loaded.weights is not None:  # weights from another commit than `revision`
            signature["weights"] = self.loaded.weights
        return signature


class DecoderStepper:
    """Runs the encoder once, then the decoder one token at a time with its cache.

    Rows are ``beam_size`` per sentence; ``reorder`` follows beam search's choices and drops
    the rows of sentences that have finished, so they cost nothing afterwards.
    """

    def __init__(self, model: Any, encoded: Any, beam_size: int, device: str, vocab: Any = None):
        """``vocab``: the global ids of a shortlist; the output projection is sliced to
        them and the step's ids are positions in it."""
        from transformers import DynamicCache, EncoderDecoderCache

        self.model = model
        input_ids = encoded["input_ids"].to(device)
        mask = encoded["attention_mask"].to(device)
        hidden = model.get_encoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
        self.hidden = hidden.repeat_interleave(beam_size, dim=0)
        self.mask = mask.repeat_interleave(beam_size, dim=0)
        self.cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        self.device = device
        self.vocab = None if vocab is None else vocab.to(device)
        if self.vocab is not None:
            self.weight = model.get_output_embeddings().weight.index_select(0, self.vocab)
            bias = getattr(model, "final_logits_bias", None)
            self.bias = None if bias is None else bias[0].index_select(0, self.vocab)

    def step(self, last_tokens: Any) -> Any:
        import torch

        if self.vocab is not None:
            out = self.model.get_decoder()(
                input_ids=self.vocab[last_tokens.to(self.device)][:, None],
                encoder_hidden_states=self.hidden,
                encoder_attention_mask=self.mask,
                cache=self.cache,
                use_cache=True,
            )
            self.cache = out.cache
            hidden = out.last_hidden_state[:, -1, :]
            logits = torch.nn.functional.linear(hidden, self.weight, self.bias)
            return torch.log_softmax(logits.float(), dim=-1).cpu()
        out = self.model(
            encoder_outputs=(self.hidden,),
            attention_mask=self.mask,
            decoder_input_ids=last_tokens.to(self.device)[:, None],
            cache=self.cache,
            use_cache=True,
        )
        self.cache = out.cache
        return torch.log_softmax(out.logits[:, -1, :].float(), dim=-1).cpu()

    def reorder(self, rows: Any) -> None:
        rows = rows.to(self.device)
        self.cache.reorder_cache(rows)
        self.hidden = self.hidden.index_select(0, rows)
        self.mask = self.mask.index_select(0, rows)
