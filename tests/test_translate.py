"""The transformers backend: decoding, batching, long sentences, and what it records."""

from __future__ import annotations

from pathlib import Path

import pytest

from forumtranslate.constrain import term_forms
from forumtranslate.errors import ForumTranslateError
from forumtranslate.glossary import check_terms, load_glossary
from forumtranslate.hf import TransformersTranslator
from forumtranslate.records import TermMatch
from forumtranslate.segment import segment_text
from forumtranslate.translate import DecodingOptions, split_to_fit

from .conftest import DATA, GLOSSARY


def corpus_sentences(doc_id: str = "panel-1", count: int = 8) -> list[str]:
    text = (DATA / "ja" / f"{doc_id}.txt").read_text(encoding="utf-8")
    return [s.text for s in segment_text(text, doc_id)][:count]


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_greedy_decoding_equals_transformers_generate(loaded_models: dict, family: str) -> None:
    """With no constraints and no shortlist, our step-by-step loop is the model's own
    greedy search."""
    loaded = loaded_models[family]
    options = DecodingOptions(beam_size=1, terms="off", shortlist=0)
    translator = TransformersTranslator(loaded, options)
    sources = corpus_sentences(count=5)
    ours = translator.translate(sources)
    for source, text in zip(sources, ours):
        encoded = loaded.tokenizer([source], return_tensors="pt")
        n = int(encoded["attention_mask"].sum())
        first = 1 if loaded.forced_first_id is not None else 0
        extra = {"forced_bos_token_id": loaded.forced_first_id} if first else {}
        generated = loaded.model.generate(
            **encoded,
            num_beams=1,
            do_sample=False,
            max_new_tokens=first + 2 * n + 10,
            bad_words_ids=[[loaded.model.config.pad_token_id]],
            **extra,
        )
        assert text == loaded.tokenizer.decode(generated[0], skip_special_tokens=True).strip()


@pytest.mark.parametrize("family", ["marian", "nllb"])
@pytest.mark.parametrize("beam", [1, 3])
def test_batching_changes_nothing(loaded_models: dict, family: str, beam: int) -> None:
    """A sentence translates the same alone and padded in a batch of others."""
    translator = TransformersTranslator(loaded_models[family], DecodingOptions(beam_size=beam))
    glossary = load_glossary(GLOSSARY)
    sources = corpus_sentences("opening-akazawa", 6)
    terms = [glossary.find_terms(s) for s in sources]
    together = translator.translate_batch(sources, terms)
    alone = [translator.translate_batch([s], [t])[0] for s, t in zip(sources, terms)]
    assert together == alone


def test_batches_are_length_sorted_within_budget_and_restored_to_order(loaded_models: dict) -> None:
    options = DecodingOptions(beam_size=2, max_batch_tokens=200, terms="off")
    translator = TransformersTranslator(loaded_models["marian"], options)
    sources = corpus_sentences("panel-2", 14)
    lengths = translator.count_tokens(sources)
    batches = translator.plan_batches(sources)
    assert sorted(i for batch in batches for i in batch) == list(range(len(sources)))
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(flat)
    for batch in batches:
        cost = max(lengths[i] for i in batch) * len(batch) * options.beam_size
        assert len(batch) == 1 or cost <= options.max_batch_tokens
    assert len(batches) > 1
    assert translator.translate(sources) == [translator.translate([s])[0] for s in sources]


def test_term_forms_add_a_capitalised_variant_for_sentence_starts() -> None:
    match = TermMatch("x", "経済的威圧", 0, 5, "economic coercion", ("economic coercion",))
    assert term_forms(match) == ["economic coercion", "Economic coercion"]


def test_names_that_moved_out_of_translate_still_import_from_it() -> None:
    """The transformers backend moved to ``hf`` (its judge and term forms to ``constrain``);
    ``from forumtranslate.translate import TransformersTranslator`` keeps working."""
    import subprocess
    import sys

    import forumtranslate.constrain
    import forumtranslate.hf
    from forumtranslate import translate
    from forumtranslate.translate import TransformersTranslator as moved

    assert moved is TransformersTranslator
    assert translate.DecoderStepper is forumtranslate.hf.DecoderStepper
    assert translate.TextJudge is forumtranslate.constrain.TextJudge
    assert translate.term_forms is term_forms
    with pytest.raises(AttributeError, match="no_such_name"):
        translate.no_such_name  # noqa: B018
    # the core alone loads no engine: run, termbase and the CLI import it before a model
    code = "import sys, forumtranslate.translate; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_long_sentence_is_cut_at_clause_boundaries_never_inside_a_term() -> None:
    glossary = load_glossary(GLOSSARY)
    sentence = corpus_sentences("panel-4", 60)[-9]  # a long sentence with many 、
    terms = glossary.find_terms(sentence)

    def count(text: str) -> int:
        return len(text)

    pieces = split_to_fit(sentence, terms, count, max_tokens=40)
    assert len(pieces) > 1
    assert "".join(p.text for p in pieces) == sentence
    assert all(len(p.text) <= 40 for p in pieces)
    assert sum(len(p.terms) for p in pieces) == len(terms)
    for piece in pieces:
        for term in piece.terms:
            assert piece.text[term.start : term.end] == term.source


def test_an_uncuttable_sentence_is_refused_not_truncated() -> None:
    term = TermMatch("t", "ああああ", 0, 4, "x", ("x",))
    with pytest.raises(ForumTranslateError, match="no place to cut"):
        split_to_fit("ああああ", [term], len, max_tokens=2)


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_sentence_longer_than_the_model_accepts_is_split_and_rejoined(
    loaded_models: dict, family: str
) -> None:
    loaded = loaded_models[family]
    glossary = load_glossary(GLOSSARY)
    sentence = max(corpus_sentences("panel-2", 70), key=len)
    terms = glossary.find_terms(sentence)
    limit = 24
    translator = TransformersTranslator(
        loaded, DecodingOptions(beam_size=2, max_input_tokens=limit)
    )
    assert translator.count_tokens([sentence])[0] > limit
    pieces = split_to_fit(sentence, terms, translator._count_one, limit)
    assert len(pieces) > 2
    translation = translator.translate([sentence], [terms])[0]
    piece_translations = [translator.translate([p.text], [list(p.terms)])[0] for p in pieces]
    assert translation == " ".join(piece_translations)
    assert all(check_terms(translation, terms))


def test_signature_records_model_revision_and_options(loaded_models: dict) -> None:
    translator = TransformersTranslator(loaded_models["nllb"], DecodingOptions(beam_size=2))
    signature = translator.signature()
    assert signature["backend"] == "transformers"
    assert signature["family"] == "nllb"
    assert signature["revision"].startswith("local-sha256:")
    assert signature["decoding"]["beam_size"] == 2
    assert Path(signature["model"]).is_dir()


@pytest.mark.parametrize("bad", [{"beam_size": 0}, {"terms": "soft"}])
def test_bad_decoding_options_are_user_errors(bad: dict) -> None:
    with pytest.raises(ForumTranslateError):
        DecodingOptions(**bad)
