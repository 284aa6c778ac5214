"""Decoder-only models: the prompt, greedy parity with ``generate()``, every term at beam 1 and
4, chatter cut from the answer, no silent cut of a long prompt, and a resumed run.

The tiny models are random-weight Qwen3, Gemma 3 and Llama models with tokenizers trained
here: byte-level BPE (Qwen) and SentencePiece BPE with byte fallback (Gemma, Llama), each
with a chat template of its family's layout.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from forumtranslate.causal import CausalTranslator, clean_translation
from forumtranslate.cli import main
from forumtranslate.errors import ForumTranslateError, ModelNotAvailableError
from forumtranslate.glossary import load_glossary
from forumtranslate.models import load_model
from forumtranslate.run import JOURNAL_FILE, make_translator, preceding, prepare_sources, run
from forumtranslate.tiny import TinyCausalSpec, build_tiny_causal
from forumtranslate.translate import DecodingOptions

from .conftest import DATA, GLOSSARY
from .terms_check import missing_terms
from .test_run import OUTPUTS, CrashAfter, config_for

# Every test here but the chatter table builds or runs a tiny model.
pytestmark = pytest.mark.slow

FAMILIES = {
    "qwen3": TinyCausalSpec("qwen3", "byte-bpe"),
    "gemma3": TinyCausalSpec("gemma3", "spm-bytes"),
    "llama": TinyCausalSpec("llama", "spm-bytes"),
}
# Sentences with glossary terms, one with characters the tiny vocabularies never saw.
SENTENCES = [
    "経済安全保障について議論した。",
    "重要鉱物のサプライチェーンを強化する🙂、𠮷野家でも。",
    "自由で開かれたインド太平洋の実現に向けて、経済安全保障を進める。",
]


@pytest.fixture(scope="module")
def causal_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        name: build_tiny_causal(tmp_path_factory.mktemp(name), spec, DATA)
        for name, spec in FAMILIES.items()
    }


@pytest.fixture(scope="module")
def loaded(causal_models: dict[str, Path]) -> dict:
    return {name: load_model(str(path), device="cpu") for name, path in causal_models.items()}


@pytest.fixture(scope="module")
def glossary():
    return load_glossary(GLOSSARY)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_greedy_equals_generate(loaded: dict, glossary, family: str) -> None:
    """Beam 1, terms off: the same tokens as transformers' own ``generate()``, in one batch
    of prompts of different lengths (left padding, positions)."""
    model = loaded[family]
    translator = CausalTranslator(model, DecodingOptions(beam_size=1, terms="off"))
    terms = [glossary.find_terms(s) for s in SENTENCES]
    ours = translator._search(SENTENCES, terms, hard=False)
    for sentence, found, ids in zip(SENTENCES, terms, ours):
        prompt = translator.prompt_ids(sentence, found)
        limit = math.ceil(2.0 * translator.sentence_tokens([sentence])[0]) + 10
        with torch.inference_mode():
            out = model.model.generate(
                torch.tensor([prompt]),
                max_new_tokens=limit,
                do_sample=False,
                num_beams=1,
                eos_token_id=translator.eos_id,
                pad_token_id=translator._pad_id(),
            )
        theirs = out[0, len(prompt) :].tolist()
        if theirs and theirs[-1] == translator.eos_id:
            theirs = theirs[:-1]
        assert ids == theirs


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_term_as_whole_words(loaded: dict, glossary, family: str, beam: int) -> None:
    translator = CausalTranslator(loaded[family], DecodingOptions(beam_size=beam, terms="hard"))
    terms = [glossary.find_terms(s) for s in SENTENCES]
    assert all(terms)
    for sentence, found, result in zip(
        SENTENCES, terms, translator.translate_batch_terms(SENTENCES, terms)
    ):
        assert missing_terms(result.text, found) == [], (sentence, result.text)
        assert len(result.how) == len(found)
        assert set(result.how) == {"decoded"}  # the search wrote them; nothing appended


def test_terms_off_leaves_the_model_alone(loaded: dict, glossary) -> None:
    """The random model does not write the terms by itself: the guarantee above is the
    search's doing, not the prompt's."""
    translator = CausalTranslator(loaded["qwen3"], DecodingOptions(beam_size=1, terms="off"))
    terms = [glossary.find_terms(s) for s in SENTENCES]
    results = translator.translate_batch_terms(SENTENCES, terms)
    assert any(missing_terms(r.text, found) for r, found in zip(results, terms))


def test_the_prompt_holds_instruction_glossary_and_sentence(loaded: dict, glossary) -> None:
    translator = CausalTranslator(loaded["gemma3"], DecodingOptions())
    sentence = SENTENCES[0]
    text = translator.prompt(sentence, glossary.find_terms(sentence))
    assert text.startswith("<bos><start_of_turn>user\n")
    assert text.endswith("<start_of_turn>model\n")
    assert "経済安全保障 → economic security (not: economic safety)" in text
    assert text.index("Translate") < text.index("経済安全保障 →") < text.rindex(sentence)
    qwen = CausalTranslator(loaded["qwen3"], DecodingOptions())
    assert qwen.prompt(sentence).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_prompt_show_prints_the_exact_prompt(causal_models: dict[str, Path], loaded) -> None:
    sentence = SENTENCES[2]
    result = CliRunner().invoke(
        main,
        [
            "prompt",
            "show",
            "--model",
            str(causal_models["llama"]),
            "--glossary",
            str(GLOSSARY),
            sentence,
        ],
    )
    assert result.exit_code == 0, result.output
    translator = CausalTranslator(loaded["llama"], DecodingOptions())
    terms = load_glossary(GLOSSARY).find_terms(sentence)
    assert result.output == translator.prompt(sentence, terms) + "\n"
    assert result.output.startswith("<s>[INST] Translate")


@pytest.mark.parametrize(
    ("answer", "translation"),
    [
        (
            "Here is the translation:\nWe discussed economic security.",
            "We discussed economic security.",
        ),
        ('Sure! Here\'s the English translation: "Economic security."', "Economic security."),
        ("Translation: We met.\n\nNote: the text is formal.", "We met."),
        ("We met in Tokyo.", "We met in Tokyo."),
        ("  \nWe met.  ", "We met."),
    ],
)
def test_chatter_is_cut_from_the_answer(answer: str, translation: str) -> None:
    assert clean_translation(answer) == translation


class ScriptedStepper:
    """A 'model' that answers with a fixed token sequence, chatter first, then EOS."""

    def __init__(self, script: list[int], eos: int, vocab: int, rows: int):
        self.script, self.eos, self.vocab, self.t = script, eos, vocab, 0
        self.rows = rows

    def step(self, last: torch.Tensor) -> torch.Tensor:
        token = self.script[self.t] if self.t < len(self.script) else self.eos
        self.t += 1
        out = torch.full((last.shape[0], self.vocab), -30.0)
        out[:, token] = 0.0
        return torch.log_softmax(out, dim=-1)

    def reorder(self, rows: torch.Tensor) -> None:
        pass


def test_a_chatty_model_yields_only_its_translation(
    loaded: dict, glossary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole path with a model that starts 'Here is the translation:' and stops at its
    end-of-turn token: the record holds the translation alone, its term decoded."""
    translator = CausalTranslator(loaded["qwen3"], DecodingOptions(beam_size=2, terms="hard"))
    tokenizer = loaded["qwen3"].tokenizer
    answer = "Here is the translation:\nWe discussed economic security."
    script = tokenizer(answer, add_special_tokens=False)["input_ids"]
    vocab = loaded["qwen3"].model.config.vocab_size

    def scripted(texts, terms, max_new, context, shortlist_ids=None):
        return ScriptedStepper(script, translator.eos_id, vocab, len(texts))

    monkeypatch.setattr(translator, "_stepper", scripted)
    sentence = SENTENCES[0]
    [result] = translator.translate_batch_terms([sentence], [glossary.find_terms(sentence)])
    assert result.text == "We discussed economic security."
    assert result.how == ("decoded",)


def test_a_prompt_that_does_not_fit_is_an_error_not_a_cut(loaded: dict, glossary) -> None:
    translator = CausalTranslator(loaded["llama"], DecodingOptions(beam_size=1))
    translator.prompter.context_tokens = len(translator.prompt_ids(SENTENCES[0])) + 5
    with pytest.raises(ForumTranslateError, match="exceed the model's context"):
        translator.translate_batch_terms(SENTENCES[:1], [glossary.find_terms(SENTENCES[0])])


def test_an_unsupported_architecture_names_the_supported_ones(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(
        folder
    )
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelNotAvailableError) as err:
        load_model(str(folder), device="cpu")
    message = str(err.value)
    assert "'gpt2' is not supported" in message
    for name in ("qwen3", "gemma3_text", "llama", "mistral"):
        assert name in message


def test_a_causal_run_records_its_prompt_and_resumes_to_the_same_files(
    causal_models: dict[str, Path], small_corpus: Path, tmp_path: Path
) -> None:
    model = causal_models["qwen3"]
    whole = tmp_path / "whole" / "run"
    run(config_for(model, small_corpus, whole, beam_size=2, max_batch_tokens=2000))
    settings = json.loads((whole / "run.json").read_text())
    assert settings["translator"]["kind"] == "decoder-only"
    assert settings["translator"]["prompt"]["kind"] == "chat-template"
    assert settings["translator"]["prompt"]["version"] == 1
    records = [json.loads(line) for line in (whole / "translations.jsonl").read_text().splitlines()]
    for record in records:
        matches = load_glossary(GLOSSARY).find_terms(record["source"])
        assert missing_terms(record["translation"], matches) == []

    broken = tmp_path / "broken" / "run"
    config = config_for(model, small_corpus, broken, beam_size=2, max_batch_tokens=2000)
    with pytest.raises(KeyboardInterrupt):
        run(config, translator=CrashAfter(make_translator(config), batches=1))
    assert len((broken / JOURNAL_FILE).read_text().splitlines()) == 1
    resumed = run(config)
    assert resumed.resumed > 0
    for name in OUTPUTS:
        assert (broken / name).read_bytes() == (whole / name).read_bytes(), name


def test_context_shows_the_preceding_sentences_of_the_same_document(
    causal_models: dict[str, Path], small_corpus: Path, tmp_path: Path, glossary
) -> None:
    sources = prepare_sources(small_corpus, glossary)
    first_of_second = next(
        i for i, s in enumerate(sources) if s.segment.doc_id != sources[0].segment.doc_id
    )
    assert preceding(sources, first_of_second, 2) == []
    assert preceding(sources, 2, 2) == [sources[0].segment.text, sources[1].segment.text]

    out = tmp_path / "run"
    config = dataclasses.replace(
        config_for(causal_models["gemma3"], small_corpus, out, beam_size=1, max_batch_tokens=4000),
        context_sentences=2,
    )
    translator = make_translator(config)
    prompt = translator.prompt(sources[2].segment.text, (), preceding(sources, 2, 2))
    assert prompt.index(sources[0].segment.text) < prompt.index(sources[1].segment.text)
    assert "Preceding text" in prompt
    shown: list[tuple[str, ...]] = []
    original = translator.prompt_ids

    def spy(sentence, terms=(), context=()):
        shown.append(tuple(context))
        return original(sentence, terms, context)

    translator.prompt_ids = spy
    run(config, translator=translator)
    assert (sources[0].segment.text, sources[1].segment.text) in shown
    settings = json.loads((out / "run.json").read_text())
    assert settings["translator"]["prompt"]["context_sentences"] == 2
    for line in (out / "translations.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert missing_terms(record["translation"], glossary.find_terms(record["source"])) == []


# --- CTranslate2 ----------------------------------------------------------------------------

CT2_FAMILIES = ["qwen3", "llama"]


@pytest.fixture(scope="module")
def ct2_models(causal_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("ctranslate2")
    from forumtranslate.ct2convert import load_ct2_model

    cache = tmp_path_factory.mktemp("ct2-cache")
    return {
        (name, kind): load_ct2_model(
            str(causal_models[name]), device="cpu", compute_type=kind, cache_dir=cache
        )
        for name in CT2_FAMILIES
        for kind in ("float32", "int8")
    }


@pytest.mark.parametrize("family", CT2_FAMILIES)
def test_ct2_float32_greedy_equals_transformers_greedy(
    ct2_models: dict, loaded: dict, glossary, family: str
) -> None:
    from forumtranslate.ct2_causal import CT2CausalTranslator

    options = DecodingOptions(beam_size=1, terms="off")
    terms = [glossary.find_terms(s) for s in SENTENCES]
    ours = CT2CausalTranslator(ct2_models[family, "float32"], options)
    theirs = CausalTranslator(loaded[family], options)
    assert ours.prompter.prompt_ids(SENTENCES[1], terms[1]) == theirs.prompt_ids(
        SENTENCES[1], terms[1]
    )
    # The tokens: CTranslate2's generate_batch after the same prompts, cut to each limit.
    want_ids = theirs._search(SENTENCES, terms, hard=False)
    limits = [math.ceil(2.0 * n) + 10 for n in theirs.sentence_tokens(SENTENCES)]
    pieces = [type("Limit", (), {"limit": n})() for n in limits]
    prompts = [ours.prompter.prompt_ids(s, t) for s, t in zip(SENTENCES, terms)]
    tokenizer = loaded[family].tokenizer
    got_ids = [
        tokenizer.convert_tokens_to_ids(tokens)[:limit]
        for tokens, limit in zip(ours._generate_from(prompts, pieces), limits)
    ]
    assert got_ids == want_ids
    assert all(want_ids)
    # And the texts the run records.
    got = [t.text for t in ours.translate_batch_terms(SENTENCES, terms)]
    assert got == [t.text for t in theirs.translate_batch_terms(SENTENCES, terms)]


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("family", CT2_FAMILIES)
def test_ct2_int8_every_term_as_whole_words(
    ct2_models: dict, glossary, family: str, beam: int
) -> None:
    from forumtranslate.ct2_causal import CT2CausalTranslator

    translator = CT2CausalTranslator(
        ct2_models[family, "int8"], DecodingOptions(beam_size=beam, terms="hard")
    )
    terms = [glossary.find_terms(s) for s in SENTENCES]
    for found, result in zip(terms, translator.translate_batch_terms(SENTENCES, terms)):
        assert missing_terms(result.text, found) == [], result.text
        assert len(result.how) == len(found)
    assert translator.signature()["compute_type"] == "int8"


def test_ct2_refuses_gemma3_with_a_reason(causal_models: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("ctranslate2")
    from forumtranslate.ct2convert import load_ct2_model

    with pytest.raises(ModelNotAvailableError, match="use --backend transformers"):
        load_ct2_model(str(causal_models["gemma3"]), device="cpu", cache_dir=tmp_path)


@pytest.mark.parametrize(
    "backend", [["--backend", "transformers", "--context", "1"], ["--backend", "ct2"]]
)
def test_cli_runs_a_qwen3_folder_with_hard_terms(
    causal_models: dict[str, Path],
    small_corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    backend: list[str],
) -> None:
    """The issue's 'done when': forumtranslate run --model A_QWEN3_FOLDER, on both backends."""
    if backend[1] == "ct2":
        pytest.importorskip("ctranslate2")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    out = tmp_path / "run"
    args = ["run", "--model", str(causal_models["qwen3"]), "--data", str(small_corpus)]
    options = ["--out", str(out), "--beam", "1", "--device", "cpu", "--threads", "1"]
    result = CliRunner().invoke(main, [*args, *options, *backend])
    assert result.exit_code == 0, result.output
    assert "terminology accuracy" in result.output
    settings = json.loads((out / "run.json").read_text())
    assert settings["translator"]["kind"] == "decoder-only"
    for line in (out / "translations.jsonl").read_text().splitlines():
        record = json.loads(line)
        matches = load_glossary(GLOSSARY).find_terms(record["source"])
        assert missing_terms(record["translation"], matches) == []
