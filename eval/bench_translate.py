"""Measure translation speed and the cost of hard glossary constraints.

Builds a random-weight model of the chosen shape (the real ones cannot be downloaded here),
segments the forum corpus, and translates the same sentences with ``--terms off`` and
``--terms hard`` in one process, printing sentences/s, target tokens/s and the ratio.

    python eval/bench_translate.py --shape opus-mt --beam 4 --sentences 64
    python eval/bench_translate.py --shape tiny --family nllb --beam 1

Random weights rarely emit EOS, so most hypotheses run to the length limit
(2 × source tokens + 10, plus the constraint tokens when hard): both modes are measured on
the sentences and limits the real pipeline uses.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from forumtranslate.glossary import load_glossary
from forumtranslate.hf import TransformersTranslator
from forumtranslate.models import load_model
from forumtranslate.run import prepare_sources
from forumtranslate.tiny import TinyModelSpec, build_tiny_model
from forumtranslate.translate import DecodingOptions

REPO = Path(__file__).resolve().parent.parent


def measure(translator: TransformersTranslator, sources: list[str], terms: list) -> dict:
    start = time.perf_counter()
    outputs = translator.translate(sources, terms)
    seconds = time.perf_counter() - start
    tokens = sum(len(ids) for ids in translator.loaded.tokenizer(text_target=outputs)["input_ids"])
    return {
        "seconds": round(seconds, 3),
        "sentences_per_s": round(len(sources) / seconds, 2),
        "target_tokens_per_s": round(tokens / seconds, 1),
        "target_tokens": tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="opus-mt", choices=["tiny", "opus-mt", "nllb-600m"])
    parser.add_argument("--family", default=None, choices=["marian", "nllb"])
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--sentences", type=int, default=64, help="0: the whole corpus")
    parser.add_argument("--max-batch-tokens", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    family = args.family or ("nllb" if args.shape == "nllb-600m" else "marian")

    glossary = load_glossary(REPO / "glossary" / "terms.tsv")
    sources = prepare_sources(REPO / "data", glossary)
    # Spread the sample over the corpus rather than taking the first (short) sentences.
    if args.sentences and args.sentences < len(sources):
        step = len(sources) / args.sentences
        sources = [sources[int(i * step)] for i in range(args.sentences)]
    texts = [s.segment.text for s in sources]
    terms = [list(s.terms) for s in sources]

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_model(Path(tmp), TinyModelSpec(family, shape=args.shape), REPO / "data")
        loaded = load_model(str(folder), device=args.device)
        results = {}
        for mode in ("off", "hard"):
            options = DecodingOptions(
                beam_size=args.beam, terms=mode, max_batch_tokens=args.max_batch_tokens
            )
            results[mode] = measure(TransformersTranslator(loaded, options), texts, terms)
    ratio = results["hard"]["seconds"] / results["off"]["seconds"]
    report = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "shape": args.shape,
        "family": family,
        "beam": args.beam,
        "sentences": len(texts),
        "terms_in_sentences": sum(len(t) for t in terms),
        "results": results,
        "hard_over_off_time": round(ratio, 3),
    }
    print(f"{args.shape} ({family}) beam {args.beam}, {len(texts)} sentences, {report['device']}")
    print(f"{'terms':6} {'seconds':>8} {'sent/s':>8} {'tok/s':>8} {'tokens':>7}")
    for mode, row in results.items():
        print(
            f"{mode:6} {row['seconds']:8.2f} {row['sentences_per_s']:8.2f} "
            f"{row['target_tokens_per_s']:8.1f} {row['target_tokens']:7d}"
        )
    print(f"hard/off time ratio: {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
