"""The CTranslate2 backend: conversion and its cache, agreement with transformers, the
glossary guarantee, and the run folder end to end (the same checks as the transformers
backend's, on the same tiny models)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from forumtranslate import ct2 as backend
from forumtranslate import ct2convert
from forumtranslate.cli import main
from forumtranslate.errors import ForumTranslateError, ModelNotAvailableError
from forumtranslate.glossary import check_terms, load_glossary
from forumtranslate.hf import TransformersTranslator
from forumtranslate.records import TermMatch
from forumtranslate.run import JOURNAL_FILE, RunConfig, make_translator, run
from forumtranslate.segment import segment_text
from forumtranslate.translate import DecodingOptions

from .conftest import DATA, GLOSSARY
from .test_run import OUTPUTS, CrashAfter, config_for, read_records

# Sentences with several terms, repeated terms, source variants and nested terms.
CASE_SEGMENTS = (
    "opening-tsutsui-010",
    "opening-tsutsui-014",
    "panel-4-036",
    "panel-1-026",
    "opening-akazawa-009",
    "panel-4-023",
)


@pytest.fixture(scope="module")
def ct2_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Converted models go to a temporary HF_HOME, shared by this module's tests."""
    home = tmp_path_factory.mktemp("hf-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def ct2_models(ct2_home: Path, tiny_marian: Path, tiny_nllb: Path) -> dict:
    return {
        family: ct2convert.load_ct2_model(
            str(folder), device="cpu", compute_type="float32", intra_threads=1
        )
        for family, folder in (("marian", tiny_marian), ("nllb", tiny_nllb))
    }


def corpus_sentences(doc_id: str, count: int) -> list[str]:
    text = (DATA / "ja" / f"{doc_id}.txt").read_text(encoding="utf-8")
    return [s.text for s in segment_text(text, doc_id)][:count]


def segment(seg_id: str) -> str:
    doc_id = seg_id.rsplit("-", 1)[0]
    text = (DATA / "ja" / f"{doc_id}.txt").read_text(encoding="utf-8")
    [found] = [s.text for s in segment_text(text, doc_id) if s.seg_id == seg_id]
    return found


@pytest.fixture(scope="module")
def term_cases() -> list[tuple[str, list[TermMatch]]]:
    """The hard cases above, then every sentence with terms of two documents."""
    glossary = load_glossary(GLOSSARY)
    sentences = [segment(seg_id) for seg_id in CASE_SEGMENTS]
    sentences.append(segment("panel-4-023") + segment("panel-1-026"))  # nested terms
    sentences += corpus_sentences("opening-akazawa", 40) + corpus_sentences("panel-3", 40)
    cases = [(s, glossary.find_terms(s)) for s in sentences]
    return [(s, terms) for s, terms in cases if terms]


# -- conversion ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_conversion_is_cached_by_model_revision_and_quantisation(
    ct2_models: dict, ct2_home: Path, family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ct2_models[family]
    assert model.converted.parent == ct2_home / ct2convert.CACHE_FOLDER
    assert (model.converted / "model.bin").is_file()
    meta = json.loads((model.converted / ct2convert.META_FILE).read_text())
    assert meta["revision"] == model.revision and meta["quantization"] == "float32"
    assert not list(model.converted.parent.glob(".converting-*"))  # no half-written folder

    def no_converter(*args: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(ct2convert, "_run_converter", no_converter)
    again = ct2convert.load_ct2_model(str(model.folder), device="cpu", compute_type="float32")
    assert again.converted == model.converted
    assert ct2convert.converted_folder(model.name, model.revision, "int8") != model.converted
    assert ct2convert.converted_folder(model.name, "other", "float32") != model.converted


def test_the_ct2_device_is_models_answer_in_ctranslate2s_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ctranslate2

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 2)
    assert ct2convert.pick_ct2_device("auto") == ("cuda", 0)
    assert ct2convert.pick_ct2_device("cpu") == ("cpu", 0)
    assert ct2convert.pick_ct2_device("cuda") == ("cuda", 0)
    assert ct2convert.pick_ct2_device("cuda:1") == ("cuda", 1)
    with pytest.raises(ModelNotAvailableError, match="but CTranslate2 sees 2 CUDA GPU"):
        ct2convert.pick_ct2_device("cuda:2")
    with pytest.raises(ForumTranslateError, match=r"'tpu'; use cpu, cuda, cuda:N or auto$"):
        ct2convert.pick_ct2_device("tpu")
    with pytest.raises(ForumTranslateError, match="cannot run on 'mps'"):
        ct2convert.pick_ct2_device("mps")
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 0)
    assert ct2convert.pick_ct2_device("auto") == ("cpu", 0)
    with pytest.raises(ModelNotAvailableError, match="but CTranslate2 sees 0 CUDA GPU"):
        ct2convert.pick_ct2_device("cuda")


def test_default_compute_type_is_int8_on_cpu_and_unknown_ones_are_refused() -> None:
    assert ct2convert.resolve_compute_type("default", "cpu") == "int8"
    with pytest.raises(ForumTranslateError, match="unknown compute type"):
        ct2convert.resolve_compute_type("int3", "cpu")


# -- agreement with transformers ----------------------------------------------------------


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_float32_greedy_gives_the_transformers_tokens(
    ct2_models: dict, loaded_models: dict, family: str
) -> None:
    """The conversion is faithful: same model, same greedy search, same output (over the
    whole vocabulary: the models of ``ct2_models`` have no shortlist)."""
    options = DecodingOptions(beam_size=1, terms="off", shortlist=0)
    sources = corpus_sentences("panel-1", 6)
    ours = backend.CT2Translator(ct2_models[family], options).translate(sources)
    reference = TransformersTranslator(loaded_models[family], options).translate(sources)
    assert ours == reference


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_float32_confidence_is_the_transformers_one(
    ct2_models: dict, loaded_models: dict, family: str
) -> None:
    """Two scorers, CTranslate2's ``score_batch`` and a torch forward pass, give the same
    log-probabilities for the same greedy output (over the whole vocabulary: the models of
    ``ct2_models`` have no shortlist)."""
    options = DecodingOptions(beam_size=1, terms="off", shortlist=0)
    sources = [*corpus_sentences("panel-1", 4), "ＡＩと\u200b半導体\t（試行）"]
    none = [[] for _ in sources]
    ours = backend.CT2Translator(ct2_models[family], options).translate_batch_scored(sources, none)
    theirs = TransformersTranslator(loaded_models[family], options).translate_batch_scored(
        sources, none
    )
    assert ours[0] == theirs[0]
    for mine, other in zip(ours[1], theirs[1]):
        assert (mine is None) == (other is None)
        if mine is not None and other is not None:
            assert mine.tokens == other.tokens
            assert mine.mean_logprob == pytest.approx(other.mean_logprob, abs=1e-3)
            assert mine.min_logprob == pytest.approx(other.min_logprob, abs=1e-3)
            assert (mine.min_position, mine.min_token) == (other.min_position, other.min_token)


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_terms_put_in_after_decoding_are_left_out_of_the_confidence(
    ct2_models: dict, term_cases: list, family: str
) -> None:
    translator = backend.CT2Translator(ct2_models[family], DecodingOptions(beam_size=1))
    sources = [source for source, _ in term_cases]
    terms = [found for _, found in term_cases]
    hypotheses = translator._decode(sources, terms)
    assert any(h.tokens != h.decoded for h in hypotheses), "no term was edited in"
    _, confidences = translator.translate_batch_scored(sources, terms)
    for hypothesis, confidence in zip(hypotheses, confidences):
        assert confidence is not None
        assert confidence.tokens == len(hypothesis.decoded)
        assert confidence.min_token == hypothesis.decoded[confidence.min_position]


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_exact_length_gives_every_sentence_its_limit_in_both_backends(
    ct2_models: dict, loaded_models: dict, family: str
) -> None:
    """The benchmarks' equal-work option: EOS is banned until the length limit."""
    options = DecodingOptions(beam_size=2, terms="off", exact_length=True)
    translator = backend.CT2Translator(ct2_models[family], options)
    reference = TransformersTranslator(loaded_models[family], options)
    sources = corpus_sentences("opening-onoda", 4)
    hypotheses = translator._decode(sources, [[] for _ in sources])
    first = loaded_models[family].forced_first_id is not None  # NLLB's language token
    ids = reference._decode(sources, [[] for _ in sources])
    for source, hypothesis, theirs in zip(sources, hypotheses, ids):
        n = translator.count_tokens([source])[0]
        expected = 2 * n + 10 - ct2_models[family].eos_at_limit  # a forced EOS is not a token
        assert len(hypothesis.tokens) == len(theirs) - first == expected


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_greedy_batching_changes_nothing(ct2_models: dict, family: str) -> None:
    translator = backend.CT2Translator(ct2_models[family], DecodingOptions(beam_size=1))
    glossary = load_glossary(GLOSSARY)
    sources = corpus_sentences("opening-akazawa", 6)
    terms = [glossary.find_terms(s) for s in sources]
    together = translator.translate_batch(sources, terms)
    assert together == [translator.translate_batch([s], [t])[0] for s, t in zip(sources, terms)]


# -- the glossary guarantee ---------------------------------------------------------------


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_hard_terms_give_full_term_accuracy(
    ct2_models: dict, term_cases: list, family: str, beam: int
) -> None:
    translator = backend.CT2Translator(
        ct2_models[family], DecodingOptions(beam_size=beam, terms="hard")
    )
    sources = [sentence for sentence, _ in term_cases]
    terms = [found for _, found in term_cases]
    assert sum(len(t) for t in terms) > 60
    for text, found in zip(translator.translate(sources, terms), terms):
        missing = [t.target for t, ok in zip(found, check_terms(text, found)) if not ok]
        assert not missing, f"{missing} not in {text!r}"


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_each_term_says_how_it_got_there(ct2_models: dict, term_cases: list, family: str) -> None:
    """A term the plain decode already holds is ``decoded``; any other was put in, and
    says so (``edited``, or ``appended`` by the fallback): the model gets no credit for it."""
    hard = backend.CT2Translator(ct2_models[family], DecodingOptions(beam_size=1, terms="hard"))
    off = backend.CT2Translator(ct2_models[family], DecodingOptions(beam_size=1, terms="off"))
    sources = [sentence for sentence, _ in term_cases[:12]]
    terms = [found for _, found in term_cases[:12]]
    plain = off.translate_batch_terms(sources, terms)
    forced = hard.translate_batch_terms(sources, terms)
    counts = {"decoded": 0, "edited": 0, "appended": 0}
    for before, after, found in zip(plain, forced, terms):
        assert set(before.how) <= {"decoded", "missing"}
        assert before.how == tuple(
            "decoded" if ok else "missing" for ok in check_terms(before.text, found)
        )
        expected = ["decoded" if ok else "put in" for ok in check_terms(before.text, found)]
        got = ["put in" if h in ("edited", "appended") else h for h in after.how]
        assert got == expected, (before.text, after.text, after.how)
        for h in after.how:
            counts[h] += 1
    assert counts["edited"] > 0  # random weights write few terms: most are edited in


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_without_constraints_the_terms_are_missed(
    ct2_models: dict, term_cases: list, family: str
) -> None:
    """The random-weight models never write a term by chance, so the test above can fail."""
    translator = backend.CT2Translator(ct2_models[family], DecodingOptions(terms="off"))
    sentence, terms = term_cases[0]
    [text] = translator.translate([sentence], [terms])
    assert not any(check_terms(text, terms))


# -- the run folder -----------------------------------------------------------------------


def ct2_config(model: Path, data: Path, out: Path, **decoding: object) -> RunConfig:
    """The transformers tests' run, on the ct2 backend in float32."""
    return dataclasses.replace(
        config_for(model, data, out, **decoding),
        backend="ct2",
        compute_type="float32",
        intra_threads=1,
    )


def test_run_with_ct2_writes_the_same_records_and_resumes(
    ct2_home: Path, tiny_marian: Path, small_corpus: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole" / "run"  # same folder name: the review page shows it
    result = run(ct2_config(tiny_marian, small_corpus, whole))
    for name in (*OUTPUTS, "translations.parquet"):
        assert (whole / name).is_file(), name
    records = read_records(whole)
    assert result.sentences == len(records) == result.translated_now
    terms = [t for r in records for t in r["terms"]]
    assert len(terms) > 10 and all(t["found"] for t in terms)
    assert {t["how"] for t in terms} <= {"decoded", "edited", "appended"}
    assert any(t["how"] == "edited" for t in terms)  # the random model writes few terms
    assert json.loads((whole / "scores.json").read_text())["terminology"]["accuracy"] == 1.0
    settings = json.loads((whole / "run.json").read_text())
    assert settings["translator"]["backend"] == "ct2"
    assert settings["translator"]["compute_type"] == "float32"

    reference = tmp_path / "transformers"
    transformers_config = dataclasses.replace(
        ct2_config(tiny_marian, small_corpus, reference), backend="transformers"
    )
    run(transformers_config)
    assert [sorted(r) for r in read_records(reference)] == [sorted(r) for r in records]
    assert [r["source"] for r in read_records(reference)] == [r["source"] for r in records]

    broken = tmp_path / "broken" / "run"
    config = ct2_config(tiny_marian, small_corpus, broken)
    with pytest.raises(KeyboardInterrupt):
        run(config, translator=CrashAfter(make_translator(config), batches=2))
    assert len((broken / JOURNAL_FILE).read_text().splitlines()) == 2
    resumed = run(config)
    assert resumed.resumed > 0 and resumed.translated_now == resumed.sentences - resumed.resumed
    for name in OUTPUTS:
        assert (broken / name).read_bytes() == (whole / name).read_bytes(), name


def test_a_run_translates_alike_on_both_backends_with_terms_off(
    ct2_home: Path, tiny_marian: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """Terms off, float32, greedy: the two backends' runs hold the same translations,
    sentence by sentence (the values, not only the records' shape)."""
    ct2_run, transformers_run = tmp_path / "ct2", tmp_path / "transformers"
    run(ct2_config(tiny_marian, small_corpus, ct2_run, terms="off", beam_size=1))
    config = ct2_config(tiny_marian, small_corpus, transformers_run, terms="off", beam_size=1)
    run(dataclasses.replace(config, backend="transformers"))
    ct2_records, transformers_records = read_records(ct2_run), read_records(transformers_run)
    assert len(ct2_records) > 10
    assert [r["translation"] for r in ct2_records] == [
        r["translation"] for r in transformers_records
    ]
    assert len({r["translation"] for r in ct2_records}) > len(ct2_records) // 2


def test_cli_run_with_ct2(
    ct2_home: Path, tiny_nllb: Path, small_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cli-run"
    args = ["run", "--model", str(tiny_nllb), "--data", str(small_corpus), "--out", str(out)]
    options = ["--backend", "ct2", "--compute-type", "int8", "--beam", "1", "--device", "cpu"]
    result = CliRunner().invoke(main, [*args, *options, "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "terminology accuracy" in result.output
    settings = json.loads((out / "run.json").read_text())
    assert settings["translator"]["compute_type"] == "int8"
    records = read_records(out)
    assert all(t["found"] for r in records for t in r["terms"])

    result = CliRunner().invoke(main, [*args, "--backend", "ct2", "--compute-type", "int3"])
    assert result.exit_code != 0 and "unknown compute type" in result.output
    result = CliRunner().invoke(main, [*args, "--backend", "ct2", "--dtype", "float16"])
    assert result.exit_code != 0 and "--compute-type" in result.output


def test_a_marian_model_whose_start_embedding_moved_is_refused(
    ct2_home: Path, tiny_marian: Path, tmp_path: Path
) -> None:
    """CTranslate2 starts Marian decoders from zeros: a model whose <pad> row was trained
    would translate differently there, so its conversion is refused with the reason."""
    from safetensors.torch import load_file, save_file

    moved = tmp_path / "moved"
    shutil.copytree(tiny_marian, moved)
    weights = load_file(moved / "model.safetensors")
    start = json.loads((moved / "config.json").read_text())["decoder_start_token_id"]
    assert float(weights["model.shared.weight"][start].abs().max()) == 0.0  # the premise
    weights["model.shared.weight"][start] = 0.5
    save_file(weights, moved / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelNotAvailableError, match="decoder-start embedding"):
        ct2convert.load_ct2_model(str(moved), device="cpu", compute_type="float32")


def test_the_start_row_checked_is_the_decoders_own() -> None:
    """A Marian with a vocabulary per side keeps the decoder's embeddings apart from the
    encoder's: the row CTranslate2 replaces by zeros is the decoder's."""
    import torch
    from transformers import MarianConfig, MarianMTModel

    sizes = dict(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2)
    sizes |= dict(decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32)
    config = MarianConfig(
        vocab_size=50,
        decoder_vocab_size=40,
        share_encoder_decoder_embeddings=False,
        pad_token_id=39,
        decoder_start_token_id=39,
        **sizes,
    )
    model = MarianMTModel(config)
    ct2convert._check_marian_start(model, Path("separate"))  # fresh: both rows zero
    with torch.no_grad():
        model.get_decoder().embed_tokens.weight[39] = 0.5
    assert float(model.get_input_embeddings().weight[39].abs().max()) == 0.0
    with pytest.raises(ModelNotAvailableError, match="decoder-start embedding"):
        ct2convert._check_marian_start(model, Path("separate"))
