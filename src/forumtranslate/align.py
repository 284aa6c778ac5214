"""Align machine-translated sentences with the reference's sentences, one document at a time.

Why: the reference translator merges and splits sentences, so machine and reference rarely
have the same count, and scoring line against line would compare unrelated sentences. The
aligner groups both sides into beads (1-1, 1-2, 2-1, 2-2, 1-0, 0-1, and 3-1 and 1-3 for the
name blocks, where a name, a post and "(ビデオレター)" are three Japanese lines and one English
line) in order, by dynamic programming over a band around the diagonal, so the work grows
linearly with the document.

The left side is the machine output H with its Japanese sources S (either may be absent:
plain English files have no S; the gold evaluation aligns S with no H); the right side is
the reference R. A bead b joining left group L and right group R costs

    cost(b) = -ln P(kind)                                    bead prior (Gale & Church 1993)
            + w_len * GC(L, R)                               length prior (Gale & Church)
            - w_sim * (chrF1(H_L, R) - bg)                   machine vs reference (Bleualign)
            - w_anc * sum(1 / df(a) for a in A(L) & A(R))    shared anchors (hunalign)

and a null bead (1-0, 0-1) costs -ln P(kind) only. The aligner returns the path of least
total cost. The terms:

* GC is Gale & Church's -ln(2 (1 - Phi(|delta|))), delta = (x - l) / sqrt(s2 (l + x) / 2),
  where l is the left group's length in non-space characters (the source's when known: its
  relation to the reference does not depend on how good the machine is; else the
  machine's), x the reference group's length divided by the document's overall ratio, and
  s2 the variance per character (6.8, as Gale & Church measured).
* chrF1 is sacrebleu's chrF (character 1..6-grams, spaces removed, precision and recall
  averaged over orders) with beta = 1, because alignment is symmetric; a group's n-gram
  counts are the sum of its sentences'. bg is the document's lower quartile of chrF1 over
  sentence pairs, i.e. what unrelated sentences score, so only similarity above chance
  pays: this keeps machine output from random-weight models (all at chance) from
  steering the alignment, leaving it to the anchors and lengths. The gain does not grow
  with a bead's size: a merge must raise chrF1 enough to pay for its lower prior (as
  Bleualign merges only where BLEU improves), which keeps unrelated sentences out of beads.
* Anchors A are what a sentence shares with its translation whatever the machine does:
  digit sequences (separators dropped, so 2025, 15% and 227億 → 22.7 billion match;
  reference number words one..twelve count as digits), Latin-script tokens of the source
  (CPTPP, JOGMEC, AI, QUAD), and the approved English of glossary terms found in the
  source. Without a source, anchors come from the machine output (digits and acronyms
  only, since every English word is Latin). Each anchor weighs 1 / df, df being how many
  sentences of the busier side contain it, so "AI" in every sentence decides little.

The reported ``similarity`` of a bead is its chrF1 when there is machine output, else the
weighted Dice overlap of its anchors; null beads report 0.
"""

from __future__ import annotations

import json
import math
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forumtranslate.corpus import read_text
from forumtranslate.errors import InputError
from forumtranslate.records import Bead
from forumtranslate.storage import check_shape, read_jsonl, write_atomic

BEAD_SHAPES: tuple[tuple[int, int], ...] = ((1, 1), (1, 0), (0, 1), (2, 1), (1, 2), (2, 2))

CHAR_ORDER = 6
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_LATIN = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-&'][A-Za-z0-9]+)*")
_WORD = re.compile(r"[a-z0-9]+(?:[-&'][a-z0-9]+)*")
# fmt: off
_STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "its",
    "of", "on", "or", "that", "the", "this", "to", "with",
))
_NUMBER_WORDS = {
    word: str(value) for value, word in enumerate((
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ))
}
# fmt: on


@dataclass(frozen=True)
class AlignConfig:
    """The aligner's knobs; ``signature`` records them beside every result."""

    band: int = 8  # half-width of the search band, widened automatically if the path hits it
    prior_1_1: float = 0.89  # bead priors: Gale & Church's estimates
    prior_1_0: float = 0.005  # each of 1-0 and 0-1
    prior_2_1: float = 0.0445  # each of 2-1 and 1-2
    prior_2_2: float = 0.011
    prior_3_1: float = 0.002  # each of 3-1 and 1-3 (name blocks); 0 turns them off
    length_weight: float = 1.0
    length_variance: float = 6.8
    similarity_weight: float = 10.0
    anchor_weight: float = 3.0

    def prior_cost(self, shape: tuple[int, int]) -> float:
        prior = {
            (1, 1): self.prior_1_1,
            (1, 0): self.prior_1_0,
            (0, 1): self.prior_1_0,
            (2, 1): self.prior_2_1,
            (1, 2): self.prior_2_1,
            (2, 2): self.prior_2_2,
            (3, 1): self.prior_3_1,
            (1, 3): self.prior_3_1,
        }[shape]
        return -math.log(prior)

    def shapes(self) -> tuple[tuple[int, int], ...]:
        """The bead shapes searched: the six standard ones, plus 3-1 and 1-3 if enabled."""
        return BEAD_SHAPES + (((3, 1), (1, 3)) if self.prior_3_1 > 0 else ())

    def signature(self) -> str:
        return (
            f"align:chrf1+anchors+gc|band:{self.band}|w_sim:{self.similarity_weight:g}"
            f"|w_anc:{self.anchor_weight:g}|w_len:{self.length_weight:g}"
            f"|s2:{self.length_variance:g}|p:{self.prior_1_1:g}/{self.prior_1_0:g}"
            f"/{self.prior_2_1:g}/{self.prior_2_2:g}/{self.prior_3_1:g}"
        )


@dataclass(frozen=True)
class Link:
    """One bead by sentence indices: which left and which right sentences go together."""

    left: tuple[int, ...]
    right: tuple[int, ...]
    similarity: float = 0.0

    @property
    def kind(self) -> str:
        return f"{len(self.left)}-{len(self.right)}"


# --- similarity features ---------------------------------------------------------------


# A group's n-grams for one order: its items as the bits of an integer, and how many.
NgramBits = tuple[tuple[int, int], ...]


class CharNgrams:
    """The character 1..6-grams of some texts (a document's sentences), for fast chrF.

    chrF's match count for an order is the sum over n-grams g of min(count_a(g),
    count_b(g)). Numbering the k-th repeat of each n-gram as an item of its own makes it
    the size of a set intersection; holding a group's items as the bits of one Python
    integer makes that an AND and a bit count, both in C. This is most of what alignment
    costs. A bit is an item's position among the items of all the texts, which hold every
    group's items.
    """

    def __init__(self, texts: Sequence[str]) -> None:
        ids: dict[str, int] = {}
        self._ids = []  # per text, per order: the n-grams' numbers
        for text in texts:
            line = "".join(text.split())  # sacrebleu's chrF drops whitespace
            orders = []
            for n in range(1, CHAR_ORDER + 1):
                grams = [line[i : i + n] for i in range(len(line) - n + 1)]
                orders.append(np.array([ids.setdefault(g, len(ids)) for g in grams], np.int64))
            self._ids.append(orders)
        self._items = [np.sort(self._encode(0, len(texts), order)) for order in range(CHAR_ORDER)]

    def _encode(self, start: int, stop: int, order: int) -> np.ndarray:
        """Items of texts[start:stop]: the k-th repeat (k = 0, 1, ...) of n-gram g is
        g + k * 2**32."""
        ids = np.sort(
            np.concatenate([np.empty(0, np.int64)] + [t[order] for t in self._ids[start:stop]])
        )
        position = np.arange(len(ids))
        run_start = np.r_[True, ids[1:] != ids[:-1]] if len(ids) else np.empty(0, bool)
        repeat = position - np.maximum.accumulate(np.where(run_start, position, 0))
        return ids + (repeat << 32)

    def group(self, start: int, stop: int) -> NgramBits:
        """The summed n-grams of texts[start:stop], per order as (bits, item count)."""
        orders = []
        for order in range(CHAR_ORDER):
            items = self._encode(start, stop, order)
            present = np.zeros(len(self._items[order]), np.uint8)
            present[np.searchsorted(self._items[order], items)] = 1
            bits = int.from_bytes(np.packbits(present, bitorder="little").tobytes(), "little")
            orders.append((bits, len(items)))
        return tuple(orders)


def chrf1(hyp: str, ref: str) -> float:
    """chrF with beta 1 between two texts, in [0, 1]: the aligner's notion of similarity."""
    ngrams = CharNgrams([hyp, ref])
    return chrf_from_bits(ngrams.group(0, 1), ngrams.group(1, 2))


def chrf_from_bits(hyp: NgramBits, ref: NgramBits, beta: float = 1.0) -> float:
    """sacrebleu's chrF (effective order, averaged P and R) of two groups, in [0, 1]."""
    avg_p = avg_r = 0.0
    orders = 0
    for (h, h_count), (r, r_count) in zip(hyp, ref, strict=True):
        if h_count and r_count:
            matches = (h & r).bit_count()
            avg_p += matches / h_count
            avg_r += matches / r_count
            orders += 1
    if not orders:
        return 0.0
    avg_p /= orders
    avg_r /= orders
    if avg_p + avg_r == 0:
        return 0.0
    factor = beta * beta
    return (1 + factor) * avg_p * avg_r / (factor * avg_p + avg_r)


def left_anchors(text: str, terms: Iterable[str] = (), *, english: bool = False) -> frozenset[str]:
    """Anchors of a source (or, with ``english``, machine) sentence: digits, Latin, terms."""
    norm = unicodedata.normalize("NFKC", text)
    found = {_number_key(num) for num in _NUMBER.findall(norm)}
    for token in _LATIN.findall(norm):
        if english and not _is_acronym(token):
            continue
        low = token.lower()
        if len(low) >= 2 and low not in _STOPWORDS:
            found.add(low)
    for term in terms:
        phrase = " ".join(_WORD.findall(unicodedata.normalize("NFKC", term).lower()))
        if phrase:
            found.add("=" + phrase)
    return frozenset(found)


def right_anchors(text: str, vocabulary: frozenset[str]) -> frozenset[str]:
    """Which of the document's left anchors a reference sentence contains."""
    norm = unicodedata.normalize("NFKC", text)
    words = _WORD.findall(norm.lower())
    present = set(words)
    present.update(_number_key(num) for num in _NUMBER.findall(norm))
    present.update("#" + _NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS)
    joined = " " + " ".join(words) + " "
    found = {a for a in vocabulary if a in present}
    found.update(a for a in vocabulary if a.startswith("=") and f" {a[1:]} " in joined)
    return frozenset(found)


def _number_key(number: str) -> str:
    digits = re.sub(r"\D", "", number).lstrip("0")
    return "#" + (digits or "0")


def _is_acronym(token: str) -> bool:
    upper = sum(ch.isupper() for ch in token)
    return upper >= 2 or (any(ch.isdigit() for ch in token) and any(ch.isalpha() for ch in token))


def gale_church_cost(left_len: float, right_len: float, ratio: float, variance: float) -> float:
    """-ln P(|delta| this large) for a group pair, Gale & Church (1993), in left units."""
    x = right_len / ratio if ratio > 0 else right_len
    mean = (left_len + x) / 2
    if mean <= 0:
        return 0.0
    z = abs(x - left_len) / math.sqrt(variance * mean) / math.sqrt(2)
    if z < 5:
        return -math.log(math.erfc(z))
    return z * z + math.log(z * math.sqrt(math.pi))  # the tail, where erfc underflows


def _visible_len(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


class _Scorer:
    """Everything one document's bead costs need, computed once per sentence or group."""

    def __init__(
        self,
        ref: Sequence[str],
        hyp: Sequence[str] | None,
        src: Sequence[str] | None,
        src_terms: Sequence[Sequence[str]] | None,
        config: AlignConfig,
    ) -> None:
        self.config = config
        self.has_hyp = hyp is not None
        self.n = len(hyp) if hyp is not None else len(src or ())
        self.m = len(ref)
        self._groups: dict[tuple[str, int, int], Any] = {}

        length_side = src if src is not None else hyp
        assert length_side is not None
        self.left_len = [_visible_len(t) for t in length_side]
        self.right_len = [_visible_len(t) for t in ref]
        total_left, total_right = sum(self.left_len), sum(self.right_len)
        self.ratio = total_right / total_left if total_left and total_right else 1.0

        terms = src_terms if src_terms is not None else [()] * self.n
        if src is not None:
            self.left_anc = [left_anchors(t, ts) for t, ts in zip(src, terms, strict=True)]
        else:
            assert hyp is not None
            self.left_anc = [left_anchors(t, english=True) for t in hyp]
        vocabulary = frozenset().union(*self.left_anc) if self.left_anc else frozenset()
        self.right_anc = [right_anchors(t, vocabulary) for t in ref]
        df_left = Counter(a for anchors in self.left_anc for a in anchors)
        df_right = Counter(a for anchors in self.right_anc for a in anchors)
        self.weight = {a: 1.0 / max(df_left[a], df_right[a], 1) for a in vocabulary}

        self.background = 0.0
        if hyp is not None:
            self.ngrams = CharNgrams([*hyp, *ref])  # machine sentences first
            self.background = self._background()

    def _group(self, side: str, start: int, stop: int) -> Any:
        key = (side, start, stop)
        cached = self._groups.get(key)
        if cached is not None:
            return cached
        if side in ("h", "r"):
            offset = 0 if side == "h" else self.n
            value: Any = self.ngrams.group(offset + start, offset + stop)
        else:
            anchors = self.left_anc if side == "L" else self.right_anc
            value = frozenset().union(*anchors[start:stop])
        self._groups[key] = value
        return value

    def _background(self) -> float:
        """Lower quartile of chrF1 over sentence pairs: what chance similarity looks like."""
        pairs = [(i, j) for i in range(self.n) for j in range(self.m)]
        if len(pairs) > 1500:
            pairs = random.Random(0).sample(pairs, 1500)
        if not pairs:
            return 0.0
        values = sorted(
            chrf_from_bits(self._group("h", i, i + 1), self._group("r", j, j + 1)) for i, j in pairs
        )
        return values[len(values) // 4]

    def chrf(self, i0: int, i1: int, j0: int, j1: int) -> float:
        return chrf_from_bits(self._group("h", i0, i1), self._group("r", j0, j1))

    def anchor_scores(self, i0: int, i1: int, j0: int, j1: int) -> tuple[float, float]:
        """(weight of shared anchors, weighted Dice overlap) of a group pair."""
        left = self._group("L", i0, i1)
        right = self._group("R", j0, j1)
        if not left and not right:
            return 0.0, 0.0
        weight = self.weight
        shared = sum(weight[a] for a in left & right)
        total = sum(weight[a] for a in left) + sum(weight[a] for a in right)
        return shared, (2 * shared / total if total else 0.0)

    def cost(self, i0: int, i1: int, j0: int, j1: int) -> float:
        """The cost of joining left[i0:i1] with right[j0:j1] (both non-empty)."""
        cfg = self.config
        shape = (i1 - i0, j1 - j0)
        total = cfg.prior_cost(shape)
        total += cfg.length_weight * gale_church_cost(
            sum(self.left_len[i0:i1]),
            sum(self.right_len[j0:j1]),
            self.ratio,
            cfg.length_variance,
        )
        if self.has_hyp:
            total -= cfg.similarity_weight * (self.chrf(i0, i1, j0, j1) - self.background)
        shared, _ = self.anchor_scores(i0, i1, j0, j1)
        return total - cfg.anchor_weight * shared

    def similarity(self, i0: int, i1: int, j0: int, j1: int) -> float:
        if i0 == i1 or j0 == j1:
            return 0.0
        if self.has_hyp:
            return self.chrf(i0, i1, j0, j1)
        return self.anchor_scores(i0, i1, j0, j1)[1]


# --- the dynamic programme -------------------------------------------------------------


def _band_limits(n: int, m: int, width: int) -> tuple[list[int], list[int]]:
    """Per left position i, the right positions j the search may visit.

    The band follows the diagonal j = i * m / n and is wide enough that consecutive rows
    overlap, so a path from (0, 0) to (n, m) always exists inside it.
    """
    lo, hi = [], []
    for i in range(n + 1):
        lo.append(max(0, (max(i - 1, 0) * m) // n - width))
        hi.append(min(m, -((-(min(i + 1, n)) * m) // n) + width))
    return lo, hi


def banded_path(
    n: int,
    m: int,
    pair_cost: Callable[[int, int, int, int], float],
    null_cost: Callable[[tuple[int, int]], float],
    width: int,
    shapes: Sequence[tuple[int, int]] = BEAD_SHAPES,
) -> tuple[list[tuple[int, int, int, int]], bool]:
    """Least-cost monotone path of beads from (0, 0) to (n, m) inside a band.

    Returns the beads as (i0, i1, j0, j1) and whether the path touched the band's edge
    (a hint that a wider band might find a cheaper path).
    """
    lo, hi = _band_limits(n, m, width)
    inf = math.inf
    cost = [[inf] * (hi[i] - lo[i] + 1) for i in range(n + 1)]
    back: list[list[tuple[int, int] | None]] = [[None] * (hi[i] - lo[i] + 1) for i in range(n + 1)]
    cost[0][0] = 0.0
    nulls = {shape: null_cost(shape) for shape in shapes if 0 in shape}
    for i in range(n + 1):
        row, row_back, row_lo = cost[i], back[i], lo[i]
        for j in range(row_lo, hi[i] + 1):
            best, best_shape = row[j - row_lo], None
            for shape in shapes:
                a, b = shape
                pi, pj = i - a, j - b
                if pi < 0 or pj < lo[pi] or pj > hi[pi]:
                    continue
                prev = cost[pi][pj - lo[pi]]
                if prev == inf:
                    continue
                step = nulls[shape] if shape in nulls else pair_cost(pi, i, pj, j)
                if prev + step < best:
                    best, best_shape = prev + step, shape
            if best_shape is not None:
                row[j - row_lo] = best
                row_back[j - row_lo] = best_shape
    path: list[tuple[int, int, int, int]] = []
    touched = False
    i, j = n, m
    while i > 0 or j > 0:
        if (j == lo[i] and lo[i] > 0) or (j == hi[i] and hi[i] < m):
            touched = True
        shape = back[i][j - lo[i]]
        assert shape is not None, "the band always contains a path"
        a, b = shape
        path.append((i - a, i, j - b, j))
        i, j = i - a, j - b
    path.reverse()
    return path, touched


def align_sentences(
    ref: Sequence[str],
    hyp: Sequence[str] | None = None,
    *,
    src: Sequence[str] | None = None,
    src_terms: Sequence[Sequence[str]] | None = None,
    config: AlignConfig | None = None,
) -> list[Link]:
    """Align the left side (machine output ``hyp`` and/or its sources ``src``) with ``ref``.

    ``hyp`` and ``src``, when both given, are parallel (one machine sentence per source
    sentence); ``src_terms`` gives, per source sentence, the approved English of the
    glossary terms found in it. Every sentence of either side lands in exactly one link,
    in order.
    """
    config = config or AlignConfig()
    if hyp is None and src is None:
        raise ValueError("align_sentences needs hyp, src or both")
    if hyp is not None and src is not None and len(hyp) != len(src):
        raise ValueError(f"hyp has {len(hyp)} sentences but src has {len(src)}")
    n = len(hyp) if hyp is not None else len(src or ())
    m = len(ref)
    if n == 0 or m == 0:
        return [Link((i,), ()) for i in range(n)] + [Link((), (j,)) for j in range(m)]
    scorer = _Scorer(ref, hyp, src, src_terms, config)
    width = max(1, config.band)
    while True:
        path, touched = banded_path(n, m, scorer.cost, config.prior_cost, width, config.shapes())
        if not touched or width >= max(n, m):
            break
        width *= 2
    return [
        Link(tuple(range(i0, i1)), tuple(range(j0, j1)), scorer.similarity(i0, i1, j0, j1))
        for i0, i1, j0, j1 in path
    ]


# --- measuring an aligner: vecalign's strict and lax precision and recall ---------------


def _precision_counts(
    gold: Iterable[tuple[tuple[int, ...], tuple[int, ...]]],
    test: Iterable[tuple[tuple[int, ...], tuple[int, ...]]],
) -> tuple[int, int, int, int]:
    """(tp strict, fp strict, tp lax, fp lax): a test bead is a lax hit if some of its left
    sentences are gold-aligned to some of its right sentences."""
    gold_set = {(tuple(x), tuple(y)) for x, y in gold if x or y}
    test_set = {(tuple(x), tuple(y)) for x, y in test if x or y}
    gold_right: dict[int, set[int]] = {}
    for left, right in gold_set:
        for i in left:
            gold_right.setdefault(i, set()).update(right)
    tp_s = fp_s = tp_l = fp_l = 0
    for left, right in test_set:
        if (left, right) in gold_set:
            tp_s += 1
            tp_l += 1
            continue
        fp_s += 1
        linked = set().union(*(gold_right.get(i, set()) for i in left)) if left else set()
        if linked & set(right):
            tp_l += 1
        else:
            fp_l += 1
    return tp_s, fp_s, tp_l, fp_l


def alignment_prf(
    gold_docs: Sequence[Sequence[tuple[tuple[int, ...], tuple[int, ...]]]],
    test_docs: Sequence[Sequence[tuple[tuple[int, ...], tuple[int, ...]]]],
) -> dict[str, float]:
    """Strict and lax precision, recall and F1 over documents, as vecalign's score.py.

    Precision counts every test bead (null beads too); recall swaps the roles and leaves
    out null beads on both sides. Strict needs the exact bead; lax any overlap.
    """
    p = [0, 0, 0, 0]
    r = [0, 0, 0, 0]
    for gold, test in zip(gold_docs, test_docs, strict=True):
        for k, v in enumerate(_precision_counts(gold, test)):
            p[k] += v
        gold_full = [(x, y) for x, y in gold if x and y]
        test_full = [(x, y) for x, y in test if x and y]
        for k, v in enumerate(_precision_counts(test_full, gold_full)):
            r[k] += v

    def ratio(hit: int, miss: int) -> float:
        return hit / (hit + miss) if hit + miss else 0.0

    def f1(a: float, b: float) -> float:
        return 2 * a * b / (a + b) if a + b else 0.0

    ps, pl = ratio(p[0], p[1]), ratio(p[2], p[3])
    rs, rl = ratio(r[0], r[1]), ratio(r[2], r[3])
    return {
        "precision_strict": ps,
        "recall_strict": rs,
        "f1_strict": f1(ps, rs),
        "precision_lax": pl,
        "recall_lax": rl,
        "f1_lax": f1(pl, rl),
    }


def perturb_sentences(
    sentences: Sequence[str],
    seed: int,
    *,
    p_merge: float = 0.10,
    p_split: float = 0.10,
    p_resplit: float = 0.03,
    p_drop: float = 0.02,
    p_insert: float = 0.02,
    p_word_drop: float = 0.10,
    p_word_swap: float = 0.10,
    filler: Sequence[str] = (),
) -> tuple[list[str], list[Link]]:
    """A realistic stand-in for machine output: the reference, lightly damaged, with the
    true beads known.

    Sentences are merged (1-2), split (2-1), merged and re-split elsewhere (2-2), dropped
    (0-1), and foreign sentences from ``filler`` are inserted (1-0); within each sentence
    words are dropped and neighbours swapped. Seeded, so the measure is reproducible.
    """
    rng = random.Random(seed)

    def damage(text: str) -> str:
        words = [w for w in text.split() if rng.random() >= p_word_drop] or text.split()[:1]
        for k in range(len(words) - 1):
            if rng.random() < p_word_swap:
                words[k], words[k + 1] = words[k + 1], words[k]
        return " ".join(words)

    def cut(text: str) -> tuple[str, str] | None:
        words = text.split()
        if len(words) < 6:
            return None
        at = rng.randint(len(words) // 3, 2 * len(words) // 3)
        return " ".join(words[:at]), " ".join(words[at:])

    hyp: list[str] = []
    links: list[Link] = []
    j = 0
    m = len(sentences)
    while j < m:
        if filler and rng.random() < p_insert:
            links.append(Link((len(hyp),), ()))
            hyp.append(damage(rng.choice(filler)))
        roll = rng.random()
        pair_ok = j + 1 < m
        if pair_ok and roll < p_merge:
            links.append(Link((len(hyp),), (j, j + 1)))
            hyp.append(damage(sentences[j] + " " + sentences[j + 1]))
            j += 2
            continue
        roll -= p_merge
        if roll < p_split and (parts := cut(sentences[j])):
            links.append(Link((len(hyp), len(hyp) + 1), (j,)))
            hyp.extend(damage(part) for part in parts)
            j += 1
            continue
        roll -= p_split
        if pair_ok and roll < p_resplit and (parts := cut(sentences[j] + " " + sentences[j + 1])):
            links.append(Link((len(hyp), len(hyp) + 1), (j, j + 1)))
            hyp.extend(damage(part) for part in parts)
            j += 2
            continue
        roll -= p_resplit
        if roll < p_drop:
            links.append(Link((), (j,)))
            j += 1
            continue
        links.append(Link((len(hyp),), (j,)))
        hyp.append(damage(sentences[j]))
        j += 1
    return hyp, links


# --- run folders -------------------------------------------------------------------------


TRANSLATION_KEYS = ("doc_id", "seg_id", "index", "source", "translation")
# The JSON types of a translations.jsonl record, as ``run.translation_records`` writes them.
TRANSLATION_SHAPE = {
    "doc_id": str,
    "seg_id": str,
    "index": int,
    "kind": str,
    "source": str,
    "translation": str,
    "terms": [{"entry_id": str, "source": str, "target": str, "found": bool}],
}


def read_translations(run_dir: Path) -> list[dict[str, Any]]:
    """The run's translations.jsonl, checked for the keys the aligner and scorer use."""
    path = Path(run_dir) / "translations.jsonl"
    records = read_jsonl(path)
    for line_no, record in enumerate(records, start=1):
        missing = [key for key in TRANSLATION_KEYS if key not in record]
        if missing:
            raise InputError(f"record lacks {', '.join(missing)}", path, line_no)
        check_shape(record, TRANSLATION_SHAPE, path, line_no)
    if not records:
        raise InputError("holds no translations", path)
    return records


def run_data_dir(run_dir: Path) -> Path:
    """The corpus folder a run was made from, as its run.json records it."""
    path = Path(run_dir) / "run.json"
    try:
        meta = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err.msg}", path, err.lineno) from None
    if not isinstance(meta, dict) or not meta.get("data_dir"):
        raise InputError("has no data_dir; pass the corpus folder explicitly", path)
    check_shape(meta, {"data_dir": str}, path)
    return Path(meta["data_dir"])


def _group_by_doc(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    docs: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        docs.setdefault(record["doc_id"], []).append(record)
    return docs


def align_document(
    doc_id: str,
    records: Sequence[dict[str, Any]],
    ref_ids: Sequence[str],
    ref: Sequence[str],
    config: AlignConfig | None = None,
) -> list[Bead]:
    """Align one document's translation records, in any order (they are put in the order
    of their ``index``), with its reference sentences. Both engines align through here."""
    records = sorted(records, key=lambda r: int(r["index"]))
    hyp = [str(r["translation"]) for r in records]
    src = [str(r["source"]) for r in records]
    terms = [[t["target"] for t in r.get("terms") or () if t.get("target")] for r in records]
    links = align_sentences(ref, hyp, src=src, src_terms=terms, config=config)
    return [
        Bead(
            doc_id=doc_id,
            src_seg_ids=tuple(str(records[i]["seg_id"]) for i in link.left),
            hyp=tuple(hyp[i] for i in link.left),
            ref=tuple(ref[j] for j in link.right),
            ref_ids=tuple(ref_ids[j] for j in link.right),
            kind=link.kind,
            similarity=link.similarity,
        )
        for link in links
    ]


def reference_sentences(data_dir: Path, doc_id: str) -> tuple[list[str], list[str]]:
    """(ids, texts) of a document's reference sentences, cut by the project's segmenter."""
    from forumtranslate.segment import segment_text

    text = read_text(Path(data_dir) / "en" / f"{doc_id}.txt")
    segments = segment_text(text, doc_id, "en")
    return [s.seg_id for s in segments], [s.text for s in segments]


def align_run(
    run_dir: Path, data_dir: Path | None = None, config: AlignConfig | None = None
) -> list[Bead]:
    """Align every document of a run with its reference; write ``alignment.jsonl``."""
    run_dir = Path(run_dir)
    data_dir = Path(data_dir) if data_dir is not None else run_data_dir(run_dir)
    beads = align_records(data_dir, read_translations(run_dir), config)
    write_beads(run_dir / "alignment.jsonl", beads)
    return beads


def align_records(
    data_dir: Path, records: Sequence[dict[str, Any]], config: AlignConfig | None = None
) -> list[Bead]:
    """The beads of every document of ``records`` (run records), documents in the order
    they first appear, each aligned with its reference sentences in ``data_dir``."""
    beads: list[Bead] = []
    for doc_id, doc_records in _group_by_doc(records).items():
        ref_ids, ref = reference_sentences(Path(data_dir), doc_id)
        beads.extend(align_document(doc_id, doc_records, ref_ids, ref, config))
    return beads


def bead_to_json(bead: Bead) -> dict[str, Any]:
    return {
        "doc_id": bead.doc_id,
        "kind": bead.kind,
        "src_seg_ids": list(bead.src_seg_ids),
        "hyp": list(bead.hyp),
        "ref_ids": list(bead.ref_ids),
        "ref": list(bead.ref),
        "similarity": round(bead.similarity, 4),
    }


def write_beads(path: Path, beads: Iterable[Bead]) -> None:
    lines = [json.dumps(bead_to_json(b), ensure_ascii=False) + "\n" for b in beads]
    write_atomic(path, "".join(lines))


BEAD_SHAPE = {
    "doc_id": str,
    "src_seg_ids": [str],
    "hyp": [str],
    "ref": [str],
    "ref_ids": [str],
    "kind": str,
    "similarity": float,
}


def read_beads(path: Path) -> list[Bead]:
    """Read an ``alignment.jsonl`` back into beads."""
    beads = []
    for line_no, rec in enumerate(read_jsonl(path), start=1):
        check_shape(rec, BEAD_SHAPE, path, line_no)
        try:
            beads.append(
                Bead(
                    doc_id=str(rec["doc_id"]),
                    src_seg_ids=tuple(str(x) for x in rec["src_seg_ids"]),
                    hyp=tuple(str(x) for x in rec["hyp"]),
                    ref=tuple(str(x) for x in rec["ref"]),
                    ref_ids=tuple(str(x) for x in rec["ref_ids"]),
                    kind=str(rec["kind"]),
                    similarity=float(rec["similarity"]),
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"malformed bead ({err})", path, line_no) from None
    return beads


def run_beads(run_dir: Path) -> list[Bead]:
    """The run's alignment, made first if the run has none yet."""
    path = Path(run_dir) / "alignment.jsonl"
    if path.exists():
        return read_beads(path)
    return align_run(run_dir)


def read_lines(path: Path) -> list[str]:
    """One sentence per line, trailing spaces stripped, as sacrebleu's CLI reads files."""
    lines = read_text(path).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip() for line in lines]


def format_links(links: Iterable[Link]) -> str:
    """Links as ``left<TAB>right<TAB>kind<TAB>similarity`` lines, indices comma-joined."""
    out = []
    for link in links:
        left = ",".join(map(str, link.left))
        right = ",".join(map(str, link.right))
        out.append(f"{left}\t{right}\t{link.kind}\t{link.similarity:.3f}\n")
    return "".join(out)
