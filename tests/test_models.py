"""Loading models: local folders, Hub ids offline, and folders we refuse to load."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from forumtranslate.cli import main as cli_main
from forumtranslate.errors import ModelNotAvailableError
from forumtranslate.models import (
    CONVERSION_BOT,
    CONVERSION_TITLE,
    LoadedModel,
    load_model,
    pick_device,
    resolve_model,
)

from .hubstub import PullRequest, StubHub, StubRepo, split_model_folder


def test_local_folder_loads_with_a_content_revision(tiny_model: Path) -> None:
    loaded = load_model(str(tiny_model), device="cpu")
    assert loaded.family in {"marian", "nllb"}
    assert loaded.revision.startswith("local-sha256:")
    assert loaded.max_input_tokens >= 512


def test_hub_id_offline_and_uncached_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotAvailableError) as caught:
        load_model("Helsinki-NLP/opus-mt-ja-en", device="cpu")
    message = str(caught.value)
    assert "Helsinki-NLP/opus-mt-ja-en" in message
    assert "HF_HUB_OFFLINE" in message
    assert "--model" in message
    assert "forumtranslate models fetch" in message


def test_cli_offline_error_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, small_corpus: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = CliRunner().invoke(
        cli_main,
        ["run", "--data", str(small_corpus), "--out", str(tmp_path / "run")],
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "not in the local Hugging Face cache" in result.output


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (("config.json",), "no config.json"),
        (("tokenizer.json", "source.spm", "target.spm", "vocab.json"), "no tokenizer"),
        (("model.safetensors",), "no .safetensors"),
    ],
)
def test_incomplete_model_folders_are_refused(
    tiny_marian: Path, tmp_path: Path, remove: tuple[str, ...], message: str
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_marian, folder)
    for name in remove:
        (folder / name).unlink(missing_ok=True)
    if "model.safetensors" in remove:
        (folder / "pytorch_model.bin").write_bytes(b"pickles can run code")
    with pytest.raises(ModelNotAvailableError, match=message):
        load_model(str(folder), device="cpu")


def test_missing_local_folder_is_an_error_not_a_download() -> None:
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        load_model("./no/such/model", device="cpu")


# --- Hub ids against a stand-in of the Hub (tests/hubstub.py) ---------------------------

REPO_ID = "Helsinki-NLP/opus-mt-ja-en"
BOT_PR = dict(author=CONVERSION_BOT, title=CONVERSION_TITLE)


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face home, online; returns it."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    for name in ("HF_HUB_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def serve(hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., StubHub]]:
    """``serve(repo, ...)`` starts a stand-in hub for the test and points HF_ENDPOINT at it;
    it stops when the test ends."""
    with ExitStack() as stack:

        def start(*repos: StubRepo) -> StubHub:
            hub = stack.enter_context(StubHub(list(repos)))
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            return hub

        yield start


@pytest.fixture(scope="session")
def old_style_repo(tiny_marian: Path) -> tuple[dict[str, bytes], bytes]:
    """The tiny Marian model as opus-mt-ja-en's main holds it (pytorch_model.bin), and its
    safetensors for a conversion pull request."""
    return split_model_folder(tiny_marian)


def _assert_loaded_weights_are(loaded: LoadedModel, served: bytes) -> None:
    """The model holds exactly the tensors of the served safetensors file."""
    from safetensors.torch import load

    state = loaded.model.state_dict()
    tensors = load(served)
    assert tensors
    for key, tensor in tensors.items():
        assert torch.equal(state[key], tensor), key


@pytest.mark.slow
def test_main_with_safetensors_is_used_as_it_is(serve, tiny_marian: Path) -> None:
    files = {p.name: p.read_bytes() for p in tiny_marian.iterdir() if p.is_file()}
    hub = serve(StubRepo(REPO_ID, files))
    loaded = load_model(REPO_ID, device="cpu")
    assert loaded.revision == hub.commit(REPO_ID, "main")
    assert loaded.weights is None
    assert not any("discussions" in path for _, path, _ in hub.requests)
    _assert_loaded_weights_are(loaded, files["model.safetensors"])


@pytest.mark.slow
def test_weights_come_from_the_conversion_bots_pull_request(
    serve, old_style_repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    main, safetensors = old_style_repo
    others = PullRequest(3, "someone", "Update README.md", {"README.md": b"hello\n"})
    bot = PullRequest(2, files={"model.safetensors": safetensors}, **BOT_PR)
    hub = serve(StubRepo(REPO_ID, main, [bot, others]))
    loaded = load_model(REPO_ID, device="cpu")
    assert loaded.revision == hub.commit(REPO_ID, "main")
    assert loaded.weights == {"ref": "refs/pr/2", "revision": hub.commit(REPO_ID, "refs/pr/2")}
    _assert_loaded_weights_are(loaded, safetensors)
    assert hub.fetched("model.safetensors") and not hub.fetched("pytorch_model.bin")
    # the tokenizer and config are main's files
    assert (loaded.folder / "vocab.json").read_bytes() == main["vocab.json"]

    # offline afterwards, with the hub gone: the same files, the same commits
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    again = load_model(REPO_ID, device="cpu")
    assert (again.revision, again.weights) == (loaded.revision, loaded.weights)

    listing = CliRunner().invoke(cli_main, ["models", "list"])
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    main_line = next(line for line in lines if line.strip().startswith("main "))
    pr_line = next(line for line in lines if line.strip().startswith("refs/pr/2"))
    assert hub.commit(REPO_ID, "main")[:12] in main_line and "no weights" in main_line
    assert hub.commit(REPO_ID, "refs/pr/2")[:12] in pr_line
    assert f"model.safetensors ({len(safetensors) / 1e6:.1f} MB)" in pr_line
    assert f"weights from refs/pr/2 ({hub.commit(REPO_ID, 'refs/pr/2')[:12]})" in listing.output


def test_a_pull_request_by_anyone_else_is_not_trusted(serve, old_style_repo) -> None:
    main, safetensors = old_style_repo
    mallory = PullRequest(1, "mallory", CONVERSION_TITLE, {"model.safetensors": safetensors})
    hub = serve(StubRepo(REPO_ID, main, [mallory]))
    result = CliRunner().invoke(cli_main, ["models", "fetch", REPO_ID])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    message = result.output.strip()
    assert "\n" not in message
    assert "not opened by SFconvertbot were not trusted" in message
    assert "save_pretrained(folder, safe_serialization=True)" in message
    assert "--revision" in message
    assert not hub.fetched("model.safetensors")
    assert not any("/revision/refs%2Fpr%2F1" in path for _, path, _ in hub.requests)


def test_no_safetensors_anywhere_is_a_clear_error(
    serve, old_style_repo, tmp_path: Path, small_corpus: Path
) -> None:
    main, _ = old_style_repo
    hub = serve(StubRepo(REPO_ID, main))
    result = CliRunner().invoke(
        cli_main, ["run", "--data", str(small_corpus), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert (
        f"{REPO_ID}: neither main nor an open conversion pull request by SFconvertbot has "
        "safetensors weights, and pickled weights (*.bin) are refused"
    ) in result.output
    assert "safe_serialization=True" in result.output and "--revision" in result.output
    assert not hub.fetched("pytorch_model.bin")


def test_a_repository_with_discussions_turned_off_has_no_conversion(serve, old_style_repo) -> None:
    main, _ = old_style_repo
    serve(StubRepo(REPO_ID, main, discussions=False))
    with pytest.raises(ModelNotAvailableError, match="neither main nor an open conversion"):
        resolve_model(REPO_ID)


def test_a_conversion_of_older_weights_is_not_used(serve, old_style_repo) -> None:
    """The bot's pull request was made from a .bin that main has since replaced."""
    main, safetensors = old_style_repo
    before = dict(main, **{"pytorch_model.bin": main["pytorch_model.bin"] + b"older"})
    bot = PullRequest(1, files={"model.safetensors": safetensors}, base=before, **BOT_PR)
    hub = serve(StubRepo(REPO_ID, main, [bot]))
    with pytest.raises(ModelNotAvailableError, match="1 by SFconvertbot converted other weights"):
        load_model(REPO_ID, device="cpu")
    assert not hub.fetched("model.safetensors")


def test_files_added_to_main_after_the_conversion_do_not_matter(serve, old_style_repo) -> None:
    """opus-mt's main may have gained tf_model.h5 or a new README since the bot's pull
    request: only the PyTorch weights it converted must be main's."""
    main, safetensors = old_style_repo
    bot = PullRequest(1, files={"model.safetensors": safetensors}, base=dict(main), **BOT_PR)
    now = dict(main, **{"tf_model.h5": b"HDF5 weights", "README.md": b"# new card\n"})
    hub = serve(StubRepo(REPO_ID, now, [bot]))
    source = resolve_model(REPO_ID)
    assert source.weights_ref == "refs/pr/1"
    assert source.revision == hub.commit(REPO_ID, "main") != source.weights_revision
    assert not hub.fetched("tf_model.h5")


def test_revision_overrides_the_resolution(serve, old_style_repo) -> None:
    main, safetensors = old_style_repo
    bot = PullRequest(1, files={"model.safetensors": safetensors}, **BOT_PR)
    hub = serve(StubRepo(REPO_ID, main, [bot]))
    with pytest.raises(ModelNotAvailableError, match=r"revision main \(.*--revision"):
        resolve_model(REPO_ID, "main")
    source = resolve_model(REPO_ID, "refs/pr/1")
    assert source.revision == source.weights_revision == hub.commit(REPO_ID, "refs/pr/1")
    assert source.weights_ref is None
    assert not any("discussions" in path for _, path, _ in hub.requests)


@pytest.mark.slow
def test_a_dropped_download_resumes_and_the_run_records_both_commits(
    serve, old_style_repo, tmp_path: Path, small_corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server hangs up in the middle of model.safetensors: huggingface_hub goes on
    with a Range request from where it was cut; when the server keeps failing it gives up,
    the error is one line, and the same command run again completes. The run loads the
    pull request's weights and records both commits."""
    import huggingface_hub.constants

    # the real file is read in 10 MiB chunks and a cut keeps whole chunks: scale them down
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    main, safetensors = old_style_repo
    bot = PullRequest(1, files={"model.safetensors": safetensors}, **BOT_PR)
    hub = serve(StubRepo(REPO_ID, main, [bot]))
    half = len(safetensors) // 2
    hub.drops["model.safetensors"] = [half] + [0] * 5  # then nothing until it gives up
    args = ["run", "--data", str(small_corpus), "--out", str(tmp_path / "run"), "--beam", "1"]
    first = CliRunner().invoke(cli_main, args)
    assert first.exit_code == 2, first.output
    assert "could not download model" in first.output and "Traceback" not in first.output
    ranges = [r for _, _, r in hub.fetched("model.safetensors")]
    assert ranges[0] is None and len(ranges) > 1 and not hub.drops["model.safetensors"]
    resumed_at = int(ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= half and resumed_at % (64 * 1024) == 0
    assert set(ranges[1:]) == {f"bytes={resumed_at}-"}  # it never started again from 0
    assert not list((tmp_path / "run").glob("translations.*"))

    # this huggingface_hub deletes a partial file when it gives up: the rerun starts afresh
    second = CliRunner().invoke(cli_main, args)
    assert second.exit_code == 0, second.output
    assert hub.fetched("model.safetensors")[-1][2] is None
    settings = json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))
    translator = settings["translator"]
    assert translator["model"] == REPO_ID
    assert translator["revision"] == hub.commit(REPO_ID, "main")
    assert translator["weights"] == {
        "ref": "refs/pr/1",
        "revision": hub.commit(REPO_ID, "refs/pr/1"),
    }
    cached = next((tmp_path / "hf" / "hub").rglob("model.safetensors"))
    assert cached.read_bytes() == safetensors
    assert (tmp_path / "run" / "scores.json").is_file()


@pytest.mark.slow
def test_models_fetch_says_what_came_from_where_then_offline_loads_it(
    serve, tiny_nllb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NLLB's repository is laid out as opus-mt's: main pickled, the bot's PR safetensors."""
    nllb = "facebook/nllb-200-distilled-600M"
    main, safetensors = split_model_folder(tiny_nllb)
    bot = PullRequest(39, files={"model.safetensors": safetensors}, **BOT_PR)
    hub = serve(StubRepo(nllb, main, [bot]))
    result = CliRunner().invoke(cli_main, ["models", "fetch", nllb])
    assert result.exit_code == 0, result.output
    main_commit, pr_commit = hub.commit(nllb, "main"), hub.commit(nllb, "refs/pr/39")
    assert (
        f"{nllb}: config and tokenizer from main ({main_commit}), "
        f"weights from refs/pr/39 ({pr_commit})"
    ) in result.output

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = len(hub.requests)
    loaded = load_model(nllb, device="cpu")
    assert len(hub.requests) == requests  # from the cache alone
    assert loaded.family == "nllb" and loaded.revision == main_commit
    assert loaded.weights == {"ref": "refs/pr/39", "revision": pr_commit}
    _assert_loaded_weights_are(loaded, safetensors)


def test_offline_cache_with_only_mains_pickles_says_how_to_fetch(
    serve, old_style_repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache filled by other tools (main only) cannot be completed offline."""
    from huggingface_hub import snapshot_download

    from forumtranslate.models import FETCH_PATTERNS, hub_cache

    main, safetensors = old_style_repo
    bot = PullRequest(1, files={"model.safetensors": safetensors}, **BOT_PR)
    hub = serve(StubRepo(REPO_ID, main, [bot]))
    snapshot_download(
        REPO_ID, allow_patterns=FETCH_PATTERNS, cache_dir=hub_cache(), endpoint=hub.url
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as caught:
        load_model(REPO_ID, device="cpu")
    message = str(caught.value)
    assert "the cached revision main" in message
    assert f"forumtranslate models fetch {REPO_ID}" in message
    listing = CliRunner().invoke(cli_main, ["models", "list"])
    assert "offline run: not ready: the cached revision main" in listing.output


def test_pick_device_decides_for_an_engine_that_counts_its_own_gpus() -> None:
    """One decider of device names: CTranslate2 passes the GPUs it sees, and has no mps."""
    assert pick_device("auto", 0, engine="CTranslate2") == "cpu"
    assert pick_device("auto", 2, engine="CTranslate2") == "cuda"
    assert pick_device("cuda:1", 2, engine="CTranslate2") == "cuda:1"
    with pytest.raises(ModelNotAvailableError, match=r"CTranslate2 sees 2 CUDA GPU\(s\)"):
        pick_device("cuda:2", 2, engine="CTranslate2")
    with pytest.raises(ModelNotAvailableError, match=r"CTranslate2 sees 0 CUDA GPU\(s\)"):
        pick_device("cuda", 0, engine="CTranslate2")
    with pytest.raises(ModelNotAvailableError, match=r"'mps'; use cpu, cuda, cuda:N or auto$"):
        pick_device("mps", 0, engine="CTranslate2")
    with pytest.raises(ModelNotAvailableError, match=r"'cuda:'; use cpu, cuda, cuda:N, mps or"):
        pick_device("cuda:")
