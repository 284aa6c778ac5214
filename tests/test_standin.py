"""Trained stand-in models: what hard constraints do to fluent English around the terms.

The ``standins`` fixture (conftest.py) trains two small MarianMT models on a few dozen gold
pairs: ``faithful`` learnt the true references, ``swapped`` the references with every
glossary term's English replaced by a wrong rendering. Their output is the references'
English, so a change to the decoding that damages a fluent sentence shows here as lost
chrF, and a term forced in beside the model's own rendering as a repeated term.

The targets are issue 15's: on the faithful model, hard within 0.5 chrF of off and no term
repeated; on the swapped model, every term decoded by the search and at least 90% of the
chrF gap to the faithful model recovered. The one the decoder still misses (the gap) is
marked xfail(strict) with the reason.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from tests.conftest import GLOSSARY, load_eval_script

pytestmark = pytest.mark.slow


def chrf(records: list[dict[str, Any]], refs: list[str]) -> float:
    from sacrebleu.metrics import CHRF

    return CHRF().corpus_score([r["translation"] for r in records], [refs]).score


def occurrences(text: str, forms: list[str]) -> int:
    """Whole-word, case-blind occurrences of any form, longest first (written here, apart
    from the glossary's own matcher, so the tests do not check it against itself)."""
    forms = sorted({f.lower() for f in forms}, key=len, reverse=True)
    pattern = "|".join(
        r"(?<![\w-])" + r"\s+".join(map(re.escape, f.split())) + r"(?![\w-])" for f in forms
    )
    return len(re.findall(pattern, text.lower()))


def entry_forms(entry_id: str) -> list[str]:
    from forumtranslate.glossary import load_glossary

    standin = load_eval_script("standin")
    entry = load_glossary(GLOSSARY).get(entry_id)
    wrong = standin.wrong_rendering(entry)
    return [*entry.allowed, *entry.avoid, *([wrong] if wrong else [])]


def repeated_terms(hard: list[dict[str, Any]], off: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(entry, hard output) where the hard output renders a term more often than both the
    source holds it and the off output renders it: a term forced in twice."""
    found = []
    for h, o in zip(hard, off, strict=True):
        for entry_id, n_source in Counter(t["entry_id"] for t in h["terms"]).items():
            forms = entry_forms(entry_id)
            if occurrences(h["translation"], forms) > max(
                n_source, occurrences(o["translation"], forms)
            ):
                found.append((entry_id, h["translation"]))
    return found


# --- the fixture is what it claims -------------------------------------------------------


def test_faithful_standin_writes_the_references(standins) -> None:
    off = standins.translate("faithful")
    assert chrf(off, [p.en for p in standins.pairs]) > 90
    terms = [t for r in off for t in r["terms"]]
    assert len(terms) >= 24 and sum(t["found"] for t in terms) / len(terms) > 0.9


def test_swapped_standin_writes_the_wrong_terms(standins) -> None:
    from forumtranslate.glossary import load_glossary

    standin = load_eval_script("standin")
    glossary = load_glossary(GLOSSARY)
    off = standins.translate("swapped")
    assert chrf(off, [p.en for p in standins.swapped_pairs]) > 90
    # the entries the swap changed: those with a wrong rendering (names without an avoid
    # form, such as most organisations and people, are learnt as they are)
    terms = [
        (t, r["translation"])
        for r in off
        for t in r["terms"]
        if standin.wrong_rendering(glossary.get(t["entry_id"]))
    ]
    assert len(terms) >= 12
    assert sum(t["found"] for t, _ in terms) / len(terms) < 0.2
    wrong = [
        occurrences(text, [standin.wrong_rendering(glossary.get(t["entry_id"]))]) > 0
        for t, text in terms
    ]
    assert sum(wrong) / len(wrong) > 0.8


# --- issue 15's targets ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["transformers", "ct2"])
def test_faithful_hard_keeps_chrf_within_half_a_point(standins, backend: str) -> None:
    refs = [p.en for p in standins.pairs]
    off = chrf(standins.translate("faithful", backend, "off"), refs)
    hard = chrf(standins.translate("faithful", backend, "hard"), refs)
    assert hard >= off - 0.5, f"{backend}: chrF2 off {off:.1f}, hard {hard:.1f}"


@pytest.mark.parametrize("backend", ["transformers", "ct2"])
def test_faithful_hard_repeats_no_term(standins, backend: str) -> None:
    hard = standins.translate("faithful", backend, "hard")
    off = standins.translate("faithful", backend, "off")
    assert repeated_terms(hard, off) == []


def test_swapped_hard_decodes_every_term(standins) -> None:
    hard = standins.translate("swapped", "transformers", "hard")
    for record in hard:
        for term in record["terms"]:
            assert term["found"], (term["entry_id"], record["translation"])
            # the transformers backend places terms only by search: the record says so
            assert term.get("how", "decoded") == "decoded", (term, record["translation"])
            from forumtranslate.glossary import load_glossary

            entry = load_glossary(GLOSSARY).get(term["entry_id"])
            assert occurrences(record["translation"], list(entry.allowed)) >= 1


@pytest.mark.xfail(
    strict=True,
    reason="issue 15's target, still missed after issue 14: where the model confidently "
    "writes another rendering, the transformers backend's forced terms derail the rest of "
    "the sentence, so hard scores below off on the swapped model",
)
def test_swapped_hard_recovers_nine_tenths_of_the_gap(standins) -> None:
    refs = [p.en for p in standins.pairs]
    faithful_off = chrf(standins.translate("faithful", "transformers", "off"), refs)
    swapped_off = chrf(standins.translate("swapped", "transformers", "off"), refs)
    swapped_hard = chrf(standins.translate("swapped", "transformers", "hard"), refs)
    gap = faithful_off - swapped_off
    assert gap > 5, "the swapped model must be measurably worse for the test to mean anything"
    recovered = (swapped_hard - swapped_off) / gap
    assert recovered >= 0.9, (
        f"chrF2 faithful off {faithful_off:.1f}, swapped off {swapped_off:.1f}, "
        f"swapped hard {swapped_hard:.1f}: {100 * recovered:.0f}% of the gap recovered"
    )
