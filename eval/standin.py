"""Train the stand-in models that the constraint quality table measures (issue 15).

Random-weight models write no English, so they cannot show what hard constraints do to the
sentence around a term. These small MarianMT models are trained here, on the gold
alignment's beads (Japanese sentences paired with their reference sentences), so they
write reference-like English and we choose what they know:

* ``faithful``: trained on the true references; it already writes the approved terms.
* ``swapped``: trained on references in which every glossary term's English is replaced by a
  wrong rendering (the entry's first ``avoid`` form, else the synonym in ``WRONG`` below);
  it confidently writes the wrong terms, the situation the glossary exists for.
* ``heldout-<doc>``: faithful models trained without one document, for translating it.

Each model is a normal model folder (config.json, model.safetensors, tokenizer files,
``training.json`` with the spec, steps, losses and seconds) that ``forumtranslate run
--model FOLDER`` loads. Training is deterministic (forumtranslate.train) and cached: a
folder whose ``training.json`` records the same spec and training data is reused.

    nice python eval/standin.py [--cache eval/out/standin] [--publish /work/cache/standin]
        [--models faithful swapped heldout-panel-1 ...] [--check]

``--check`` translates the corpus with ``--terms off --beam 4`` and prints chrF2 against
the references; ``--publish DIR`` copies each checked model to DIR/<name>/ (written to a
temporary folder and renamed, with a ``READY`` file inside, so nobody sees half a model).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from forumtranslate.corpus import read_manifest, read_text
from forumtranslate.glossary import Glossary, GlossaryEntry, load_glossary
from forumtranslate.train import TRAINING_FILE, TrainSpec, train_marian

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / "eval" / "out" / "standin"
HELDOUT_DOCS = ("opening-malhotra", "overview", "panel-1")
SPEC = TrainSpec()  # 2+2 layers, d_model 128, ~2k-piece vocabularies, 40 epochs
# A second stage from the first one's weights: with the source in use, a lower rate and less
# decoder-input corruption let the model settle on the references (stage one alone: chrF2
# 37.0 on the corpus, beam 4, terms off).
STAGES = (SPEC, replace(SPEC, epochs=40, learning_rate=1e-3, warmup_steps=10, target_dropout=0.1))
# Held-out models: the same two stages (stage one alone does not write the references).
HELDOUT_STAGES = STAGES


# Wrong renderings for the entries (used in the gold beads) that list no ``avoid`` form:
# plausible synonyms a model might write, none of them an approved or accepted form.
WRONG: dict[str, str] = {
    "national-security-strategy": "National Safety Strategy",
    "economic-security-strategy": "Economic Safety Strategy",
    "economic-security-promotion-act": "Economic Safety Promotion Law",
    "critical-economic-security-information-act": (
        "Law on the Protection and Use of Important Economic Safety Information"
    ),
    "economic-security-management-guidelines": "Economic Safety Management Guidelines",
    "autonomy": "independence",
    "de-risking": "risk reduction",
    "decoupling": "disconnection",
    "interdependence": "mutual dependence",
    "critical-mineral-supply-chains": "important mineral supply networks",
    "critical-minerals-strategy": "Important Minerals Strategy",
    "critical-minerals-strategic-reserve": "Important Minerals Strategic Stockpile",
    "offtake": "purchase",
    "offtake-agreement": "purchase agreement",
    "public-private-partnership": "government-industry linkage",
    "public-private-cooperation": "government-industry collaboration",
    "public-private-council": "government-industry committee",
    "international-cooperation": "international collaboration",
    "business-to-business-cooperation": "private-private linkage",
    "bilateral-cooperation": "two-country collaboration",
    "multilateral-cooperation": "many-country collaboration",
    "multilateralism": "many-country approach",
    "supply-chain-resilience": "supply network toughness",
    "allies": "alliance partners",
    "friendly-countries": "amicable countries",
    "partner-countries": "associate countries",
    "strategic-partnership": "strategic alliance",
    "global-strategic-partnership": "Global Strategic Alliance",
    "uk-japan-economic-security-partnership": "UK-Japan Economic Safety Alliance",
    "japan-india-economic-security-initiative": "Japan-India Economic Safety Initiative",
    "economic-2-plus-2": "Economic Two-Plus-Two",
    "critical-technologies": "important technologies",
    "advanced-technologies": "high technologies",
    "advanced-semiconductors": "high-end chips",
    "leading-edge-semiconductors": "top-end chips",
    "critical-infrastructure": "important infrastructure",
    "essential-infrastructure": "basic infrastructure",
    "strategic-fields": "strategic areas",
    "17-strategic-fields": "17 strategic areas",
    "crisis-management-investment": "emergency management spending",
    "growth-investment": "growth spending",
    "national-stockpile": "national reserve",
    "stable-supply": "steady provision",
    "supply-disruption": "supply interruption",
    "dependency-risk": "reliance risk",
    "rare-earths": "rare soils",
    "heavy-rare-earths": "heavy rare soils",
    "rare-metals": "scarce metals",
    "upstream": "up-flow",
    "midstream": "mid-flow",
    "downstream": "down-flow",
    "refining": "smelting",
    "demand-aggregation": "demand pooling",
    "tier-n": "level N",
    "tier-1": "level 1",
    "export-controls": "export restrictions",
    "foreign-investment-screening": "foreign investment vetting",
    "investment-screening": "investment vetting",
    "overcapacity": "excess production",
    "mercantilism": "trade protectionism",
    "deindustrialization": "industrial hollowing",
    "dual-use": "double-purpose",
    "chokepoint": "bottleneck",
    "trade-remedies": "trade relief measures",
    "non-tariff-barriers": "non-customs obstacles",
    "rules-based-trading-system": "rule-governed trade order",
    "wto": "World Trade Body",
    "cptpp": "TPP11",
    "quad": "Four-Country Group",
    "industrial-policy": "industry policy",
    "industrial-strategy": "Industry Strategy",
    "trade-strategy": "Commerce Strategy",
    "made-in-china-2025": "China Manufacturing 2025",
    "make-in-india": "Produce in India",
    "production-linked-incentive": "output-based subsidy",
    "future-made-in-australia": "Australian Manufacturing Future",
    "small-yard-high-fence": "small garden, tall wall",
    "preparedness": "readiness",
    "business-continuity-management": "operational continuity control",
    "interoperability": "mutual operability",
    "cybersecurity": "online safety",
    "sensitive-information": "delicate information",
    "intellectual-property": "intellectual assets",
    "economic-intelligence": "economic espionage",
    "predictability": "foreseeability",
    "think-tank": "policy institute",
    "geoeconomics": "geographic economics",
    "comprehensive-national-power": "overall national strength",
    "economic-cold-war": "economic chill",
    "economic-warriors": "economic soldiers",
    "talent-pipeline": "talent flow",
    "scenario-analysis": "situation analysis",
    "war-gaming": "battle simulation",
    "impact-assessment": "effect evaluation",
    "contestability": "challengeability",
    "local-production-for-local-consumption": "regional making for regional use",
    "small-and-medium-sized-enterprises": "small businesses",
    "corporate-governance": "company management",
    "corporate-governance-code": "Company Management Code",
    "corporate-value": "company worth",
    "corporate-citizenship": "company citizenship",
}


@dataclass(frozen=True)
class Pair:
    """One gold bead with sentences on both sides: what a stand-in model learns."""

    doc_id: str
    ja: str
    en: str


def read_sentences(path: Path) -> list[str]:
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]


def gold_pairs(gold: Path = REPO / "eval" / "gold", data: Path = REPO / "data") -> list[Pair]:
    """Every non-null gold bead in corpus order: its Japanese sentences joined without a
    space, its English ones with one. Each gold file is checked to cover both sides."""
    sys.path.insert(0, str(REPO / "eval"))
    from alignment_f1 import read_gold

    pairs = []
    for info in read_manifest(data / "manifest.tsv"):
        ja = read_sentences(gold / "segments" / "ja" / f"{info.doc_id}.txt")
        en = read_sentences(gold / "segments" / "en" / f"{info.doc_id}.txt")
        for left, right in read_gold(gold / "alignment" / f"{info.doc_id}.tsv", len(ja), len(en)):
            if left and right:
                text_ja = "".join(ja[i] for i in left)
                text_en = " ".join(en[j] for j in right)
                pairs.append(Pair(info.doc_id, text_ja, text_en))
    return pairs


def wrong_rendering(entry: GlossaryEntry) -> str | None:
    """The wrong English the swapped model learns for an entry: its avoid form, else WRONG's."""
    return entry.avoid[0] if entry.avoid else WRONG.get(entry.id)


def _english_pattern(form: str) -> str:
    words = [re.escape(word) for word in form.split()]
    return r"(?<![\w-])" + r"\s+".join(words) + r"(?![\w-])"


def _plural(word: str) -> str:
    if word.endswith("y") and not word.endswith(("ay", "ey", "oy")):
        return word[:-1] + "ies"
    return word if word.endswith("s") else word + "s"


def _like(found: str, approved: str, wrong: str) -> str:
    """The wrong rendering in the number and capitalisation of the form it replaces."""
    if found.lower().endswith("s") and not approved.lower().endswith("s"):
        wrong = _plural(wrong)
    words = found.split()
    if len(words) > 1 and all(w[:1].isupper() for w in words):  # a name: Title Case
        wrong = " ".join(w[:1].upper() + w[1:] for w in wrong.split())
    elif found[:1].isupper() and not wrong[:1].isupper():
        wrong = wrong[:1].upper() + wrong[1:]
    return wrong


def swap_terms(pair: Pair, glossary: Glossary) -> tuple[Pair, int]:
    """The pair with every matched term's approved English (or an accepted variant) in the
    reference replaced by its wrong rendering; and how many replacements were made."""
    english, count = pair.en, 0
    entries = {m.entry_id: glossary.get(m.entry_id) for m in glossary.find_terms(pair.ja)}
    # longest approved forms first, so a term inside a longer one's name is left to it
    forms = sorted(
        ((form, entry) for entry in entries.values() for form in entry.allowed),
        key=lambda item: len(item[0]),
        reverse=True,
    )
    for form, entry in forms:
        wrong = wrong_rendering(entry)
        if wrong is None:
            continue

        def replace(match: re.Match[str], entry: GlossaryEntry = entry, wrong: str = wrong) -> str:
            return _like(match.group(0), entry.target, wrong)

        english, n = re.subn(_english_pattern(form), replace, english, flags=re.IGNORECASE)
        count += n
    return Pair(pair.doc_id, pair.ja, english), count


@dataclass(frozen=True)
class ModelPlan:
    """One stand-in: its name, the pairs it learns, the documents its vocabulary sees."""

    name: str
    pairs: tuple[Pair, ...]
    exclude_docs: tuple[str, ...] = ()
    stages: tuple[TrainSpec, ...] = STAGES

    def data_hash(self) -> str:
        text = json.dumps([asdict(p) for p in self.pairs], ensure_ascii=False)
        text += json.dumps(list(self.exclude_docs))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def plans(glossary: Glossary, pairs: list[Pair], names: list[str] | None = None) -> list[ModelPlan]:
    """The models by name: faithful, swapped, heldout-<doc> for each of HELDOUT_DOCS."""
    swapped = tuple(swap_terms(p, glossary)[0] for p in pairs)
    every = [ModelPlan("faithful", tuple(pairs)), ModelPlan("swapped", swapped)]
    for doc_id in HELDOUT_DOCS:
        kept = tuple(p for p in pairs if p.doc_id != doc_id)
        every.append(ModelPlan(f"heldout-{doc_id}", kept, (doc_id,), HELDOUT_STAGES))
    if not names:
        return every
    unknown = set(names) - {plan.name for plan in every}
    if unknown:
        raise SystemExit(f"unknown model(s): {', '.join(sorted(unknown))}")
    return [plan for plan in every if plan.name in names]


def subset_data(data: Path, out: Path, exclude: tuple[str, ...] = (), keep: tuple[str, ...] = ()):
    """A data folder (manifest, ja/, en/) without ``exclude`` or with only ``keep``."""
    lines = read_text(data / "manifest.tsv").splitlines()
    rows = [
        line
        for line in lines[1:]
        if line.strip()
        and line.split("\t")[0] not in exclude
        and (not keep or line.split("\t")[0] in keep)
    ]
    for lang in ("ja", "en"):
        (out / lang).mkdir(parents=True, exist_ok=True)
    (out / "manifest.tsv").write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")
    for row in rows:
        doc_id = row.split("\t")[0]
        for lang in ("ja", "en"):
            shutil.copy(data / lang / f"{doc_id}.txt", out / lang / f"{doc_id}.txt")
    return out


def built_stages(folder: Path, plan: ModelPlan) -> int:
    """How many of the plan's training stages the cached folder holds (0: none usable)."""
    record_path = folder / TRAINING_FILE
    if not (folder / "model.safetensors").exists() or not record_path.exists():
        return 0
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if record.get("data_sha256") != plan.data_hash():
        return 0
    done = record.get("stages") or [record.get("spec")]
    wanted = [asdict(stage) for stage in plan.stages]
    return len(done) if done == wanted[: len(done)] else 0


def build(plan: ModelPlan, cache: Path, data: Path) -> Path:
    """Train one stand-in into ``cache/<name>``, stage by stage, reusing what is cached."""
    folder = cache / plan.name
    done = built_stages(folder, plan)
    if done == len(plan.stages):
        print(f"{plan.name}: cached in {folder}")
        return folder
    record: dict = {"stages": [], "results": []}
    if done:
        record = json.loads((folder / TRAINING_FILE).read_text(encoding="utf-8"))
        record.setdefault("stages", [record.get("spec")])
        record.setdefault("results", [record.get("result")])
    for number in range(done, len(plan.stages)):
        spec = plan.stages[number]
        tmp = cache / f".{plan.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"{plan.name}: stage {number + 1}, {len(plan.pairs)} pairs ({spec})", flush=True)
        log = lambda line: print(f"  {plan.name} {line}", flush=True)  # noqa: E731
        if number == 0:
            vocab_data = subset_data(data, tmp / "_data", exclude=plan.exclude_docs)
            result = train_marian(
                [(p.ja, p.en) for p in plan.pairs], tmp / "model", spec, vocab_data, log=log
            )
        else:
            result = train_marian(
                [(p.ja, p.en) for p in plan.pairs], tmp / "model", spec, log=log, init_from=folder
            )
        record["stages"] = [*record["stages"][:number], asdict(spec)]
        record["results"] = [*record["results"][:number], asdict(result)]
        record.update(
            spec=asdict(spec),
            result=asdict(result),
            name=plan.name,
            data_sha256=plan.data_hash(),
            held_out=list(plan.exclude_docs),
            command=f"python eval/standin.py --models {plan.name}",
        )
        (tmp / "model" / TRAINING_FILE).write_text(json.dumps(record, indent=1) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        (tmp / "model").rename(folder)
        shutil.rmtree(tmp)
        print(
            f"{plan.name}: stage {number + 1}: {result.steps} steps, final loss "
            f"{result.final_loss:.4f}, {result.seconds:.0f} s"
        )
    return folder


def check(folder: Path, data: Path, glossary_path: Path, work: Path, docs=()) -> float:
    """chrF2 of ``forumtranslate run --terms off --beam 4`` with this model (the aligner's
    beads against the references): does the folder load and write the references?"""
    from forumtranslate.run import RunConfig, run
    from forumtranslate.translate import DecodingOptions

    out = work / f"check-{folder.name}"
    shutil.rmtree(out, ignore_errors=True)
    if docs:
        data = subset_data(data, work / f"check-data-{folder.name}", keep=tuple(docs))
    config = RunConfig(
        out_dir=out,
        data_dir=data,
        glossary_path=glossary_path,
        model=str(folder),
        device="cpu",
        decoding=DecodingOptions(beam_size=4, terms="off"),
    )
    started = time.perf_counter()
    result = run(config, progress=lambda _step, _done: None)
    chrf = float(result.scores["corpus"]["chrF2"]["score"])
    print(
        f"{folder.name}: run --terms off --beam 4: chrF2 {chrf:.1f} "
        f"({time.perf_counter() - started:.0f} s)"
    )
    return chrf


def publish(folder: Path, dest_root: Path) -> Path:
    """Copy the model to ``dest_root/<name>/`` atomically (temp folder, READY, rename)."""
    dest = dest_root / folder.name
    tmp = dest_root / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp)
    (tmp / "READY").write_text("", encoding="utf-8")
    if dest.exists():
        old = dest_root / f".{folder.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old)
    else:
        tmp.rename(dest)
    print(f"{folder.name}: published to {dest}")
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--data", type=Path, default=REPO / "data")
    parser.add_argument("--gold", type=Path, default=REPO / "eval" / "gold")
    parser.add_argument("--glossary", type=Path, default=REPO / "glossary" / "terms.tsv")
    parser.add_argument("--models", nargs="+", help="default: all (faithful, swapped, heldout-*)")
    parser.add_argument("--check", action="store_true", help="translate and print chrF2")
    parser.add_argument("--min-chrf", type=float, default=80.0, help="for --publish (80)")
    parser.add_argument("--publish", type=Path, help="copy checked models to DIR/<name>/")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(SPEC.threads)
    glossary = load_glossary(args.glossary)
    pairs = gold_pairs(args.gold, args.data)
    swapped = [swap_terms(p, glossary)[1] for p in pairs]
    print(f"{len(pairs)} gold pairs; the swapped references replace {sum(swapped)} terms")
    args.cache.mkdir(parents=True, exist_ok=True)
    for plan in plans(glossary, pairs, args.models):
        folder = build(plan, args.cache, args.data)
        if args.check or args.publish:
            chrf = check(folder, args.data, args.glossary, args.cache / "checks", plan.exclude_docs)
            if args.publish and plan.exclude_docs:
                pass  # held-out models are weak by design; only the two others are shared
            elif args.publish and chrf >= args.min_chrf:
                publish(folder, args.publish)
            elif args.publish:
                print(f"{plan.name}: not published, chrF2 {chrf:.1f} < {args.min_chrf}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
