"""Score the sentence segmenter against the hand-made gold segmentations.

Gold files: ``eval/gold/segments/<lang>/<doc_id>.txt``, one segment per line in document
order, written by reading the text, not by running the segmenter. Blank lines are ignored
(they only group a block's sentences for the reader). The gold follows the segmenter's
documented layout conventions, so that only sentence judgments are measured: bullet markers
are left out, a heading label (``【日時】``, ``[Venue]``) is a line of its own, the lines of a
name block are separate units, and a sentence cut by a page break is one line.

Matching: both segmentations are turned into spans over the document's non-space characters,
and a predicted segment is correct when a gold segment has exactly its span. Whitespace thus
never matters (the PDF repair, the space in ``赤澤 亮正``), and a line that occurs twice
(``経済産業省``) is matched at its own place. Precision = correct / predicted, recall =
correct / gold, F1 their harmonic mean; per document and over all documents (micro-averaged).

    python eval/segmentation_f1.py [--data data] [--gold eval/gold/segments] [--lang ja en]

Exits with status 1 when a gold file's or the segmenter's characters differ from the
document's: a typo in the gold, or a character the segmenter lost, would shift every later
span and make the score meaningless.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from forumtranslate.corpus import load_documents, read_text
from forumtranslate.segment import segment_text

REPO = Path(__file__).resolve().parent.parent
BULLET_MARKER = re.compile(r"(?m)^\s*- ")


@dataclass(frozen=True)
class Counts:
    """Segment counts for one document or a sum of them."""

    gold: int
    predicted: int
    correct: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.gold + other.gold,
            self.predicted + other.predicted,
            self.correct + other.correct,
        )

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.correct / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def non_space(text: str) -> str:
    return "".join(char for char in text if not char.isspace())


def spans(segments: list[str]) -> set[tuple[int, int]]:
    """Each segment as (first, last + 1) over the non-space characters of the whole text."""
    result = set()
    position = 0
    for segment in segments:
        length = len(non_space(segment))
        result.add((position, position + length))
        position += length
    return result


def score(gold: list[str], predicted: list[str]) -> Counts:
    """Exact-match counts of predicted against gold segments of the same text."""
    correct = len(spans(gold) & spans(predicted))
    return Counts(gold=len(gold), predicted=len(predicted), correct=correct)


def read_gold(path: Path) -> list[str]:
    return [line.strip() for line in read_text(path).split("\n") if line.strip()]


def first_difference(a: str, b: str) -> str:
    """Where two character streams part, shown with a little context."""
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"at character {i}: gold {a[i : i + 12]!r} vs document {b[i : i + 12]!r}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "data")
    parser.add_argument("--gold", type=Path, default=REPO / "eval" / "gold" / "segments")
    parser.add_argument("--lang", nargs="+", default=["ja", "en"], choices=["ja", "en"])
    args = parser.parse_args(argv)

    failed = False
    print(f"{'lang':4}  {'document':16} {'gold':>5} {'pred':>5} {'match':>5}", end="")
    print(f"  {'P':>5}  {'R':>5}  {'F1':>5}")
    for language in args.lang:
        total = Counts(0, 0, 0)
        for document in load_documents(args.data, language):
            gold_path = args.gold / language / f"{document.doc_id}.txt"
            gold = read_gold(gold_path)
            expected = non_space(BULLET_MARKER.sub("", document.text))
            if non_space("".join(gold)) != expected:
                where = first_difference(non_space("".join(gold)), expected)
                print(f"error: {gold_path} does not match {document.path} {where}", file=sys.stderr)
                failed = True
                continue
            predicted = [seg.text for seg in segment_text(document.text, document.doc_id, language)]
            if non_space("".join(predicted)) != expected:
                where = first_difference(non_space("".join(predicted)), expected)
                print(f"error: the segmenter lost or repeated text of {document.path} {where}")
                failed = True
                continue
            counts = score(gold, predicted)
            total += counts
            print(_row(language, document.doc_id, counts))
        print(_row(language, "ALL", total))
    return 1 if failed else 0


def _row(language: str, name: str, c: Counts) -> str:
    return (
        f"{language:4}  {name:16} {c.gold:5d} {c.predicted:5d} {c.correct:5d}"
        f"  {c.precision:.3f}  {c.recall:.3f}  {c.f1:.3f}"
    )


if __name__ == "__main__":
    sys.exit(main())
