"""Measure the transformers and CTranslate2 backends on the same sentences, and what the
pipeline around the engine costs.

One command measures, for each model shape (random weights, built here: the real models
cannot be downloaded), the whole forum corpus translated by

* transformers in PyTorch (float32) and CTranslate2 in float32 and int8 (on a GPU: float16
  and int8_float16 too), with greedy search and beam 4;
* with ``--terms off`` and ``--terms hard``: the constrained-decoding cost of each backend;
* the agreement of CTranslate2 float32 with transformers on the same model (a check of
  the conversion): the share of sentences with identical output;
* the whole ``forumtranslate.run.run`` (segment, translate, align, score, write the run
  folder) against the bare ``translator.translate`` of the same sentences.

Random weights stop anywhere, so every system generates exactly the same number of tokens
per sentence (``DecodingOptions.exact_length``: EOS is banned until the length limit,
``--length-ratio`` × source tokens + ``--length-extra``; by default 32 tokens for every
sentence, about the corpus's mean source length, so that no engine decodes a batch past a
sentence's own limit). With ``--terms hard`` the transformers backend's limit also counts
the terms' tokens. Each engine runs in its own child process, so its peak resident memory
is its own; the parent builds nothing big.

    python eval/bench_backends.py --wait-load 1.5 --repeat 3 --json eval/out/bench_backends.json
    python eval/bench_backends.py --device cuda --json eval/out/bench_backends_cuda.json
    python eval/bench_backends.py --shapes opus-mt --sentences 64   # a quick look

On a shared machine, ``--wait-load 1.5`` waits before every timing (up to ``--wait-max``
seconds) until the 1-minute load average is below 1.5, and ``--repeat 3`` keeps the best of
three timings (for ``--repeat-shapes``); the load averages and CPU seconds of every timing
are saved, and the table shows the load before the first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FAMILY = {"opus-mt": "marian", "nllb-600m": "nllb", "tiny": "marian"}
# Targets from issue 7, as ratios from one run.
TARGET_SPEEDUP = {"opus-mt": 4.0, "nllb-600m": 3.0}  # CT2 int8 / transformers fp32, beam 4
TARGET_HARD_COST = 1.3  # hard / off time, each backend
TARGET_RUN_OVERHEAD = 1.15  # whole run / bare engine
SYSTEMS_GPU = ["float32", "float16", "int8_float16"]  # CTranslate2 compute types on a GPU


# -- shared helpers -------------------------------------------------------------------------


def corpus(sentences: int) -> tuple[list[str], list[list[Any]]]:
    """The corpus sentences and their glossary terms, as ``forumtranslate run`` sees them."""
    from forumtranslate.glossary import load_glossary
    from forumtranslate.run import prepare_sources

    sources = prepare_sources(REPO / "data", load_glossary(REPO / "glossary" / "terms.tsv"))
    if sentences and sentences < len(sources):  # spread the sample over the corpus
        step = len(sources) / sentences
        sources = [sources[int(i * step)] for i in range(sentences)]
    return [s.segment.text for s in sources], [list(s.terms) for s in sources]


def rss_mib() -> float:
    """Resident memory now, MiB."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine(device: str) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if "model name" in line]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "device": device,
    }
    versions = {}
    for name in ("torch", "transformers", "ctranslate2"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    info["versions"] = versions
    if device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


# -- child processes --------------------------------------------------------------------------


def child(task: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run ``task`` in a fresh Python; its result comes back through a JSON file."""
    out = Path(tempfile.mkstemp(suffix=".json", dir=work)[1])
    env = {**os.environ, "HF_HOME": str(work / "hf-home"), "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, __file__, "--worker", task, json.dumps(spec), str(out)]
    completed = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout.decode(errors="replace")[-4000:])
        raise SystemExit(f"{task} failed for {spec.get('system', spec.get('shape'))}")
    result = json.loads(out.read_text())
    out.unlink()
    return result


def worker_build(spec: dict[str, Any]) -> dict[str, Any]:
    from forumtranslate.tiny import TinyModelSpec, build_tiny_model

    folder = Path(spec["folder"])
    if not (folder / "config.json").is_file():
        build_tiny_model(folder, TinyModelSpec(spec["family"], shape=spec["shape"]), REPO / "data")
    return {"folder": str(folder)}


def worker_convert(spec: dict[str, Any]) -> dict[str, Any]:
    from forumtranslate.ct2convert import load_ct2_model

    start = time.perf_counter()
    model = load_ct2_model(spec["folder"], device=spec["device"], compute_type=spec["compute"])
    return {"converted": str(model.converted), "seconds": round(time.perf_counter() - start, 1)}


def make_translator(spec: dict[str, Any], options: Any) -> Any:
    """The system ``spec`` names, with a counter of the target tokens it generates."""
    if spec["engine"] == "transformers":
        from forumtranslate.hf import TransformersTranslator
        from forumtranslate.models import load_model

        if "loaded" not in spec:
            spec["loaded"] = load_model(spec["folder"], device=spec["device"], dtype="float32")
        if "shortlist_list" not in spec:
            spec["shortlist_list"] = bench_shortlist(spec, spec["loaded"].tokenizer)
        translator = TransformersTranslator(
            spec["loaded"], options, shortlist=spec["shortlist_list"]
        )
        first = spec["loaded"].forced_first_id is not None
        search = translator._search

        def counted_search(
            texts: list[str], terms: Any, hard: bool, **more: Any
        ) -> list[list[int]]:
            # Every search counts: with hard terms, the plain pass and the constrained one.
            ids = search(texts, terms, hard, **more)
            translator.generated += sum(len(i) - first for i in ids)
            return ids

        translator.generated = 0
        translator._search = counted_search
        return translator

    else:
        from forumtranslate.ct2 import CT2Translator
        from forumtranslate.ct2convert import load_ct2_model

        if "loaded" not in spec:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(spec["folder"])
            spec["loaded"] = load_ct2_model(
                spec["folder"],
                device=spec["device"],
                compute_type=spec["compute"],
                inter_threads=spec["inter_threads"],
                intra_threads=spec["intra_threads"],
                shortlist=bench_shortlist(spec, tokenizer) or 0,
            )
        translator = CT2Translator(spec["loaded"], options)
        decode = translator._decode

        def counted(texts: list[str], terms: Any) -> list[Any]:
            hypotheses = decode(texts, terms)
            translator.generated += sum(len(h.tokens) for h in hypotheses)
            return hypotheses

    translator.generated = 0
    translator._decode = counted
    return translator


def bench_shortlist(spec: dict[str, Any], tokenizer: Any) -> Any:
    """The product's shortlist for ``spec["shortlist"]`` pieces (0 or absent: none), made up
    to that size with further vocabulary entries: a random model's SentencePiece vocabulary
    has about 2,000 pieces where the real model's target side has tens of thousands, so
    without the padding the list, and its cost, would be far smaller than a real model's."""
    from forumtranslate.glossary import load_glossary
    from forumtranslate.shortlist import build_shortlist, glossary_forms

    size = spec.get("shortlist") or 0
    if not size:
        return None
    forms = glossary_forms(load_glossary(REPO / "glossary" / "terms.tsv"))
    built = build_shortlist(tokenizer, Path(spec["folder"]), size, forms)
    vocabulary = [p for p in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))) if p]
    return built.padded(size, vocabulary)


def decoding(spec: dict[str, Any], beam: int, terms: str) -> Any:
    from forumtranslate.translate import DecodingOptions

    return DecodingOptions(
        beam_size=beam,
        terms=terms,
        exact_length=True,
        length_ratio=spec["length_ratio"],
        length_extra=spec["length_extra"],
        shortlist=spec.get("shortlist") or 0,
        confidence=spec.get("confidence", True),
    )


def setup_threads(spec: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(spec["torch_threads"])


def quiet(spec: dict[str, Any]) -> float:
    """Wait (up to ``wait_max`` s) for the 1-minute load average to fall below ``wait_load``;
    the seconds waited. Other people's jobs on a small shared machine swamp the figures."""
    start = time.monotonic()
    if spec.get("wait_load"):
        while os.getloadavg()[0] >= spec["wait_load"]:
            if time.monotonic() - start > spec["wait_max"]:
                break
            time.sleep(10)
    return round(time.monotonic() - start, 1)


def timed(spec: dict[str, Any], work: Any) -> tuple[float, Any, list]:
    """The best of ``repeat`` timings of ``work()``, each after a quiet wait; its result
    and, per timing, [seconds, seconds waited, load before, load after, CPU seconds]."""
    runs, result = [], None
    for _ in range(spec["repeat"]):
        waited = quiet(spec)
        before = load_average()
        start, cpu = time.perf_counter(), time.process_time()
        result = work()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        runs.append([round(seconds, 3), waited, before, load_average(), round(cpu, 1)])
    return min(r[0] for r in runs), result, runs


def worker_measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One system: load it, then every (beam, terms) cell on the same sentences."""
    from forumtranslate.glossary import check_terms

    setup_threads(spec)
    texts, terms = corpus(spec["sentences"])
    baseline = rss_mib()
    start = time.perf_counter()
    make_translator(spec, decoding(spec, 1, "off")).translate(texts[:2], terms[:2])  # warm-up
    load_seconds = time.perf_counter() - start
    cells = []
    for beam, mode in spec["cells"]:
        translator = make_translator(spec, decoding(spec, beam, mode))

        def work(translator: Any = translator) -> list[str]:
            translator.generated = 0
            return translator.translate(texts, terms)

        seconds, outputs, runs = timed(spec, work)
        found = [ok for text, t in zip(outputs, terms) for ok in check_terms(text, t)]
        cells.append(
            {
                "beam": beam,
                "terms": mode,
                "seconds": round(seconds, 3),
                "sentences_per_s": round(len(texts) / seconds, 3),
                "target_tokens": translator.generated,
                "target_tokens_per_s": round(translator.generated / seconds, 1),
                "term_accuracy": round(sum(found) / max(1, len(found)), 4),
                "runs": runs,
                "load_average": [runs[0][2], runs[-1][3]],
                "outputs": outputs if mode == "off" else None,
            }
        )
    return {
        "rss_after_imports_mib": round(baseline, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "load_and_warmup_seconds": round(load_seconds, 2),
        "gpu_peak_mib": gpu_peak(spec),
        "cells": cells,
    }


def gpu_peak(spec: dict[str, Any]) -> float | None:
    if not spec["device"].startswith("cuda") or spec["engine"] != "transformers":
        return None  # CTranslate2 does not report its GPU memory
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def worker_overhead(spec: dict[str, Any]) -> dict[str, Any]:
    """The whole run against the bare engine, same translator, same sentences."""
    from forumtranslate.run import RunConfig, run

    setup_threads(spec)
    texts, terms = corpus(0)
    translator = make_translator(spec, decoding(spec, spec["beam"], "hard"))
    translator.translate(texts[:2], terms[:2])  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        folders = iter(range(100))

        def whole_run() -> None:
            config = RunConfig(
                out_dir=Path(tmp) / f"run-{next(folders)}",
                data_dir=REPO / "data",
                glossary_path=REPO / "glossary" / "terms.tsv",
                model=spec["folder"],
                decoding=translator.options,
            )
            run(config, translator=translator, progress=lambda *_: None)

        bare_seconds, _, bare_runs = timed(spec, lambda: translator.translate(texts, terms))
        run_seconds, _, run_runs = timed(spec, whole_run)
    return {
        "system": spec["system"],
        "beam": spec["beam"],
        "terms": "hard",
        "sentences": len(texts),
        "bare_seconds": bare_seconds,
        "run_seconds": run_seconds,
        "run_over_bare": round(run_seconds / bare_seconds, 3),
        "runs": {"bare": bare_runs, "run": run_runs},
    }


def worker_calibrate(spec: dict[str, Any]) -> dict[str, Any]:
    """CTranslate2 int8, beam 4, on a sample: seconds for each (inter, intra) layout."""
    texts, terms = corpus(spec["calibration_sentences"])
    seconds = {}
    for inter, intra in spec["layouts"]:
        system = {**spec, "engine": "ct2", "inter_threads": inter, "intra_threads": intra}
        translator = make_translator(system, decoding(spec, 4, "off"))
        translator.translate(texts[:2], terms[:2])  # warm-up
        quiet(spec)
        start = time.perf_counter()
        translator.translate(texts, terms)
        seconds[f"{inter}x{intra}"] = round(time.perf_counter() - start, 2)
    return {"seconds": seconds, "load_average": load_average()}


# -- peers: what a user would otherwise run, beside our configurations (issue 19) ----------

PEER_DOCS = {"opus-mt": "panel-1,opening-onoda", "nllb-600m": "opening-onoda"}
SHORTLIST_SIZES = (4000, 8000, 16000, 32000)
PEER_BATCH = 16  # sentences per generate() / translate_batch call, as a user would write it
# Targets from issue 19, as ratios from one run.
TARGET_RUN_VS_GENERATE = 5.0  # whole run --backend ct2 (hard) / plain generate(), tokens/s
TARGET_TRANSFORMERS_VS_GENERATE = 1.5  # our transformers loop with the shortlist / generate()
TARGET_HARD_PER_TOKEN = 1.2  # hard / off, seconds per generated token, each backend


def doc_sentences(docs: str) -> tuple[list[str], list[list[Any]]]:
    """The sentences (and terms) of the named documents, as ``forumtranslate run`` sees them."""
    from forumtranslate.glossary import load_glossary
    from forumtranslate.run import prepare_sources

    wanted = docs.split(",")
    sources = prepare_sources(REPO / "data", load_glossary(REPO / "glossary" / "terms.tsv"))
    kept = [s for s in sources if s.segment.doc_id in wanted]
    return [s.segment.text for s in kept], [list(s.terms) for s in kept]


def subset_data(docs: str, root: Path) -> Path:
    """A data folder with only ``docs``: the real files and the manifest's lines for them."""
    import shutil

    wanted = docs.split(",")
    data = root / "data-subset"
    for lang in ("ja", "en"):
        (data / lang).mkdir(parents=True, exist_ok=True)
        for doc in wanted:
            shutil.copy(REPO / "data" / lang / f"{doc}.txt", data / lang / f"{doc}.txt")
    lines = (REPO / "data" / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if line.split("\t")[0] in wanted]
    (data / "manifest.tsv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    return data


def worker_peer(spec: dict[str, Any]) -> dict[str, Any]:
    """One row: plain ``generate()``, bare ``translate_batch``, one of our translators, or
    the whole ``run``; seconds, generated tokens and peak memory of this process."""
    setup_threads(spec)
    texts, terms = doc_sentences(spec["docs"])
    nllb = spec["family"] == "nllb"
    length = spec["length_extra"] + (1 if nllb else 0)  # NLLB: + the language token
    kind = spec["kind"]
    baseline = rss_mib()
    counter: dict[str, Any] = {}
    if kind == "generate":
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(spec["folder"])
        model = AutoModelForSeq2SeqLM.from_pretrained(spec["folder"]).eval()
        extra = {}
        if nllb:
            tokenizer.src_lang = "jpn_Jpan"
            extra["forced_bos_token_id"] = tokenizer.convert_tokens_to_ids("eng_Latn")

        def work(part: list[str] = texts) -> list[str]:
            out = []
            for i in range(0, len(part), PEER_BATCH):
                encoded = tokenizer(part[i : i + PEER_BATCH], return_tensors="pt", padding=True)
                with torch.inference_mode():
                    ids = model.generate(
                        **encoded,
                        num_beams=4,
                        max_new_tokens=length,
                        min_new_tokens=length,
                        **extra,
                    )
                out += tokenizer.batch_decode(ids, skip_special_tokens=True)
            return out

        def generated() -> int:
            return spec["length_extra"] * len(texts)

    elif kind == "ct2-bare":
        import ctranslate2
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(spec["folder"])
        if nllb:
            tokenizer.src_lang = "jpn_Jpan"
        converted = spec["converted"]
        if spec.get("shortlist"):  # the product's list as the engine's own vocabulary map
            from forumtranslate.ct2convert import with_vmap

            converted = str(with_vmap(Path(converted), bench_shortlist(spec, tokenizer)))
        engine = ctranslate2.Translator(converted, device=spec["device"])  # defaults
        tokens = [tokenizer.convert_ids_to_tokens(tokenizer(t)["input_ids"]) for t in texts]

        def work(part: list[str] = texts) -> list[str]:
            chosen = tokens[: len(part)]
            results = engine.translate_batch(
                chosen,
                target_prefix=[["eng_Latn"]] * len(chosen) if nllb else None,
                beam_size=4,
                max_batch_size=PEER_BATCH,
                min_decoding_length=length,
                max_decoding_length=length,
                use_vmap=bool(spec.get("shortlist")),
            )
            return [" ".join(r.hypotheses[0]) for r in results]

        def generated() -> int:
            return spec["length_extra"] * len(texts)

    else:
        translator = make_translator(spec, decoding(spec, 4, spec["terms"]))
        counter["translator"] = translator
        if kind == "ours":

            def work(part: list[str] = texts) -> list[str]:
                translator.generated = 0
                return translator.translate(part, terms[: len(part)])

        else:  # the whole run: segment, match terms, translate, align, score, write
            from forumtranslate.run import RunConfig, run

            data = subset_data(spec["docs"], Path(spec["work"]))
            runs = iter(range(100))

            def work(part: list[str] = texts) -> list[str]:
                if len(part) < len(texts):  # the warm-up
                    return translator.translate(part, terms[: len(part)])
                translator.generated = 0
                config = RunConfig(
                    out_dir=Path(spec["work"]) / f"run-{os.getpid()}-{next(runs)}",
                    data_dir=data,
                    glossary_path=REPO / "glossary" / "terms.tsv",
                    model=spec["folder"],
                    decoding=translator.options,
                )
                run(config, translator=translator, progress=lambda *_: None)
                return []

        def generated() -> int:
            return translator.generated

    start = time.perf_counter()
    work(texts[:2])  # warm-up, and the model's load
    warm = time.perf_counter() - start
    seconds, outputs, runs_ = timed(spec, work)
    tokens = generated()
    shortlist = None
    if "translator" in counter:
        signature = counter["translator"].signature()
        shortlist = signature.get("shortlist")
    return {
        "sentences": len(texts),
        "seconds": round(seconds, 3),
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "load_and_warmup_seconds": round(warm, 2),
        "rss_after_imports_mib": round(baseline, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "runs": runs_,
        "load_average": [runs_[0][2], runs_[-1][3]],
        "shortlist_signature": shortlist,
        "outputs": outputs if kind != "run" else None,
    }


def peer_rows(shape: str, device: str) -> list[dict[str, Any]]:
    """The rows of the peers table for one shape: name, kind and settings."""
    cpu = device == "cpu"
    int8 = "int8" if cpu else "int8_float16"
    ours_ct2 = {"kind": "ours", "engine": "ct2", "compute": int8, "inter_threads": 1}
    ours_ct2["intra_threads"] = 0
    ours_tf = {"kind": "ours", "engine": "transformers"}
    rows = [
        {"name": "transformers generate()", "kind": "generate", "terms": "off"},
        {"name": "ctranslate2 translate_batch", "kind": "ct2-bare", "terms": "off"},
        # The engine's ceiling with the product's list: bare translate_batch, use_vmap.
        {"name": "ctranslate2 translate_batch + vmap", "kind": "ct2-bare", "terms": "off"}
        | {"shortlist": 16000},
        {"name": "ours transformers", **ours_tf, "terms": "off", "shortlist": 0},
        {"name": "ours transformers", **ours_tf, "terms": "off", "shortlist": 16000},
        # What the confidence pass (a second, teacher-forced pass over the whole vocabulary)
        # costs: the same row without it (``--no-confidence``).
        {"name": "ours transformers no confidence", **ours_tf, "terms": "off"}
        | {"shortlist": 16000, "confidence": False},
        {"name": "ours transformers", **ours_tf, "terms": "hard", "shortlist": 16000},
        {"name": f"ours ct2 {int8}", **ours_ct2, "terms": "off", "shortlist": 0},
        {"name": f"ours ct2 {int8}", **ours_ct2, "terms": "hard", "shortlist": 0},
    ]
    sizes = SHORTLIST_SIZES if shape == "opus-mt" else (8000, 16000)
    rows += [
        {"name": f"ours ct2 {int8}", **ours_ct2, "terms": "off", "shortlist": size}
        for size in sizes
    ]
    rows.append({"name": f"ours ct2 {int8}", **ours_ct2, "terms": "hard", "shortlist": 16000})
    if cpu:
        two = {**ours_ct2, "inter_threads": 2, "intra_threads": 1}
        rows.append({"name": f"ours ct2 {int8} 2x1", **two, "terms": "hard", "shortlist": 16000})
    rows.append(
        {"name": f"whole run ct2 {int8}", **ours_ct2, "kind": "run", "terms": "hard"}
        | {"shortlist": 16000}
    )
    rows.append(
        {"name": f"whole run ct2 {int8} no confidence", **ours_ct2, "kind": "run"}
        | {"terms": "hard", "shortlist": 16000, "confidence": False}
    )
    if cpu:
        rows.append(
            {"name": f"whole run ct2 {int8} 2x1", **two, "kind": "run", "terms": "hard"}
            | {"shortlist": 16000}
        )
    return rows


def run_peers(args: argparse.Namespace, work: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Every row of ``peer_rows`` in its own process, per shape; ratios against generate()."""
    report: dict[str, Any] = {"machine": info, "mode": "peers", "shapes": {}}
    report["load_average_start"] = load_average()
    for shape in args.shapes.split(","):
        family = FAMILY[shape]
        folder = str(work / f"{shape}-{family}")
        docs = args.docs or PEER_DOCS[shape]
        print(f"\n== {shape} ({family}) on documents {docs}", flush=True)
        child("build", {"shape": shape, "family": family, "folder": folder}, work)
        int8 = "int8" if args.device == "cpu" else "int8_float16"
        spec = {"folder": folder, "device": args.device, "compute": int8}
        converted = child("convert", spec, work)
        common = {
            "device": args.device,
            "docs": docs,
            "family": family,
            "folder": folder,
            "converted": converted["converted"],
            "work": str(work),
            "length_ratio": 0.0,
            "length_extra": args.length_extra,
            "torch_threads": args.threads,
            "wait_load": args.wait_load,
            "wait_max": args.wait_max,
            "repeat": args.repeat if shape in args.repeat_shapes.split(",") else 1,
        }
        rows = []
        for row in peer_rows(shape, args.device):
            if args.skip_rows and any(word in row["name"] for word in args.skip_rows.split(",")):
                continue
            label = f"{row['name']} terms {row['terms']} shortlist {row.get('shortlist', '-')}"
            print(f"   {label} ...", flush=True)
            result = child("peer", {**common, **row}, work)
            rows.append({**row, **result})
            print(
                f"      {result['seconds']:.1f} s, {result['tokens_per_s']:.1f} tok/s, "
                f"peak {result['peak_rss_mib']:.0f} MiB, load {result['load_average'][0]}"
            )
        report["shapes"][shape] = summarise_peers(rows)
        print(markdown_peers(shape, report["shapes"][shape]))
    report["load_average_end"] = load_average()
    return report


def summarise_peers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios against plain generate(), agreement with and without the shortlist, targets."""
    base = next(r for r in rows if r["kind"] == "generate")
    for row in rows:
        row["vs_generate"] = round(row["tokens_per_s"] / base["tokens_per_s"], 2)
        row["seconds_per_token"] = row["seconds"] / max(1, row["generated_tokens"])

    def find(name_start: str, terms: str, size: int | None) -> dict[str, Any] | None:
        for row in rows:
            same = row["name"] == name_start and row["terms"] == terms
            if same and (size is None or (row.get("shortlist") or 0) == size):
                return row
        return None

    targets: dict[str, Any] = {}
    # The targets are read on the product's defaults (confidence scored); the rows without
    # the confidence pass, and the bare engine with the list, show what limits them.
    whole = [r for r in rows if r["kind"] == "run" and r.get("confidence", True)]
    if whole:
        best = max(whole, key=lambda r: r["vs_generate"])
        targets["whole run ct2 vs generate()"] = {
            "value": best["vs_generate"],
            "row": best["name"],
            "target": f">= {TARGET_RUN_VS_GENERATE}",
            "met": best["vs_generate"] >= TARGET_RUN_VS_GENERATE,
        }
    limits = {}
    for row in rows:
        if row["kind"] == "ct2-bare" or not row.get("confidence", True):
            limits[f"{row['name']}, shortlist {row.get('shortlist') or 0}"] = row["vs_generate"]
    tf = find("ours transformers", "off", 16000)
    if tf:
        targets["transformers backend + shortlist vs generate()"] = {
            "value": tf["vs_generate"],
            "target": f">= {TARGET_TRANSFORMERS_VS_GENERATE}",
            "met": tf["vs_generate"] >= TARGET_TRANSFORMERS_VS_GENERATE,
        }
    for name in sorted({r["name"] for r in rows if r["kind"] == "ours"}):
        for size in sorted({r.get("shortlist") or 0 for r in rows if r["name"] == name}):
            off, hard = find(name, "off", size), find(name, "hard", size)
            if off and hard:
                per_token = hard["seconds_per_token"] / off["seconds_per_token"]
                targets[f"hard/off per token, {name}, shortlist {size}"] = {
                    "value": round(per_token, 3),
                    "seconds_ratio": round(hard["seconds"] / off["seconds"], 3),
                    "target": f"<= {TARGET_HARD_PER_TOKEN}",
                    "met": per_token <= TARGET_HARD_PER_TOKEN,
                }
    agreement = {}
    for name in sorted({r["name"] for r in rows if r["kind"] == "ours"}):
        plain = find(name, "off", 0)
        if plain and plain["outputs"]:
            for row in rows:
                if row["name"] == name and row["terms"] == "off" and row.get("shortlist"):
                    pairs = list(zip(plain["outputs"], row["outputs"]))
                    same = sum(a == b for a, b in pairs) / len(pairs)
                    agreement[f"{name}, shortlist {row['shortlist']}"] = round(same, 4)
    for row in rows:
        row.pop("outputs", None)
    return {
        "rows": rows,
        "targets": targets,
        "limits_vs_generate": limits,
        "identical_with_and_without_shortlist_random_weights": agreement,
    }


def markdown_peers(shape: str, summary: dict[str, Any]) -> str:
    """The README's table for one shape."""
    lines = [
        f"\n{shape}: {summary['rows'][0]['sentences']} sentences, beam 4, "
        f"every sentence 32 tokens\n",
        "| system | terms | shortlist | seconds | tokens/s | vs `generate()` | peak RSS | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        size = row.get("shortlist")
        shown = "-" if size is None else (f"{size:,}" if size else "off")
        lines.append(
            f"| {row['name']} | {row['terms']} | {shown} | {row['seconds']:.1f} | "
            f"{row['tokens_per_s']:.1f} | {row['vs_generate']:.2f}x | "
            f"{row['peak_rss_mib']:.0f} MiB | {row['load_average'][0][0]:.1f} |"
        )
    lines.append("")
    for name, target in summary["targets"].items():
        verdict = "met" if target["met"] else "NOT met"
        lines.append(f"- {name}: {target['value']} (want {target['target']}): {verdict}")
    for name, ratio in summary.get("limits_vs_generate", {}).items():
        lines.append(f"- for comparison, {name}: {ratio:.2f}x `generate()`")
    for name, share in summary["identical_with_and_without_shortlist_random_weights"].items():
        lines.append(f"- identical to no shortlist, {name}: {share:.1%} (random weights)")
    return "\n".join(lines)


WORKERS = {
    "peer": worker_peer,
    "build": worker_build,
    "calibrate": worker_calibrate,
    "convert": worker_convert,
    "measure": worker_measure,
    "overhead": worker_overhead,
}


# -- the parent ---------------------------------------------------------------------------


def systems_for(device: str, threads: tuple[int, int]) -> list[dict]:
    """The engines to compare; on a CPU every engine has all its cores."""
    inter, intra = threads
    ct2 = {"engine": "ct2", "inter_threads": inter, "intra_threads": intra}
    systems = [{"system": "transformers float32", "engine": "transformers", "hard": True}]
    computes = ["float32", "int8"] if device == "cpu" else SYSTEMS_GPU
    # Terms hard for transformers and CTranslate2's default type; float32 checks agreement.
    default = "int8" if device == "cpu" else "float16"
    systems += [{"system": f"ct2 {c}", "compute": c, "hard": c == default, **ct2} for c in computes]
    return systems


def wait_for_quiet(threshold: float, limit: float) -> None:
    start = time.monotonic()
    while os.getloadavg()[0] >= threshold and time.monotonic() - start < limit:
        print(f"  load average {load_average()}: waiting for < {threshold}", flush=True)
        time.sleep(30)
    print(f"load average {load_average()} after {time.monotonic() - start:.0f} s of waiting")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    parser.add_argument("--shapes", default="opus-mt,nllb-600m")
    parser.add_argument("--sentences", type=int, default=0, help="0: the whole corpus")
    parser.add_argument("--beams", default="1,4")
    parser.add_argument("--hard-beams", default="4", help="beams also measured with terms")
    parser.add_argument(
        "--length-ratio", type=float, default=0.0, help="target tokens per source token"
    )
    parser.add_argument(
        "--length-extra", type=int, default=32, help="plus these; default: 32 tokens each"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    parser.add_argument(
        "--ct2-threads",
        default=None,
        help="INTER,INTRA; default on a CPU: the faster of cores×1 and 1×cores on a sample",
    )
    parser.add_argument("--calibration-sentences", type=int, default=24)
    parser.add_argument(
        "--overhead-shapes", default="opus-mt", help="shapes whose whole run is timed too"
    )
    parser.add_argument("--work", type=Path, default=None, help="keep models here (reused)")
    parser.add_argument("--no-run-overhead", action="store_true")
    parser.add_argument(
        "--wait-load", type=float, default=0.0, help="before each timing, wait for a quiet CPU"
    )
    parser.add_argument("--wait-max", type=float, default=900.0, help="seconds, per wait")
    parser.add_argument("--repeat", type=int, default=1, help="timings per cell; the best")
    parser.add_argument(
        "--repeat-shapes", default="opus-mt", help="shapes timed --repeat times (others once)"
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="issue 19: plain generate() and bare translate_batch beside our configurations",
    )
    parser.add_argument("--docs", default=None, help="--peers: documents to translate")
    parser.add_argument("--skip-rows", default="", help="--peers: skip rows naming these")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--markdown", type=Path, help="--peers: print the README's tables of a JSON written before"
    )
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.markdown:
        report = json.loads(args.markdown.read_text(encoding="utf-8"))
        for shape, summary in report["shapes"].items():
            print(markdown_peers(shape, summary))
        return
    if args.worker:
        task, spec, out = args.worker
        Path(out).write_text(json.dumps(WORKERS[task](json.loads(spec))), encoding="utf-8")
        return

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-backends-"))
    work.mkdir(parents=True, exist_ok=True)
    threads = tuple(int(x) for x in args.ct2_threads.split(",")) if args.ct2_threads else None
    beams = [int(b) for b in args.beams.split(",")]
    hard_beams = [int(b) for b in args.hard_beams.split(",") if int(b) in beams]
    cells = [(b, "off") for b in beams] + [(b, "hard") for b in hard_beams]
    info = machine(args.device)
    print(f"machine: {info['cpu']} ({info['cpu_cores']} cores, {info['memory_gib']} GiB)", end="")
    print(f", device {args.device}{' ' + str(info.get('gpu')) if info.get('gpu') else ''}")
    print(f"versions: {info['versions']}")
    if args.peers:
        report = run_peers(args, work, info)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
            print(f"\nwrote {args.json}")
        return
    common = {
        "device": args.device,
        "sentences": args.sentences,
        "length_ratio": args.length_ratio,
        "length_extra": args.length_extra,
        "torch_threads": args.threads,
        "wait_load": args.wait_load,
        "wait_max": args.wait_max,
    }
    report: dict[str, Any] = {"machine": info, "settings": {**common, "cells": cells}}
    report["shapes"] = {}
    for shape in args.shapes.split(","):
        family = FAMILY[shape]
        folder = str(work / f"{shape}-{family}")
        repeat = args.repeat if shape in args.repeat_shapes.split(",") else 1
        print(f"\n== {shape} ({family}): building and converting the model", flush=True)
        child("build", {"shape": shape, "family": family, "folder": folder}, work)
        for compute in ("float32", "int8") if args.device == "cpu" else SYSTEMS_GPU:
            child("convert", {"folder": folder, "device": args.device, "compute": compute}, work)
        if args.wait_load:
            wait_for_quiet(args.wait_load, args.wait_max)
        layout, calibration = threads, None
        if layout is None and args.device == "cpu":
            cores = os.cpu_count() or 1
            spec = {
                **common,
                "folder": folder,
                "compute": "int8",
                "layouts": [(cores, 1), (1, cores)],
                "calibration_sentences": args.calibration_sentences,
            }
            print("   choosing CTranslate2's thread layout ...", flush=True)
            calibration = child("calibrate", spec, work)
            best = min(calibration["seconds"], key=calibration["seconds"].get)
            layout = tuple(int(x) for x in best.split("x"))
            print(f"   inter×intra threads, seconds: {calibration['seconds']}: {best}")
        systems = systems_for(args.device, layout or (1, 1))
        results = {}
        for system in systems:
            own = [c for c in cells if c[1] == "off" or system.get("hard")]
            spec = {**common, **system, "folder": folder, "cells": own, "repeat": repeat}
            print(f"   measuring {system['system']} ...", flush=True)
            results[system["system"]] = child("measure", spec, work)
        overhead = None
        if not args.no_run_overhead and shape in args.overhead_shapes.split(","):
            fastest = systems[-1] if args.device == "cpu" else systems[2]
            spec = {**common, **fastest, "folder": folder, "beam": max(beams), "repeat": repeat}
            print(f"   run overhead with {fastest['system']} ...", flush=True)
            overhead = child("overhead", spec, work)
        report["shapes"][shape] = summarise(shape, results, overhead)
        report["shapes"][shape]["ct2_threads"] = {"inter×intra": layout, "calibration": calibration}
        print_table(shape, report["shapes"][shape], args.device)
    report["load_average_end"] = load_average()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")


def summarise(shape: str, results: dict[str, Any], overhead: dict | None) -> dict[str, Any]:
    """Rows per (system, beam, terms), ratios, agreement and the targets."""
    base_name = "transformers float32"
    base = {(c["beam"], c["terms"]): c for c in results[base_name]["cells"]}
    rows = []
    for name, result in results.items():
        own = {(c["beam"], c["terms"]): c for c in result["cells"]}
        for cell in result["cells"]:
            key = (cell["beam"], cell["terms"])
            row = {k: v for k, v in cell.items() if k != "outputs"}
            row["system"] = name
            row["speedup"] = round(base[key]["seconds"] / cell["seconds"], 2)
            off = own.get((cell["beam"], "off"))
            row["hard_over_off"] = (
                round(cell["seconds"] / off["seconds"], 3) if cell["terms"] == "hard" else None
            )
            row["peak_rss_mib"] = result["peak_rss_mib"]
            row["model_and_decoding_mib"] = round(
                result["peak_rss_mib"] - result["rss_after_imports_mib"], 1
            )
            row["gpu_peak_mib"] = result["gpu_peak_mib"]
            rows.append(row)
    agreement = {}
    if "ct2 float32" in results:
        theirs = {(c["beam"], c["terms"]): c for c in results["ct2 float32"]["cells"]}
        for key, cell in base.items():
            if cell["outputs"] is not None and key in theirs:
                pairs = list(zip(cell["outputs"], theirs[key]["outputs"]))
                agreement[f"beam {key[0]}"] = round(sum(a == b for a, b in pairs) / len(pairs), 4)
    targets = {}
    int8 = next((r for r in rows if r["system"].startswith("ct2 int8") and r["beam"] == 4), None)
    if int8 and shape in TARGET_SPEEDUP:
        beam4_off = [r for r in rows if r["system"] == int8["system"] and r["beam"] == 4]
        speedup = next(r["speedup"] for r in beam4_off if r["terms"] == "off")
        targets["ct2_int8_speedup_beam4"] = {
            "value": speedup,
            "target": f">= {TARGET_SPEEDUP[shape]}",
            "met": speedup >= TARGET_SPEEDUP[shape],
        }
    for row in rows:
        if row["hard_over_off"] is not None and (
            row["system"] == base_name or "int8" in row["system"]
        ):
            targets[f"hard_cost {row['system']} beam {row['beam']}"] = {
                "value": row["hard_over_off"],
                "target": f"<= {TARGET_HARD_COST}",
                "met": row["hard_over_off"] <= TARGET_HARD_COST,
            }
    if overhead:
        targets["run_overhead"] = {
            "value": overhead["run_over_bare"],
            "target": f"<= {TARGET_RUN_OVERHEAD}",
            "met": overhead["run_over_bare"] <= TARGET_RUN_OVERHEAD,
        }
    sentences = len(results[base_name]["cells"][0]["outputs"] or []) or None
    return {
        "sentences": sentences,
        "rows": rows,
        "ct2_float32_equals_transformers": agreement,
        "run_overhead": overhead,
        "targets": targets,
    }


def print_table(shape: str, summary: dict[str, Any], device: str) -> None:
    threads = summary.get("ct2_threads", {}).get("inter×intra")
    layout = f"; CTranslate2 threads inter×intra {threads[0]}×{threads[1]}" if threads else ""
    print(f"\n{shape}: {summary['sentences']} sentences on {device}{layout}")
    header = (
        f"{'system':22} {'beam':>4} {'terms':>5} {'sent/s':>8} {'tok/s':>8} {'seconds':>8} "
        f"{'vs fp32':>7} {'hard/off':>8} {'peak RSS':>9} {'model':>7} {'terms ok':>8} {'load':>5}"
    )
    print(header)
    print("-" * len(header))
    for row in summary["rows"]:
        hard = f"{row['hard_over_off']:.2f}" if row["hard_over_off"] is not None else ""
        print(
            f"{row['system']:22} {row['beam']:>4} {row['terms']:>5} "
            f"{row['sentences_per_s']:>8.2f} {row['target_tokens_per_s']:>8.1f} "
            f"{row['seconds']:>8.1f} {row['speedup']:>6.2f}x {hard:>8} "
            f"{row['peak_rss_mib']:>6.0f}MiB {row['model_and_decoding_mib']:>4.0f}MiB "
            f"{row['term_accuracy']:>8.1%} {row['load_average'][0][0]:>5.2f}"
        )
    if summary["ct2_float32_equals_transformers"]:
        agreement = ", ".join(
            f"{k}: {v:.1%}" for k, v in summary["ct2_float32_equals_transformers"].items()
        )
        print(f"ct2 float32 output identical to transformers float32: {agreement} of sentences")
    overhead = summary["run_overhead"]
    if overhead:
        print(
            f"whole run / bare engine ({overhead['system']}, beam {overhead['beam']}, terms "
            f"hard, {overhead['sentences']} sentences): {overhead['run_seconds']:.1f} s / "
            f"{overhead['bare_seconds']:.1f} s = {overhead['run_over_bare']:.3f}"
        )
        every = [run[0] for run in overhead["runs"]["run"]]
        print(f"  (the best of {len(every)}; every whole run, seconds: {every})")
    for name, target in summary["targets"].items():
        verdict = "met" if target["met"] else "NOT met"
        print(f"target {name}: {target['value']} (want {target['target']}) {verdict}")


if __name__ == "__main__":
    main()
