"""Loading models: local folders, Hub ids offline, and folders we refuse to load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from forumtranslate.cli import main
from forumtranslate.errors import ModelNotAvailableError
from forumtranslate.models import load_model


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
        main,
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
