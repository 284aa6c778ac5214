"""Translate sentences with a MarianMT or NLLB model, under the glossary's constraints.

``Translator`` is the one interface every backend implements: ``translate_batch`` turns a
batch of source sentences, each with the glossary terms found in it, into English. The
``transformers`` backend decodes with ``constrain.constrained_beam_search`` over the
model's own decoder, so the same loop serves ``--terms hard`` and ``--terms off``.

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

from forumtranslate.constrain import Constraint, SearchOptions, constrained_beam_search
from forumtranslate.errors import ForumTranslateError
from forumtranslate.glossary import TermMatcher, check_terms, contains_form
from forumtranslate.models import LoadedModel
from forumtranslate.records import TermMatch
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

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ForumTranslateError(f"beam size must be at least 1, got {self.beam_size}")
        if self.terms not in TERM_MODES:
            raise ForumTranslateError(f"--terms must be one of {', '.join(TERM_MODES)}")


@dataclass(frozen=True)
class Translation:
    """A sentence's English and, per glossary term, how the term got there.

    ``how`` is ``decoded`` (the model's search wrote it), ``edited`` (put in after decoding
    where the model rendered the term: the ct2 backend), ``appended`` (added after the
    sentence: the last-resort fallback) or ``missing``.
    """

    text: str
    how: tuple[str, ...] = ()


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
        """Like ``translate_batch``, with how each term got there. A backend that edits or
        appends terms says so by overriding this; by default every term found was decoded."""
        texts = self.translate_batch(sources, terms)
        return [Translation(text, plain_how(text, found)) for text, found in zip(texts, terms)]

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
) -> list[Piece]:
    """Cut ``text`` at the best boundary near its middle until every piece fits.

    Cuts are never made inside a glossary term, so each term lands whole in one piece. A
    piece that cannot be cut (a single over-long token run) is an error, not a truncation.
    """
    if count_tokens(text) <= max_tokens:
        return [Piece(sentence, text, tuple(terms))]
    cut = _best_cut(text, terms)
    if cut is None:
        raise ForumTranslateError(
            f"a sentence of {count_tokens(text)} tokens exceeds the model's {max_tokens} and "
            f"has no place to cut it: {text[:60]}…"
        )
    left = [t for t in terms if t.end <= cut]
    right = [
        TermMatch(**{**asdict(t), "start": t.start - cut, "end": t.end - cut})
        for t in terms
        if t.start >= cut
    ]
    return split_to_fit(text[:cut], left, count_tokens, max_tokens, sentence) + split_to_fit(
        text[cut:], right, count_tokens, max_tokens, sentence
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


class TransformersTranslator(Translator):
    """MarianMT and NLLB through ``transformers``, decoded step by step with constraints.

    With hard terms each batch is decoded as with ``--terms off`` first; a sentence whose
    text holds every term (and no avoided rendering) keeps that translation, so the
    constraints never touch what the model already does right. The others are decoded again
    with the constraints, which are tracked by the decoded text.
    """

    def __init__(self, loaded: LoadedModel, options: DecodingOptions | None = None):
        self.loaded = loaded
        self.options = options or DecodingOptions()
        self.max_input_tokens = self.options.max_input_tokens or loaded.max_input_tokens
        self._target_ids: dict[str, tuple[int, ...]] = {}
        self.pieces = PieceText.from_tokenizer(loaded.tokenizer, loaded.model.config.vocab_size)
        self._word_continuation = self._glue_tokens()
        self._filler = self._find_filler()

    # -- tokens ---------------------------------------------------------------------------

    def count_tokens(self, sources: Sequence[str]) -> list[int]:
        encoded = self.loaded.tokenizer(list(sources), add_special_tokens=True)["input_ids"]
        return [len(ids) for ids in encoded]

    def sentence_tokens(self, sources: Sequence[str]) -> list[int]:
        """Tokens of the sentences themselves, from which the length limits are set (a
        backend that adds a prompt counts it for batching, not here)."""
        return self.count_tokens(sources)

    def _count_one(self, text: str) -> int:
        return self.count_tokens([text])[0]

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
            for piece in split_to_fit(text, found, self._count_one, limit, sentence=i)
        ]
        decoded = self._translate_pieces(
            [p.text for p in pieces],
            [p.terms for p in pieces],
            [tuple(context[p.sentence]) if context else () for p in pieces],
        )
        joined: list[list[str]] = [[] for _ in sources]
        how: list[list[str]] = [[] for _ in sources]
        for piece, result in zip(pieces, decoded):
            joined[piece.sentence].append(result.text.strip())
            how[piece.sentence].extend(result.how)
        return [
            Translation(" ".join(part for part in parts if part), tuple(h))
            for parts, h in zip(joined, how)
        ]

    def _decode(self, texts: list[str], terms: Sequence[Sequence[TermMatch]]) -> list[list[int]]:
        """One search over ``texts`` (constrained with hard terms): the token ids."""
        return self._search(texts, terms, hard=self.options.terms == "hard")

    def _translate_pieces(
        self,
        texts: list[str],
        terms: Sequence[Sequence[TermMatch]],
        context: Sequence[Sequence[str]] = (),
    ) -> list[Translation]:
        """Plain beam search for all; then, with hard terms, constrained search for the
        sentences whose plain translation misses a term or writes an avoided rendering."""
        context = context or [() for _ in texts]
        plain_ids = self._search(texts, terms, hard=False, context=context)
        out = []
        redo = []
        for i, (ids, found) in enumerate(zip(plain_ids, terms)):
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
        return out

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

        loaded, options = self.loaded, self.options
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
            judges.append(TextJudge(TermMatcher(spellable), self.pieces))
            blocked.append(
                [
                    self.target_ids(v)
                    for m in found
                    for a in m.avoid
                    for v in {a, a[:1].upper() + a[1:], a.lower(), a.title(), a.upper()}
                    if self.target_ids(v)
                ]
            )
        first = 1 if loaded.forced_first_id is not None else 0
        max_new = [
            first
            + math.ceil(options.length_ratio * n)
            + options.length_extra
            + sum(max(len(alt) for alt in c.alternatives) + 1 for c in cs)
            + (1 if cs else 0)
            for n, cs in zip(source_lengths, constraints)
        ]
        search = self._search_options()
        with torch.inference_mode():
            stepper = self._stepper(texts, terms, max_new, context or [() for _ in texts])
            results = constrained_beam_search(
                stepper.step,
                stepper.reorder,
                search,
                constraints,
                max_new,
                blocked=blocked if hard else None,
                word_continuation=self._word_continuation,
                judges=judges if hard else None,
                filler=self._filler,
            )
        return results

    def _stepper(
        self,
        texts: list[str],
        terms: Sequence[Sequence[TermMatch]],
        max_new: Sequence[int],
        context: Sequence[Sequence[str]],
    ) -> Any:
        """What runs the model for one search: ``step`` and ``reorder`` (see ``constrain``)."""
        encoded = self.loaded.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=True
        )
        return DecoderStepper(
            self.loaded.model, encoded, self.options.beam_size, self.loaded.device
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

        return {
            "backend": "transformers",
            "model": self.loaded.name,
            "revision": self.loaded.revision,
            "family": self.loaded.family,
            "device": self.loaded.device,
            "dtype": self.loaded.dtype,
            "decoding": asdict(self.options),
            "max_input_tokens": self.max_input_tokens,
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        }


class DecoderStepper:
    """Runs the encoder once, then the decoder one token at a time with its cache.

    Rows are ``beam_size`` per sentence; ``reorder`` follows beam search's choices and drops
    the rows of sentences that have finished, so they cost nothing afterwards.
    """

    def __init__(self, model: Any, encoded: Any, beam_size: int, device: str):
        from transformers import DynamicCache, EncoderDecoderCache

        self.model = model
        input_ids = encoded["input_ids"].to(device)
        mask = encoded["attention_mask"].to(device)
        hidden = model.get_encoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
        self.hidden = hidden.repeat_interleave(beam_size, dim=0)
        self.mask = mask.repeat_interleave(beam_size, dim=0)
        self.cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        self.device = device

    def step(self, last_tokens: Any) -> Any:
        import torch

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
