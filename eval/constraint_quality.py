"""What hard constraints do to the English around the terms, on trained stand-in models.

For each stand-in model (eval/standin.py: faithful, swapped, held-out) × backend
(transformers, ct2) × terms (off, hard) × beam (1, 4), the corpus is translated by
``forumtranslate.run`` (whatever ``forumtranslate`` is on PYTHONPATH), aligned with the
references and scored with sacrebleu. Reported per row:

* BLEU and chrF2 against the true references, on the aligner's beads (as ``scores.json``);
* term accuracy (the records' ``found``), split by how each term got there when the records
  carry a per-term ``how`` (decoded / edited / appended), else "n/a";
* changed: sentences whose hard output differs from the off output of the same setting;
* repeated: terms rendered more often in the hard output than both the source has them and
  the off output renders them (a term forced in beside the model's own rendering);
* seconds: wall time of translating (model loading and ct2 conversion excluded).

Baselines per model: ``oracle`` (the true references, put through the same pipeline) and
``sed`` (the off output with every wrong rendering replaced by the approved term with a
regular expression, as a user would with sed). Prints a table and the targets of issue 15,
and writes JSON (``--json``, default eval/results/constraint_quality.json).

    nice python eval/constraint_quality.py [--standin eval/out/standin] [--models ...]
        [--backends transformers ct2] [--beams 1 4] [--json PATH]
    python eval/constraint_quality.py --markdown eval/results/constraint_quality.json

Models missing from the cache are trained first (eval/standin.py, deterministic).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "eval"))

import standin  # noqa: E402  (eval/standin.py, beside this script)

from forumtranslate.glossary import Glossary, GlossaryEntry, load_glossary  # noqa: E402

HOWS = ("decoded", "edited", "appended")


# --- independent term counting --------------------------------------------------------


def renderings(entry: GlossaryEntry) -> list[str]:
    """Every English form of an entry: approved, accepted, avoided, and the swapped model's."""
    forms = [*entry.allowed, *entry.avoid]
    wrong = standin.wrong_rendering(entry)
    if wrong:
        forms.append(wrong)
    return sorted({f.lower() for f in forms}, key=len, reverse=True)


def count_renderings(text: str, entry: GlossaryEntry) -> int:
    """How many times any rendering of the entry stands in ``text`` (whole words)."""
    pattern = "|".join(
        r"(?<![\w-])" + r"\s+".join(map(re.escape, form.split())) + r"(?![\w-])"
        for form in renderings(entry)
    )
    return len(re.findall(pattern, text, re.IGNORECASE))


def sed_replace(text: str, glossary: Glossary) -> str:
    """The off output with every wrong rendering (avoid forms, else the swapped model's)
    replaced by the approved term, longest first, in the found form's case and number."""
    rules: list[tuple[str, str]] = []  # (wrong form, its replacement)
    for entry in glossary.entries:
        listed = [form for form in entry.avoid or (standin.WRONG.get(entry.id, ""),) if form]
        plural_target = _plural_phrase(entry.target)
        for form in listed:
            is_plural = form.endswith("s") and form[:-1] in listed
            rules.append((form, plural_target if is_plural else entry.target))
            plural = _plural_phrase(form)
            if plural not in listed and plural != form:
                rules.append((plural, plural_target))
    for form, target in sorted(rules, key=lambda rule: len(rule[0]), reverse=True):
        text = re.sub(
            standin._english_pattern(form),
            lambda match, target=target: _case_like(match.group(0), target),
            text,
            flags=re.IGNORECASE,
        )
    return text


def _plural_phrase(phrase: str) -> str:
    words = phrase.split()
    return " ".join([*words[:-1], standin._plural(words[-1])])


def _case_like(found: str, text: str) -> str:
    words = found.split()
    if len(words) > 1 and all(w[:1].isupper() for w in words):
        return " ".join(w[:1].upper() + w[1:] for w in text.split())
    if found[:1].isupper():
        return text[:1].upper() + text[1:]
    return text


# --- one run ---------------------------------------------------------------------------


def translate_run(
    out: Path, model: Path, data: Path, glossary_path: Path, backend: str, beam: int, terms: str
) -> dict[str, Any]:
    """Translate with ``forumtranslate.run``, then align and score; the row's raw figures."""
    from forumtranslate.run import RunConfig, make_translator, run
    from forumtranslate.translate import DecodingOptions

    shutil.rmtree(out, ignore_errors=True)
    config = RunConfig(
        out_dir=out,
        data_dir=data,
        glossary_path=glossary_path,
        model=str(model),
        backend=backend,
        device="cpu",
        decoding=DecodingOptions(beam_size=beam, terms=terms),
        align_and_score=False,
        intra_threads=1,
    )
    translator = make_translator(config)  # loading (and ct2's conversion) not timed
    started = time.perf_counter()
    run(config, translator=translator, progress=lambda _step, _done: None)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), **score_folder(out, data)}


def score_folder(out: Path, data: Path) -> dict[str, Any]:
    from forumtranslate.align import align_run, read_translations
    from forumtranslate.score import score_run

    align_run(out, data)
    scores = score_run(out)
    records = read_translations(out)
    return {
        "BLEU": round(scores["corpus"]["BLEU"]["score"], 2),
        "chrF2": round(scores["corpus"]["chrF2"]["score"], 2),
        "records": records,
    }


def write_baseline(out: Path, data: Path, glossary: Glossary, translations: list[str]) -> dict:
    """A run folder holding given translations of the corpus's segments, aligned and scored."""
    from forumtranslate.run import prepare_sources, write_translations

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sources = prepare_sources(data, glossary)
    write_translations(out, sources, translations)
    return score_folder(out, data)


def oracle_translations(data: Path, glossary: Glossary, pairs: list[standin.Pair]) -> list[str]:
    """The true reference of each segment: the gold bead whose Japanese holds the segment
    (its English given to the first such segment), or the beads a segment holds."""
    from forumtranslate.run import prepare_sources

    sources = prepare_sources(data, glossary)
    out = [""] * len(sources)
    used: set[int] = set()
    for k, source in enumerate(sources):
        seg = source.segment
        doc_pairs = [(i, p) for i, p in enumerate(pairs) if p.doc_id == seg.doc_id]
        inside = [i for i, p in doc_pairs if seg.text.strip() in p.ja]
        if inside:
            if inside[0] not in used:
                out[k] = pairs[inside[0]].en
                used.add(inside[0])
            continue
        held = [i for i, p in doc_pairs if p.ja in seg.text and i not in used]
        out[k] = " ".join(pairs[i].en for i in held)
        used.update(held)
    return out


# --- figures of a row --------------------------------------------------------------------


def term_figures(records: list[dict[str, Any]]) -> dict[str, Any]:
    total = found = 0
    hows: Counter[str] = Counter()
    has_how = False
    for record in records:
        for term in record.get("terms") or ():
            total += 1
            found += bool(term.get("found"))
            if "how" in term:
                has_how = True
                if term.get("found"):
                    hows[str(term["how"])] += 1
    figures: dict[str, Any] = {
        "n_terms": total,
        "found": found,
        "accuracy": round(100 * found / total, 2) if total else None,
    }
    for how in HOWS:
        figures[how] = round(100 * hows[how] / total, 2) if has_how and total else "n/a"
    return figures


def compare_to_off(
    hard: list[dict[str, Any]], off: list[dict[str, Any]], glossary: Glossary
) -> dict[str, Any]:
    """Sentences changed by the constraints, and terms rendered more often than needed."""
    changed = repeated = counted = 0
    examples = []
    for h, o in zip(hard, off, strict=True):
        assert (h["doc_id"], h["seg_id"]) == (o["doc_id"], o["seg_id"])
        changed += h["translation"] != o["translation"]
        in_source = Counter(t["entry_id"] for t in h.get("terms") or ())
        for entry_id, n_source in in_source.items():
            entry = glossary.get(entry_id)
            counted += 1
            n_hard = count_renderings(h["translation"], entry)
            if n_hard > max(n_source, count_renderings(o["translation"], entry)):
                repeated += 1
                if len(examples) < 3:
                    examples.append(
                        {"entry": entry_id, "off": o["translation"], "hard": h["translation"]}
                    )
    # the changed sentences that moved furthest from the off output (chrF2 of hard against off)
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    moved = sorted(
        (metric.sentence_score(h["translation"], [o["translation"]]).score, k)
        for k, (h, o) in enumerate(zip(hard, off, strict=True))
        if h["translation"] != o["translation"]
    )
    changed_examples = [
        {
            "seg_id": hard[k]["seg_id"],
            "terms": [t["target"] for t in hard[k].get("terms") or ()],
            "off": off[k]["translation"],
            "hard": hard[k]["translation"],
            "chrF2_hard_vs_off": round(score, 1),
        }
        for score, k in moved[:3]
    ]
    return {
        "changed_examples": changed_examples,
        "changed": changed,
        "sentences": len(hard),
        "repeated": repeated,
        "repeated_rate": round(100 * repeated / counted, 2) if counted else None,
        "repeated_examples": examples,
    }


# --- the whole table -------------------------------------------------------------------


def measure_model(
    name: str,
    folder: Path,
    data: Path,
    glossary_path: Path,
    glossary: Glossary,
    pairs: list[standin.Pair],
    work: Path,
    backends: list[str],
    beams: list[int],
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    oracle = write_baseline(
        work / "oracle", data, glossary, oracle_translations(data, glossary, pairs)
    )
    rows.append(_row(name, "-", "-", "oracle", oracle))
    saved = work / "rows.json"  # rewritten after every row: an interrupted table keeps its rows
    for beam in beams:
        for backend in backends:
            runs = {}
            for terms in ("off", "hard"):
                out = work / f"{backend}-beam{beam}-{terms}"
                runs[terms] = translate_run(out, folder, data, glossary_path, backend, beam, terms)
                row = _row(name, backend, beam, terms, runs[terms])
                if terms == "hard":
                    row.update(
                        compare_to_off(runs["hard"]["records"], runs["off"]["records"], glossary)
                    )
                rows.append(row)
                saved.write_text(json.dumps(rows, ensure_ascii=False) + "\n", encoding="utf-8")
                print(_format_row(row), flush=True)
            sed = [sed_replace(r["translation"], glossary) for r in runs["off"]["records"]]
            result = write_baseline(work / f"{backend}-beam{beam}-sed", data, glossary, sed)
            row = _row(name, backend, beam, "off+sed", result)
            row.update(compare_to_off(result["records"], runs["off"]["records"], glossary))
            row["seconds"] = runs["off"]["seconds"]
            rows.append(row)
            saved.write_text(json.dumps(rows, ensure_ascii=False) + "\n", encoding="utf-8")
            print(_format_row(row), flush=True)
    return rows


def _row(model: str, backend: str, beam: Any, terms: str, result: dict[str, Any]) -> dict:
    return {
        "model": model,
        "backend": backend,
        "beam": beam,
        "terms": terms,
        "BLEU": result["BLEU"],
        "chrF2": result["chrF2"],
        **term_figures(result["records"]),
        "seconds": result.get("seconds"),
        "outputs": [r["translation"] for r in result["records"]],
    }


COLUMNS = (
    ("model", 22),
    ("backend", 12),
    ("beam", 4),
    ("terms", 7),
    ("BLEU", 6),
    ("chrF2", 6),
    ("accuracy", 8),
    ("decoded", 7),
    ("edited", 6),
    ("appended", 8),
    ("changed", 7),
    ("repeated", 8),
    ("seconds", 7),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _format_row(row: dict[str, Any]) -> str:
    cells = []
    for key, width in COLUMNS:
        value = row.get(key)
        if key == "changed" and value is not None:
            value = f"{value}/{row['sentences']}"
        if key == "repeated" and value is not None:
            value = f"{value}"
        cells.append(
            _cell(value).rjust(width)
            if key not in ("model", "backend", "terms")
            else _cell(value).ljust(width)
        )
    return "  ".join(cells)


def header() -> str:
    return "  ".join(
        k.rjust(w) if k not in ("model", "backend", "terms") else k.ljust(w) for k, w in COLUMNS
    )


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """Issue 15's targets, each met or not, with the figures."""

    def get(model: str, backend: str, beam: int, terms: str) -> dict[str, Any] | None:
        for row in rows:
            if (row["model"], row["backend"], row["beam"], row["terms"]) == (
                model,
                backend,
                beam,
                terms,
            ):
                return row
        return None

    lines = []
    backends = sorted({r["backend"] for r in rows if r["backend"] != "-"})
    beams = sorted({r["beam"] for r in rows if r["beam"] != "-"})
    for backend in backends:
        for beam in beams:
            off, hard = (
                get("faithful", backend, beam, "off"),
                get("faithful", backend, beam, "hard"),
            )
            if off and hard:
                drop = hard["chrF2"] - off["chrF2"]
                met = drop >= -0.5 and hard["repeated"] == 0
                lines.append(
                    f"faithful {backend} beam {beam}: hard - off = {drop:+.2f} chrF2, "
                    f"{hard['repeated']} repeated terms -> {'met' if met else 'NOT met'}"
                )
            s_off, s_hard = (
                get("swapped", backend, beam, "off"),
                get("swapped", backend, beam, "hard"),
            )
            sed = get("swapped", backend, beam, "off+sed")
            if off and s_off and s_hard and sed:
                gap = off["chrF2"] - s_off["chrF2"]
                rec = (s_hard["chrF2"] - s_off["chrF2"]) / gap if gap else float("nan")
                rec_sed = (sed["chrF2"] - s_off["chrF2"]) / gap if gap else float("nan")
                decoded = s_hard["decoded"]
                decoded_text = (
                    f"decoded {decoded:.1f}%"
                    if decoded != "n/a"
                    else f"found {s_hard['accuracy']:.1f}% (how: n/a)"
                )
                if backend == "transformers":
                    ok = rec >= 0.9 and (
                        decoded == 100.0 or (decoded == "n/a" and s_hard["accuracy"] == 100.0)
                    )
                    goal = "decoded 100% and recovery >= 90%"
                else:
                    ok = rec >= rec_sed
                    goal = "recovery >= sed's"
                lines.append(
                    f"swapped {backend} beam {beam}: chrF2 off {s_off['chrF2']:.1f}, hard "
                    f"{s_hard['chrF2']:.1f}, sed {sed['chrF2']:.1f}, "
                    f"faithful off {off['chrF2']:.1f}; "
                    f"gap recovered {100 * rec:.0f}% (sed {100 * rec_sed:.0f}%), {decoded_text} "
                    f"-> {goal}: {'met' if ok else 'NOT met'}"
                )
    held = sorted({r["model"] for r in rows if r["model"].startswith("heldout-")})
    for backend in backends:
        for beam in beams:
            diffs = []
            for model in held:
                off, hard = get(model, backend, beam, "off"), get(model, backend, beam, "hard")
                if off and hard:
                    diffs.append((model, hard["chrF2"] - off["chrF2"]))
            if diffs:
                mean = sum(d for _, d in diffs) / len(diffs)
                per_doc = ", ".join(f"{m.removeprefix('heldout-')} {d:+.2f}" for m, d in diffs)
                lines.append(
                    f"held-out {backend} beam {beam}: hard - off = {mean:+.2f} chrF2 on average "
                    f"({per_doc}) -> {'met' if mean >= 0 else 'NOT met'}"
                )
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The README's table, from the JSON this script wrote (``--markdown PATH``)."""
    lines = [
        "| model | backend | beam | terms | BLEU | chrF2 | term acc. % | decoded / edited /"
        " appended % | changed | repeated | seconds |",
        "|---|---|---:|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in result["rows"]:
        how = " / ".join(_cell(row.get(k)) for k in HOWS)
        changed = f"{row['changed']}/{row['sentences']}" if row.get("changed") is not None else "-"
        cells = [
            row["model"],
            row["backend"],
            row["beam"],
            row["terms"],
            row["BLEU"],
            row["chrF2"],
            row["accuracy"],
            how,
            changed,
            row.get("repeated", "-"),
            row.get("seconds"),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> int:
    if sys.argv[1:2] == ["--markdown"]:
        print(markdown(json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--standin", type=Path, default=standin.DEFAULT_CACHE, help="model cache")
    parser.add_argument("--data", type=Path, default=REPO / "data")
    parser.add_argument("--gold", type=Path, default=REPO / "eval" / "gold")
    parser.add_argument("--glossary", type=Path, default=REPO / "glossary" / "terms.tsv")
    parser.add_argument("--models", nargs="+", help="default: faithful, swapped, heldout-*")
    parser.add_argument("--backends", nargs="+", default=["transformers", "ct2"])
    parser.add_argument("--beams", nargs="+", type=int, default=[4, 1], help="in this order")
    parser.add_argument("--work", type=Path, default=REPO / "eval" / "out" / "constraint_quality")
    parser.add_argument(
        "--json", type=Path, default=REPO / "eval" / "results" / "constraint_quality.json"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="take a model's rows from an earlier invocation's --work folder if there",
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    glossary = load_glossary(args.glossary)
    pairs = standin.gold_pairs(args.gold, args.data)
    rows: list[dict[str, Any]] = []
    print(header())
    for plan in standin.plans(glossary, pairs, args.models):
        work = args.work / plan.name
        saved = work / "rows.json"
        if args.reuse and saved.exists():  # measured by an earlier invocation
            rows += json.loads(saved.read_text(encoding="utf-8"))
            print(f"{plan.name}: rows of an earlier run reused from {saved}")
            continue
        folder = standin.build(plan, args.standin, args.data)
        shutil.rmtree(work, ignore_errors=True)
        data = args.data
        if plan.exclude_docs:  # a held-out model translates only the document it never saw
            data = standin.subset_data(args.data, work / "data", keep=plan.exclude_docs)
        rows += measure_model(
            plan.name, folder, data, args.glossary, glossary, pairs, work, args.backends, args.beams
        )
    print("\n" + header())
    for row in rows:
        print(_format_row(row))
    lines = targets(rows)
    print("\nTargets (issue 15):")
    for line in lines:
        print("  " + line)
    import forumtranslate

    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": "python eval/constraint_quality.py " + " ".join(sys.argv[1:]),
        "forumtranslate": forumtranslate.__version__,
        "forumtranslate_path": str(Path(forumtranslate.__file__).parent),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "training": {
            r["model"]: json.loads((args.standin / r["model"] / "training.json").read_text())
            for r in rows
            if (args.standin / r["model"] / "training.json").exists()
        },
        "targets": lines,
        "rows": [{k: v for k, v in row.items() if k != "outputs"} for row in rows],
    }
    args.json.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    outputs = args.work / "outputs.jsonl"  # every row's sentences; large, not committed
    outputs.write_text(
        "".join(
            json.dumps(
                {k: row[k] for k in ("model", "backend", "beam", "terms", "outputs")},
                ensure_ascii=False,
            )
            + "\n"
            for row in rows
        ),
        encoding="utf-8",
    )
    print(f"\nwrote {args.json} and {outputs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
