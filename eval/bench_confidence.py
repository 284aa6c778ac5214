"""What the confidence score costs: the share of translation time spent scoring the output.

Both backends score the decoder's output once more under teacher forcing
(``forumtranslate.confidence``). This translates corpus sentences with each backend and
times, in CPU seconds of this process (the machine is shared; wall time is printed too),
the whole ``translate_batch_scored`` and, inside it, the scoring call alone.

    python eval/bench_confidence.py                      # a tiny random-weight Marian model
    python eval/bench_confidence.py --model PATH --sentences 200 --beam 4

Random weights rarely stop before the length limit, so with the tiny model every sentence
decodes to its limit: the scoring share is then a lower bound of sorts for short outputs
and should be measured again on a real model.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def corpus_sentences(count: int) -> list[str]:
    from forumtranslate.corpus import load_documents
    from forumtranslate.segment import segment_document

    sentences = [
        s.text
        for d in load_documents(REPO / "data", "ja")
        for s in segment_document(d, "ja")
        if s.kind == "sentence"
    ]
    return sentences[:count]


def timed(translator: Any, name: str, sources: list[str], batch: int) -> dict[str, float]:
    """CPU and wall seconds of translate_batch_scored, and of its scoring call alone."""
    inner = translator._confidence
    spent = {"cpu": 0.0, "wall": 0.0}

    def scoring(*args: Any) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return inner(*args)
        finally:
            spent["cpu"] += time.process_time() - cpu
            spent["wall"] += time.perf_counter() - wall

    translator._confidence = scoring
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(sources), batch):
        part = sources[start : start + batch]
        translator.translate_batch_scored(part, [[] for _ in part])
    total_cpu, total_wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "backend": name,
        "sentences": len(sources),
        "cpu_s": round(total_cpu, 3),
        "wall_s": round(total_wall, 3),
        "scoring_cpu_s": round(spent["cpu"], 3),
        "scoring_share_cpu": round(spent["cpu"] / total_cpu, 4) if total_cpu else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model folder (default: a tiny random Marian)")
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import torch

    from forumtranslate.ct2 import CT2Translator
    from forumtranslate.ct2convert import load_ct2_model
    from forumtranslate.hf import TransformersTranslator
    from forumtranslate.models import load_model
    from forumtranslate.tiny import TinyModelSpec, build_tiny_model
    from forumtranslate.translate import DecodingOptions

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(
            build_tiny_model(Path(tmp) / "marian", TinyModelSpec("marian"), REPO / "data")
        )
        options = DecodingOptions(beam_size=args.beam, terms="off")
        sources = corpus_sentences(args.sentences)
        results = [
            timed(
                TransformersTranslator(load_model(model, device="cpu"), options),
                "transformers float32",
                sources,
                args.batch,
            ),
            timed(
                CT2Translator(
                    load_ct2_model(model, device="cpu", compute_type="int8", intra_threads=1),
                    options,
                ),
                "ct2 int8",
                sources,
                args.batch,
            ),
        ]
    print(f"model {args.model or 'tiny random Marian'}, beam {args.beam}, batch {args.batch}")
    for r in results:
        print(
            f"{r['backend']:22} {r['sentences']} sentences  {r['cpu_s']:7.2f} CPU s  "
            f"scoring {r['scoring_cpu_s']:6.2f} CPU s = {100 * r['scoring_share_cpu']:.1f}%"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
