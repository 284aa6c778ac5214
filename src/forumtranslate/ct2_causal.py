"""Decoder-only models through CTranslate2's ``Generator``, with the ct2 backend's term editing.

What this module holds is loading-free glue: the prompt comes from ``causal.Prompter`` (the
transformers path's), the converted model from ``ct2convert.load_ct2_model`` (a ``Generator`` for
these families), the term editing from ``termedit.TermEditor.enforce``. The Generator
returns no attention, so a missing term is placed where the term stands in the sentence,
proportionally (``TermEditor.place``'s fallback); the guarantee is unchanged. The answer
is read by ``causal.clean_translation``; a term the cleaning removes is appended, and says so.

Not supported here: ``--context`` (the prompt's preceding sentences), which needs the
document order the core's piece path carries only for the transformers backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from forumtranslate.causal import Prompter, PromptTemplate, clean_translation, stop_ids
from forumtranslate.ct2 import CT2Translator
from forumtranslate.ct2convert import CT2Model
from forumtranslate.errors import ForumTranslateError
from forumtranslate.glossary import check_terms
from forumtranslate.records import TermMatch
from forumtranslate.termedit import Hypothesis, SourcePiece
from forumtranslate.translate import DecodingOptions


class CT2CausalTranslator(CT2Translator):
    """A converted decoder-only model: the prompt, one ``generate_batch``, term editing."""

    def __init__(
        self, model: CT2Model, options: DecodingOptions | None = None, context_sentences: int = 0
    ):
        if context_sentences:
            raise ForumTranslateError(
                "--context is not supported by the ct2 backend yet; use --backend transformers"
            )
        super().__init__(model, options)
        tokenizer = model.tokenizer
        self.context_sentences = 0
        self.eos_id, self.other_stops = stop_ids(tokenizer, model.generation_eos)
        limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
        context = min(limit, model.max_input_tokens) if limit else model.max_input_tokens
        self.template = PromptTemplate.for_tokenizer(tokenizer, model.family)
        self.prompter = Prompter(tokenizer, self.template, context, self.eos_id, self.other_stops)
        self.max_input_tokens = self.prompter.input_limit(self.options)

    def count_tokens(self, sources: Sequence[str]) -> list[int]:
        return self.prompter.count_tokens(sources)

    def _count_one(self, text: str) -> int:
        return self.prompter.sentence_tokens([text])[0]

    def _decode(self, texts: list[str], terms: Sequence[Sequence[TermMatch]]) -> list[Hypothesis]:
        options, tokenizer = self.options, self.model.tokenizer
        hard = options.terms == "hard"
        pieces, prompts = [], []
        for text, found, n in zip(texts, terms, self.prompter.sentence_tokens(texts)):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            limit = self.length_limit(n)
            pieces.append(
                SourcePiece(
                    text, tokenizer.convert_ids_to_tokens(ids), tuple(found) if hard else (), limit
                )
            )
            prompts.append(self.prompter.prompt_ids(text, found))
        self.prompter.check_fits(texts, prompts, [p.limit for p in pieces])
        outputs = self._generate_from(prompts, pieces)
        hypotheses = []
        for piece, tokens in zip(pieces, outputs):
            tokens = tokens[: piece.limit]
            if piece.terms:
                hypothesis = self.enforce_terms(piece, tokens, None)
            else:
                hypothesis = Hypothesis(tuple(tokens), self.detokenize(tokens))
            hypotheses.append(self._cleaned(piece, hypothesis))
        return hypotheses

    def _cleaned(self, piece: SourcePiece, hypothesis: Hypothesis) -> Hypothesis:
        """The answer without chatter; a term that went with the chatter is appended."""
        text = clean_translation(hypothesis.text)
        if not piece.terms:
            return Hypothesis(hypothesis.tokens, text, hypothesis.how)
        ok = check_terms(text, piece.terms)
        if all(ok):
            return Hypothesis(hypothesis.tokens, text, hypothesis.how)
        text = " ".join([text, *(m.target for m, hit in zip(piece.terms, ok) if not hit)])
        how = tuple(h if hit else "appended" for h, hit in zip(hypothesis.how, ok))
        return Hypothesis(hypothesis.tokens, text.strip(), how)

    def _generate_from(
        self, prompts: list[list[int]], pieces: list[SourcePiece]
    ) -> list[list[str]]:
        """One ``generate_batch`` over the prompts; the tokens after each prompt."""
        tokenizer = self.model.tokenizer
        stops = [self.eos_id, *self.other_stops]
        banned = [
            [tokenizer.convert_ids_to_tokens(i)]
            for i in tokenizer.all_special_ids
            if i not in stops
        ]
        longest = max(p.limit for p in pieces)
        results = self.model.translator.generate_batch(
            [tokenizer.convert_ids_to_tokens(p) for p in prompts],
            max_length=longest,
            min_length=longest if self.options.exact_length else 0,
            beam_size=self.options.beam_size,
            length_penalty=self.options.length_penalty,
            include_prompt_in_result=False,
            end_token=tokenizer.convert_ids_to_tokens(stops),
            suppress_sequences=banned or None,
        )
        return [list(result.sequences[0]) for result in results]

    def signature(self) -> dict[str, Any]:
        prompt = {**self.template.signature(), "context_sentences": 0}
        return {**super().signature(), "kind": "decoder-only", "prompt": prompt}
