"""What vocabulary pieces decode to, and the glossary guarantee on random vocabularies.

1. ``PieceText`` against each tokenizer's own ``decode``, on every tokenizer kind the tests
   build (SentencePiece unigram/BPE, byte fallback, shared vocabulary, NLLB, byte-level BPE).
2. The word-boundary rule on pieces spelled every way: "▁" words, glue letters, byte
   pieces, punctuation, digits, CJK, byte-level "Ġ" pieces.
3. A hypothesis test: random piece inventories with a random share of byte-fallback pieces,
   a random scorer, random glossary terms (nested and repeated ones too); constrained
   search must write every term occurrence as whole words, judged by a decoder and a
   checker written here, independently of ``wordpieces`` and ``glossary``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forumtranslate.constrain import (
    Constraint,
    SearchOptions,
    TextJudge,
    constrained_beam_search,
    term_forms,
)
from forumtranslate.glossary import TermMatcher
from forumtranslate.records import TermMatch
from forumtranslate.wordpieces import PieceText, byte_level_alphabet, piece_bytes

from .terms_check import missing_terms


class FakeTokenizer:
    """Just what ``PieceText.from_tokenizer`` reads: pieces by id, the special ids."""

    def __init__(self, pieces: Sequence[str], special: Sequence[int] = (0,)):
        self.pieces = list(pieces)
        self.all_special_ids = list(special)

    def __len__(self) -> int:
        return len(self.pieces)

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.pieces[i] for i in ids]


# --- 1. against the tokenizers' own decode ---------------------------------------------


@pytest.mark.slow
def test_piece_text_is_what_each_tokenizer_decodes(tokenizer_kinds: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    for name, folder in tokenizer_kinds.items():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        size = len(tokenizer)
        pieces = PieceText.from_tokenizer(tokenizer, size)
        rng = random.Random(name)
        for _ in range(300):
            ids = [rng.randrange(size) for _ in range(rng.randrange(1, 14))]
            theirs = tokenizer.decode(ids, skip_special_tokens=True)
            # Tokenizers differ only in the spaces around the text (a leading one kept) and
            # in how many U+FFFD stand for a run of invalid bytes (no word character either way).
            ours = pieces.text(ids, final=True)
            assert same_text(ours, theirs), (name, ids, ours, theirs)


def same_text(ours: str, theirs: str) -> bool:
    def norm(text: str) -> str:
        return re.sub("\ufffd+", "\ufffd", text).strip()

    return norm(ours) == norm(theirs)


# --- 2. the rule, piece by piece -------------------------------------------------------

GLUE_CASES = [
    ("▁security", False),
    ("ity", True),
    ("<0x71>", True),  # "q"
    ("<0x2C>", False),  # ","
    ("<0xE3>", True),  # the first byte of a kana: part of a letter
    (",", False),
    ("▁,", False),
    (")", False),
    ("'s", False),  # the apostrophe is no word character: "autonomy's" keeps the word
    ("2", True),  # digits are word characters, as in the whole-word regex
    ("_", True),
    ("東京", True),
    ("▁東京", False),
]


@pytest.mark.parametrize(("piece", "glue"), GLUE_CASES)
def test_a_piece_glues_when_its_text_starts_with_a_word_character(piece: str, glue: bool) -> None:
    pieces = PieceText.from_tokenizer(FakeTokenizer(["</s>", piece]))
    assert pieces.glue[1] is glue


def test_byte_level_pieces_are_read_through_their_alphabet() -> None:
    alphabet = byte_level_alphabet()
    assert len(alphabet) == 256 and set(alphabet.values()) == set(range(256))
    assert piece_bytes("Ġsecurity", alphabet) == b" security"
    assert piece_bytes("ãģĵ", alphabet) == "こ".encode()
    assert piece_bytes("▁security", {}) == b" security"
    assert piece_bytes("<0xE3>", {}) == b"\xe3"


def test_text_waits_for_a_character_split_into_byte_pieces() -> None:
    tokenizer = FakeTokenizer(["</s>", "▁economic", "<0xE3>", "<0x81>", "<0x93>", "q"])
    pieces = PieceText.from_tokenizer(tokenizer)
    assert pieces.text([1, 2, 3]) == "economic"  # こ is not whole yet
    assert pieces.text([1, 2, 3, 4]) == "economicこ"
    assert pieces.text([1, 5]) == "economicq"


# --- 3. random vocabularies --------------------------------------------------------------

TERMS = {
    "es": ("economic security", ()),
    "sa": ("strategic autonomy", ()),
    "au": ("autonomy", ()),
    "cm": ("critical minerals", ("critical mineral",)),
    "dr": ("de-risking", ()),
    "g7": ("G7", ()),
}
LETTERS = "abcdefghijklmnopqrstuvwxyzACDEGS"


def term_match(entry_id: str) -> TermMatch:
    target, variants = TERMS[entry_id]
    return TermMatch(entry_id, entry_id, 0, 1, target, (target, *variants), ("economic safety",))


def independent_text(pieces: Sequence[str], ids: Sequence[int]) -> str:
    """The text of ``ids``, decoded here without ``wordpieces``."""
    data = b""
    for i in ids:
        piece = pieces[i]
        if i == 0:
            continue
        if re.fullmatch(r"<0x[0-9A-F]{2}>", piece):
            data += bytes([int(piece[3:5], 16)])
        else:
            data += piece.replace("▁", " ").encode()
    return data.decode("utf-8", errors="replace").strip()


def segment(form: str, vocab: dict[str, int]) -> tuple[int, ...]:
    """Greedy longest-match segmentation of " form" into the vocabulary, bytes for the rest."""
    text = "▁" + form.replace(" ", "▁")
    ids, i = [], 0
    while i < len(text):
        for j in range(len(text), i, -1):
            if text[i:j] in vocab:
                ids.append(vocab[text[i:j]])
                i = j
                break
        else:
            for byte in text[i].replace("▁", " ").encode():
                ids.append(vocab[f"<0x{byte:02X}>"])
            i += 1
    return tuple(ids)


def random_vocabulary(rng: random.Random, byte_share: float, size: int) -> list[str]:
    """</s>, word-start pieces for each letter, then a random inventory: words with and
    without "▁", fragments of the terms, punctuation, digits, kana; the bytes of a random
    share of the characters as <0xNN> pieces (and of the rest, single-character pieces)."""
    pieces = ["</s>", ","] + [f"▁{c}" for c in LETTERS] + ["▁"]
    for c in LETTERS + " -7":
        if rng.random() < byte_share or c in " -7":
            pieces += [f"<0x{b:02X}>" for b in c.encode()]
        else:
            pieces.append(c)
    words = [
        w for target, variants in TERMS.values() for f in (target, *variants) for w in f.split()
    ]
    while len(pieces) < size:
        kind = rng.random()
        if kind < 0.35:
            word = rng.choice(words)
            a = rng.randrange(len(word))
            piece = word[a : rng.randrange(a + 1, len(word) + 1)]
            pieces.append(("▁" if a == 0 and rng.random() < 0.6 else "") + piece)
        elif kind < 0.6:
            pieces.append(
                rng.choice(["▁", ""]) + "".join(rng.choices(LETTERS, k=rng.randint(1, 4)))
            )
        elif kind < 0.75:
            pieces.append(rng.choice([".", "(", ")", '"', "▁(", '▁"', "'s", "▁-", "2", "▁7"]))
        elif kind < 0.85:
            pieces.append(rng.choice(["の", "▁東京", "は", "<0xE3>", "<0x81>"]))
        else:
            pieces.append(f"<0x{rng.randrange(0x20, 0x7F):02X}>")
    return list(dict.fromkeys(pieces))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    byte_share=st.floats(0.0, 1.0),
    size=st.integers(60, 160),
    entries=st.lists(st.sampled_from(sorted(TERMS)), min_size=1, max_size=4),
    beam=st.sampled_from([1, 2, 4]),
    slack=st.integers(0, 12),
)
def test_property_every_term_comes_out_as_whole_words_on_any_vocabulary(
    seed: int, byte_share: float, size: int, entries: list[str], beam: int, slack: int
) -> None:
    rng = random.Random(seed)
    pieces = random_vocabulary(rng, byte_share, size)
    vocab = {p: i for i, p in enumerate(pieces)}
    text = PieceText.from_tokenizer(FakeTokenizer(pieces))
    matches = [term_match(e) for e in entries]
    constraints = [
        Constraint(tuple(dict.fromkeys(segment(f, vocab) for f in term_forms(m)))) for m in matches
    ]
    generator = torch.Generator().manual_seed(seed)
    table = torch.log_softmax(3.0 * torch.randn(len(pieces), len(pieces), generator=generator), -1)
    max_new = slack + 2 + sum(max(len(a) for a in c.alternatives) + 1 for c in constraints)

    class Scorer:
        def step(self, last: torch.Tensor) -> torch.Tensor:
            return table[last]

        def reorder(self, rows: torch.Tensor) -> None:
            pass

    scorer = Scorer()
    options = SearchOptions(beam_size=beam, eos_id=0, start_id=1)
    [ids] = constrained_beam_search(
        scorer.step,
        scorer.reorder,
        options,
        [constraints],
        [max_new],
        word_continuation=torch.tensor(text.glue),
        judges=[TextJudge(TermMatcher(matches), text)],
        filler=vocab[","],
    )
    decoded = independent_text(pieces, ids)
    assert not missing_terms(decoded, matches), (decoded, [pieces[i] for i in ids])
    assert "economic safety" not in decoded.lower()
    assert len(ids) <= max_new
