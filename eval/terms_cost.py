"""What hard glossary constraints cost, from two runs of the same model: --terms off and hard.

    python eval/terms_cost.py runs/model-off runs/model-hard [--glossary glossary/terms.tsv]

Prints, from the runs' own files (translations.jsonl, and scores.json where the runs were
scored):

* chrF2 and BLEU of each run, and term accuracy as decoded and after enforcement;
* the share of term occurrences whose ``how`` is decoded / edited / appended / missing in
  the hard run;
* the sentences with terms whose off translation already held every term (and no avoided
  rendering), and how many of them the hard run changed (the target is none);
* the share of sentences with terms where the constraints had to act: the off translation
  missed a term or wrote an avoided rendering, so the transformers backend decoded the
  sentence again with the constraint bank, and the ct2 backend edited it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from forumtranslate.glossary import TermMatcher, load_glossary


def records(run: Path) -> list[dict]:
    lines = (run / "translations.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def scores(run: Path) -> dict:
    path = run / "scores.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("off", type=Path)
    parser.add_argument("hard", type=Path)
    parser.add_argument("--glossary", type=Path, default=Path("glossary/terms.tsv"))
    args = parser.parse_args()
    glossary = load_glossary(args.glossary)
    off, hard = records(args.off), records(args.hard)
    assert [r["seg_id"] for r in off] == [r["seg_id"] for r in hard], "different corpora"

    for name, run in (("off", args.off), ("hard", args.hard)):
        s = scores(run)
        if s:
            corpus, terms = s["corpus"], s["terminology"]
            print(
                f"{name:4}: chrF2 {corpus['chrF2']['score']:.2f}"
                f"  BLEU {corpus['BLEU']['score']:.2f}"
                f"  terms {terms['found']}/{terms['total']}"
                + (
                    f" (as decoded {terms['decoded']}, edited {terms['edited']}, "
                    f"appended {terms['appended']}, lemma-tolerant {terms['lemma_found']}, "
                    f"consistent {terms['consistency']['consistent']}/"
                    f"{terms['consistency']['repeated']})"
                    if "decoded" in terms
                    else ""
                )
            )

    how = [t.get("how", "decoded" if t["found"] else "missing") for r in hard for t in r["terms"]]
    total = len(how)
    print(f"term occurrences: {total}")
    for value in ("decoded", "edited", "appended", "missing"):
        n = how.count(value)
        print(f"  {value:9} {n:5}  {100 * n / max(1, total):5.1f}%")

    with_terms = [k for k, r in enumerate(off) if r["terms"]]
    acted, kept, kept_changed, changed = [], [], [], []
    for k in with_terms:
        matches = glossary.find_terms(off[k]["source"])
        text = off[k]["translation"]
        matcher = TermMatcher(matches)
        if all(matcher.found(text)) and not matcher.avoided(text):
            kept.append(k)
            if hard[k]["translation"] != text:
                kept_changed.append(k)
        else:
            acted.append(k)
        if hard[k]["translation"] != text:
            changed.append(k)
    n = len(with_terms)
    print(f"sentences: {len(off)}, with terms: {n}")
    print(
        f"  off already held every term: {len(kept)}; of these changed by hard: {len(kept_changed)}"
    )
    print(
        f"  the constraints had to act (off missed a term or wrote an avoided one): "
        f"{len(acted)} = {100 * len(acted) / max(1, n):.1f}% of sentences with terms"
    )
    print(f"  changed by hard: {len(changed)}")
    for k in kept_changed[:5]:
        print(f"    {off[k]['seg_id']}: off {off[k]['translation']!r}")
        print(f"    {' ' * len(off[k]['seg_id'])}  hard {hard[k]['translation']!r}")


if __name__ == "__main__":
    main()
