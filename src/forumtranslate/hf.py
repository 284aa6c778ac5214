"""The transformers seq2seq backend: MarianMT and NLLB through PyTorch, decoded by
``constrain``'s search.

``TransformersTranslator`` supplies what ``translate.ModelTranslator`` leaves to a backend:
the model (``models.load_model``) and one decode call. It decodes with
``constrain.constrained_beam_search`` over the model's own decoder (``DecoderStepper``), so
the same loop serves ``--terms hard`` and ``--terms off``; ``causal`` subclasses it for
decoder-only models.

With a shortlist (``shortlist``, on by default) each batch decodes over the list's pieces
for its source, every piece its constraints can force and the special tokens: the output
projection is sliced to them and the search works on positions in that list, mapped back
to vocabulary ids at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from forumtranslate.confidence import Confidence, summarise, teacher_forced_logprobs
from forumtranslate.constrain import (
    Constraint,
    SearchOptions,
    TextJudge,
    constrained_beam_search,
    term_forms,
)
from forumtranslate.glossary import TermMatcher, capitalised, check_terms, contains_form
from forumtranslate.models import LoadedModel
from forumtranslate.records import TermMatch
from forumtranslate.shortlist import Shortlist, build_shortlist
from forumtranslate.translate import DecodingOptions, ModelTranslator, Translation, plain_how
from forumtranslate.wordpieces import PieceText


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
                    for v in {a, capitalised(a), a.lower(), a.title(), a.upper()}
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
