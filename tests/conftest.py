"""Shared fixtures: tiny random-weight models built once per test session, and small corpora.

The models are real ``transformers`` models (MarianMT and NLLB/M2M-100 layouts) whose
SentencePiece vocabularies are trained on the repository's own data; their weights are
random, so they translate nonsense, but every code path they exercise is the real one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from forumtranslate.tiny import TinyModelSpec, build_tiny_model

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
GLOSSARY = REPO / "glossary" / "terms.tsv"
SMALL_DOCS = ("opening-akazawa", "opening-onoda")


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread: the tiny models gain nothing from more, and on a busy 2-core
    machine OpenMP threads spinning against each other made decoding 40x slower."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("marian"), TinyModelSpec("marian"), DATA)


@pytest.fixture(scope="session")
def tiny_nllb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("nllb"), TinyModelSpec("nllb"), DATA)


@pytest.fixture(scope="session", params=["marian", "nllb"])
def tiny_model(request: pytest.FixtureRequest) -> Path:
    """Each test that takes this runs once per model family."""
    return request.getfixturevalue(f"tiny_{request.param}")


# The tokenizer kinds the glossary guarantee is tested on (tests/test_terms_matrix.py).
TOKENIZER_KINDS = {
    "spm-bpe": TinyModelSpec("marian", spm_type="bpe"),
    "spm-unigram-bytes-shared": TinyModelSpec(
        "marian", byte_fallback=True, shared_vocab=True, character_coverage=0.98
    ),
    "spm-bpe-bytes": TinyModelSpec(
        "marian", spm_type="bpe", byte_fallback=True, character_coverage=0.995
    ),
    "byte-bpe": TinyModelSpec("marian", tokenizer="byte-bpe"),
}


@pytest.fixture(scope="session")
def tokenizer_kinds(
    tmp_path_factory: pytest.TempPathFactory, tiny_marian: Path, tiny_nllb: Path
) -> dict[str, Path]:
    """A tiny model per tokenizer kind: the two fixtures above (SentencePiece unigram with
    a vocabulary per side; NLLB's shared BPE) and the kinds of ``TOKENIZER_KINDS``."""
    kinds = {"spm-unigram": tiny_marian, "nllb": tiny_nllb}
    for name, spec in TOKENIZER_KINDS.items():
        kinds[name] = build_tiny_model(tmp_path_factory.mktemp(name), spec, DATA)
    return kinds


@pytest.fixture(scope="session")
def loaded_models(tiny_marian: Path, tiny_nllb: Path) -> dict:
    from forumtranslate.models import load_model

    return {
        "marian": load_model(str(tiny_marian), device="cpu"),
        "nllb": load_model(str(tiny_nllb), device="cpu"),
    }


def make_corpus(root: Path, doc_ids: tuple[str, ...] = SMALL_DOCS) -> Path:
    """A data folder holding only ``doc_ids``: the real files, a shorter manifest."""
    data = root / "data"
    (data / "ja").mkdir(parents=True)
    (data / "en").mkdir()
    lines = (DATA / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if line.split("\t")[0] in doc_ids]
    (data / "manifest.tsv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    for doc_id in doc_ids:
        for lang in ("ja", "en"):
            shutil.copy(DATA / lang / f"{doc_id}.txt", data / lang / f"{doc_id}.txt")
    return data


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path)
