"""Find and load a translation model: a Hugging Face id or a local folder.

Loading is deliberately strict: no code from a model folder ever runs (``trust_remote_code``
stays off, weights load from safetensors only), and a model that is neither on disk nor
downloadable is a ``ModelNotAvailableError`` that says how to provide it, never a traceback
and never a silent switch to another model.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forumtranslate.errors import ModelNotAvailableError

DEFAULT_MODEL = "Helsinki-NLP/opus-mt-ja-en"
NLLB_SOURCE_LANG = "jpn_Jpan"
NLLB_TARGET_LANG = "eng_Latn"
SUPPORTED_TYPES = {"marian": "marian", "m2m_100": "nllb"}
# Decoder-only models transformers loads natively (AutoModelForCausalLM): model_type -> family.
CAUSAL_TYPES = {
    "qwen3": "qwen3",
    "qwen2": "qwen2",
    "gemma3_text": "gemma3",
    "llama": "llama",
    "mistral": "mistral",
}
# What a translation model needs; never pickled weights (*.bin), never Python files.
FETCH_PATTERNS = ["*.json", "*.safetensors", "*.spm", "*.model", "*.txt", "*.jinja"]


@dataclass
class LoadedModel:
    """A model ready to decode, with what a run must record to be reproduced."""

    name: str
    revision: str
    family: str  # "marian" | "nllb", or a decoder-only family of CAUSAL_TYPES
    folder: Path
    model: Any
    tokenizer: Any
    device: str
    dtype: str
    forced_first_id: int | None  # NLLB's target-language token, else None

    @property
    def causal(self) -> bool:
        """A decoder-only model: the translation follows a prompt (``causal.py``)."""
        return self.family in CAUSAL_TYPES.values()

    @property
    def max_input_tokens(self) -> int:
        """The longest source, special tokens included, that the encoder accepts."""
        limit = getattr(self.model.config, "max_position_embeddings", 512)
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", limit) or limit
        return int(min(limit, tokenizer_limit))


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _how_to_provide(name: str) -> str:
    return (
        f"To use {name!r} here: on a machine with network access run "
        f"`forumtranslate models fetch {name}`, copy its Hugging Face cache "
        "(~/.cache/huggingface, or $HF_HOME) to this machine and set HF_HUB_OFFLINE=1; "
        "or save the model to a folder and pass that folder with --model."
    )


def resolve_model_folder(name: str, revision: str | None = None) -> tuple[Path, str]:
    """The local folder holding ``name`` and the revision to record for it.

    A local folder is used as it is (its revision is a hash of its files); a Hub id is taken
    from the cache, and downloaded into it (with huggingface_hub's progress bar) only when
    HF_HUB_OFFLINE is not set.
    """
    folder = Path(name).expanduser()
    if folder.is_dir():
        _check_model_folder(folder)
        return folder, "local-sha256:" + _folder_hash(folder)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelNotAvailableError(f"model folder {name!r} does not exist")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(
            name, revision=revision, allow_patterns=FETCH_PATTERNS, local_files_only=True
        )
    except Exception:  # not cached (huggingface_hub raises several kinds)
        if _offline():
            raise ModelNotAvailableError(
                f"model {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is "
                f"set, so it cannot be downloaded. {_how_to_provide(name)}"
            ) from None
        path = fetch_model(name, revision)
    folder = Path(path)
    _check_model_folder(folder, name)
    return folder, folder.name  # snapshots/<commit hash>


def fetch_model(name: str, revision: str | None = None) -> Path:
    """Download a model into the Hugging Face cache, for machines that will be offline."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=FETCH_PATTERNS))
    except Exception as err:
        raise ModelNotAvailableError(
            f"could not download model {name!r} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no details'}). {_how_to_provide(name)}"
        ) from None


def _check_model_folder(folder: Path, name: str | None = None) -> None:
    label = name or str(folder)
    if not (folder / "config.json").is_file():
        raise ModelNotAvailableError("no config.json: not a transformers model folder", label)
    has_tokenizer = any(
        (folder / f).is_file()
        for f in (
            "tokenizer.json",
            "tokenizer.model",
            "source.spm",
            "sentencepiece.bpe.model",
            "spiece.model",
        )
    )
    if not has_tokenizer:
        raise ModelNotAvailableError(
            "model folder has no tokenizer (tokenizer.json, or source.spm/target.spm for "
            "Marian); save it with tokenizer.save_pretrained(folder)",
            label,
        )
    if not any(folder.glob("*.safetensors")):
        raise ModelNotAvailableError(
            "model folder has no .safetensors weights; pickled weights (*.bin) are refused "
            "because loading them can run code. Convert with model.save_pretrained(folder, "
            "safe_serialization=True)",
            label,
        )


def _folder_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in {".json", ".safetensors", ".spm", ".model", ".jinja"}:
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def _first_line(err: Exception) -> str:
    """A library's error as one line: its type and the first line of its message."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else 'no details'}"


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelNotAvailableError(f"device {device!r} asked for, but no CUDA GPU is visible")
    return device


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    revision: str | None = None,
    device: str = "auto",
    dtype: str = "float32",
) -> LoadedModel:
    """Load tokenizer and model for decoding; safetensors only, no remote code."""
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
    )
    from transformers.utils import logging as hf_logging

    folder, resolved_revision = resolve_model_folder(name, revision)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except Exception as err:  # a broken config.json: transformers raises OSError or ValueError
        raise ModelNotAvailableError(f"cannot read config.json: {_first_line(err)}", name) from None
    family = SUPPORTED_TYPES.get(config.model_type) or CAUSAL_TYPES.get(config.model_type)
    if family is None:
        raise ModelNotAvailableError(
            f"model type {config.model_type!r} is not supported (MarianMT or NLLB/M2M-100; "
            f"decoder-only: {', '.join(sorted(CAUSAL_TYPES))})",
            name,
        )
    auto_class = AutoModelForCausalLM if family in CAUSAL_TYPES.values() else AutoModelForSeq2SeqLM
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in torch_dtype:
        raise ModelNotAvailableError(f"unknown dtype {dtype!r}; use one of {sorted(torch_dtype)}")
    device = pick_device(device)
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the loading report is noise on a command line
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        model = auto_class.from_pretrained(
            folder, trust_remote_code=False, use_safetensors=True, dtype=torch_dtype[dtype]
        )
    except Exception as err:  # a broken tokenizer or weights file; the kinds vary by library
        raise ModelNotAvailableError(f"cannot load the model: {_first_line(err)}", name) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    model.to(device)
    model.eval()
    forced_first_id = None
    if family == "nllb":
        tokenizer.src_lang = NLLB_SOURCE_LANG
        forced_first_id = tokenizer.convert_tokens_to_ids(NLLB_TARGET_LANG)
        if forced_first_id is None or forced_first_id == tokenizer.unk_token_id:
            raise ModelNotAvailableError(
                f"tokenizer has no {NLLB_TARGET_LANG} language token", name
            )
    return LoadedModel(
        name=name,
        revision=resolved_revision,
        family=family,
        folder=folder,
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        forced_first_id=forced_first_id,
    )
