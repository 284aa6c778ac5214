"""The CTranslate2 backend: the same models, converted once, decoded by a fast C++ engine.

Conversion, its cache, loading and the shortlist's ``vmap.txt`` are ``ct2convert``'s; this
module holds the decode call and what it does with the glossary. With a shortlist the model
decodes with ``use_vmap=True`` over the list's pieces; the transformers backend slices its
output projection to the same list.

Hard glossary constraints. CTranslate2 has no lexical constraints (OpenNMT/CTranslate2 #739,
#1893); it returns attention vectors and can continue a target prefix. The method, per
sentence with glossary terms:

1. Decode as usual, with the attention vectors (they come at no measurable cost).
2. If the text holds every term occurrence (``glossary.check_terms``, the function that
   scores the run) and none of the renderings the glossary marks "avoid", keep it.
3. Otherwise edit the hypothesis tokens: an avoided rendering of a term ("economic
   safety") is replaced by the approved form; each occurrence still missing goes where the
   model rendered it: the target position attending most to the term's source tokens, at
   the start of its word, replacing the run of tokens aligned to the term (the model's own
   rendering). An occurrence already present is never split or removed, and a form is
   never put before a piece that would glue onto its last word.

The guarantee. Every form is inserted as its own token sequence, starting with "▁" (a new
word) and followed by the start of a word or the end, so it stays whole on word
boundaries; the edited text is checked with ``check_terms``. Should a check fail (a
pathological tokenisation), the fallback holds by construction: the whole hypothesis
followed by the missing terms, and, for a term whose tokens do not decode back to it (a
character outside the target vocabulary), the text followed by the term as text. So every
occurrence of every term comes out, for any model, beam size and batch; ``enforce_terms``
checks it once more before it returns. Each term says how it got there: ``decoded`` (the
model wrote it), ``edited`` (put in as above) or ``appended`` (the fallback), so term
accuracy can be reported as the model wrote it. Which pieces glue onto a word is decided by
what they decode to (``wordpieces``), the rule the transformers backend uses.

The cost. The same single decode as ``--terms off`` plus a little Python per sentence that
misses a term: there is no second decode. The obvious alternative, decoding again with the
edited hypothesis as ``target_prefix`` so that the model writes the rest after the term,
was measured and dropped: CTranslate2 runs a target prefix through the decoder at about the
cost of generating it (on the opus-mt shape, beam 4, a 59-token prefix of 60 costs as much
as decoding all 60), so it doubled the time of every sentence that missed a term: 2.4 times
the unconstrained time with random weights, where nearly every term is missing.
``eval/bench_backends.py`` measures what hard constraints cost.

What differs from the transformers backend, whose beam search enforces the terms while
decoding: the words around an inserted term are the model's, written without the term in
view (a good model usually writes the term itself, and where it does not, its rendering is
what the term replaces); avoided renderings are replaced after decoding rather than
blocked during it.

Batches. One planned batch is decoded in ``inter_threads`` parts that CTranslate2 runs in
parallel, each part a run of sentences of similar length limits. A part's limit is its
longest sentence's; each sentence is then cut to its own limit (the transformers
backend's, less the terms' tokens, which the edits add back). So a greedy translation is
the same alone or in any batch; with a beam, a sentence that runs into its length limit
(only a degenerate model's do) can differ with its neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from forumtranslate.confidence import Confidence, summarise
from forumtranslate.ct2convert import CT2Model, load_ct2_model, versions
from forumtranslate.errors import ForumTranslateError
from forumtranslate.models import CAUSAL_TYPES
from forumtranslate.records import TermMatch
from forumtranslate.termedit import Hypothesis, SourcePiece, TermEditor
from forumtranslate.translate import (
    DecodingOptions,
    ModelTranslator,
    Translation,
    plain_how,
)


def from_run_config(config: Any) -> CT2Translator:
    """The ``ct2`` entry of ``run.BACKENDS``: load the model a ``RunConfig`` names."""
    from forumtranslate.run import shortlist_forms

    if config.dtype != "float32":
        raise ForumTranslateError(
            "--dtype is for the transformers backend; with ct2 use --compute-type"
        )
    model = load_ct2_model(
        config.model,
        revision=config.revision,
        device=config.device,
        compute_type=config.compute_type,
        inter_threads=config.inter_threads,
        intra_threads=config.intra_threads,
        shortlist=config.decoding.shortlist,
        forms=shortlist_forms(config),
    )
    if model.family in CAUSAL_TYPES.values():
        from forumtranslate.ct2_causal import CT2CausalTranslator

        return CT2CausalTranslator(model, config.decoding, config.context_sentences)
    if config.context_sentences:
        raise ForumTranslateError("--context is for decoder-only models (Qwen3, Gemma 3, ...)")
    return CT2Translator(model, config.decoding)


class CT2Translator(ModelTranslator):
    """MarianMT and NLLB through CTranslate2, with the glossary enforced as described above."""

    def __init__(self, model: CT2Model, options: DecodingOptions | None = None):
        self.model = model
        self.options = options or DecodingOptions()
        self.max_input_tokens = self.options.max_input_tokens or model.max_input_tokens
        self.editor = TermEditor(model.tokenizer)

    # -- tokens ---------------------------------------------------------------------------

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def target_tokens(self, text: str) -> tuple[str, ...]:
        return self.editor.target_tokens(text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        return self.editor.detokenize(tokens)

    def is_glue(self, token: str) -> bool:
        return self.editor.is_glue(token)

    # -- decoding -------------------------------------------------------------------------

    def translate_pieces(
        self,
        texts: list[str],
        terms: Sequence[Sequence[TermMatch]],
        context: Sequence[Sequence[str]] = (),
    ) -> list[Translation]:
        hypotheses = self._decode(texts, terms)
        if self.options.confidence:
            scored = self._confidence(texts, hypotheses)
        else:
            scored = [None] * len(hypotheses)
        return [
            Translation(h.text, h.how or plain_how(h.text, found), confidence)
            for h, found, confidence in zip(hypotheses, terms, scored)
        ]

    def _decode(self, texts: list[str], terms: Sequence[Sequence[TermMatch]]) -> list[Hypothesis]:
        options, tokenizer = self.options, self.model.tokenizer
        hard = options.terms == "hard"
        encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
        pieces = []
        for text, ids, found in zip(texts, encoded, terms):
            # The transformers backend's limit without the terms' tokens: ratio × source
            # tokens + extra; a final EOS that the model forces is not a token here.
            limit = self.length_limit(len(ids)) - (1 if self.model.eos_at_limit else 0)
            pieces.append(
                SourcePiece(
                    text, tokenizer.convert_ids_to_tokens(ids), tuple(found) if hard else (), limit
                )
            )
        want_attention = any(p.terms for p in pieces)
        results = self._generate(pieces, want_attention)
        hypotheses = []
        for piece, (tokens, attention) in zip(pieces, results):
            tokens = tokens[: piece.limit]
            if piece.terms:
                hypothesis = self.enforce_terms(piece, tokens, attention)
            else:
                hypothesis = Hypothesis(tuple(tokens), self.detokenize(tokens))
            hypotheses.append(replace(hypothesis, decoded=tuple(tokens)))
        return hypotheses

    def _confidence(
        self, texts: Sequence[str], hypotheses: Sequence[Hypothesis]
    ) -> list[Confidence | None]:
        """The model's log-probability of each piece's decoded tokens (``confidence.py``):
        CTranslate2's ``score_batch``, the target-language token and EOS left out."""
        tokenizer, lang = self.model.tokenizer, list(self.model.target_prefix)
        scored = [k for k, h in enumerate(hypotheses) if h.decoded]
        out: list[Confidence | None] = [None] * len(hypotheses)
        if not scored:
            return out
        encoded = tokenizer([texts[k] for k in scored], add_special_tokens=True)["input_ids"]
        results = self.model.translator.score_batch(
            [tokenizer.convert_ids_to_tokens(ids) for ids in encoded],
            [lang + list(hypotheses[k].decoded) for k in scored],
            max_input_length=0,
            offset=len(lang),
        )
        for k, result in zip(scored, results):
            tokens = hypotheses[k].decoded
            out[k] = summarise(list(result.log_probs)[: len(tokens)], tokens)
        return out

    def _generate(
        self, pieces: Sequence[SourcePiece], attention: bool
    ) -> list[tuple[list[str], list[list[float]] | None]]:
        """Decode the batch in ``inter_threads`` parts that CTranslate2 runs in parallel.

        Parts are cut from the pieces ordered by length limit, and each part's limit is its
        longest piece's, so a part of short sentences stops early; each piece is then cut to
        its own limit.
        """
        model = self.model
        lang = list(model.target_prefix)
        order = sorted(range(len(pieces)), key=lambda i: (pieces[i].limit, i))
        parts = max(1, min(model.threads.get("inter", 1), len(pieces)))
        size = math.ceil(len(pieces) / parts)
        calls = []
        for first in range(0, len(order), size):
            members = order[first : first + size]
            length = len(lang) + max(pieces[i].limit for i in members)
            results = model.translator.translate_batch(
                [pieces[i].source for i in members],
                target_prefix=[lang] * len(members) if lang else None,
                asynchronous=True,
                beam_size=self.options.beam_size,
                length_penalty=self.options.length_penalty,
                max_input_length=0,  # long sentences are split before, never truncated
                max_decoding_length=length,
                min_decoding_length=length if self.options.exact_length else 1,
                suppress_sequences=[list(s) for s in model.suppressed] or None,
                return_attention=attention,
                use_vmap=model.shortlist is not None,
            )
            calls.append((members, results))
        out: list[tuple[list[str], list[list[float]] | None]] = [([], None)] * len(pieces)
        for members, results in calls:
            for i, pending in zip(members, results):
                result = pending.result()
                tokens = list(result.hypotheses[0])[len(lang) :]
                out[i] = (tokens, result.attention[0][len(lang) :] if attention else None)
        return out

    def enforce_terms(
        self, piece: SourcePiece, tokens: list[str], attention: list[list[float]] | None
    ) -> Hypothesis:
        """The hypothesis with every term of ``piece`` in it (``termedit``)."""
        return self.editor.enforce(piece, tokens, attention)

    def signature(self) -> dict[str, Any]:
        signature: dict[str, Any] = {
            "backend": "ct2",
            "model": self.model.name,
            "revision": self.model.revision,
            "family": self.model.family,
            "device": self.model.device,
            "compute_type": self.model.compute_type,
            "decoding": asdict(self.options),
            "max_input_tokens": self.max_input_tokens,
            "shortlist": self.model.shortlist.signature() if self.model.shortlist else None,
            "versions": versions(),
        }
        if self.model.weights is not None:  # weights from another commit than `revision`
            signature["weights"] = self.model.weights
        return signature
