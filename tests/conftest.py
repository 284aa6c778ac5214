"""Shared fixtures: tiny random-weight models built once per test session, and small corpora.

The models are real ``transformers`` models (MarianMT and NLLB/M2M-100 layouts) whose
SentencePiece vocabularies are trained on the repository's own data; their weights are
random, so they translate nonsense, but every code path they exercise is the real one.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


# --- trained stand-ins: small models that write the references' English ----------------


def load_eval_script(name: str) -> Any:
    """Import eval/<name>.py, a script outside the package."""
    import importlib.util
    import sys

    if name in sys.modules:
        return sys.modules[name]
    sys.path.insert(0, str(REPO / "eval"))  # the scripts import each other
    spec = importlib.util.spec_from_file_location(name, REPO / "eval" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@dataclass
class StandIns:
    """Two stand-ins trained on the same few dozen gold pairs, and a one-document corpus of
    exactly those sentences: ``faithful`` learnt the true references, ``swapped`` the
    references with every glossary term's English replaced by a wrong rendering."""

    faithful: Path
    swapped: Path
    pairs: list[Any]  # eval/standin.py's Pair, in corpus order
    swapped_pairs: list[Any]
    data: Path
    root: Path
    outputs: dict[tuple[str, str, str, int], list[dict[str, Any]]] = field(default_factory=dict)

    def translate(
        self, model: str, backend: str = "transformers", terms: str = "off", beam: int = 4
    ) -> list[dict[str, Any]]:
        """The translations.jsonl records of ``forumtranslate.run`` on the pairs (cached)."""
        key = (model, backend, terms, beam)
        if key not in self.outputs:
            from forumtranslate.align import read_translations
            from forumtranslate.run import RunConfig, run
            from forumtranslate.translate import DecodingOptions

            out = self.root / "runs" / "-".join(map(str, key))
            config = RunConfig(
                out_dir=out,
                data_dir=self.data,
                glossary_path=GLOSSARY,
                model=str(getattr(self, model)),
                backend=backend,
                device="cpu",
                decoding=DecodingOptions(beam_size=beam, terms=terms),
                align_and_score=False,
                intra_threads=1,
            )
            with pytest.MonkeyPatch.context() as patch:  # ct2's conversions stay in here
                patch.setenv("HF_HOME", str(self.root / "hf-home"))
                run(config, progress=lambda _step, _done: None)
            records = read_translations(out)
            assert [r["source"] for r in records] == [p.ja for p in self.pairs]
            self.outputs[key] = records
        return self.outputs[key]


# 240 steps of 8 short pairs each; both models trained in about 6 minutes on this busy
# 2-core machine (several test runs beside it), well under a minute each on an idle core.
STANDIN_SPEC_KW = dict(
    shape="standin",
    epochs=60,
    batch_size=8,
    learning_rate=3e-3,
    warmup_steps=20,
    dropout=0.0,
    target_dropout=0.0,  # 32 short pairs: the decoder learnt to read the source without it
)


def pick_standin_pairs(pairs: list[Any], glossary: Any, with_terms: int, without: int) -> list:
    """Short 1-1 gold pairs the segmenter keeps whole: ``with_terms`` holding a glossary
    term, ``without`` holding none; in corpus order."""
    from forumtranslate.segment import segment_text

    picked, plain = [], []
    for pair in pairs:
        if len(pair.ja) > 60 or [s.text for s in segment_text(pair.ja, "ci", "ja")] != [pair.ja]:
            continue
        if glossary.find_terms(pair.ja):
            if len(picked) < with_terms:
                picked.append(pair)
        elif len(plain) < without:
            plain.append(pair)
    return sorted(picked + plain, key=pairs.index)


@pytest.fixture(scope="session")
def standins(tmp_path_factory: pytest.TempPathFactory) -> StandIns:
    """The realistic fixture: trained (not random) models, for tests that need output that
    looks like the references and cross-attention that means something."""
    from forumtranslate.glossary import load_glossary
    from forumtranslate.train import TrainSpec, train_marian

    standin = load_eval_script("standin")
    root = tmp_path_factory.mktemp("standins")
    glossary = load_glossary(GLOSSARY)
    pairs = pick_standin_pairs(standin.gold_pairs(), glossary, with_terms=24, without=8)
    swapped = [standin.swap_terms(pair, glossary)[0] for pair in pairs]
    data = root / "data"
    (data / "ja").mkdir(parents=True)
    (data / "en").mkdir()
    header = (DATA / "manifest.tsv").read_text(encoding="utf-8").splitlines()[0]
    (data / "manifest.tsv").write_text(f"{header}\nci\tCI\t-\t-\tstand-in pairs\t00:00\n")
    (data / "ja" / "ci.txt").write_text("\n\n".join(p.ja for p in pairs) + "\n", encoding="utf-8")
    (data / "en" / "ci.txt").write_text("\n\n".join(p.en for p in pairs) + "\n", encoding="utf-8")
    spec = TrainSpec(**STANDIN_SPEC_KW)
    faithful = root / "faithful"
    train_marian([(p.ja, p.en) for p in pairs], faithful, spec, DATA)
    swapped_model = root / "swapped"
    train_marian([(p.ja, p.en) for p in swapped], swapped_model, spec, DATA)
    return StandIns(faithful, swapped_model, pairs, swapped, data, root)
