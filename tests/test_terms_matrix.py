"""The glossary guarantee on every tokenizer kind, both backends, beam 1 and 4.

Each tiny model (SentencePiece unigram and BPE, with and without byte fallback, one
vocabulary per side or shared, NLLB, byte-level BPE) translates a part of the corpus with
hard terms: sentences with repeated, nested and variant terms, and the first sentences with
terms of a document (the whole corpus would take CI too long; ``forumtranslate run`` on a
tiny model covers it, see the README). Every term occurrence must be in the output as whole
words, judged by ``terms_check`` (written apart from ``glossary.check_terms``), and each
term must say how it got there. A second test gives a model a "term" it already writes
(in another case than the model's): hard constraints must leave that translation alone.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from forumtranslate.glossary import load_glossary
from forumtranslate.hf import TransformersTranslator
from forumtranslate.records import HOW
from forumtranslate.segment import segment_text
from forumtranslate.translate import DecodingOptions

from .conftest import DATA, GLOSSARY
from .terms_check import missing_terms

CASE_SEGMENTS = (
    "opening-tsutsui-010",  # economic security twice
    "opening-tsutsui-014",  # coercion in two source forms
    "panel-4-036",  # seven terms, a variant spelling
    "panel-1-026",  # 戦略的自律性 and 戦略的不可欠性
    "panel-4-023",  # the short terms that end the long ones
)


def segment(seg_id: str) -> str:
    doc_id = seg_id.rsplit("-", 1)[0]
    text = (DATA / "ja" / f"{doc_id}.txt").read_text(encoding="utf-8")
    [found] = [s.text for s in segment_text(text, doc_id) if s.seg_id == seg_id]
    return found


@pytest.fixture(scope="module")
def sentences() -> list[tuple[str, list]]:
    glossary = load_glossary(GLOSSARY)
    texts = [segment(seg_id) for seg_id in CASE_SEGMENTS]
    texts.append(segment("panel-4-023") + segment("panel-1-026"))  # nested, joined
    text = (DATA / "ja" / "opening-akazawa.txt").read_text(encoding="utf-8")
    with_terms = [s.text for s in segment_text(text, "opening-akazawa")]
    texts += [s for s in with_terms if glossary.find_terms(s)][:2]
    return [(t, glossary.find_terms(t)) for t in texts]


@pytest.fixture(scope="module")
def ct2_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("hf-home-matrix")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def translators(tokenizer_kinds: dict[str, Path], ct2_home: Path) -> dict:
    """Each kind loaded once per backend."""
    from forumtranslate import ct2convert
    from forumtranslate.models import load_model

    loaded = {}
    for kind, folder in tokenizer_kinds.items():
        loaded[kind, "transformers"] = load_model(str(folder), device="cpu")
        loaded[kind, "ct2"] = ct2convert.load_ct2_model(
            str(folder), device="cpu", compute_type="float32", intra_threads=1
        )
    return loaded


def make(translators: dict, kind: str, backend: str, options: DecodingOptions):
    from forumtranslate.ct2 import CT2Translator

    model = translators[kind, backend]
    if backend == "ct2":
        return CT2Translator(model, options)
    return TransformersTranslator(model, options)


KINDS = ["spm-unigram", "spm-bpe", "spm-unigram-bytes-shared", "spm-bpe-bytes", "nllb", "byte-bpe"]


@pytest.mark.slow
@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("backend", ["transformers", "ct2"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_term_comes_out_as_whole_words(
    translators: dict, sentences: list, kind: str, backend: str, beam: int
) -> None:
    translator = make(translators, kind, backend, DecodingOptions(beam_size=beam, terms="hard"))
    texts = [s for s, _ in sentences]
    terms = [t for _, t in sentences]
    results = translator.translate_batch_terms(texts, terms)
    for result, found in zip(results, terms):
        missing = missing_terms(result.text, found)
        assert not missing, f"{kind}/{backend}/beam {beam}: {missing} not in {result.text!r}"
        assert len(result.how) == len(found)
        assert set(result.how) <= set(HOW) - {"missing"}, result.how
        if backend == "transformers":  # the search writes every term the vocabulary spells
            assert set(result.how) <= {"decoded"}, (result.how, result.text)


def written_phrase(text: str) -> str | None:
    """Two words the model wrote one after the other, in Latin letters."""
    words = re.findall(r"(?<!\w)[a-z]{3,}(?!\w)", text)
    pairs = [f"{a} {b}" for a, b in itertools.pairwise(words) if f"{a} {b}" in text]
    return pairs[0] if pairs else (words[0] if words else None)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_a_term_the_model_already_writes_changes_nothing(
    translators: dict, sentences: list, kind: str
) -> None:
    """The model's own words, made a term in Title Case: the translation stays as it was,
    whatever the case and segmentation (the transformers backend; ct2 edits nothing either)."""
    off = DecodingOptions(beam_size=4, terms="off")
    hard = DecodingOptions(beam_size=4, terms="hard")
    checked = 0
    for backend in ("transformers", "ct2"):
        for text, found in sentences[:4]:
            [plain] = make(translators, kind, backend, off).translate([text], [[]])
            phrase = written_phrase(plain)
            if phrase is None or not found:
                continue
            term = dataclasses.replace(
                found[0], target=phrase.title(), allowed=(phrase.title(),), avoid=()
            )
            [result] = make(translators, kind, backend, hard).translate_batch_terms(
                [text], [[term]]
            )
            assert result.text == plain, (kind, backend, phrase, plain, result.text)
            assert result.how == ("decoded",)
            checked += 1
    assert checked >= 2
