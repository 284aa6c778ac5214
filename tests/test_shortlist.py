"""The target shortlist: what it holds, that both backends decode over it, that terms
still come out with it, and that a run records it."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import sentencepiece as spm

from forumtranslate import ct2 as backend
from forumtranslate import ct2convert
from forumtranslate.errors import ForumTranslateError
from forumtranslate.glossary import load_glossary
from forumtranslate.hf import TransformersTranslator
from forumtranslate.run import SETTINGS_FILE, run
from forumtranslate.segment import segment_text
from forumtranslate.shortlist import Shortlist, build_shortlist, glossary_forms
from forumtranslate.translate import DecodingOptions

from .conftest import DATA, GLOSSARY
from .terms_check import missing_terms
from .test_run import config_for


def corpus_sentences(doc_id: str, count: int) -> list[str]:
    text = (DATA / "ja" / f"{doc_id}.txt").read_text(encoding="utf-8")
    return [s.text for s in segment_text(text, doc_id)][:count]


@pytest.fixture(scope="module")
def ct2_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("hf-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(home))
        yield home


def whole_vocabulary(tokenizer, size: int) -> Shortlist:
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    return Shortlist(tuple(p for p in pieces if p is not None), {}, size)


def test_marian_list_is_the_best_scored_target_pieces_and_never_japanese(tiny_marian: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_marian)
    shortlist = build_shortlist(tokenizer, tiny_marian, size=100)
    target = spm.SentencePieceProcessor(model_file=str(tiny_marian / "target.spm"))
    ids = [i for i in range(target.get_piece_size()) if not target.is_unknown(i)]
    by_score = sorted(ids, key=lambda i: (-target.get_score(i), i))
    pieces = [target.id_to_piece(i) for i in by_score]
    assert set(pieces[:100]) <= set(shortlist.always)
    # Past the cut only single characters (the alphabet) stay in every sentence's list.
    dropped = [p for p in pieces[100:] if len(p.replace("▁", "")) > 1]
    assert dropped and not set(dropped) & set(shortlist.always)
    source = spm.SentencePieceProcessor(model_file=str(tiny_marian / "source.spm"))
    japanese_only = {source.id_to_piece(i) for i in range(source.get_piece_size())} - set(pieces)
    japanese_only = {p for p in japanese_only if any("\u3040" <= ch <= "\u9fff" for ch in p)}
    assert japanese_only and not japanese_only & set(shortlist.always)
    assert len(shortlist.always) < len(tokenizer) / 2


def test_nllb_list_keeps_english_script_and_the_language_token(tiny_nllb: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_nllb)
    shortlist = build_shortlist(tokenizer, tiny_nllb, size=16000)
    assert "eng_Latn" in shortlist.always and tokenizer.eos_token in shortlist.always
    kana_or_kanji = [p for p in shortlist.always if any("\u3040" <= ch <= "\u9fff" for ch in p)]
    assert kana_or_kanji == []
    assert "▁security" in shortlist.always or "▁secur" in shortlist.always


def test_glossary_forms_and_copied_latin_words_are_in_the_list(tiny_marian: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_marian)
    forms = glossary_forms(load_glossary(GLOSSARY))
    shortlist = build_shortlist(tokenizer, tiny_marian, size=10, forms=forms)
    for form in forms:
        for variant in (form, " " + form[:1].upper() + form[1:]):
            ids = tokenizer(text_target=variant, add_special_tokens=False)["input_ids"]
            assert set(tokenizer.convert_ids_to_tokens(ids)) <= set(shortlist.always), form
    # A Latin word in the source brings the pieces that spell it.
    source_tokens = tokenizer.convert_ids_to_tokens(tokenizer("G7とAIについて")["input_ids"])
    latin = [t for t in source_tokens if t.replace("▁", "") in ("G", "7", "AI", "G7", "A", "I")]
    assert latin
    for token in latin:  # the target pieces that spell it are listed, always or for it
        text = token.replace("▁", " ").strip()
        ids = tokenizer(text_target=text, add_special_tokens=False)["input_ids"]
        needed = set(tokenizer.convert_ids_to_tokens(ids)) - {tokenizer.unk_token}
        assert needed and needed <= {*shortlist.always, *shortlist.by_source.get(token, ())}, token
    lines = shortlist.vmap_text().splitlines()
    assert lines[0] == "\t" + " ".join(shortlist.always)
    assert all("\t" in line for line in lines)


@pytest.mark.parametrize("family", ["marian", "nllb"])
@pytest.mark.parametrize("beam", [1, 3])
def test_a_list_of_the_whole_vocabulary_decodes_like_no_list(
    loaded_models: dict, family: str, beam: int
):
    """The sliced projection (with Marian's logits bias) is the model's own output layer."""
    loaded = loaded_models[family]
    options = DecodingOptions(beam_size=beam, terms="off", shortlist=0)
    sources = corpus_sentences("panel-1", 5)
    plain = TransformersTranslator(loaded, options).translate(sources)
    full = whole_vocabulary(loaded.tokenizer, loaded.model.config.vocab_size)
    assert TransformersTranslator(loaded, options, shortlist=full).translate(sources) == plain


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_records_are_identical_while_the_models_choices_stay_inside_the_list(
    loaded_models: dict, family: str
):
    """Greedy: a list holding every piece the model chose (and a random third of the rest)
    changes nothing; dropping one chosen piece changes that sentence. The chosen pieces are
    read from every search the translation made: a long sentence is decoded in parts."""
    loaded = loaded_models[family]
    options = DecodingOptions(beam_size=1, terms="off", shortlist=0)
    sources = corpus_sentences("panel-3", 6)
    plain = TransformersTranslator(loaded, options)
    chosen_ids: list[list[int]] = []
    search = plain._search

    def recording_search(*args: object, **kwargs: object) -> list[list[int]]:
        found = search(*args, **kwargs)
        chosen_ids.extend(found)
        return found

    plain._search = recording_search  # type: ignore[method-assign]
    texts = plain.translate(sources)
    size = loaded.model.config.vocab_size
    used = {i for ids in chosen_ids for i in ids}
    rest = sorted(set(range(size)) - used)
    keep = used | set(random.Random(0).sample(rest, len(rest) // 3))
    pieces = tuple(loaded.tokenizer.convert_ids_to_tokens(sorted(keep)))
    inside = TransformersTranslator(loaded, options, shortlist=Shortlist(pieces, {}, len(pieces)))
    assert inside.translate(sources) == texts
    assert inside.vocabulary_size < size / 2
    # The same check fails when the list misses a piece the model chose.
    special = {*loaded.tokenizer.all_special_ids, loaded.forced_first_id}
    victim = next(i for i in chosen_ids[0] if i not in special)
    short = tuple(p for p in pieces if p != loaded.tokenizer.convert_ids_to_tokens(victim))
    without = TransformersTranslator(loaded, options, shortlist=Shortlist(short, {}, len(short)))
    assert without.translate(sources[:1]) != texts[:1]


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_terms_outside_the_ranked_cut_still_come_out(loaded_models: dict, family: str):
    """A list of 20 pieces, built without the glossary: every term's pieces are missing
    from it, and the constrained search still writes every term (not appended)."""
    loaded = loaded_models[family]
    glossary = load_glossary(GLOSSARY)
    sources = [s for s in corpus_sentences("opening-akazawa", 30) if glossary.find_terms(s)][:6]
    terms = [glossary.find_terms(s) for s in sources]
    small = build_shortlist(loaded.tokenizer, loaded.folder, size=20)
    translator = TransformersTranslator(
        loaded, DecodingOptions(beam_size=2, terms="hard"), shortlist=small
    )
    pieces = {p for t in terms for m in t for p in translator_pieces(translator, m.target)}
    assert pieces - set(small.always), "the premise: some term pieces are outside the list"
    results = translator.translate_batch_terms(sources, terms)
    for result, found in zip(results, terms):
        assert missing_terms(result.text, found) == []
        assert set(result.how) == {"decoded"}


def translator_pieces(translator: TransformersTranslator, form: str) -> list[str]:
    return translator.loaded.tokenizer.convert_ids_to_tokens(list(translator.target_ids(form)))


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_both_backends_decode_over_the_same_list(
    ct2_home: Path, loaded_models: dict, tiny_marian: Path, tiny_nllb: Path, family: str
):
    """CTranslate2 with the list as vmap.txt gives transformers' greedy output with the
    same list, and the list differs from no list (so the vmap is in use)."""
    folder = {"marian": tiny_marian, "nllb": tiny_nllb}[family]
    loaded = loaded_models[family]
    forms = glossary_forms(load_glossary(GLOSSARY))
    shortlist = build_shortlist(loaded.tokenizer, folder, size=200, forms=forms)
    model = ct2convert.load_ct2_model(
        str(folder), device="cpu", compute_type="float32", intra_threads=1, shortlist=shortlist
    )
    options = DecodingOptions(beam_size=1, terms="off")
    sources = corpus_sentences("panel-1", 6)
    ct2_out = backend.CT2Translator(model, options).translate(sources)
    ours = TransformersTranslator(loaded, options, shortlist=shortlist).translate(sources)
    assert ct2_out == ours
    whole = TransformersTranslator(loaded, DecodingOptions(beam_size=1, terms="off", shortlist=0))
    assert whole.translate(sources) != ours
    signature = backend.CT2Translator(model, options).signature()["shortlist"]
    assert signature == {"cut": 200, "size": shortlist.size, "sha256": shortlist.sha256}
    vmaps = list(ct2_home.rglob("vmap.txt"))
    assert any(v.read_text(encoding="utf-8") == shortlist.vmap_text() for v in vmaps)


def test_run_json_records_the_list_and_a_resume_without_it_is_refused(
    tiny_marian: Path, small_corpus: Path, tmp_path: Path
):
    out = tmp_path / "run"
    run(config_for(tiny_marian, small_corpus, out, beam_size=1))
    recorded = json.loads((out / SETTINGS_FILE).read_text(encoding="utf-8"))["translator"]
    assert recorded["shortlist"]["cut"] == 16000
    assert len(recorded["shortlist"]["sha256"]) == 64
    with pytest.raises(ForumTranslateError, match=r"other settings.*shortlist"):
        run(config_for(tiny_marian, small_corpus, out, beam_size=1, shortlist=0))
    with pytest.raises(ForumTranslateError, match=r"other settings.*shortlist"):
        run(config_for(tiny_marian, small_corpus, out, beam_size=1, shortlist=8000))
