"""Time a decoder-only model's translation: plain ``generate()`` against this project's search
(terms off and hard) and CTranslate2 int8, on the same prompts.

The model is built here with random weights in the shape of Qwen3-0.6B (28 layers, d_model
1024, 16 heads with 8 key/value heads, FFN 3072, vocabulary padded to 151,936: the real
model cannot be downloaded); ``--shape tiny`` is a quick look. Random weights stop anywhere,
so every system writes exactly ``--new-tokens`` tokens per sentence (EOS banned until then:
``min_new_tokens`` for ``generate()``, ``DecodingOptions.exact_length`` for ours); with hard
terms our limit also counts the terms' tokens, which the table's token counts show.

    python eval/bench_causal.py --sentences 4 --new-tokens 16 --json eval/out/bench_causal.json
    python eval/bench_causal.py --shape tiny --sentences 8      # seconds, for a check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHAPES = {
    "qwen3-0.6b": dict(layers=28, d_model=1024, heads=16, ffn=3072, pad_vocab_to=151936),
    "tiny": dict(layers=2, d_model=64, heads=4, ffn=128, pad_vocab_to=0),
}


def corpus(n: int) -> tuple[list[str], list[list[Any]]]:
    sys.path.insert(0, str(REPO / "src"))
    from forumtranslate.glossary import load_glossary
    from forumtranslate.run import prepare_sources

    glossary = load_glossary(REPO / "glossary" / "terms.tsv")
    sources = [s for s in prepare_sources(REPO / "data", glossary) if s.terms]
    sources = sorted(sources, key=lambda s: (abs(len(s.segment.text) - 40), s.segment.seg_id))[:n]
    return [s.segment.text for s in sources], [list(s.terms) for s in sources]


def build(folder: Path, shape: str) -> Path:
    from forumtranslate.tiny import TinyCausalSpec, build_tiny_causal

    if not (folder / "config.json").is_file():
        size = SHAPES[shape]
        spec = TinyCausalSpec(
            "qwen3",
            "byte-bpe",
            layers=size["layers"],
            d_model=size["d_model"],
            heads=size["heads"],
            ffn=size["ffn"],
            pad_vocab_to=size["pad_vocab_to"],
        )
        build_tiny_causal(folder, spec, REPO / "data")
    return folder


def timed(work: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def note(rows: list, row: tuple) -> None:
    """Keep a row and print it at once: a slow machine may stop the script part-way."""
    rows.append(row)
    system, beam, mode, seconds, tokens, acc = row
    print(
        f"  {system} beam {beam} terms {mode}: {seconds:.2f} s, {tokens} tokens, terms {acc:.3f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="qwen3-0.6b", choices=sorted(SHAPES))
    parser.add_argument("--sentences", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--beams", default="1,4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, help="keep the built model here between runs")
    parser.add_argument("--no-ct2", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-causal-"))
    os.environ["HF_HOME"] = str(work / "hf-home")
    from forumtranslate.causal import CausalTranslator
    from forumtranslate.glossary import check_terms
    from forumtranslate.models import load_model
    from forumtranslate.translate import DecodingOptions

    print(f"building the {args.shape} model in {work}", flush=True)
    folder = build(work / args.shape, args.shape)
    texts, terms = corpus(args.sentences)
    loaded = load_model(str(folder), device="cpu")
    n = args.new_tokens
    rows = []

    def accuracy(outputs: list[str]) -> float:
        found = [ok for text, t in zip(outputs, terms) for ok in check_terms(text, t)]
        return round(sum(found) / max(1, len(found)), 3)

    def options(beam: int, mode: str) -> DecodingOptions:
        return DecodingOptions(
            beam_size=beam,
            terms=mode,
            exact_length=True,
            length_ratio=0.0,
            length_extra=n,
            max_batch_tokens=1 << 20,
        )

    warm = CausalTranslator(loaded, options(1, "off"))
    warm.translate(texts[:1], terms[:1])  # first calls (allocations, kernels) are not timed
    with torch.inference_mode():
        loaded.model.generate(
            torch.tensor([warm.prompt_ids(texts[0])]),
            max_new_tokens=2,
            do_sample=False,
            pad_token_id=warm._pad_id(),
        )
    for beam in [int(b) for b in args.beams.split(",")]:
        ours = CausalTranslator(loaded, options(beam, "off"))
        tokenizer = loaded.tokenizer
        tokenizer.padding_side = "left"
        prompts = [ours.prompt(t, found) for t, found in zip(texts, terms)]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)

        def plain(encoded: Any = encoded, beam: int = beam, ours: Any = ours) -> list[str]:
            with torch.inference_mode():
                out = loaded.model.generate(
                    **encoded,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    num_beams=beam,
                    do_sample=False,
                    eos_token_id=ours.eos_id,
                    pad_token_id=ours._pad_id(),
                )
            new = out[:, encoded["input_ids"].shape[1] :]
            return loaded.tokenizer.batch_decode(new, skip_special_tokens=True)

        seconds, outputs = timed(plain)
        note(rows, ("generate()", beam, "off", seconds, len(texts) * n, accuracy(outputs)))
        for mode in ("off", "hard"):
            translator = CausalTranslator(loaded, options(beam, mode))
            generated = [0]
            search = translator._search

            def counted(*a: Any, _s: Any = search, _g: list = generated, **k: Any) -> Any:
                ids = _s(*a, **k)
                _g[0] += sum(len(i) for i in ids)
                return ids

            translator._search = counted
            seconds, outputs = timed(lambda t=translator: t.translate(texts, terms))
            note(rows, ("ours", beam, mode, seconds, generated[0], accuracy(outputs)))
        if not args.no_ct2:
            from forumtranslate.ct2_causal import CT2CausalTranslator
            from forumtranslate.ct2convert import load_ct2_model

            model = load_ct2_model(
                str(folder), device="cpu", compute_type="int8", intra_threads=args.threads
            )
            for mode in ("off", "hard"):
                translator = CT2CausalTranslator(model, options(beam, mode))
                seconds, outputs = timed(lambda t=translator: t.translate(texts, terms))
                note(rows, ("ct2 int8", beam, mode, seconds, len(texts) * n, accuracy(outputs)))

    print(
        f"\n{args.shape}, {len(texts)} sentences, {n} new tokens each, {args.threads} threads, "
        f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs ({platform.processor()})"
    )
    print(
        f"{'system':<12}{'beam':>5}{'terms':>7}{'seconds':>9}{'tokens':>8}{'tok/s':>8}"
        f"{'terms ok':>10}"
    )
    for system, beam, mode, seconds, tokens, acc in rows:
        print(
            f"{system:<12}{beam:>5}{mode:>7}{seconds:>9.2f}{tokens:>8}{tokens / seconds:>8.1f}"
            f"{acc:>10.3f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        keys = ("system", "beam", "terms", "seconds", "target_tokens", "term_accuracy")
        args.json.write_text(
            json.dumps(
                {
                    "shape": args.shape,
                    "sentences": len(texts),
                    "new_tokens": n,
                    "threads": args.threads,
                    "rows": [dict(zip(keys, r)) for r in rows],
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
