"""A target-vocabulary shortlist: the pieces an English output may use, for both backends.

Most of a small translation model's work per step is the output projection over the whole
vocabulary (60,716 pieces for opus-mt-ja-en, half of them Japanese; 256,206 for NLLB). A
Japanese→English model never needs most of them, so each backend decodes over a list:

* the target side's pieces, ranked by the SentencePiece model's own piece scores (the
  log-probabilities of a unigram model, the merge order of BPE) and cut at ``size``.
  Marian: its ``target.spm``. NLLB has one SentencePiece model for 200 languages, so its
  ranking is restricted to pieces whose text is Latin script, digits, punctuation or
  symbols: English can only be written with those, and the model's scores rank them by
  their frequency in its own training text. (The English text available here, the corpus's
  references, is a few hundred sentences: its pieces would leave out most English words.)
  Byte-level BPE vocabularies have no scores: their ids are the merge order, so rank by id;
* every single-character piece of that ranking beyond the cut: with them any word can
  still be spelled, if slowly;
* always the pieces of every glossary form, in every segmentation the hard constraints use
  (each form and its capitalised variant, with and without a leading space), so a
  constraint never needs a piece the list dropped;
* per source piece holding Latin letters, digits or symbols (names, acronyms, numbers are
  copied), the target pieces that spell its text: these come in only when the sentence
  holds that source piece (CTranslate2's vocabulary map does the same with its lines);
* the special tokens.

CTranslate2 reads the list as a ``vmap.txt`` (a line with an empty source side lists the
pieces always allowed; the other lines map a source piece to target pieces); the
transformers backend slices its output projection to the same list. ``sha256`` identifies
the list, so a run folder records which list made it.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forumtranslate.glossary import written_forms

DEFAULT_SIZE = 16000
VMAP_FILE = "vmap.txt"


@dataclass(frozen=True)
class Shortlist:
    """Target pieces (the tokenizer's token strings) a translation may use."""

    always: tuple[str, ...]
    by_source: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cut: int = DEFAULT_SIZE

    @property
    def size(self) -> int:
        """Pieces allowed in every sentence."""
        return len(self.always)

    @property
    def sha256(self) -> str:
        data = json.dumps(
            [sorted(self.always), sorted((k, sorted(v)) for k, v in self.by_source.items())],
            ensure_ascii=False,
        )
        return hashlib.sha256(data.encode("utf-8")).hexdigest()

    def signature(self) -> dict[str, Any]:
        """What a run records: the cut asked for, the list's size and its hash."""
        return {"cut": self.cut, "size": self.size, "sha256": self.sha256}

    def candidates(self, source_tokens: Iterable[str]) -> set[str]:
        """The pieces allowed for a batch whose source holds ``source_tokens``."""
        allowed = set(self.always)
        for token in source_tokens:
            allowed.update(self.by_source.get(token, ()))
        return allowed

    def vmap_text(self) -> str:
        """CTranslate2's vocabulary map: ``source<TAB>target target ...`` per line."""
        lines = ["\t" + " ".join(self.always)]
        for source in sorted(self.by_source):
            if source and " " not in source and "\t" not in source:
                lines.append(f"{source}\t{' '.join(self.by_source[source])}")
        return "\n".join(lines) + "\n"

    def padded(self, size: int, vocabulary: Sequence[str]) -> Shortlist:
        """Benchmarks on random weights only: the list made up to ``size`` pieces with
        further vocabulary entries, so its cost is that of a real model's list of that size
        (a random model's own SentencePiece vocabulary is far smaller)."""
        have = set(self.always)
        extra = [p for p in vocabulary if p not in have][: max(0, size - len(have))]
        return Shortlist((*self.always, *extra), self.by_source, size)


def copyable(text: str) -> bool:
    """Whether a piece holds something an English translation copies: Latin letters,
    digits or symbols (full-width forms included)."""
    for ch in unicodedata.normalize("NFKC", text.replace("▁", " ")):
        if ch.isspace():
            continue
        if ch.isascii() or _latin(ch):
            return True
    return False


def _latin(ch: str) -> bool:
    return unicodedata.name(ch, "").startswith("LATIN")


def english_script(text: str) -> bool:
    """Whether every character of a piece can occur in English text: Latin script, digits,
    punctuation, symbols, spaces."""
    for ch in text.replace("▁", " "):
        if ch.isascii() or _latin(ch):
            continue
        if unicodedata.category(ch)[0] in "PSZ" and unicodedata.east_asian_width(ch) not in (
            "W",
            "F",
        ):
            continue  # punctuation and symbols, not the wide ones of Japanese text
        return False
    return True


def _spm_ranking(path: Path, latin_only: bool) -> list[str]:
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(path))
    pieces = []
    for i in range(processor.get_piece_size()):
        if processor.is_control(i) or processor.is_unknown(i) or processor.is_unused(i):
            continue
        piece = processor.id_to_piece(i)
        if latin_only and not english_script(piece):
            continue
        pieces.append((-processor.get_score(i), i, piece))
    return [piece for _, _, piece in sorted(pieces)]


def target_ranking(tokenizer: Any, folder: Path | None) -> tuple[list[str], str]:
    """The target side's pieces, best first, that the tokenizer knows; and how they were
    ranked."""
    vocab = tokenizer.get_vocab()
    folder = Path(folder) if folder else None
    if folder is not None and (folder / "target.spm").is_file():
        ranked, how = _spm_ranking(folder / "target.spm", latin_only=False), "target.spm scores"
    elif folder is not None and (folder / "sentencepiece.bpe.model").is_file():
        ranked = _spm_ranking(folder / "sentencepiece.bpe.model", latin_only=True)
        how = "sentencepiece.bpe.model scores, English-script pieces"
    else:
        from forumtranslate.wordpieces import PieceText, decode_bytes

        pieces = PieceText.from_tokenizer(tokenizer)
        by_id = sorted((i, p) for p, i in vocab.items() if i < len(pieces.pieces))
        ranked = [
            p
            for i, p in by_id
            if pieces.pieces[i] and english_script(decode_bytes(pieces.pieces[i], final=True))
        ]
        how = "vocabulary ids (merge order), English-script pieces"
    special = set(tokenizer.all_special_tokens)
    return [p for p in ranked if p in vocab and p not in special], how


def form_variants(form: str) -> list[str]:
    """Every string whose tokens the hard constraints may force for a glossary form
    (``constrain.term_forms`` and ``target_ids``: capitalised, with a leading space)."""
    out: list[str] = []
    for variant in written_forms(form):
        for spaced in (variant, " " + variant):
            if spaced not in out:
                out.append(spaced)
    return out


def target_pieces(tokenizer: Any, texts: Sequence[str]) -> list[list[str]]:
    """Each text's pieces on the target side."""
    if not texts:
        return []
    ids = tokenizer(text_target=list(texts), add_special_tokens=False)["input_ids"]
    return [tokenizer.convert_ids_to_tokens(row) for row in ids]


def source_pieces(tokenizer: Any, folder: Path | None) -> list[str]:
    """The source side's pieces: Marian's ``source.spm``, else the one shared vocabulary."""
    if folder is not None and (Path(folder) / "source.spm").is_file():
        import sentencepiece as spm

        processor = spm.SentencePieceProcessor(model_file=str(Path(folder) / "source.spm"))
        return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    return list(tokenizer.get_vocab())


def build_shortlist(
    tokenizer: Any,
    folder: Path | None,
    size: int = DEFAULT_SIZE,
    forms: Iterable[str] = (),
) -> Shortlist:
    """The shortlist of a model (its tokenizer and folder) for a glossary's ``forms``."""
    vocab = tokenizer.get_vocab()
    ranked, _how = target_ranking(tokenizer, folder)
    always: dict[str, None] = dict.fromkeys(p for p in tokenizer.all_special_tokens if p in vocab)
    # tokens added as special (NLLB's language codes): they decode to nothing, so no script
    # filter keeps them, yet the target-language token is forced as the first output piece
    added = getattr(tokenizer, "added_tokens_decoder", {}).values()
    always.update(dict.fromkeys(str(t) for t in added if t.special and str(t) in vocab))
    always.update(dict.fromkeys(ranked[:size]))
    always.update(dict.fromkeys(p for p in ranked[size:] if len(p.replace("▁", "")) <= 1))
    always.update(dict.fromkeys(glossary_pieces(tokenizer, forms)))
    sources = [p for p in source_pieces(tokenizer, folder) if copyable(p)]
    texts = [unicodedata.normalize("NFKC", p.replace("▁", " ")).strip() for p in sources]
    spelled = target_pieces(tokenizer, texts)
    spaced = target_pieces(tokenizer, [" " + t for t in texts])
    unk = tokenizer.unk_token
    by_source: dict[str, tuple[str, ...]] = {}
    for source, one, two in zip(sources, spelled, spaced):
        extra = [p for p in dict.fromkeys(one + two) if p != unk and p in vocab and p not in always]
        if extra:
            by_source[source] = tuple(extra)
    return Shortlist(tuple(always), by_source, size)


def glossary_pieces(tokenizer: Any, forms: Iterable[str]) -> list[str]:
    """The pieces of every segmentation of every form the constraints may use."""
    variants = [v for form in dict.fromkeys(forms) for v in form_variants(form)]
    unk = tokenizer.unk_token
    return [p for row in target_pieces(tokenizer, variants) for p in row if p != unk]


def glossary_forms(glossary: Any) -> list[str]:
    """Every approved form of every glossary entry."""
    return [form for entry in glossary.entries for form in entry.allowed]
