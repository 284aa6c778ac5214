"""Measure the sentence aligner: strict and lax precision, recall and F1, and its speed.

Gold: ``eval/gold/alignment/<doc_id>.tsv``, written by hand from the Japanese documents and
their references, over the gold sentence segmentations in ``eval/gold/segments/{ja,en}/``
(one sentence per line, blank lines not counted). A line ``ja<TAB>en`` holds comma-joined
0-based line numbers; an empty side is a 1-0 or 0-1 bead; ``#`` starts a comment.

The measure is vecalign's (and bertalign's): a bead is a strict hit if the gold has exactly
it, a lax hit if it shares a sentence pair with a gold bead; precision counts every bead the
aligner proposes, recall every non-null gold bead; micro-averaged over all documents.

Two settings, because no machine translation worth aligning exists offline (the test models
have random weights):

1. gold: the Japanese gold sentences aligned directly with the English ones, on what needs
   no translation: anchors (numbers, Latin words, glossary terms) and lengths. Shown beside
   a length-only baseline (Gale & Church), so the anchors' share is visible.
2. perturbed: the reference sentences themselves, lightly damaged (words dropped and swapped,
   sentences merged, split, re-split, dropped, and foreign ones inserted), stand in for
   machine output, with the true beads known; the aligner runs as it does on a run's
   English, chrF included. Several seeds; their mean is the figure to quote.

    python eval/alignment_f1.py [--data data] [--gold eval/gold] [--seeds 1 2 3 4 5]

Exits with status 1 if a gold file does not cover every sentence of both sides once, in
order: a gold that drifted from its segmentation would give a meaningless score.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from forumtranslate.align import (
    AlignConfig,
    Link,
    align_sentences,
    alignment_prf,
    perturb_sentences,
)
from forumtranslate.corpus import read_manifest, read_text

REPO = Path(__file__).resolve().parent.parent
Bead = tuple[tuple[int, ...], tuple[int, ...]]


def read_sentences(path: Path) -> list[str]:
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]


def read_gold(path: Path, n_ja: int, n_en: int) -> list[Bead]:
    """Read a gold TSV and check it is a partition of both sides, in order."""
    beads: list[Bead] = []
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t")
        if len(cells) != 2:
            raise SystemExit(f"{path}:{line_no}: expected ja<TAB>en")
        ja, en = (tuple(int(x) for x in cell.split(",") if x.strip()) for cell in cells)
        if not ja and not en:
            raise SystemExit(f"{path}:{line_no}: a bead needs a sentence on one side")
        beads.append((ja, en))
    if [i for ja, _ in beads for i in ja] != list(range(n_ja)):
        raise SystemExit(f"{path}: Japanese side is not lines 0..{n_ja - 1} once each, in order")
    if [j for _, en in beads for j in en] != list(range(n_en)):
        raise SystemExit(f"{path}: English side is not lines 0..{n_en - 1} once each, in order")
    return beads


def glossary_terms(path: Path) -> Callable[[str], list[str]]:
    """The approved English of glossary terms in a sentence, if the glossary loads."""
    try:
        from forumtranslate.glossary import load_glossary

        glossary = load_glossary(path)
    except Exception as err:  # optional: the aligner works without it
        print(f"(glossary not used: {err})", file=sys.stderr)
        return lambda _sentence: []
    return lambda sentence: [match.target for match in glossary.find_terms(sentence)]


def as_beads(links: Sequence[Link]) -> list[Bead]:
    return [(link.left, link.right) for link in links]


def report(title: str, result: dict[str, float], seconds: float) -> None:
    print(
        f"{title:<38} P {result['precision_strict']:.3f}/{result['precision_lax']:.3f}"
        f"  R {result['recall_strict']:.3f}/{result['recall_lax']:.3f}"
        f"  F1 {result['f1_strict']:.3f}/{result['f1_lax']:.3f}   {seconds:6.2f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "data")
    parser.add_argument("--gold", type=Path, default=REPO / "eval" / "gold")
    parser.add_argument("--glossary", type=Path, default=REPO / "glossary" / "terms.tsv")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    args = parser.parse_args()

    doc_ids = [info.doc_id for info in read_manifest(args.data / "manifest.tsv")]
    ja = {d: read_sentences(args.gold / "segments" / "ja" / f"{d}.txt") for d in doc_ids}
    en = {d: read_sentences(args.gold / "segments" / "en" / f"{d}.txt") for d in doc_ids}
    gold = {
        d: read_gold(args.gold / "alignment" / f"{d}.tsv", len(ja[d]), len(en[d])) for d in doc_ids
    }
    kinds = Counter(f"{len(a)}-{len(b)}" for d in doc_ids for a, b in gold[d])
    print(
        f"gold: {len(doc_ids)} documents, {sum(map(len, ja.values()))} Japanese and "
        f"{sum(map(len, en.values()))} English sentences, {sum(kinds.values())} beads "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(kinds.items()))})"
    )
    print("strict/lax figures; time = aligning the whole corpus once\n")

    terms_of = glossary_terms(args.glossary)
    terms = {d: [terms_of(s) for s in ja[d]] for d in doc_ids}
    settings = [
        ("gold, anchors + length", AlignConfig(), True),
        ("gold, anchors (no glossary) + length", AlignConfig(), False),
        ("gold, length only (Gale-Church)", AlignConfig(anchor_weight=0.0), False),
    ]
    for title, config, with_terms in settings:
        started = time.perf_counter()
        test = [
            as_beads(
                align_sentences(
                    en[d], src=ja[d], src_terms=terms[d] if with_terms else None, config=config
                )
            )
            for d in doc_ids
        ]
        seconds = time.perf_counter() - started
        report(title, alignment_prf([gold[d] for d in doc_ids], test), seconds)

    print()
    f1_strict, f1_lax, times = [], [], []
    for seed in args.seeds:
        golds, tests = [], []
        elapsed = 0.0
        for d in doc_ids:
            filler = [s for other in doc_ids if other != d for s in en[other]]
            hyp, links = perturb_sentences(en[d], seed, filler=filler)
            started = time.perf_counter()
            tests.append(as_beads(align_sentences(en[d], hyp)))
            elapsed += time.perf_counter() - started
            golds.append(as_beads(links))
        result = alignment_prf(golds, tests)
        f1_strict.append(result["f1_strict"])
        f1_lax.append(result["f1_lax"])
        times.append(elapsed)
        kinds = Counter(f"{len(a)}-{len(b)}" for doc in golds for a, b in doc)
        report(f"perturbed, seed {seed} ({kinds['1-1']} of {kinds.total()} 1-1)", result, elapsed)
    print(
        f"{'perturbed, mean over seeds':<38} F1 strict {statistics.mean(f1_strict):.3f} "
        f"(min {min(f1_strict):.3f}), lax {statistics.mean(f1_lax):.3f}; "
        f"{statistics.mean(times):.2f} s per corpus"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
