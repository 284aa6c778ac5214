"""Converting a model for CTranslate2, once and safely; loading it; its shortlist as a vmap.

Conversion. The chosen model (MarianMT or NLLB; a decoder-only one of
``CT2_CAUSAL_FAMILIES`` for ``ct2_causal``), a Hub id or a local folder resolved exactly as
the ``transformers`` backend resolves it (``models.resolve_model``), is converted with
CTranslate2's own ``TransformersConverter``.

Why cached. The converted files depend only on the model id, its revision, the quantisation
and CTranslate2's major version, so they are converted once and cached under
``$HF_HOME/forumtranslate-ct2/`` (by default ``~/.cache/huggingface/forumtranslate-ct2/``),
one folder per such key (``converted_folder``); every later load reads the folder. The
conversion is written into a temporary folder that is renamed into place, so an interrupted
conversion leaves nothing half-written, and two processes converting the same model at
once end with one whole folder.

Why safe. The converter reads the local folder only, with ``trust_remote_code`` off and
safetensors weights only, so no code from a model folder runs: neither modelling code of
its own nor pickled weights. A Marian model CTranslate2 would decode differently (a decoder-start
embedding that is not zero: ``_check_marian_start``) is refused rather than converted.

Loading. Tokenisation stays with the model's own Hugging Face tokenizer, so both backends
see the same tokens. The default compute type is ``int8`` on CPU and ``float16`` on GPU.

The shortlist. ``shortlist.build_shortlist``'s target pieces are written as a ``vmap.txt`` in
a folder beside the converted model, keyed by the list's hash (links to the converted files,
so the model is converted once); ``ct2`` decodes with ``use_vmap=True`` over it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forumtranslate.errors import ForumTranslateError, ModelNotAvailableError
from forumtranslate.models import (
    CAUSAL_TYPES,
    NLLB_SOURCE_LANG,
    NLLB_TARGET_LANG,
    SUPPORTED_TYPES,
    pick_device,
    resolve_model,
)
from forumtranslate.shortlist import VMAP_FILE, Shortlist, build_shortlist

# Decoder-only families CTranslate2 converts and decodes as transformers does (greedy parity
# tested for qwen3 and llama; qwen2 and mistral share their converters' layouts).
CT2_CAUSAL_FAMILIES = ("qwen3", "qwen2", "llama", "mistral")
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
    """``models.pick_device``'s answer for the GPUs CTranslate2 sees, as its (device, index).

    CTranslate2 runs on CPU or CUDA: ``mps`` is refused."""
    import ctranslate2

    if device == "mps":
        raise ForumTranslateError(
            "the ct2 backend cannot run on 'mps': CTranslate2 has no Apple GPU support; "
            "use cpu, or --backend transformers"
        )
    picked = pick_device(device, ctranslate2.get_cuda_device_count(), engine="CTranslate2")
    name, _, index = picked.partition(":")
    return name, int(index or 0)


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
            "versions": versions(),
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
            model = model_class.from_pretrained(path, **kwargs)
            _check_marian_start(model, folder)
            return model

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
    except ForumTranslateError:
        raise
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


def _check_marian_start(model: Any, folder: Path) -> None:
    """Refuse a Marian model whose decoder-start embedding (<pad>) is not zero.

    CTranslate2 starts every Marian decoder from a zero vector (``start_from_zero_embedding``:
    true of models trained with Marian itself, such as OPUS-MT); transformers feeds the
    <pad> row. A model trained in transformers with tied embeddings has moved that row, and
    its conversion would translate differently, every sentence from its first word.
    """
    if getattr(model.config, "model_type", "") != "marian":
        return
    start = model.config.decoder_start_token_id
    # the decoder's own table: a Marian with a vocabulary per side has one apart from the encoder's
    row = model.get_decoder().embed_tokens.weight[start]
    if float(row.detach().abs().max()) > 0.0:
        raise ModelNotAvailableError(
            "CTranslate2 cannot run this Marian model as transformers does: its decoder-start "
            f"embedding (token {start}) is not zero, and CTranslate2 starts Marian decoders "
            "from zeros; use --backend transformers, or zero that row (as Marian training does)",
            str(folder),
        )


def versions() -> dict[str, str]:
    """The libraries a conversion depends on, as a conversion and a run record them."""
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
    translator: Any  # ctranslate2.Translator (a Generator for a decoder-only model)
    tokenizer: Any
    device: str
    device_index: int
    compute_type: str
    max_input_tokens: int
    eos_at_limit: bool  # the model's generation config forces EOS at the length limit
    generation_eos: Any = None  # the generation config's eos_token_id (decoder-only models)
    target_prefix: tuple[str, ...] = ()  # NLLB: the target-language token
    suppressed: tuple[tuple[str, ...], ...] = ()  # never generated (NLLB's padding)
    threads: dict[str, int] = field(default_factory=dict)
    weights: dict[str, str] | None = None  # {"ref", "revision"} of weights not from `revision`
    shortlist: Shortlist | None = None  # decoded with its vmap.txt when set


def load_ct2_model(
    name: str,
    *,
    revision: str | None = None,
    device: str = "auto",
    compute_type: str = "default",
    inter_threads: int = 1,
    intra_threads: int = 0,
    cache_dir: Path | None = None,
    shortlist: int | Shortlist = 0,
    forms: Sequence[str] = (),
) -> CT2Model:
    """Resolve, convert (once) and load a model; ``intra_threads`` 0 is CTranslate2's default.

    ``shortlist``: a size (0: none) for ``shortlist.build_shortlist`` with the glossary's
    ``forms``, or a ready list; it is written as the model's ``vmap.txt``."""
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
    family = SUPPORTED_TYPES.get(config.model_type) or CAUSAL_TYPES.get(config.model_type)
    if family is None:
        raise ModelNotAvailableError(
            f"model type {config.model_type!r} is not supported (MarianMT or NLLB/M2M-100; "
            f"decoder-only: {', '.join(sorted(CAUSAL_TYPES))})",
            name,
        )
    causal = family in CAUSAL_TYPES.values()
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
    if causal and family not in CT2_CAUSAL_FAMILIES:
        raise ModelNotAvailableError(
            f"the ct2 backend does not run {family} models (its converted Gemma 3 decodes "
            "differently from transformers 5 here); use --backend transformers. ct2 runs: "
            f"{', '.join(CT2_CAUSAL_FAMILIES)}",
            name,
        )
    if causal:  # a decoder-only model: ct2_causal builds its prompts
        pass
    elif family == "marian":
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
    chosen: Shortlist | None = None
    if causal:  # a decoder-only model decodes over its whole vocabulary (not shortlisted yet)
        chosen = None
    elif isinstance(shortlist, Shortlist):
        chosen = shortlist
    elif shortlist:
        chosen = build_shortlist(tokenizer, folder, shortlist, forms)
    loaded_from = converted if chosen is None else with_vmap(converted, chosen)
    engine = ctranslate2.Generator if causal else ctranslate2.Translator
    translator = engine(
        str(loaded_from),
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
        generation_eos=getattr(generation, "eos_token_id", None),
        target_prefix=prefix,
        suppressed=suppressed,
        threads={"inter": inter_threads, "intra": intra_threads},
        weights=source.weights_record(),
        shortlist=chosen,
    )


def with_vmap(converted: Path, shortlist: Shortlist) -> Path:
    """The converted model with the shortlist as its ``vmap.txt``: a folder beside it, keyed
    by the list's hash, of links to the model's files (so the model is converted once)."""
    target = converted.parent / f"{converted.name}--vmap-{shortlist.sha256[:16]}"
    if (target / VMAP_FILE).is_file():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=".vmap-", dir=converted.parent))
    try:
        for item in converted.iterdir():
            (tmp / item.name).symlink_to(item.resolve())
        (tmp / VMAP_FILE).write_text(shortlist.vmap_text(), encoding="utf-8")
        try:
            tmp.rename(target)
        except OSError:  # another process wrote the same list first
            if not (target / VMAP_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
