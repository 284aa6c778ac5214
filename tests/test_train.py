"""Training a stand-in model: deterministic, loadable, and the swapped references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import DATA, GLOSSARY, load_eval_script

PAIRS = [
    ("経済安全保障は重要です。", "Economic security is important."),
    ("サプライチェーンを強化します。", "We will strengthen supply chains."),
    ("同志国と協力します。", "We will cooperate with like-minded countries."),
    ("ありがとうございました。", "Thank you very much."),
]


@pytest.mark.slow
def test_training_is_deterministic_and_the_folder_loads(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from forumtranslate.hf import TransformersTranslator
    from forumtranslate.models import load_model
    from forumtranslate.train import TrainSpec, train_marian
    from forumtranslate.translate import DecodingOptions

    spec = TrainSpec(shape="tiny", epochs=3, batch_size=2, warmup_steps=2)
    first = train_marian(PAIRS, tmp_path / "a", spec, DATA)
    second = train_marian(PAIRS, tmp_path / "b", spec, DATA)
    assert first.steps == second.steps == 6
    assert first.epoch_losses == second.epoch_losses
    weights_a = load_file(tmp_path / "a" / "model.safetensors")
    weights_b = load_file(tmp_path / "b" / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all(weights_a[k].equal(weights_b[k]) for k in weights_a)
    assert (tmp_path / "a" / "training.json").exists()
    # the decoder-start row stays zero (CTranslate2 starts Marian decoders from zeros),
    # while the other rows, tied to the output projection, were trained
    start = json.loads((tmp_path / "a" / "config.json").read_text())["decoder_start_token_id"]
    embeddings = weights_a["model.shared.weight"]
    assert float(embeddings[start].abs().max()) == 0.0
    assert float(embeddings.abs().sum()) > 0.0

    loaded = load_model(str(tmp_path / "a"), device="cpu")
    assert loaded.model.config.scale_embedding is True
    out = TransformersTranslator(loaded, DecodingOptions(beam_size=2, terms="off"))
    assert len(out.translate([ja for ja, _ in PAIRS])) == len(PAIRS)


def test_swapped_references_replace_every_term_in_case_and_number() -> None:
    from forumtranslate.glossary import load_glossary

    standin = load_eval_script("standin")
    glossary = load_glossary(GLOSSARY)
    pair = standin.Pair(
        "t",
        "経済安全保障のためサプライチェーンと国家安全保障局とシンクタンク。",
        "Economic security needs supply chains, the National Security Secretariat and think tanks.",
    )
    swapped, count = standin.swap_terms(pair, glossary)
    # 国家安全保障局 is an organisation of its own in the glossary, with no wrong rendering
    assert swapped.en == (
        "Economic safety needs supply networks, the National Security Secretariat "
        "and policy institutes."
    )
    assert count == 3
    # a wrong rendering must never be an accepted one
    for entry in glossary.entries:
        wrong = standin.wrong_rendering(entry)
        assert wrong is None or wrong.lower() not in {f.lower() for f in entry.allowed}
