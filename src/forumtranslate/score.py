"""Score machine output against the references with sacrebleu, and compare two runs.

Why sacrebleu and nothing of our own: a score is only worth reporting if anyone can
reproduce it, so every number here is sacrebleu's, printed with sacrebleu's signature, and
a run writes the exact segment files (``aligned.hyp.txt``, ``aligned.ref.txt``) on which
``sacrebleu aligned.ref.txt -i aligned.hyp.txt -m bleu chrf ter`` prints the same BLEU, chrF2
and TER, and ``sacrebleu aligned.ref.txt -i aligned.hyp.txt -m chrf --chrf-word-order 2``
the same chrF2++ (``scores.json`` keeps the two commands: ``reproduce``, ``reproduce_chrf++``).

In a run, the segments scored are the alignment's beads: a bead's machine sentences joined
by a space against its reference sentences joined by a space. Null beads stay in: a 1-0
bead (machine text with no reference) costs precision, a 0-1 bead (reference the machine
left out) costs recall, so nothing the reference says is silently dropped.

A reviewer's post-edits are scored here too (``hter_scores``): HTER is sacrebleu's TER of
the machine output against its post-edit, case-sensitive, since fixing case is work the
reviewer did. The review package stores the post-edits and writes ``hter.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forumtranslate import __version__
from forumtranslate.align import (
    AlignConfig,
    read_lines,
    read_translations,
    run_beads,
)
from forumtranslate.errors import InputError
from forumtranslate.records import HOW, Bead, PostEdit
from forumtranslate.storage import write_atomic

METRICS = ("BLEU", "chrF2", "chrF2++", "TER")
SENTENCE_METRICS = ("BLEU", "chrF2")
HYP_FILE = "aligned.hyp.txt"
REF_FILE = "aligned.ref.txt"


def make_metrics() -> dict[str, Any]:
    """Fresh sacrebleu metrics with its CLI's defaults: BLEU, chrF, chrF++ and TER."""
    from sacrebleu.metrics import BLEU, CHRF, TER

    return {"BLEU": BLEU(), "chrF2": CHRF(), "chrF2++": CHRF(word_order=2), "TER": TER()}


@dataclass(frozen=True)
class MetricScore:
    """One corpus score with the signature that lets anyone reproduce it."""

    name: str
    score: float
    signature: str
    verbose: str = ""

    def format(self, width: int = 1) -> str:
        return f"{self.score:.{width}f}"

    def to_json(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "signature": self.signature,
            "verbose": self.verbose,
        }


class SegmentStatistics:
    """sacrebleu's sufficient statistics of every segment, for every metric, counted once.

    Why: a run reports each metric for the corpus, for each document and for each segment.
    All of them (BLEU, chrF, TER) are functions of summed per-segment counts, so counting
    once and summing subsets gives exactly what ``corpus_score`` and ``sentence_score``
    give, at a third of the cost; a test holds the two ways equal.
    """

    def __init__(self, hyps: Sequence[str], refs: Sequence[str]) -> None:
        if len(hyps) != len(refs):
            raise InputError(f"{len(hyps)} hypothesis segments but {len(refs)} reference segments")
        self.metrics = make_metrics()
        self.stats = {
            name: metric._extract_corpus_statistics(list(hyps), [list(refs)])
            for name, metric in self.metrics.items()
        }
        self.count = len(hyps)

    def corpus(self, picked: Sequence[int] | None = None) -> dict[str, MetricScore]:
        """Every metric over the segments ``picked`` (all by default), as corpus scores."""
        picked = range(self.count) if picked is None else picked
        if not picked:
            raise InputError("nothing to score: no segments")
        scores = {}
        for name, metric in self.metrics.items():
            stats = self.stats[name]
            result = metric._aggregate_and_compute([stats[k] for k in picked])
            signature = metric.get_signature().format()
            verbose = str(getattr(result, "_verbose", "") or "")
            scores[name] = MetricScore(name, float(result.score), signature, verbose)
        return scores

    def sentences(self) -> tuple[list[dict[str, float]], dict[str, str]]:
        """Per segment chrF2 and BLEU (effective-order smoothing, as sacrebleu's -sl), and
        their signatures."""
        from sacrebleu.metrics import BLEU, CHRF

        metrics = {"BLEU": BLEU(effective_order=True), "chrF2": CHRF()}
        for metric in metrics.values():
            metric.num_refs = 1  # what sentence_score would record; the signature shows it
        rows = [
            {
                name: float(metric._aggregate_and_compute([self.stats[name][k]]).score)
                for name, metric in metrics.items()
            }
            for k in range(self.count)
        ]
        if not rows:
            return rows, {}
        return rows, {name: metric.get_signature().format() for name, metric in metrics.items()}


def corpus_scores(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, MetricScore]:
    """Corpus BLEU, chrF2, chrF2++ and TER of parallel segments, as sacrebleu's CLI gives."""
    return SegmentStatistics(hyps, refs).corpus()


def bead_segments(beads: Sequence[Bead]) -> tuple[list[str], list[str]]:
    """One (hypothesis, reference) segment per bead; whitespace collapsed to single spaces.

    Collapsing changes no score (every metric here splits on whitespace or drops it) but
    keeps each segment on one line of the files written beside the scores.
    """
    hyps = [" ".join(" ".join(b.hyp).split()) for b in beads]
    refs = [" ".join(" ".join(b.ref).split()) for b in beads]
    return hyps, refs


def term_accuracy(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Term accuracy of a set of records, honestly split by how each term got there.

    ``found``/``accuracy``: exact-match term accuracy (WMT 2021), after enforcement: every
    term in the final text. ``decoded``/``decoded_accuracy``: only the terms the model's
    search wrote, which is what the model can do. ``edited`` and ``appended`` count the
    terms put in after decoding. ``lemma_found``/``lemma_accuracy``: found once both sides
    are lemmatised (plural and inflected forms count), as the WMT terminology tasks also
    report a tolerant success rate. ``consistency``: see ``term_consistency``.
    """
    total = found = lemma = 0
    counts = dict.fromkeys(HOW, 0)
    for record in records:
        for term in record.get("terms") or ():
            total += 1
            hit = bool(term.get("found"))
            found += hit
            lemma += bool(term.get("lemma_found", hit))
            how = term.get("how") or ("decoded" if hit else "missing")
            counts[how if how in counts else "decoded"] += 1
    share = (lambda n: n / total) if total else (lambda n: None)
    return {
        "found": found,
        "total": total,
        "accuracy": share(found),
        "decoded": counts["decoded"],
        "decoded_accuracy": share(counts["decoded"]),
        "edited": counts["edited"],
        "appended": counts["appended"],
        "lemma_found": lemma,
        "lemma_accuracy": share(lemma),
        "consistency": term_consistency(records),
    }


def term_consistency(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Whether each source term is rendered the same way throughout its document.

    For every (document, glossary entry) that occurs at least twice, the renderings of its
    occurrences (as written, case-folded; a missing one counts as a rendering of its own)
    must all be the same. ``rate`` = consistent / repeated terms (None when no term
    repeats).
    """
    seen: dict[tuple[str, str], set[str | None]] = {}
    counts: dict[tuple[str, str], int] = {}
    for record in records:
        for term in record.get("terms") or ():
            key = (record.get("doc_id", ""), term.get("entry_id", ""))
            rendering = term.get("rendering")
            if rendering is None and term.get("found") and "rendering" not in term:
                rendering = term.get("target")  # records from before renderings were kept
            seen.setdefault(key, set()).add(
                None if rendering is None else " ".join(rendering.split()).casefold()
            )
            counts[key] = counts.get(key, 0) + 1
    repeated = [key for key, n in counts.items() if n >= 2]
    consistent = sum(len(seen[key]) == 1 and None not in seen[key] for key in repeated)
    return {
        "repeated": len(repeated),
        "consistent": consistent,
        "rate": consistent / len(repeated) if repeated else None,
    }


def score_segments(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, Any]:
    """Scores of plain parallel segments (the ``--hyp``/``--ref`` files)."""
    scores = corpus_scores(hyps, refs)
    return {
        "segments": len(hyps),
        "corpus": {name: s.to_json() for name, s in scores.items()},
        "signature": {"forumtranslate": __version__, "sacrebleu": _sacrebleu_version()},
    }


def score_files(hyp_path: Path, ref_path: Path) -> dict[str, Any]:
    """Score two files of one segment per line, read exactly as sacrebleu's CLI reads them."""
    hyps, refs = read_lines(hyp_path), read_lines(ref_path)
    if len(hyps) != len(refs):
        raise InputError(
            f"{len(hyps)} lines but {ref_path} has {len(refs)}; "
            "align them first (forumtranslate align HYP REF)",
            hyp_path,
        )
    return score_segments(hyps, refs)


def score_run(run_dir: Path, align_config: AlignConfig | None = None) -> dict[str, Any]:
    """Score a run over its alignment (made first if missing); write ``scores.json``.

    Also writes the bead segments as ``aligned.hyp.txt`` and ``aligned.ref.txt`` so that
    sacrebleu's own CLI can check every corpus number.
    """
    run_dir = Path(run_dir)
    beads = run_beads(run_dir)
    records = read_translations(run_dir)
    hyps, refs = bead_segments(beads)
    statistics = SegmentStatistics(hyps, refs)
    corpus = statistics.corpus()

    documents: dict[str, Any] = {}
    for doc_id in dict.fromkeys(b.doc_id for b in beads):
        picked = [k for k, b in enumerate(beads) if b.doc_id == doc_id]
        doc_scores = statistics.corpus(picked)
        documents[doc_id] = {
            "beads": len(picked),
            **{name: s.score for name, s in doc_scores.items()},
            "terminology": term_accuracy([r for r in records if r["doc_id"] == doc_id]),
        }

    sentence, sentence_signatures = statistics.sentences()
    bead_rows = [
        {
            "doc_id": bead.doc_id,
            "kind": bead.kind,
            "src_seg_ids": list(bead.src_seg_ids),
            "ref_ids": list(bead.ref_ids),
            "similarity": round(bead.similarity, 4),
            **row,
        }
        for bead, row in zip(beads, sentence, strict=True)
    ]

    write_atomic(run_dir / HYP_FILE, "".join(h + "\n" for h in hyps))
    write_atomic(run_dir / REF_FILE, "".join(r + "\n" for r in refs))
    result = {
        "segments": len(beads),
        "corpus": {name: s.to_json() for name, s in corpus.items()},
        "terminology": term_accuracy(records),
        "documents": documents,
        "beads": bead_rows,
        "signature": {
            "forumtranslate": __version__,
            "sacrebleu": _sacrebleu_version(),
            "alignment": (align_config or AlignConfig()).signature(),
            "segments": "alignment beads, sentences joined by a space",
            "sentence": sentence_signatures,
        },
        "files": {"hyp": HYP_FILE, "ref": REF_FILE},
        "reproduce": f"sacrebleu {REF_FILE} -i {HYP_FILE} -m bleu chrf ter",
        "reproduce_chrf++": f"sacrebleu {REF_FILE} -i {HYP_FILE} -m chrf --chrf-word-order 2",
    }
    write_atomic(run_dir / "scores.json", json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    return result


def _sacrebleu_version() -> str:
    import sacrebleu

    return str(sacrebleu.__version__)


# --- post-edits: HTER ----------------------------------------------------------------


def hter_scores(postedits: Sequence[PostEdit]) -> dict[str, Any]:
    """HTER of each post-edit, per document and over all of them, with its signature."""
    from sacrebleu.metrics import TER

    metric = TER(case_sensitive=True)
    machine = [pe.machine for pe in postedits]
    edited = [pe.post_edit for pe in postedits]
    corpus = metric.corpus_score(machine, [edited])
    signature = metric.get_signature().format()
    documents: dict[str, Any] = {}
    for doc_id in dict.fromkeys(pe.doc_id for pe in postedits):
        picked = [pe for pe in postedits if pe.doc_id == doc_id]
        score = metric.corpus_score([p.machine for p in picked], [[p.post_edit for p in picked]])
        documents[doc_id] = {"units": len(picked), "HTER": float(score.score)}
    import sacrebleu

    return {
        "units": len(postedits),
        "edited": sum(pe.machine != pe.post_edit for pe in postedits),
        "corpus": {"score": float(corpus.score), "signature": signature},
        "documents": documents,
        "segments": [
            {
                "doc_id": pe.doc_id,
                "seg_ids": list(pe.seg_ids),
                "HTER": float(metric.sentence_score(pe.machine, [pe.post_edit]).score),
            }
            for pe in postedits
        ],
        "signature": {
            "forumtranslate": __version__,
            "sacrebleu": str(sacrebleu.__version__),
            "segments": "machine output (as it was when post-edited) against its post-edit",
        },
    }


# --- tables for people ------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if r else cell.ljust(w)
            for cell, w, r in zip(row, widths, right, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def format_scores(result: dict[str, Any], width: int = 1, documents: bool = True) -> str:
    """The corpus scores with their signatures, then (for a run) one row per document."""
    rows = [["metric", "score", "signature"]]
    for name in METRICS:
        item = result["corpus"][name]
        rows.append([name, f"{item['score']:.{width}f}", item["signature"]])
    out = _table(rows, [False, True, False])
    terms = result.get("terminology")
    if terms and terms["total"]:
        out += (
            f"terminology accuracy: {terms['found']}/{terms['total']} = {terms['accuracy']:.3f}\n"
        )
        if "decoded" in terms:
            consistency = terms["consistency"]
            rate = consistency["rate"]
            out += (
                f"  as decoded: {terms['decoded']}/{terms['total']}"
                f" = {terms['decoded_accuracy']:.3f}; edited in: {terms['edited']}; "
                f"appended: {terms['appended']}\n"
                f"  lemma-tolerant: {terms['lemma_found']}/{terms['total']}"
                f" = {terms['lemma_accuracy']:.3f}; consistent: "
                f"{consistency['consistent']}/{consistency['repeated']}"
                + (f" = {rate:.3f}" if rate is not None else "")
                + "\n"
            )
    if documents and result.get("documents"):
        rows = [["document", "beads", *METRICS, "terms"]]
        for doc_id, doc in result["documents"].items():
            t = doc["terminology"]
            rows.append(
                [
                    doc_id,
                    str(doc["beads"]),
                    *(f"{doc[name]:.{width}f}" for name in METRICS),
                    f"{t['found']}/{t['total']}" if t["total"] else "-",
                ]
            )
        out += "\n" + _table(rows, [False] + [True] * (len(METRICS) + 2))
    return out


# --- comparing two runs -----------------------------------------------------------------


@dataclass(frozen=True)
class PairedUnit:
    """A stretch of reference both runs can be scored on, with each run's machine text
    for it and the Japanese segments that text came from."""

    doc_id: str
    ref_ids: tuple[str, ...]
    ref: str
    hyp_a: str
    hyp_b: str
    seg_ids_a: tuple[str, ...]
    seg_ids_b: tuple[str, ...]


def paired_units(
    beads_a: Sequence[Bead], beads_b: Sequence[Bead]
) -> tuple[list[str], list[str], list[str]]:
    """Segments both runs can be scored on, pair by pair: (hyps A, hyps B, refs)."""
    units = paired_unit_details(beads_a, beads_b)
    return [u.hyp_a for u in units], [u.hyp_b for u in units], [u.ref for u in units]


def paired_unit_details(beads_a: Sequence[Bead], beads_b: Sequence[Bead]) -> list[PairedUnit]:
    """The units both runs can be scored on, in corpus order.

    Each run has its own alignment, so their beads differ. A unit is the smallest run of
    reference sentences that no bead of either run straddles; each run's machine
    sentences go to the unit of their bead (a 1-0 bead to the unit of the reference
    sentence that follows it). Both runs must share the references.
    """
    docs_a, docs_b = _beads_by_doc(beads_a), _beads_by_doc(beads_b)
    if list(docs_a) != list(docs_b):
        raise InputError(
            f"the runs cover different documents: {', '.join(docs_a)} against {', '.join(docs_b)}"
        )
    units: list[PairedUnit] = []
    for doc_id in docs_a:
        ref_a = [(i, s) for b in docs_a[doc_id] for i, s in zip(b.ref_ids, b.ref, strict=True)]
        ref_b = [(i, s) for b in docs_b[doc_id] for i, s in zip(b.ref_ids, b.ref, strict=True)]
        if ref_a != ref_b:
            raise InputError(f"the runs' references for {doc_id!r} differ; align both again")
        m = len(ref_a)
        cuts = _cuts(docs_a[doc_id]) & _cuts(docs_b[doc_id])
        starts = sorted({0} | {c for c in cuts if 0 < c < m})
        unit_a, segs_a = _unit_texts(docs_a[doc_id], starts)
        unit_b, segs_b = _unit_texts(docs_b[doc_id], starts)
        for k, start in enumerate(starts):
            stop = starts[k + 1] if k + 1 < len(starts) else m
            units.append(
                PairedUnit(
                    doc_id=doc_id,
                    ref_ids=tuple(i for i, _ in ref_a[start:stop]),
                    ref=" ".join(" ".join(s for _, s in ref_a[start:stop]).split()),
                    hyp_a=unit_a[k],
                    hyp_b=unit_b[k],
                    seg_ids_a=segs_a[k],
                    seg_ids_b=segs_b[k],
                )
            )
    return units


def _beads_by_doc(beads: Sequence[Bead]) -> dict[str, list[Bead]]:
    docs: dict[str, list[Bead]] = {}
    for bead in beads:
        docs.setdefault(bead.doc_id, []).append(bead)
    return docs


def _cuts(beads: Sequence[Bead]) -> set[int]:
    """Reference positions where this alignment has a bead boundary."""
    cuts, position = set(), 0
    for bead in beads:
        if bead.ref:
            position += len(bead.ref)
            cuts.add(position)
    return cuts


def _unit_texts(
    beads: Sequence[Bead], starts: Sequence[int]
) -> tuple[list[str], list[tuple[str, ...]]]:
    import bisect

    texts: list[list[str]] = [[] for _ in starts]
    seg_ids: list[list[str]] = [[] for _ in starts]
    position = 0
    for bead in beads:
        unit = max(0, bisect.bisect_right(starts, position) - 1)
        texts[unit].extend(bead.hyp)
        seg_ids[unit].extend(bead.src_seg_ids)
        position += len(bead.ref)
    return [" ".join(" ".join(t).split()) for t in texts], [tuple(s) for s in seg_ids]


def compare_runs(
    run_a: Path,
    run_b: Path,
    *,
    tests: Sequence[str] = ("bs", "ar"),
    n_bootstrap: int = 1000,
    n_trials: int = 10000,
) -> dict[str, Any]:
    """Is run B better than run A beyond noise? sacrebleu's paired tests on shared units.

    Paired bootstrap resampling (``bs``, Koehn 2004) gives each system's mean and 95%
    confidence interval and a p-value; approximate randomization (``ar``, Riezler and
    Maxwell 2005) a p-value. The seed is sacrebleu's: SACREBLEU_SEED, default 12345.
    """
    from sacrebleu.significance import PairedTest

    run_a, run_b = Path(run_a), Path(run_b)
    records_a, records_b = read_translations(run_a), read_translations(run_b)  # checked first
    hyps_a, hyps_b, refs = paired_units(run_beads(run_a), run_beads(run_b))
    name_a, name_b = _run_name(run_a), _run_name(run_b)
    if name_a == name_b:
        name_a, name_b = str(run_a), str(run_b)
    systems = [(name_a, hyps_a), (name_b, hyps_b)]
    metrics: dict[str, Any] = {}
    for test in tests:
        if test not in ("bs", "ar"):
            raise ValueError(f"unknown test {test!r}: use bs or ar")
        n = n_bootstrap if test == "bs" else n_trials
        paired = PairedTest(
            systems,
            {name: _with_refs(name, refs) for name in METRICS},
            references=None,
            test_type=test,
            n_samples=n,
            n_ar_confidence=-1,
        )
        signatures, results = paired()  # keyed by the scores' names, which are METRICS
        for name in METRICS:
            res_a, res_b = results[name]
            entry = metrics.setdefault(
                name, {"a": {"score": float(res_a.score)}, "b": {"score": float(res_b.score)}}
            )
            entry["difference"] = float(res_b.score - res_a.score)
            entry[f"p_{test}"] = float(res_b.p_value)
            entry[f"signature_{test}"] = signatures[name].format()
            if test == "bs":
                entry["a"].update(mean=float(res_a.mean), ci=float(res_a.ci))
                entry["b"].update(mean=float(res_b.mean), ci=float(res_b.ci))
    terms_a, terms_b = term_accuracy(records_a), term_accuracy(records_b)
    return {
        "a": name_a,
        "b": name_b,
        "units": len(refs),
        "tests": list(tests),
        "metrics": metrics,
        "terminology": {"a": terms_a, "b": terms_b},
    }


def _with_refs(name: str, refs: Sequence[str]) -> Any:
    from sacrebleu.metrics import BLEU, CHRF, TER

    make = {
        "BLEU": lambda: BLEU(references=[list(refs)]),
        "chrF2": lambda: CHRF(references=[list(refs)]),
        "chrF2++": lambda: CHRF(word_order=2, references=[list(refs)]),
        "TER": lambda: TER(references=[list(refs)]),
    }
    return make[name]()


def _run_name(run_dir: Path) -> str:
    return Path(run_dir).resolve().name


def format_comparison(result: dict[str, Any], width: int = 1) -> str:
    """A table: each metric's A and B (bootstrap mean ± 95% CI), difference, p-values."""

    def cell(side: dict[str, Any]) -> str:
        text = f"{side['score']:.{width}f}"
        if side.get("mean") is not None:
            text += f" ({side['mean']:.{width}f} ± {side['ci']:.{width}f})"
        return text

    header = ["metric", f"A: {result['a']}", f"B: {result['b']}", "B - A"]
    header += [{"bs": "p (bootstrap)", "ar": "p (approx. rand.)"}[t] for t in result["tests"]]
    rows = [header]
    for name in METRICS:
        item = result["metrics"][name]
        row = [name, cell(item["a"]), cell(item["b"]), f"{item['difference']:+.{width}f}"]
        row += [f"{item[f'p_{t}']:.4f}" for t in result["tests"]]
        rows.append(row)
    out = _table(rows, [False] + [True] * (len(header) - 1))
    out += f"{result['units']} paired units; lower TER is better; seed from SACREBLEU_SEED.\n"
    ta, tb = result["terminology"]["a"], result["terminology"]["b"]
    if ta["total"] or tb["total"]:
        out += (
            f"terminology accuracy: A {ta['found']}/{ta['total']}, B {tb['found']}/{tb['total']}\n"
        )
    return out
