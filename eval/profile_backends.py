"""Where a translation's time goes, per backend: the profile behind issue 19's misses.

The peers benchmark (``bench_backends.py --peers``) says how fast each system is; this
script says why, by running our two backends under ``cProfile`` on the same sentences
(the opus-mt shape, random weights, every sentence 32 tokens, beam 4, the 16,000-piece
shortlist) and summing the time spent in the stages a reader can act on: the decoder's
own search, the confidence pass, the constraint bookkeeping, term editing. Time inside
CTranslate2 is one C++ call to ``cProfile``, so for ct2 the split is between that call,
the ``score_batch`` pass and our Python around them.

    .venv/bin/python eval/profile_backends.py --json eval/results/profile_opus_cpu.json
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import bench_backends as bench

CT2_RESULT = "<built-in method ctranslate2._ext.result"  # cProfile's name for the wait
# (module file suffix, function name) -> the stage a reader would name.
STAGES = {
    "ct2": {
        "whole translate()": ("translate.py", "translate"),
        "CTranslate2 translate_batch (waiting on results)": ("~", CT2_RESULT),
        "confidence: score_batch": ("ct2.py", "_confidence"),
        "term editing": ("ct2.py", "enforce_terms"),
    },
    "transformers": {
        "whole translate()": ("translate.py", "translate"),
        "search (both passes with hard terms)": ("hf.py", "_search"),
        "model forward, one step": ("hf.py", "step"),
        "beam reorder of the cache": ("hf.py", "reorder"),
        "constraint masks (_mask_logprobs)": ("constrain.py", "_mask_logprobs"),
        "plans that fit the length (ConstraintTracker.plan)": ("constrain.py", "plan"),
        "term checks on the text (TextJudge.verdict)": ("constrain.py", "verdict"),
        "confidence: teacher-forced pass": ("hf.py", "_confidence"),
    },
}


RUN_STAGES = {
    "whole run()": ("run.py", "run"),
    "translate: decode (CTranslate2)": ("~", CT2_RESULT),
    "translate: confidence (score_batch)": ("ct2.py", "_confidence"),
    "finish: alignment": ("align.py", "align_records"),
    "finish: scores (sacrebleu)": ("score.py", "score_run"),
    "finish: of which TER": ("lib_ter.py", "translation_edit_rate"),
    "finish: review page": ("page.py", "write_review"),
    "finish: of which charts (matplotlib)": ("page.py", "run_charts"),
    "writing the records (jsonl, parquet)": ("run.py", "write_records"),
    "planning (batches, the glossary's spelling)": ("run.py", "plan_run"),
    "reading, segmenting, matching terms": ("run.py", "prepare_sources"),
}


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    """Seconds spent in (and under) the functions named ``name`` in files ending ``suffix``;
    outermost calls only (recursion is counted once by cProfile's cumulative time)."""
    total = 0.0
    for (filename, _line, function), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        if suffix == "~":
            if function.startswith(name):
                total += ct
        elif filename.endswith(suffix) and function == name:
            total += ct
    return total


def bench_spec(engine: str, folder: str) -> dict[str, Any]:
    """The benchmark's system: ``engine`` on ``folder``, ct2 int8 with default threads, the
    16,000-piece list, every sentence's limit 32 tokens (``bench_backends.decoding``)."""
    return {
        "engine": engine,
        "folder": folder,
        "device": "cpu",
        "compute": "int8",
        "inter_threads": 1,
        "intra_threads": 0,
        "shortlist": 16000,
        "length_ratio": 0.0,
        "length_extra": 32,
    }


def profile_one(
    engine: str, terms: str, folder: str, docs: str, natural: bool = False
) -> dict[str, Any]:
    """One backend and term mode under cProfile: the stages' seconds. ``natural``: the
    model stops where it chooses, within the product's default length limit (a model that
    writes English); otherwise every sentence runs to 32 tokens (random weights)."""
    spec = bench_spec(engine, folder)
    options = bench.decoding(spec, 4, terms)
    if natural:
        from forumtranslate.translate import DecodingOptions

        options = DecodingOptions(beam_size=4, terms=terms)  # the product's defaults
    translator = bench.make_translator(spec, options)
    texts, found = bench.doc_sentences(docs)
    translator.translate(texts[:2], found[:2])  # load and warm up
    translator.generated = 0
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    translator.translate(texts, found)
    profiler.disable()
    seconds = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    stages = {
        label: round(cumulative(stats, suffix, name), 3)
        for label, (suffix, name) in STAGES[engine].items()
    }
    return {
        "engine": engine,
        "terms": terms,
        "length": "natural, default limit" if natural else "exactly 32 tokens",
        "shortlist": options.shortlist,
        "sentences": len(texts),
        "generated_tokens": translator.generated,
        "seconds_profiled": round(seconds, 3),
        "stages_seconds": stages,
        "load_average": list(os.getloadavg()),
    }


def profile_whole_run(folder: str, docs: str) -> dict[str, Any]:
    """``forumtranslate run --backend ct2`` (hard terms, the 16,000 list) on the documents
    alone, under cProfile: what the run adds to the decode (the peers table's last rows)."""
    from forumtranslate.run import RunConfig, run

    spec = bench_spec("ct2", folder)
    translator = bench.make_translator(spec, bench.decoding(spec, 4, "hard"))
    texts, found = bench.doc_sentences(docs)
    translator.translate(texts[:2], found[:2])  # load and warm up
    translator.generated = 0
    work = Path(tempfile.mkdtemp(prefix="profile-run-"))
    config = RunConfig(
        out_dir=work / "run",
        data_dir=bench.subset_data(docs, work),
        glossary_path=bench.REPO / "glossary" / "terms.tsv",
        model=folder,
        decoding=translator.options,
    )
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    run(config, translator=translator, progress=lambda *_: None)
    profiler.disable()
    seconds = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    stages = {
        label: round(cumulative(stats, suffix, name), 3)
        for label, (suffix, name) in RUN_STAGES.items()
    }
    return {
        "engine": "ct2 whole run",
        "terms": "hard",
        "length": "exactly 32 tokens",
        "shortlist": 16000,
        "sentences": len(texts),
        "generated_tokens": translator.generated,
        "seconds_profiled": round(seconds, 3),
        "stages_seconds": stages,
        "load_average": list(os.getloadavg()),
    }


def markdown(report: dict[str, Any]) -> str:
    """The README's table: each stage's seconds and share of the whole, per row."""
    rows = report["rows"]
    header = " | ".join(f"{r['engine']}, terms {r['terms']}" for r in rows)
    lines = [f"| stage | {header} |", "|---|" + "---:|" * len(rows)]
    labels = list(dict.fromkeys(label for r in rows for label in r["stages_seconds"]))
    for label in labels:
        cells = []
        for r in rows:
            value = r["stages_seconds"].get(label)
            whole = next(iter(r["stages_seconds"].values())) or 1.0  # the first: the whole
            cells.append("" if value is None else f"{value:.2f} s ({value / whole:.0%})")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    tokens = " | ".join(str(r["generated_tokens"]) for r in rows)
    lines.append(f"| tokens generated | {tokens} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", default=bench.PEER_DOCS["opus-mt"])
    parser.add_argument("--work", type=Path, help="keep the model here (reused)")
    parser.add_argument(
        "--model",
        type=Path,
        help="a model folder that writes English (a stand-in of eval/standin.py); default: "
        "random weights of the opus-mt shape, every sentence 32 tokens",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path, help="print the table of a JSON written before")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text(encoding="utf-8"))))
        return
    import torch

    torch.set_num_threads(args.threads)
    if args.model:
        folder = args.model
    else:
        work = args.work or Path(tempfile.mkdtemp(prefix="profile-"))
        folder = work / "opus-mt-marian"
        bench.worker_build({"folder": str(folder), "family": "marian", "shape": "opus-mt"})
    rows = []
    for engine in ("ct2", "transformers", "run"):
        for terms in ("off", "hard"):
            if engine == "run":
                if args.model or terms == "off":
                    continue
                row = profile_whole_run(str(folder), args.docs)
            else:
                row = profile_one(engine, terms, str(folder), args.docs, natural=bool(args.model))
            rows.append(row)
            print(
                f"\n{engine}, terms {terms}: {row['seconds_profiled']:.1f} s profiled, "
                f"{row['generated_tokens']} tokens"
            )
            whole = next(iter(row["stages_seconds"].values())) or 1.0
            for label, value in row["stages_seconds"].items():
                print(f"  {label:55s} {value:7.2f} s  {value / whole:6.1%}")
    report = {
        "command": " ".join(sys.argv),
        "model": str(args.model) if args.model else "random weights, opus-mt shape",
        "machine": bench.machine("cpu"),
        "docs": args.docs,
        "rows": rows,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
