"""Term editing on its own: a tokenizer, a hypothesis' tokens and (maybe) attention in, a
hypothesis holding every term out. No model runs here; the tokenizers are the tiny models'
of every kind the glossary guarantee is tested on (SentencePiece unigram and BPE, with and
without byte fallback, a shared vocabulary, byte-level BPE)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from forumtranslate.glossary import check_terms, contains_form, load_glossary
from forumtranslate.termedit import SourcePiece, TermEditor

from .conftest import GLOSSARY, TOKENIZER_KINDS

KINDS = ["spm-unigram", "nllb", *TOKENIZER_KINDS]


@pytest.fixture(scope="module", params=KINDS)
def editor(request: pytest.FixtureRequest, tokenizer_kinds: dict[str, Path]) -> TermEditor:
    return TermEditor(AutoTokenizer.from_pretrained(tokenizer_kinds[request.param]))


def english_piece(editor: TermEditor, sentence: str) -> SourcePiece:
    ids = editor.tokenizer(sentence)["input_ids"]
    source = editor.tokenizer.convert_ids_to_tokens(ids)
    terms = tuple(load_glossary(GLOSSARY).find_terms(sentence))
    return SourcePiece(sentence, source, terms, limit=100)


def test_a_hypothesis_that_holds_every_term_is_kept(editor: TermEditor) -> None:
    piece = english_piece(editor, "経済安全保障が重要だ。")
    tokens = list(editor.target_tokens("the economic security matters"))
    result = editor.enforce(piece, tokens, attention=None)
    assert (result.tokens, result.how) == (tuple(tokens), ("decoded",))
    assert result.text == editor.detokenize(tokens)


def test_an_avoided_rendering_is_replaced_by_the_approved_term(editor: TermEditor) -> None:
    piece = english_piece(editor, "経済安全保障が重要だ。")
    assert [t.target for t in piece.terms] == ["economic security"]
    assert "economic safety" in piece.terms[0].avoid
    tokens = list(editor.target_tokens("the economic safety matters"))
    result = editor.enforce(piece, tokens, attention=None)
    assert result.text == "the economic security matters"
    assert result.how == ("edited",)


def test_an_existing_term_is_kept_whole_when_another_goes_in(editor: TermEditor) -> None:
    """A term the model wrote is never split by an insertion, wherever attention points."""
    piece = english_piece(editor, "経済安全保障と戦略的自律性")
    assert [t.entry_id for t in piece.terms] == ["economic-security", "strategic-autonomy"]
    tokens = list(editor.target_tokens("we need economic security now"))
    [security] = editor.find(tokens, "security")
    [autonomy] = sorted(editor.source_span(piece, piece.terms[1]))[-1:]
    attention = [[0.0] * len(piece.source) for _ in tokens]
    for row in attention:  # every target token looks at 戦略的自律性, "security" most
        row[autonomy] = 1.0
    attention[security[0]][autonomy] = 5.0
    result = editor.enforce(piece, tokens, attention)
    assert all(check_terms(result.text, piece.terms)), result.text
    assert "economic security" in result.text
    assert result.how == ("decoded", "edited")


def test_a_missing_term_replaces_the_words_aligned_to_its_source(editor: TermEditor) -> None:
    """Attention says "independence" renders 戦略的自律性: the term takes its place."""
    piece = english_piece(editor, "戦略的自律性が重要だ。")
    tokens = list(editor.target_tokens("strategic independence is important"))
    [(start, end)] = editor.find(tokens, "independence")
    span = editor.source_span(piece, piece.terms[0])
    attention = [[0.0] * len(piece.source) for _ in tokens]
    for i, row in enumerate(attention):
        for j in span if start <= i < end else [len(piece.source) - 1]:
            row[j] = 1.0
    result = editor.enforce(piece, tokens, attention)
    assert "independence" not in result.text
    assert contains_form(result.text, "strategic autonomy"), result.text
    assert result.text.endswith("is important")


def test_a_term_outside_the_vocabulary_still_comes_out(editor: TermEditor) -> None:
    """The last fallback adds the form as text when its tokens cannot spell it."""
    piece = english_piece(editor, "経済安全保障が重要だ。")
    odd = dataclasses.replace(piece.terms[0], target="ʘeconomic", allowed=("ʘeconomic",))
    piece = dataclasses.replace(piece, terms=(odd,))
    tokens = list(editor.target_tokens("it matters"))
    result = editor.enforce(piece, tokens, attention=None)
    assert contains_form(result.text, "ʘeconomic") and all(check_terms(result.text, [odd]))
    assert result.how in {("edited",), ("appended",)}
