"""The CTranslate2 backend: the same models, converted once, decoded by a fast C++ engine.

Conversion. The chosen MarianMT or NLLB model (a Hub id or a local folder, resolved exactly
as the ``transformers`` backend resolves it) is converted with CTranslate2's own
``TransformersConverter`` and cached under ``$HF_HOME/forumtranslate-ct2/`` (by default
``~/.cache/huggingface/forumtranslate-ct2/``), one folder per model id, revision and
quantisation. The converter reads the local folder only, with ``trust_remote_code`` off and
safetensors weights only, so no code from a model folder runs; it writes into a temporary
folder that is renamed into place, so an interrupted conversion leaves nothing half-written.
Tokenisation stays with the model's own Hugging Face tokenizer, so both backends see the
same tokens. The default compute type is ``int8`` on CPU and ``float16`` on GPU.

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

import codecs
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from forumtranslate.confidence import Confidence, combine, summarise
from forumtranslate.errors import ForumTranslateError, ModelNotAvailableError
from forumtranslate.glossary import TermMatcher, check_terms
from forumtranslate.models import (
    NLLB_SOURCE_LANG,
    NLLB_TARGET_LANG,
    SUPPORTED_TYPES,
    resolve_model,
)
from forumtranslate.records import TermMatch
from forumtranslate.translate import (
    DecodingOptions,
    Translation,
    Translator,
    plain_how,
    split_to_fit,
)
from forumtranslate.wordpieces import PieceText

CACHE_FOLDER = "forumtranslate-ct2"
META_FILE = "forumtranslate-ct2.json"
COMPUTE_TYPES = (
    "default",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "float16",
    "bfloat16",
    "float32",
)
DEFAULT_COMPUTE_TYPE = {"cpu": "int8", "cuda": "float16"}


def cache_root() -> Path:
    """Where converted models live: ``$HF_HOME/forumtranslate-ct2``, read at call time."""
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
    )
    return Path(hf_home).expanduser() / CACHE_FOLDER


def pick_ct2_device(device: str) -> tuple[str, int]:
    """``auto``/``cpu``/``cuda``/``cuda:N`` as CTranslate2's (device, index)."""
    import ctranslate2

    gpus = ctranslate2.get_cuda_device_count()
    if device == "auto":
        return ("cuda", 0) if gpus > 0 else ("cpu", 0)
    if device == "cpu":
        return "cpu", 0
    if device.startswith("cuda"):
        number = device.partition(":")[2] or "0"
        if device[4:5] not in ("", ":") or not number.isdigit():
            raise ForumTranslateError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")
        index = int(number)
        if index >= gpus:
            raise ModelNotAvailableError(
                f"device {device!r} asked for, but CTranslate2 sees {gpus} CUDA GPU(s)"
            )
        return "cuda", index
    raise ForumTranslateError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")


def resolve_compute_type(compute_type: str, device: str) -> str:
    """``default`` becomes int8 on CPU, float16 on GPU; anything else must be supported."""
    import ctranslate2

    if compute_type not in COMPUTE_TYPES:
        raise ForumTranslateError(
            f"unknown compute type {compute_type!r}; use one of {', '.join(COMPUTE_TYPES)}"
        )
    resolved = DEFAULT_COMPUTE_TYPE[device] if compute_type == "default" else compute_type
    supported = ctranslate2.get_supported_compute_types(device)
    if resolved not in supported:
        raise ForumTranslateError(
            f"compute type {resolved!r} is not supported on this {device} "
            f"(supported: {', '.join(sorted(supported))})"
        )
    return resolved


def converted_folder(name: str, revision: str, quantization: str, root: Path | None = None) -> Path:
    """The cache folder for one model id, revision and quantisation."""
    import ctranslate2

    major = ctranslate2.__version__.split(".")[0]
    key = hashlib.sha256(f"{name}\n{revision}\n{quantization}\nct2-{major}".encode()).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[-60:] or "model"
    return (root or cache_root()) / f"{slug}--{key[:16]}--{quantization}"


def convert_model(
    folder: Path, name: str, revision: str, quantization: str, root: Path | None = None
) -> Path:
    """Convert a local model folder once; later calls return the cached conversion."""
    target = converted_folder(name, revision, quantization, root)
    if (target / "model.bin").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        _run_converter(folder, tmp / "model", quantization)
        meta = {
            "model": name,
            "revision": revision,
            "quantization": quantization,
            "source_folder": str(folder),
            "versions": _versions(),
        }
        (tmp / "model" / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", "utf-8")
        try:
            (tmp / "model").rename(target)
        except OSError:  # another process finished the same conversion first
            if not (target / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _run_converter(folder: Path, out: Path, quantization: str) -> None:
    from ctranslate2.converters import TransformersConverter
    from transformers.utils import logging as hf_logging

    class LocalSafeConverter(TransformersConverter):
        """Loads from the local folder, safetensors only, never with remote code."""

        def load_model(self, model_class: Any, path: str, **kwargs: Any) -> Any:
            kwargs.update(trust_remote_code=False, use_safetensors=True)
            return model_class.from_pretrained(path, **kwargs)

        def load_tokenizer(self, tokenizer_class: Any, path: str, **kwargs: Any) -> Any:
            kwargs.update(trust_remote_code=False)
            return tokenizer_class.from_pretrained(path, **kwargs)

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        converter = LocalSafeConverter(str(folder), trust_remote_code=False)
        converter.convert(str(out), quantization=quantization)
    except Exception as err:  # the converter's errors are of many kinds
        lines = str(err).strip().splitlines()
        raise ModelNotAvailableError(
            "CTranslate2 could not convert the model: "
            f"{type(err).__name__}: {lines[0] if lines else 'no details'}",
            str(folder),
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _versions() -> dict[str, str]:
    import ctranslate2
    import transformers

    return {"ctranslate2": ctranslate2.__version__, "transformers": transformers.__version__}


@dataclass
class CT2Model:
    """A converted model loaded in CTranslate2, with the Hugging Face tokenizer it came with."""

    name: str
    revision: str
    family: str  # "marian" | "nllb"
    folder: Path  # the Hugging Face model folder
    converted: Path  # the CTranslate2 model folder
    translator: Any  # ctranslate2.Translator
    tokenizer: Any
    device: str
    device_index: int
    compute_type: str
    max_input_tokens: int
    eos_at_limit: bool  # the model's generation config forces EOS at the length limit
    target_prefix: tuple[str, ...] = ()  # NLLB: the target-language token
    suppressed: tuple[tuple[str, ...], ...] = ()  # never generated (NLLB's padding)
    threads: dict[str, int] = field(default_factory=dict)
    weights: dict[str, str] | None = None  # {"ref", "revision"} of weights not from `revision`


def load_ct2_model(
    name: str,
    *,
    revision: str | None = None,
    device: str = "auto",
    compute_type: str = "default",
    inter_threads: int = 1,
    intra_threads: int = 0,
    cache_dir: Path | None = None,
) -> CT2Model:
    """Resolve, convert (once) and load a model; ``intra_threads`` 0 is CTranslate2's default."""
    try:
        import ctranslate2
    except ImportError:
        raise ForumTranslateError(
            "the ct2 backend needs CTranslate2: pip install 'forumtranslate[ct2]'"
        ) from None
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig
    from transformers.utils import logging as hf_logging

    source = resolve_model(name, revision)
    folder, resolved_revision = source.folder, source.revision
    ct2_device, index = pick_ct2_device(device)
    quantization = resolve_compute_type(compute_type, ct2_device)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    family = SUPPORTED_TYPES.get(config.model_type)
    if family is None:
        raise ModelNotAvailableError(
            f"model type {config.model_type!r} is not supported (MarianMT or NLLB/M2M-100)",
            name,
        )
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        try:
            generation = GenerationConfig.from_pretrained(folder)
        except OSError:
            generation = None
    except (OSError, ValueError) as err:
        raise ModelNotAvailableError(f"cannot load the tokenizer: {err}", name) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    prefix: tuple[str, ...] = ()
    suppressed: tuple[tuple[str, ...], ...] = ()
    if family == "marian":
        pad = config.pad_token_id
        if pad != config.vocab_size - 1:
            raise ModelNotAvailableError(
                "CTranslate2 expects Marian's <pad> to be the last vocabulary id "
                f"(it is {pad} of {config.vocab_size})",
                name,
            )
    else:
        tokenizer.src_lang = NLLB_SOURCE_LANG
        if tokenizer.convert_tokens_to_ids(NLLB_TARGET_LANG) in (None, tokenizer.unk_token_id):
            raise ModelNotAvailableError(f"tokenizer has no {NLLB_TARGET_LANG} token", name)
        prefix = (NLLB_TARGET_LANG,)
        suppressed = ((tokenizer.pad_token,),)
    converted = convert_model(folder, name, source.label, quantization, cache_dir)
    translator = ctranslate2.Translator(
        str(converted),
        device=ct2_device,
        device_index=index,
        compute_type=quantization,
        inter_threads=inter_threads,
        intra_threads=intra_threads,
    )
    limit = getattr(config, "max_position_embeddings", 512)
    tokenizer_limit = getattr(tokenizer, "model_max_length", limit) or limit
    return CT2Model(
        name=name,
        revision=resolved_revision,
        family=family,
        folder=folder,
        converted=converted,
        translator=translator,
        tokenizer=tokenizer,
        device=ct2_device if ct2_device == "cpu" else f"cuda:{index}",
        device_index=index,
        compute_type=quantization,
        max_input_tokens=int(min(limit, tokenizer_limit)),
        eos_at_limit=getattr(generation, "forced_eos_token_id", None) is not None,
        target_prefix=prefix,
        suppressed=suppressed,
        threads={"inter": inter_threads, "intra": intra_threads},
        weights=source.weights_record(),
    )


def from_run_config(config: Any) -> CT2Translator:
    """The ``ct2`` entry of ``run.BACKENDS``: load the model a ``RunConfig`` names."""
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
    )
    return CT2Translator(model, config.decoding)


@dataclass
class _Piece:
    """One piece of a sentence on its way through the decoder."""

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


class CT2Translator(Translator):
    """MarianMT and NLLB through CTranslate2, with the glossary enforced as described above."""

    def __init__(self, model: CT2Model, options: DecodingOptions | None = None):
        self.model = model
        self.options = options or DecodingOptions()
        self.max_input_tokens = self.options.max_input_tokens or model.max_input_tokens
        self._target_tokens: dict[str, tuple[str, ...]] = {}
        self._special = set(model.tokenizer.all_special_tokens)
        self.pieces = PieceText.from_tokenizer(model.tokenizer)
        self._ids: dict[str, int] = {}

    # -- tokens ---------------------------------------------------------------------------

    def count_tokens(self, sources: Sequence[str]) -> list[int]:
        encoded = self.model.tokenizer(list(sources), add_special_tokens=True)["input_ids"]
        return [len(ids) for ids in encoded]

    def _count_one(self, text: str) -> int:
        return self.count_tokens([text])[0]

    def _id(self, token: str) -> int:
        if token not in self._ids:
            self._ids[token] = self.model.tokenizer.convert_tokens_to_ids(token)
        return self._ids[token]

    def target_tokens(self, text: str) -> tuple[str, ...]:
        """``text`` as target-side pieces, a word sequence that starts a new word (with the
        leading space where the tokenizer spells one, as byte-level BPE does)."""
        if text not in self._target_tokens:
            tokenizer = self.model.tokenizer
            ids: list[int] = []
            for variant in (text, " " + text):
                ids = tokenizer(text_target=variant, add_special_tokens=False)["input_ids"]
                if ids and not self.pieces.glue[ids[0]]:
                    break
            self._target_tokens[text] = tuple(tokenizer.convert_ids_to_tokens(ids))
        return self._target_tokens[text]

    def detokenize(self, tokens: Sequence[str]) -> str:
        """The text of target tokens, decoded as the transformers backend decodes ids."""
        tokenizer = self.model.tokenizer
        ids = tokenizer.convert_tokens_to_ids(list(tokens))
        return tokenizer.decode(ids, skip_special_tokens=True).strip()

    def is_glue(self, token: str) -> bool:
        """Whether ``token`` continues the previous word (``wordpieces``' rule, the one the
        transformers backend uses)."""
        if token in self._special:
            return False
        i = self._id(token)
        return 0 <= i < len(self.pieces.glue) and self.pieces.glue[i]

    # -- decoding -------------------------------------------------------------------------

    def translate_batch(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> list[str]:
        return [t.text for t in self.translate_batch_terms(sources, terms)]

    def translate_batch_terms(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> list[Translation]:
        pieces = [
            piece
            for i, (text, found) in enumerate(zip(sources, terms))
            for piece in split_to_fit(text, found, self._count_one, self.max_input_tokens, i)
        ]
        hypotheses = self._decode([p.text for p in pieces], [p.terms for p in pieces])
        scored = self._confidence([p.text for p in pieces], hypotheses)
        joined: list[list[str]] = [[] for _ in sources]
        how: list[list[str]] = [[] for _ in sources]
        parts: list[list[Confidence | None]] = [[] for _ in sources]
        for piece, hypothesis, confidence in zip(pieces, hypotheses, scored):
            joined[piece.sentence].append(hypothesis.text)
            how[piece.sentence].extend(hypothesis.how or plain_how(hypothesis.text, piece.terms))
            parts[piece.sentence].append(confidence)
        return [
            Translation(" ".join(part for part in done if part), tuple(h), combine(c))
            for done, h, c in zip(joined, how, parts)
        ]

    def _decode(self, texts: list[str], terms: Sequence[Sequence[TermMatch]]) -> list[Hypothesis]:
        options, tokenizer = self.options, self.model.tokenizer
        hard = options.terms == "hard"
        encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
        pieces = []
        for text, ids, found in zip(texts, encoded, terms):
            # The transformers backend's limit without the terms' tokens: ratio × source
            # tokens + extra; a final EOS that the model forces is not a token here.
            limit = math.ceil(options.length_ratio * len(ids)) + options.length_extra
            limit -= 1 if self.model.eos_at_limit else 0
            pieces.append(
                _Piece(
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
        self, pieces: Sequence[_Piece], attention: bool
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
            )
            calls.append((members, results))
        out: list[tuple[list[str], list[list[float]] | None]] = [([], None)] * len(pieces)
        for members, results in calls:
            for i, pending in zip(members, results):
                result = pending.result()
                tokens = list(result.hypotheses[0])[len(lang) :]
                out[i] = (tokens, result.attention[0][len(lang) :] if attention else None)
        return out

    # -- hard constraints -----------------------------------------------------------------

    def enforce_terms(
        self, piece: _Piece, tokens: list[str], attention: list[list[float]] | None
    ) -> Hypothesis:
        """The hypothesis with every term of ``piece`` in it, checked by ``check_terms``."""
        text = self.detokenize(tokens)
        found = check_terms(text, piece.terms)
        entries = {m.entry_id: m for m in piece.terms}
        avoided = [
            (span, entries[entry_id])
            for entry_id in entries
            for form in entries[entry_id].avoid
            for span in self._find(tokens, form, exact=True)
        ]
        if all(found) and not avoided:
            return Hypothesis(tuple(tokens), text, ("decoded",) * len(found))
        occupied = [
            span for m in piece.terms for form in _allowed(m) for span in self._find(tokens, form)
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
            start, end = self._place(piece, match, tokens, weights, boundaries, occupied)
            edits.append((start, end, len(edits), match))
            occupied.append((start, end))
        edited = self._apply(tokens, edits)
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
    def _avoided_in(text: str, piece: _Piece) -> bool:
        return bool(TermMatcher(piece.terms).avoided(text))

    def _apply(self, tokens: list[str], edits: list[tuple[int, int, int, TermMatch]]) -> list[str]:
        """Replace each edit's tokens by its term's approved form, left to right."""
        out: list[str] = []
        cursor = 0
        for start, end, _order, match in sorted(edits, key=lambda e: (e[0], e[2])):
            start = max(start, cursor)
            form = match.target
            if start == 0 and not out:  # the sentence's first word: capitalised
                form = form[:1].upper() + form[1:]
            out += tokens[cursor:start]
            out += self.target_tokens(form)
            cursor = max(end, start)
        return out + tokens[cursor:]

    def _is_boundary(self, tokens: Sequence[str], i: int) -> bool:
        """Whether a word may start at ``i``: the end, or a token that does not glue."""
        return i == len(tokens) or not self.is_glue(tokens[i])

    def _find(self, tokens: Sequence[str], form: str, exact: bool = False) -> list[tuple[int, int]]:
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

    def _place(
        self,
        piece: _Piece,
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
        source_ids = sorted(self._source_span(piece, match))
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

    def _source_span(self, piece: _Piece, match: TermMatch) -> set[int]:
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
            "versions": _versions(),
        }
        if self.model.weights is not None:  # weights from another commit than `revision`
            signature["weights"] = self.model.weights
        return signature


def _allowed(match: TermMatch) -> tuple[str, ...]:
    return match.allowed or (match.target,)
