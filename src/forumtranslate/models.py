"""Find and load a translation model: a Hugging Face id or a local folder.

Loading is deliberately strict: no code from a model folder ever runs (``trust_remote_code``
stays off, weights load from safetensors only), and a model that is neither on disk nor
downloadable is a ``ModelNotAvailableError`` that says how to provide it, never a traceback
and never a silent switch to another model.

Many Hub models keep only pickled weights (``pytorch_model.bin``) on ``main``; the Hub's
conversion bot offers their safetensors in an open pull request. Like ``transformers``
when safetensors are required, a Hub id without a revision takes its weights from such a
pull request, opened by the bot itself (anyone else's is never trusted) and converted from
the very ``.bin`` that ``main`` holds now, and everything else from ``main``. The resolved
pair of commits is written next to the Hugging Face cache, so a machine that later runs
offline finds the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
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
WEIGHT_PATTERNS = ["*.safetensors", "model.safetensors.index.json"]
# The names transformers looks for when it must load safetensors.
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_SUFFIXES = (".bin", ".h5", ".msgpack", ".ckpt", ".pt", ".pth")
# The Hub's conversion bot and the title of its pull requests (as transformers checks them).
CONVERSION_BOT = "SFconvertbot"
CONVERSION_TITLE = "Adding `safetensors` variant of this model"
MAX_DISCUSSIONS = 1000  # open pull requests read before giving up on finding the bot's
STORE_FOLDER = "forumtranslate-models"  # under $HF_HOME: resolutions and combined folders
RESOLUTION_FILE = "resolved-default.json"


@dataclass(frozen=True)
class ModelSource:
    """A model folder on disk and the commits its files come from.

    ``revision`` is the commit of the configuration and tokenizer; ``weights_revision`` that
    of the weights, which differs only when they come from the conversion bot's pull request
    (``weights_ref``, e.g. ``refs/pr/2``). A local folder's revision is a hash of its files.
    """

    name: str
    folder: Path
    revision: str
    weights_revision: str
    weights_ref: str | None = None

    @property
    def label(self) -> str:
        """One string naming both commits, for cache keys: ``main+weights`` or ``main``."""
        if self.weights_revision == self.revision:
            return self.revision
        return f"{self.revision}+{self.weights_revision}"

    def weights_record(self) -> dict[str, str] | None:
        """What run.json records besides ``revision`` when the weights come from elsewhere."""
        if self.weights_ref is None:
            return None
        return {"ref": self.weights_ref, "revision": self.weights_revision}


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
    weights: dict[str, str] | None = None  # {"ref", "revision"} of weights not from `revision`

    @property
    def max_output_tokens(self) -> int:
        """The most target tokens the decoder has positions for (start token included)."""
        config = self.model.config
        return int(getattr(config, "max_target_positions", None) or config.max_position_embeddings)

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


def hf_home() -> Path:
    """``$HF_HOME`` (default ``~/.cache/huggingface``), read at call time, as the Hub's
    library reads it at import time: a test or a caller may change it in between."""
    default = os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
    )
    return Path(os.environ.get("HF_HOME") or default).expanduser()


def hub_cache() -> Path:
    """The Hugging Face cache of downloaded repositories (``$HF_HUB_CACHE``, else
    ``$HF_HOME/hub``)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(explicit).expanduser() if explicit else hf_home() / "hub"


def hub_endpoint() -> str:
    """The Hub to ask (``$HF_ENDPOINT``, else huggingface.co): a mirror, or a test's stand-in."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _repo_folder(name: str) -> str:
    """The cache's folder name for a model id, as huggingface_hub spells it."""
    return "models--" + name.replace("/", "--")


def _how_to_provide(name: str) -> str:
    return (
        f"To use {name!r} here: on a machine with network access run "
        f"`forumtranslate models fetch {name}`, copy its Hugging Face cache "
        "(~/.cache/huggingface, or $HF_HOME) to this machine and set HF_HUB_OFFLINE=1; "
        "or save the model to a folder and pass that folder with --model."
    )


def _no_safetensors(name: str, problem: str, extra: str = "") -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"{problem}, and pickled weights (*.bin) are refused because "
        "loading them can run code. Either convert it yourself, on a machine you trust: "
        "model.save_pretrained(folder, safe_serialization=True), then --model folder; or "
        "pass --revision with a branch, tag or pull request (refs/pr/N) that has "
        f"model.safetensors{extra}",
        name,
    )


def resolve_model(name: str, revision: str | None = None) -> ModelSource:
    """The local folder holding ``name`` and the commits its files come from.

    A local folder is used as it is (its revision is a hash of its files). A Hub id is
    taken from the cache, and downloaded into it (with huggingface_hub's progress bars) only
    when it is not there and HF_HUB_OFFLINE is not set. Without ``revision`` the weights may
    come from the conversion bot's pull request (see the module's docstring); with one,
    every file comes from that revision.
    """
    folder = Path(name).expanduser()
    if folder.is_dir():
        _check_model_folder(folder)
        label = "local-sha256:" + _folder_hash(folder)
        return ModelSource(name, folder, label, label)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelNotAvailableError(f"model folder {name!r} does not exist")
    source = _cached_source(name, revision)
    if source is None:
        if _offline():
            raise ModelNotAvailableError(
                f"model {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is "
                f"set, so it cannot be downloaded. {_how_to_provide(name)}"
            )
        source = fetch_model(name, revision)
    _check_model_folder(source.folder, name)
    return source


def resolve_model_folder(name: str, revision: str | None = None) -> tuple[Path, str]:
    """``resolve_model`` as (folder, one revision string naming both commits)."""
    source = resolve_model(name, revision)
    return source.folder, source.label


def _cached_source(
    name: str, revision: str | None, *, offline: bool | None = None
) -> ModelSource | None:
    """What the cache already holds for ``name`` at ``revision``, without the network;
    None when it holds nothing usable and (unless ``offline``) a download may help."""
    offline = _offline() if offline is None else offline
    if revision is None:
        source = _recorded_source(name)
        if source is not None:
            return source
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(
            name,
            revision=revision,
            allow_patterns=FETCH_PATTERNS,
            local_files_only=True,
            cache_dir=hub_cache(),
        )
    except Exception:  # not cached (huggingface_hub raises several kinds)
        return None
    folder = Path(path)
    if not any(folder.glob("*.safetensors")):
        if revision is None and not offline:
            return None  # a download resolves the bot's conversion
        where = (
            f"the cached revision {revision or 'main'} ({folder.name[:12]}) has no "
            "safetensors weights"
        )
        extra = ""
        if revision is None:
            extra = (
                f"; or run `forumtranslate models fetch {name}` on a connected machine, which "
                f"also fetches the safetensors of {CONVERSION_BOT}'s conversion pull request"
            )
        raise _no_safetensors(name, where, extra)
    return ModelSource(name, folder, folder.name, folder.name)


def fetch_model(name: str, revision: str | None = None) -> ModelSource:
    """Download a model into the Hugging Face cache, for this run or for offline machines.

    With ``revision``, every file comes from it. Without, from ``main`` when ``main`` has
    safetensors weights; otherwise the weights come from the newest open pull request by
    the conversion bot, titled as the bot titles them, whose pickled weights are
    ``main``'s own, and the rest from ``main``.
    """
    from huggingface_hub import HfApi

    try:
        if revision is not None:
            folder = _snapshot(name, revision, FETCH_PATTERNS)
            if not any(folder.glob("*.safetensors")):
                raise _no_safetensors(
                    name, f"revision {revision} ({folder.name[:12]}) has no safetensors weights"
                )
            return ModelSource(name, folder, folder.name, folder.name)
        api = HfApi(endpoint=hub_endpoint())
        info = api.model_info(name, revision="main", files_metadata=True)
        main_files = {s.rfilename: s for s in info.siblings or ()}
        if any(weight in main_files for weight in SAFE_WEIGHTS):
            folder = _snapshot(name, "main", FETCH_PATTERNS)
            source = ModelSource(name, folder, folder.name, folder.name)
        else:
            number, commit = _conversion_pull_request(api, name, main_files)
            _tell(
                f"{name}: main ({str(info.sha)[:12]}) has no safetensors weights; taking "
                f"them from refs/pr/{number} ({commit[:12]}), the conversion of main's "
                f"{', '.join(_pickled(main_files))} by {CONVERSION_BOT}, and the rest "
                "from main"
            )
            source = _fetch_split(name, str(info.sha), number, commit)
    except ModelNotAvailableError:
        raise
    except Exception as err:
        raise ModelNotAvailableError(
            f"could not download model {name!r} ({_first_line(err)}). {_how_to_provide(name)}"
        ) from None
    _record_source(source)
    return source


def _tell(message: str) -> None:
    """A line for the person at the terminal, on stderr beside the download bars."""
    print(f"forumtranslate: {message}", file=sys.stderr, flush=True)


def _snapshot(
    name: str, revision: str, patterns: list[str], ignore: list[str] | None = None
) -> Path:
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            name,
            revision=revision,
            allow_patterns=patterns,
            ignore_patterns=ignore,
            cache_dir=hub_cache(),
            endpoint=hub_endpoint(),
        )
    )


def _pickled(files: dict[str, Any]) -> list[str]:
    """The PyTorch pickles the bot converts: ``pytorch_model.bin``, or its shards and index
    (main's TensorFlow or Flax weights, which it does not read, may differ)."""
    return sorted(
        f
        for f in files
        if f.startswith("pytorch_model") and f.endswith((".bin", ".bin.index.json"))
    )


def _blob_id(sibling: Any) -> str | None:
    """A file's content id on the Hub: the sha256 of an LFS file, else its git blob id."""
    lfs = getattr(sibling, "lfs", None)
    if lfs is not None:
        return lfs.sha256 if hasattr(lfs, "sha256") else lfs.get("sha256")
    return getattr(sibling, "blob_id", None)


def _conversion_pull_request(api: Any, name: str, main_files: dict[str, Any]) -> tuple[int, str]:
    """(number, commit) of the bot's open pull request that converts main's weights.

    Only a pull request opened by the bot counts, as in transformers, so that nobody can
    slip in weights by opening one with the same title; and only one whose PyTorch weights
    are byte for byte main's (same sha256), so the safetensors are a conversion of the
    weights that main holds now, not of older ones.
    """
    from huggingface_hub.utils import HfHubHTTPError

    by_bot, by_others = [], 0
    pulls = api.get_repo_discussions(name, discussion_type="pull_request", discussion_status="open")
    try:
        for count, pull in enumerate(pulls):
            if count >= MAX_DISCUSSIONS:
                break
            if not (
                pull.is_pull_request and pull.status == "open" and pull.title == CONVERSION_TITLE
            ):
                continue
            if pull.author == CONVERSION_BOT:
                by_bot.append(pull.num)
            else:
                by_others += 1
    except HfHubHTTPError as err:  # a repository with its discussions turned off
        if err.response is None or err.response.status_code not in (403, 404):
            raise
    pickled = _pickled(main_files)
    stale = 0
    for number in sorted(by_bot, reverse=True):
        info = api.model_info(name, revision=f"refs/pr/{number}", files_metadata=True)
        files = {s.rfilename: s for s in info.siblings or ()}
        if not any(weight in files for weight in SAFE_WEIGHTS):
            continue
        if pickled and all(
            f in files and _blob_id(files[f]) == _blob_id(main_files[f]) for f in pickled
        ):
            return number, str(info.sha)
        stale += 1
    notes = []
    if by_others:
        notes.append(
            f"{by_others} open pull request(s) with the conversion title not opened by "
            f"{CONVERSION_BOT} were not trusted"
        )
    if stale:
        notes.append(f"{stale} by {CONVERSION_BOT} converted other weights than main's")
    problem = (
        "neither main nor an open conversion pull request by "
        f"{CONVERSION_BOT} has safetensors weights"
    )
    raise _no_safetensors(name, problem + (f" ({'; '.join(notes)})" if notes else ""))


def _fetch_split(name: str, main_commit: str, number: int, weights_commit: str) -> ModelSource:
    """Download main's files but its weights, and the weights of pull request ``number``;
    both pinned to the commits that were checked."""
    main = _snapshot(name, main_commit, FETCH_PATTERNS, ignore=WEIGHT_PATTERNS)
    weights = _snapshot(name, weights_commit, WEIGHT_PATTERNS)
    _write_ref(name, "main", main_commit)
    _write_ref(name, f"refs/pr/{number}", weights_commit)
    folder = _combine(name, main, weights)
    return ModelSource(name, folder, main_commit, weights_commit, f"refs/pr/{number}")


def _write_ref(name: str, ref: str, commit: str) -> None:
    """Name a downloaded commit in the cache (``refs/main``, ``refs/refs/pr/N``) as
    huggingface_hub does, since a download pinned to a commit does not."""
    path = hub_cache() / _repo_folder(name) / "refs" / ref
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != commit:
        path.write_text(commit)


def _store(name: str) -> Path:
    return hf_home() / STORE_FOLDER / _repo_folder(name)


def _combine(name: str, main: Path, weights: Path) -> Path:
    """One folder that transformers (and CTranslate2's converter) can load: links to the
    main snapshot's files and to the pull request's weights, both in the Hub cache."""
    target = _store(name) / f"{main.name}+{weights.name}"
    wanted = {p.name: p for p in main.iterdir() if p.is_file() and p.name not in SAFE_WEIGHTS}
    wanted.update({p.name: p for p in weights.iterdir() if p.is_file()})
    if target.is_dir() and all((target / f).is_file() for f in wanted):
        return target
    target.mkdir(parents=True, exist_ok=True)
    for file_name, source in wanted.items():
        link = target / file_name
        if link.is_symlink() or link.exists():
            link.unlink()
        try:
            link.symlink_to(os.path.relpath(source, target))
        except FileExistsError:  # another process made it meanwhile
            continue
        except OSError:  # no symlinks here (Windows without the privilege): copy
            import shutil

            shutil.copyfile(source, link)
    return target


def _record_source(source: ModelSource) -> None:
    """Remember how ``source.name`` without a revision was resolved, for later runs and for
    offline machines (the pull request's author cannot be checked offline)."""
    from forumtranslate.storage import write_atomic

    snapshots = hub_cache() / _repo_folder(source.name) / "snapshots"
    record: dict[str, Any] = {
        "model": source.name,
        "revision": source.revision,
        "weights_ref": source.weights_ref or "main",
        "weights_revision": source.weights_revision,
        "files": [],
        "weights_files": [],
    }
    if source.weights_ref:
        main, weights = snapshots / source.revision, snapshots / source.weights_revision
        record["files"] = sorted(
            p.name for p in main.iterdir() if p.is_file() and p.name not in SAFE_WEIGHTS
        )
        record["weights_files"] = sorted(p.name for p in weights.iterdir() if p.is_file())
    path = _store(source.name) / RESOLUTION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def _recorded_source(name: str) -> ModelSource | None:
    """The resolution recorded by an earlier download, if its files are all still cached."""
    path = _store(name) / RESOLUTION_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        snapshots = hub_cache() / _repo_folder(name) / "snapshots"
        main = snapshots / record["revision"]
        weights = snapshots / record["weights_revision"]
        if record.get("weights_ref", "main") == "main":
            return None  # main has safetensors: the cache's own refs/main finds it
        needed = [main / f for f in record["files"]] + [
            weights / f for f in record["weights_files"]
        ]
        if not record["weights_files"] or not all(p.is_file() for p in needed):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    folder = _combine(name, main, weights)
    return ModelSource(name, folder, main.name, weights.name, str(record["weights_ref"]))


@dataclass(frozen=True)
class CachedRevision:
    """One commit of a model in the Hugging Face cache."""

    refs: tuple[str, ...]  # the branches or pull requests that pointed at it when fetched
    commit: str
    weights: tuple[tuple[str, int], ...]  # (file name, bytes) of its weights files
    size: int  # bytes of all its cached files


@dataclass(frozen=True)
class CachedModel:
    """A model in the cache, and what a run without --revision would load offline."""

    name: str
    revisions: tuple[CachedRevision, ...]
    ready: ModelSource | None
    problem: str | None = None  # why it is not ready, when it is not


def cached_models() -> list[CachedModel]:
    """Every model in the Hugging Face cache (``hub_cache()``), by name: to check an offline
    machine before a run."""
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir(hub_cache())
    except Exception:  # no cache folder yet (CacheNotFound), or unreadable
        return []
    models = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        revisions = tuple(
            CachedRevision(
                refs=tuple(sorted(revision.refs)),
                commit=revision.commit_hash,
                weights=tuple(
                    sorted(
                        (f.file_name, f.size_on_disk)
                        for f in revision.files
                        if f.file_name.endswith((".safetensors", *PICKLED_SUFFIXES))
                    )
                ),
                size=revision.size_on_disk,
            )
            for revision in sorted(repo.revisions, key=lambda r: (not r.refs, sorted(r.refs)))
        )
        try:
            ready, problem = _cached_source(repo.repo_id, None, offline=True), None
        except ModelNotAvailableError as err:
            ready, problem = None, err.message
        if ready is None and problem is None:
            problem = "main is not cached"
        models.append(CachedModel(repo.repo_id, revisions, ready, problem))
    return models


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def format_cached_models(models: list[CachedModel], cache: Path) -> str:
    """``models list``'s text: one block per model, one line per cached revision."""
    if not models:
        return f"no models in the Hugging Face cache at {cache}\n"
    lines = [f"Hugging Face cache: {cache}"]
    for model in models:
        lines.append(model.name)
        for revision in model.revisions:
            weights = ", ".join(f"{name} ({_size(size)})" for name, size in revision.weights)
            lines.append(
                f"  {', '.join(revision.refs) or '(commit)':<12} {revision.commit[:12]}  "
                f"{weights or 'no weights'}; {_size(revision.size)} in all"
            )
        ready = model.ready
        if ready is None:
            lines.append(f"  offline run: not ready: {model.problem}")
        elif ready.weights_ref:
            lines.append(
                f"  offline run: weights from {ready.weights_ref} "
                f"({ready.weights_revision[:12]}), the rest from main ({ready.revision[:12]})"
            )
        else:
            lines.append(f"  offline run: all files from main ({ready.revision[:12]})")
    return "\n".join(lines) + "\n"


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


def pick_device(device: str, gpus: int | None = None, engine: str = "torch") -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, checked against this machine: any
    other name torch knows (``meta``, ``tpu``...) cannot run a translation.

    The one place a device name is decided, for every backend. An engine other than torch
    counts its own CUDA GPUs (``gpus``, named as ``engine`` in the errors) and runs on CPU
    or CUDA only: ``mps`` is torch's (``ct2convert.pick_ct2_device``).
    """
    torch_runs = engine == "torch"
    if device == "cpu":
        return device
    cuda = re.fullmatch(r"cuda(?::(\d+))?", device)
    if cuda or device == "auto":
        if gpus is None:
            import torch

            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not cuda:
            return "cuda" if gpus else "cpu"
        if gpus == 0 and torch_runs:
            raise ModelNotAvailableError(f"device {device!r} asked for, but no CUDA GPU is visible")
        if int(cuda.group(1) or 0) >= gpus:
            raise ModelNotAvailableError(
                f"device {device!r} asked for, but {engine} sees {gpus} CUDA GPU(s)"
            )
        return device
    if device == "mps" and torch_runs:
        import torch

        if not torch.backends.mps.is_available():
            raise ModelNotAvailableError("device 'mps' asked for, but no Apple GPU is usable")
        return device
    names = "cpu, cuda, cuda:N, mps or auto" if torch_runs else "cpu, cuda, cuda:N or auto"
    raise ModelNotAvailableError(f"unknown device {device!r}; use {names}")


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

    source = resolve_model(name, revision)
    folder = source.folder
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
        revision=source.revision,
        family=family,
        folder=folder,
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        forced_first_id=forced_first_id,
        weights=source.weights_record(),
    )
