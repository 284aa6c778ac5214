"""Do the fast paths write what the slow ones write? Agreement on a model that writes English.

Random weights cannot answer this: their choices spread over the whole vocabulary, so any
shortlist changes them, and their near-ties flip with every rounding. The trained stand-ins
(eval/standin.py) write reference-like English and stop at sentence ends, so on them we can
ask what a user would ask (issue 19):

* the shortlist: our transformers backend with the default list, and with shorter cuts,
  against the same backend over the whole vocabulary;
* the backends: CTranslate2 float32 against our transformers backend, and our transformers
  backend against plain ``model.generate(num_beams=...)``, all over the whole vocabulary;
* quantisation: CTranslate2 int8 against float32 (both with the default list, as a user
  runs it).

Per comparison: the share of sentences whose output is identical, and chrF2 of each side
against the references (sacrebleu, on the gold pairs: the Japanese sentences of the gold
alignment's 1-1 beads and their reference sentences). Terms off, so only the decoding
differs. Prints a table and writes JSON.

    nice python eval/agreement.py [--standin eval/out/standin] [--models faithful]
        [--beam 4] [--cuts 250 500 1000] [--json eval/results/agreement.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "eval"))

import standin  # noqa: E402  (eval/standin.py, beside this script)


def chrf(hypotheses: list[str], references: list[str]) -> float:
    import sacrebleu

    return round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2)


def plain_generate(folder: Path, sources: list[str], beam: int, batch: int = 16) -> list[str]:
    """What a user of ``transformers`` would run: ``generate`` with the model's own settings
    and ``num_beams``; batches of ``batch`` in input order."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    out: list[str] = []
    with torch.inference_mode():
        for first in range(0, len(sources), batch):
            encoded = tokenizer(sources[first : first + batch], return_tensors="pt", padding=True)
            generated = model.generate(**encoded, num_beams=beam, max_new_tokens=256)
            out += tokenizer.batch_decode(generated, skip_special_tokens=True)
    return [text.strip() for text in out]


def ours_transformers(folder: Path, sources: list[str], beam: int, shortlist: int) -> list[str]:
    from forumtranslate.hf import TransformersTranslator
    from forumtranslate.models import load_model
    from forumtranslate.translate import DecodingOptions

    options = DecodingOptions(beam_size=beam, terms="off", shortlist=shortlist)
    translator = TransformersTranslator(load_model(str(folder), device="cpu"), options)
    return translator.translate(sources)


def ours_ct2(
    folder: Path, sources: list[str], beam: int, compute_type: str, shortlist: int, cache: Path
) -> list[str]:
    from forumtranslate.ct2 import CT2Translator
    from forumtranslate.ct2convert import load_ct2_model
    from forumtranslate.translate import DecodingOptions

    model = load_ct2_model(
        str(folder),
        device="cpu",
        compute_type=compute_type,
        intra_threads=1,
        cache_dir=cache,
        shortlist=shortlist,
    )
    options = DecodingOptions(beam_size=beam, terms="off", shortlist=shortlist)
    return CT2Translator(model, options).translate(sources)


def compare(name: str, left: tuple[str, list[str]], right: tuple[str, list[str]], refs: list[str]):
    same = sum(a == b for a, b in zip(left[1], right[1]))
    return {
        "comparison": name,
        "left": left[0],
        "right": right[0],
        "identical": same,
        "sentences": len(refs),
        "identical_share": round(same / len(refs), 4),
        "chrf2_left": chrf(left[1], refs),
        "chrf2_right": chrf(right[1], refs),
        "differing": [{"left": a, "right": b} for a, b in zip(left[1], right[1]) if a != b][:5],
    }


def measure(
    name: str,
    folder: Path,
    sources: list[str],
    refs: list[str],
    beam: int,
    cuts: list[int],
    ct2_cache: Path,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Every system's output on ``sources`` once, then the comparisons between them."""
    from forumtranslate.shortlist import DEFAULT_SIZE

    systems: dict[str, Any] = {
        "ours transformers, no list": lambda: ours_transformers(folder, sources, beam, 0),
        f"ours transformers, list {DEFAULT_SIZE}": lambda: ours_transformers(
            folder, sources, beam, DEFAULT_SIZE
        ),
        **{
            f"ours transformers, list {cut}": (
                lambda cut=cut: ours_transformers(folder, sources, beam, cut)
            )
            for cut in cuts
        },
        f"transformers generate(num_beams={beam})": lambda: plain_generate(folder, sources, beam),
        "ours ct2 float32, no list": lambda: ours_ct2(
            folder, sources, beam, "float32", 0, ct2_cache
        ),
        f"ours ct2 float32, list {DEFAULT_SIZE}": lambda: ours_ct2(
            folder, sources, beam, "float32", DEFAULT_SIZE, ct2_cache
        ),
        f"ours ct2 int8, list {DEFAULT_SIZE}": lambda: ours_ct2(
            folder, sources, beam, "int8", DEFAULT_SIZE, ct2_cache
        ),
    }
    outputs: dict[str, list[str]] = {}
    timings: dict[str, float] = {}
    for label, make in systems.items():
        started = time.perf_counter()
        outputs[label] = make()
        timings[f"{name}: {label}"] = seconds = round(time.perf_counter() - started, 1)
        print(f"  {name}: {label}: {seconds} s", flush=True)
    whole = "ours transformers, no list"
    comparisons = [
        (f"shortlist {DEFAULT_SIZE} (default)", whole, f"ours transformers, list {DEFAULT_SIZE}"),
        *((f"shortlist {cut}", whole, f"ours transformers, list {cut}") for cut in cuts),
        ("ours transformers vs generate()", f"transformers generate(num_beams={beam})", whole),
        ("ct2 float32 vs transformers", whole, "ours ct2 float32, no list"),
        (
            "ct2 int8 vs float32",
            f"ours ct2 float32, list {DEFAULT_SIZE}",
            f"ours ct2 int8, list {DEFAULT_SIZE}",
        ),
    ]
    rows = [
        {
            "model": name,
            "beam": beam,
            **compare(label, (left, outputs[left]), (right, outputs[right]), refs),
        }
        for label, left, right in comparisons
    ]
    return rows, timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--standin", type=Path, default=standin.DEFAULT_CACHE)
    parser.add_argument("--models", nargs="+", default=["faithful"])
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--cuts", nargs="+", type=int, default=[250, 500, 1000])
    parser.add_argument("--json", type=Path, default=REPO / "eval" / "results" / "agreement.json")
    parser.add_argument("--ct2-cache", type=Path, default=REPO / "eval" / "out" / "agreement-ct2")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    pairs = standin.gold_pairs()
    sources, refs = [p.ja for p in pairs], [p.en for p in pairs]
    rows: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    for name in args.models:
        folder = args.standin / name
        if not (folder / "model.safetensors").is_file():
            raise SystemExit(f"{folder}: no such stand-in; build it with eval/standin.py")
        found, seconds = measure(name, folder, sources, refs, args.beam, args.cuts, args.ct2_cache)
        rows += found
        timings.update(seconds)

    print(f"\n{len(sources)} gold pairs, beam {args.beam}, terms off")
    header = ("model", "comparison", "identical", "chrF2 left", "chrF2 right")
    print(f"{header[0]:10} {header[1]:34} {header[2]:>10} {header[3]:>11} {header[4]:>12}")
    for row in rows:
        share = f"{100 * row['identical_share']:.1f}%"
        print(
            f"{row['model']:10} {row['comparison']:34} {share:>10} "
            f"{row['chrf2_left']:>11.2f} {row['chrf2_right']:>12.2f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "command": "python eval/agreement.py " + " ".join(sys.argv[1:]),
                "machine": platform.platform(),
                "sentences": len(sources),
                "rows": rows,
                "seconds": timings,
            },
            ensure_ascii=False,
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
