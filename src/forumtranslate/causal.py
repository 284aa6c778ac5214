"""Decoder-only translators (Qwen3, Gemma 3, Llama, Mistral) under the same glossary guarantee.

A decoder-only model translates by continuing a prompt. This module holds only what that
changes: the prompt (``PromptTemplate``), running the model over it (``CausalStepper``) and
reading its answer (``clean_translation``). Everything else (batch planning, splitting and
rejoining long sentences, length limits, the word-boundary rule, the constrained search and
the per-term ``how``) is ``hf.TransformersTranslator``'s, inherited unchanged.

* The prompt is the tokenizer's chat template (plain text where a model has none) with one
  user turn: the instruction, the glossary entries found in the sentence (approved English
  and the forms to avoid), then the sentence. Its name and version go into ``run.json``.
* The prompt is run once per sentence and its cache shared by the sentence's beams; the
  search then runs over the generated tokens only, so the constraints, the judge and the
  boundary rule read the translation and never the prompt.
* Stop rule: the model's end-of-turn token ends a hypothesis (any other stop token of its
  generation config counts as the same). What a chatty model puts before the translation
  ("Here is the translation:") is cut by ``clean_translation``; a term the cut removes is
  appended, and recorded as such, by the core's final check.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from forumtranslate.confidence import Confidence
from forumtranslate.errors import ForumTranslateError
from forumtranslate.hf import TransformersTranslator
from forumtranslate.models import LoadedModel
from forumtranslate.records import TermMatch
from forumtranslate.translate import DecodingOptions

PROMPT_VERSION = 1
INSTRUCTION = (
    "Translate the following Japanese text into English. Reply with the English "
    "translation only, on one line."
)
# End-of-turn markers of the supported families' chat templates, best first.
END_OF_TURN = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>")
# A preamble line a chatty model writes before its answer.
_PREAMBLE = re.compile(
    r"^\s*(?:sure[,!.]?\s*)?(?:here(?:'s| is)[^\n:]*|(?:english\s+)?translation|english)\s*:\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PromptTemplate:
    """How a sentence becomes a prompt: the tokenizer's chat template, else plain text."""

    family: str
    chat_template: str | None
    instruction: str = INSTRUCTION
    version: int = PROMPT_VERSION

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, family: str) -> PromptTemplate:
        template = getattr(tokenizer, "chat_template", None)
        return cls(family, template if isinstance(template, str) else None)

    def user_message(
        self, sentence: str, terms: Sequence[TermMatch], context: Sequence[str] = ()
    ) -> str:
        """The one user turn: instruction, glossary lines, context, then the sentence."""
        lines = [self.instruction]
        entries = []
        for term in terms:
            line = f"- {term.source} → {term.target}"
            avoid = [a for a in term.avoid if a]
            if avoid:
                line += f" (not: {', '.join(avoid)})"
            if line not in entries:
                entries.append(line)
        if entries:
            lines += ["", "Use these glossary renderings:", *entries]
        if context:
            lines += ["", "Preceding text (do not translate):", *context]
        lines += ["", "Japanese:", sentence]
        return "\n".join(lines)

    def render(
        self,
        tokenizer: Any,
        sentence: str,
        terms: Sequence[TermMatch] = (),
        context: Sequence[str] = (),
    ) -> str:
        """The exact prompt text; the model's answer follows it."""
        message = self.user_message(sentence, terms, context)
        if self.chat_template is None:
            return f"{message}\n\nEnglish:"
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": message}],
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=False,  # Qwen3: no reasoning block; other templates ignore it
        )

    def signature(self) -> dict[str, Any]:
        """What run.json records: the template by name, version and hash."""
        source = self.chat_template or "plain"
        return {
            "kind": "chat-template" if self.chat_template else "plain",
            "version": self.version,
            "family": self.family,
            "sha256": hashlib.sha256((source + self.instruction).encode()).hexdigest()[:16],
        }


def clean_translation(text: str) -> str:
    """The translation in a model's answer: a preamble ("Here is the translation:") is cut,
    surrounding quotes are dropped, and of several lines the first non-empty one is kept."""
    text = text.strip()
    preamble = _PREAMBLE.match(text)
    if preamble:
        text = text[preamble.end() :]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    if len(text) >= 2 and text[0] == "“" and text[-1] == "”":
        text = text[1:-1].strip()
    return text


def stop_ids(tokenizer: Any, configured: Any) -> tuple[int, list[int]]:
    """The end-of-turn token that ends a translation, and the other stop tokens (the
    tokenizer's EOS, ``configured``: the generation config's ``eos_token_id``)."""
    vocab = tokenizer.get_vocab()
    ids: list[int] = [vocab[t] for t in END_OF_TURN if t in vocab]
    for value in configured if isinstance(configured, list) else [configured]:
        if value is not None and value not in ids:
            ids.append(int(value))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ForumTranslateError("the model has no end-of-sequence token")
    return ids[0], ids[1:]


@dataclass
class Prompter:
    """What every decoder-only backend does around its model: build each sentence's
    prompt, count tokens for batching, and keep prompt + sentence + answer in the context."""

    tokenizer: Any
    template: PromptTemplate
    context_tokens: int  # the model's context length
    eos_id: int
    other_stops: list[int]

    def prompt(
        self, sentence: str, terms: Sequence[TermMatch] = (), context: Sequence[str] = ()
    ) -> str:
        return self.template.render(self.tokenizer, sentence, terms, context)

    def prompt_ids(
        self, sentence: str, terms: Sequence[TermMatch] = (), context: Sequence[str] = ()
    ) -> list[int]:
        text = self.prompt(sentence, terms, context)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, sources: Sequence[str]) -> list[int]:
        """Prompt and sentence together: what a batch holds (glossary lines left out)."""
        return [len(self.prompt_ids(text)) for text in sources]

    def sentence_tokens(self, sources: Sequence[str]) -> list[int]:
        encoded = self.tokenizer(list(sources), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def input_limit(self, options: DecodingOptions) -> int:
        """The longest sentence, in tokens; longer ones are cut (never truncated) so that
        the prompt, the sentence and its longest translation fit the context."""
        base = len(self.prompt_ids(""))
        room = self.context_tokens - base - options.length_extra
        if room < 8:
            raise ForumTranslateError(
                f"the prompt alone takes {base} of the model's {self.context_tokens} tokens"
            )
        return options.max_input_tokens or int(room / (1 + options.length_ratio))

    def check_fits(
        self, texts: Sequence[str], prompts: Sequence[Sequence[int]], new: Sequence[int]
    ) -> None:
        """A prompt (with its glossary lines and context) too long is an error, not a cut."""
        for text, ids, limit in zip(texts, prompts, new):
            if len(ids) + limit > self.context_tokens:
                raise ForumTranslateError(
                    f"the prompt ({len(ids)} tokens, with its glossary lines) and up to {limit} "
                    f"new tokens exceed the model's context of {self.context_tokens}: "
                    f"{text[:60]}…"
                )


def render_prompt(model: str, sentence: str, terms: Sequence[TermMatch] = ()) -> str:
    """The prompt ``model`` gets for ``sentence``, read from its folder's tokenizer and
    config alone (no weights loaded): what ``forumtranslate prompt show`` prints."""
    from transformers import AutoConfig, AutoTokenizer

    from forumtranslate.errors import ModelNotAvailableError
    from forumtranslate.models import CAUSAL_TYPES, resolve_model_folder

    folder, _ = resolve_model_folder(model)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    family = CAUSAL_TYPES.get(config.model_type)
    if family is None:
        raise ModelNotAvailableError(
            f"model type {config.model_type!r} is not a supported decoder-only model "
            f"({', '.join(sorted(CAUSAL_TYPES))}); only those are given a prompt",
            model,
        )
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    return PromptTemplate.for_tokenizer(tokenizer, family).render(tokenizer, sentence, terms)


class CausalTranslator(TransformersTranslator):
    """A decoder-only model through ``transformers``: the core's search after a prompt."""

    def __init__(
        self,
        loaded: LoadedModel,
        options: DecodingOptions | None = None,
        context_sentences: int = 0,
    ):
        if not loaded.causal:
            raise ForumTranslateError(f"{loaded.name!r} is not a decoder-only model")
        template = PromptTemplate.for_tokenizer(loaded.tokenizer, loaded.family)
        # Preceding sentences of the same document shown in the prompt (``--context``).
        self.context_sentences = context_sentences
        configured = getattr(loaded.model.generation_config, "eos_token_id", None)
        self.eos_id, self.other_stops = stop_ids(loaded.tokenizer, configured)
        self.prompter = Prompter(
            loaded.tokenizer, template, loaded.max_input_tokens, self.eos_id, self.other_stops
        )
        self.template = template
        # The target shortlist is built from a seq2seq model's target vocabulary; a
        # decoder-only model decodes over its whole vocabulary (not shortlisted yet).
        super().__init__(loaded, replace(options or DecodingOptions(), shortlist=0))
        self.max_input_tokens = self.prompter.input_limit(self.options)

    # -- the prompt -----------------------------------------------------------------------

    def prompt(
        self, sentence: str, terms: Sequence[TermMatch] = (), context: Sequence[str] = ()
    ) -> str:
        return self.prompter.prompt(sentence, terms, context)

    def prompt_ids(
        self, sentence: str, terms: Sequence[TermMatch] = (), context: Sequence[str] = ()
    ) -> list[int]:
        return self.prompter.prompt_ids(sentence, terms, context)

    # -- what the core asks of a backend --------------------------------------------------

    def count_tokens(self, sources: Sequence[str]) -> list[int]:
        return self.prompter.count_tokens(sources)

    def sentence_tokens(self, sources: Sequence[str]) -> list[int]:
        return self.prompter.sentence_tokens(sources)

    def _count_one(self, text: str) -> int:
        return self.sentence_tokens([text])[0]

    def _stepper(
        self,
        texts: list[str],
        terms: Sequence[Sequence[TermMatch]],
        max_new: Sequence[int],
        context: Sequence[Sequence[str]],
        vocab: Any = None,
    ) -> CausalStepper:
        if vocab is not None:
            raise ForumTranslateError("a decoder-only model decodes without a shortlist")
        prompts = [
            self.prompt_ids(text, found, before)
            for text, found, before in zip(texts, terms, context)
        ]
        self.prompter.check_fits(texts, prompts, max_new)
        return CausalStepper(
            self.loaded.model,
            prompts,
            self.options.beam_size,
            self.loaded.device,
            pad_id=self._pad_id(),
            eos_id=self.eos_id,
            other_stops=self.other_stops,
        )

    def _pad_id(self) -> int:
        tokenizer = self.loaded.tokenizer
        return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id

    def _search_options(self) -> Any:
        from forumtranslate.constrain import SearchOptions

        banned = tuple(
            i
            for i in {self._pad_id(), *self.loaded.tokenizer.all_special_ids}
            if i != self.eos_id and i is not None
        )
        return SearchOptions(
            beam_size=self.options.beam_size,
            eos_id=self.eos_id,
            start_id=self.eos_id,  # never fed: the prompt's last position gives the first step
            banned_ids=banned,
            length_penalty=self.options.length_penalty,
            exact_length=self.options.exact_length,
        )

    def _confidence(
        self, texts: list[str], token_ids: Sequence[Sequence[int]]
    ) -> list[Confidence | None]:
        """Not scored yet for decoder-only models: the seq2seq scoring pass feeds an
        encoder; this one would have to score after the prompt. None, as the record says."""
        return [None] * len(texts)

    def _text(self, ids: Sequence[int]) -> str:
        return clean_translation(self.loaded.tokenizer.decode(ids, skip_special_tokens=True))

    def signature(self) -> dict[str, Any]:
        prompt = {**self.template.signature(), "context_sentences": self.context_sentences}
        return {**super().signature(), "kind": "decoder-only", "prompt": prompt}


class CausalStepper:
    """Runs the prompts once (one row per sentence), then one token at a time for the beams.

    The prompts are left-padded into one batch; after the prompt pass the cache is copied
    ``beam_size`` times per sentence, so the beams share one reading of their prompt. The
    first ``step`` returns the prompt's last position; later steps feed the chosen tokens.
    Other stop tokens are folded into ``eos_id`` so that any of them ends a hypothesis.
    """

    def __init__(
        self,
        model: Any,
        prompts: Sequence[Sequence[int]],
        beam_size: int,
        device: str,
        pad_id: int,
        eos_id: int,
        other_stops: Sequence[int] = (),
    ):
        import torch

        self.model = model
        self.device = device
        self.eos_id = eos_id
        self.other_stops = [i for i in other_stops if i < model.config.vocab_size]
        longest = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), longest), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, longest - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            mask[row, longest - len(prompt) :] = 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            use_cache=True,
            logits_to_keep=1,
        )
        self.cache = out.cache
        self.cache.batch_repeat_interleave(beam_size)
        self.mask = mask.to(device).repeat_interleave(beam_size, dim=0)
        self.next_position = (positions[:, -1] + 1).to(device).repeat_interleave(beam_size)
        self.pending = self._logprobs(out.logits).repeat_interleave(beam_size, dim=0)

    def _logprobs(self, logits: Any) -> Any:
        import torch

        logprobs = torch.log_softmax(logits[:, -1, :].float(), dim=-1).cpu()
        if self.other_stops:
            stops = logprobs[:, [self.eos_id, *self.other_stops]]
            logprobs[:, self.eos_id] = torch.logsumexp(stops, dim=-1)
            logprobs[:, self.other_stops] = -math.inf
        return logprobs

    def step(self, last_tokens: Any) -> Any:
        import torch

        if self.pending is not None:
            first, self.pending = self.pending, None
            return first
        rows = last_tokens.shape[0]
        self.mask = torch.cat(
            [self.mask, torch.ones((rows, 1), dtype=self.mask.dtype, device=self.device)], dim=1
        )
        out = self.model(
            input_ids=last_tokens.to(self.device)[:, None],
            attention_mask=self.mask,
            position_ids=self.next_position[:, None],
            cache=self.cache,
            use_cache=True,
        )
        self.cache = out.cache
        self.next_position = self.next_position + 1
        return self._logprobs(out.logits)

    def reorder(self, rows: Any) -> None:
        rows = rows.to(self.device)
        self.cache.reorder_cache(rows)
        self.mask = self.mask.index_select(0, rows)
        self.next_position = self.next_position.index_select(0, rows)
