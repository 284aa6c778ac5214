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

from forumtranslate.confidence import Confidence, combine, summarise, teacher_forced_logprobs
from forumtranslate.constrain import Constraint, SearchOptions, constrained_beam_search
from forumtranslate.errors import ForumTranslateError
from forumtranslate.models import LoadedModel
from forumtranslate.records import TermMatch

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


class Translator(ABC):
    """A backend: translates one batch; batching, order and resume happen around it."""

    options: DecodingOptions

    @abstractmethod
    def translate_batch(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> list[str]:
        """English for each source sentence, every term in ``terms`` honoured if hard."""

    def translate_batch_scored(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> tuple[list[str], list[Confidence | None]]:
        """``translate_batch`` with the model's confidence in each output (``confidence.py``);
        a backend that cannot score its output gives None."""
        return self.translate_batch(sources, terms), [None] * len(sources)

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


class TransformersTranslator(Translator):
    """MarianMT and NLLB through ``transformers``, decoded step by step with constraints."""

    def __init__(self, loaded: LoadedModel, options: DecodingOptions | None = None):
        self.loaded = loaded
        self.options = options or DecodingOptions()
        self.max_input_tokens = self.options.max_input_tokens or loaded.max_input_tokens
        self._target_ids: dict[str, tuple[int, ...]] = {}
        self._word_continuation = self._glue_tokens()

    # -- tokens ---------------------------------------------------------------------------

    def count_tokens(self, sources: Sequence[str]) -> list[int]:
        encoded = self.loaded.tokenizer(list(sources), add_special_tokens=True)["input_ids"]
        return [len(ids) for ids in encoded]

    def _count_one(self, text: str) -> int:
        return self.count_tokens([text])[0]

    def target_ids(self, text: str) -> tuple[int, ...]:
        """Token ids of ``text`` on the target side, as a mid-sentence word sequence."""
        if text not in self._target_ids:
            ids = self.loaded.tokenizer(text_target=text, add_special_tokens=False)["input_ids"]
            self._target_ids[text] = tuple(ids)
        return self._target_ids[text]

    def _glue_tokens(self) -> Any:
        """Mark vocabulary pieces that continue the previous word (no leading "▁")."""
        import torch

        tokenizer = self.loaded.tokenizer
        size = self.loaded.model.config.vocab_size
        pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
        special = set(tokenizer.all_special_ids)
        glue = [
            i not in special and bool(p) and not p.startswith("▁") and p[0].isalnum()
            for i, p in enumerate(pieces)
        ]
        return torch.tensor(glue, dtype=torch.bool)

    # -- decoding -------------------------------------------------------------------------

    def translate_batch(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> list[str]:
        return self.translate_batch_scored(sources, terms)[0]

    def translate_batch_scored(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> tuple[list[str], list[Confidence | None]]:
        limit = self.max_input_tokens
        pieces = [
            piece
            for i, (text, found) in enumerate(zip(sources, terms))
            for piece in split_to_fit(text, found, self._count_one, limit, i, self._terms_fit)
        ]
        token_ids = self._decode([p.text for p in pieces], [p.terms for p in pieces])
        texts = self.loaded.tokenizer.batch_decode(token_ids, skip_special_tokens=True)
        scored = self._confidence([p.text for p in pieces], token_ids)
        joined: list[list[str]] = [[] for _ in sources]
        parts: list[list[Confidence | None]] = [[] for _ in sources]
        for piece, text, confidence in zip(pieces, texts, scored):
            joined[piece.sentence].append(text.strip())
            parts[piece.sentence].append(confidence)
        return [" ".join(part for part in done if part) for done in joined], [
            combine(p) for p in parts
        ]

    def _confidence(
        self, texts: list[str], token_ids: Sequence[Sequence[int]]
    ) -> list[Confidence | None]:
        """The model's log-probability of the tokens it decoded (``confidence.py``), less the
        forced target-language token."""
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
        term_tokens = sum(max(len(self.target_ids(f)) for f in term_forms(m)) for m in terms)
        need = first + self.options.length_extra + self._count_one(text) + term_tokens
        return need <= self.loaded.max_output_tokens

    def _decode(self, texts: list[str], terms: Sequence[Sequence[TermMatch]]) -> list[list[int]]:
        import torch

        loaded, options = self.loaded, self.options
        tokenizer, model = loaded.tokenizer, loaded.model
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=True)
        source_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        hard = options.terms == "hard"
        constraints = [
            [
                Constraint(tuple(self.target_ids(f) for f in term_forms(m)), label=m.entry_id)
                for m in found
            ]
            if hard
            else []
            for found in terms
        ]
        blocked = [
            [self.target_ids(a) for m in found for a in m.avoid if self.target_ids(a)]
            if hard
            else []
            for found in terms
        ]
        first = 1 if loaded.forced_first_id is not None else 0
        max_new = [  # never past the decoder's position embeddings
            min(
                loaded.max_output_tokens,
                first
                + math.ceil(options.length_ratio * n)
                + options.length_extra
                + sum(max(len(alt) for alt in c.alternatives) for c in cs),
            )
            for n, cs in zip(source_lengths, constraints)
        ]
        config = model.config
        search = SearchOptions(
            beam_size=options.beam_size,
            eos_id=config.eos_token_id,
            start_id=config.decoder_start_token_id,
            forced_first_id=loaded.forced_first_id,
            banned_ids=(config.pad_token_id,),
            length_penalty=options.length_penalty,
            eos_at_limit=getattr(model.generation_config, "forced_eos_token_id", None) is not None,
            exact_length=options.exact_length,
        )
        with torch.inference_mode():
            stepper = DecoderStepper(model, encoded, options.beam_size, loaded.device)
            results = constrained_beam_search(
                stepper.step,
                stepper.reorder,
                search,
                constraints,
                max_new,
                blocked=blocked,
                word_continuation=self._word_continuation,
            )
        return results

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
