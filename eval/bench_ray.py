"""Throughput of ``run --engine ray`` with 1 and 2 actors, and its overhead over the local engine.

Builds a synthetic corpus of at least ``--sentences`` sentences (the forum documents
repeated under varied doc ids: ``panel-1--r007``), a random-weight model of the chosen
shape, then runs the same job three ways on this machine, each into a fresh run folder
(translate only, no scoring):

* ``local``: ``forumtranslate run`` in this process, one torch thread;
* ``ray x1`` and ``ray x2``: ``--engine ray`` on a local Ray cluster of ``--cpus`` CPUs,
  with 1 and 2 actors of one CPU (one torch thread) each.

It reports wall time and sentences/s per engine, the speed-up of 2 actors over 1, the
overhead of Ray (``ray x1`` time / ``local`` time), the cluster's start-up time (apart: a
cluster is usually already running), and whether every engine wrote identical records.

    OMP_NUM_THREADS=1 python eval/bench_ray.py --sentences 20000 --json eval/out/bench_ray.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def synthetic_corpus(root: Path, sentences: int) -> tuple[Path, int]:
    """A corpus folder holding the forum documents repeated until ``sentences`` is reached."""
    from forumtranslate.corpus import load_documents
    from forumtranslate.segment import segment_document

    documents = load_documents(REPO / "data", "ja")
    per_round = sum(len(segment_document(d, "ja")) for d in documents)
    rounds = -(-sentences // per_round)
    manifest = (REPO / "data" / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    rows = {line.split("\t")[0]: line.split("\t") for line in manifest[1:] if line.strip()}
    data = root / "data"
    (data / "ja").mkdir(parents=True)
    lines = [manifest[0]]
    for k in range(rounds):
        for document in documents:
            doc_id = f"{document.doc_id}--r{k:03d}"
            lines.append("\t".join([doc_id, *rows[document.doc_id][1:]]))
            (data / "ja" / f"{doc_id}.txt").write_text(document.text, encoding="utf-8")
    (data / "manifest.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data, rounds * per_round


def timed(job) -> tuple[float, object]:
    start = time.perf_counter()
    result = job()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=20000)
    parser.add_argument("--shape", default="tiny", choices=["tiny", "opus-mt"])
    parser.add_argument("--family", default="marian", choices=["marian", "nllb"])
    parser.add_argument("--beam", type=int, default=2)
    parser.add_argument("--max-batch-tokens", type=int, default=4096)
    parser.add_argument("--shard-sentences", type=int, default=1024)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")

    import ray
    import torch

    from forumtranslate.distributed import RayOptions, run_ray
    from forumtranslate.run import RunConfig, run
    from forumtranslate.tiny import TinyModelSpec, build_tiny_model
    from forumtranslate.translate import DecodingOptions

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        data, count = synthetic_corpus(tmp, args.sentences)
        model = build_tiny_model(
            tmp / "model", TinyModelSpec(args.family, args.shape), REPO / "data"
        )
        decoding = DecodingOptions(beam_size=args.beam, max_batch_tokens=args.max_batch_tokens)

        def config(name: str) -> RunConfig:
            return RunConfig(
                out_dir=tmp / name,
                data_dir=data,
                glossary_path=REPO / "glossary" / "terms.tsv",
                model=str(model),
                device="cpu",
                decoding=decoding,
                align_and_score=False,
            )

        rows = {}
        seconds, _ = timed(lambda: run(config("local"), progress=lambda *_: None))
        rows["local"] = {"actors": None, "seconds": seconds}
        started, _ = timed(
            lambda: ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        )
        for actors in (1, 2):
            options = RayOptions(actors=actors, shard_sentences=args.shard_sentences)
            name = f"ray x{actors}"
            seconds, _ = timed(
                lambda: run_ray(config(name), options, progress=lambda *_: None)  # noqa: B023
            )
            rows[name] = {"actors": actors, "seconds": seconds}
        ray.shutdown()
        expected = (tmp / "local" / "translations.jsonl").read_bytes()
        for name, row in rows.items():
            row["sentences_per_s"] = round(count / row["seconds"], 1)
            row["seconds"] = round(row["seconds"], 2)
            row["identical_records"] = (tmp / name / "translations.jsonl").read_bytes() == expected
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    report = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "ray": ray.__version__,
        "torch_threads_per_engine": 1,
        "shape": args.shape,
        "family": args.family,
        "beam": args.beam,
        "max_batch_tokens": args.max_batch_tokens,
        "shard_sentences": args.shard_sentences,
        "sentences": count,
        "ray_cluster_start_seconds": round(started, 2),
        "results": rows,
        "ray_overhead_x1_over_local": round(
            rows["ray x1"]["seconds"] / rows["local"]["seconds"], 3
        ),
        "speedup_x2_over_x1": round(rows["ray x1"]["seconds"] / rows["ray x2"]["seconds"], 3),
        "speedup_x2_over_local": round(rows["local"]["seconds"] / rows["ray x2"]["seconds"], 3),
    }
    print(f"{args.shape} ({args.family}) beam {args.beam}, {count} sentences, {report['machine']}")
    print(f"{'engine':8} {'actors':>6} {'seconds':>8} {'sent/s':>8} {'identical':>9}")
    for name, row in rows.items():
        print(
            f"{name:8} {row['actors'] or '-':>6} {row['seconds']:8.2f} "
            f"{row['sentences_per_s']:8.1f} {row['identical_records']!s:>9}"
        )
    print(
        f"ray overhead (x1 / local): {report['ray_overhead_x1_over_local']:.3f}; "
        f"2 actors over 1: {report['speedup_x2_over_x1']:.3f}; "
        f"cluster start {report['ray_cluster_start_seconds']:.1f} s (not counted)"
    )
    print(f"load average after: {report['load_average_after']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
