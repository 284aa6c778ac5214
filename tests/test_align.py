"""The aligner: its invariant, small cases with known beads, its scorer, run folders, CLI."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sacrebleu.metrics import CHRF

from forumtranslate.align import (
    AlignConfig,
    CharNgrams,
    Link,
    align_run,
    align_sentences,
    alignment_prf,
    chrf1,
    chrf_from_bits,
    gale_church_cost,
    left_anchors,
    perturb_sentences,
    read_beads,
    right_anchors,
)
from forumtranslate.cli import main
from forumtranslate.errors import InputError

ALLOWED_KINDS = {"1-1", "1-0", "0-1", "2-1", "1-2", "2-2", "3-1", "1-3"}


def assert_partition(links: list[Link], n: int, m: int) -> None:
    """Every sentence of either side is in exactly one bead, in order."""
    assert [i for link in links for i in link.left] == list(range(n))
    assert [j for link in links for j in link.right] == list(range(m))
    for link in links:
        assert link.kind in ALLOWED_KINDS
        assert 0.0 <= link.similarity <= 1.0


# --- the invariant ---------------------------------------------------------------------

words = st.sampled_from(
    ["economic", "security", "2025", "AI", "supply", "chains", "Japan", "the", "of", "minerals"]
)
sentences = st.lists(words, min_size=0, max_size=12).map(" ".join)
japanese = st.sampled_from(
    ["経済安全保障", "2025年", "AIの", "重要鉱物", "CPTPP", "。", "サプライチェーン"]
)
ja_sentences = st.lists(japanese, min_size=0, max_size=8).map("".join)


@settings(max_examples=150, deadline=None)
@given(
    hyp=st.lists(sentences, max_size=25),
    ref=st.lists(sentences, max_size=25),
    band=st.integers(min_value=1, max_value=6),
)
def test_every_sentence_in_exactly_one_bead_in_order(hyp, ref, band):
    links = align_sentences(ref, hyp, config=AlignConfig(band=band))
    assert_partition(links, len(hyp), len(ref))


@settings(max_examples=100, deadline=None)
@given(
    pairs=st.lists(st.tuples(ja_sentences, sentences), max_size=20),
    ref=st.lists(sentences, max_size=20),
    with_hyp=st.booleans(),
)
def test_invariant_holds_with_sources_too(pairs, ref, with_hyp):
    src = [ja for ja, _ in pairs]
    hyp = [en for _, en in pairs] if with_hyp else None
    links = align_sentences(ref, hyp, src=src, src_terms=[["economic security"]] * len(src))
    assert_partition(links, len(src), len(ref))


# --- small cases with known beads --------------------------------------------------------

BEFORE = "Japan will strengthen its economic security through public-private partnership."
AFTER = "The forum closed with remarks from the organizers at six in the evening."
OPENING = [BEFORE, "Exports of critical minerals rose by 15% in 2025, the ministry reported."]
CLOSING = ["Panel 4 discussed national security and the economy with four speakers.", AFTER]

CASES = {
    "1-1 only": (
        [BEFORE, "Exports of critical minerals rose by 15% in 2025.", AFTER],
        [BEFORE, "Exports of critical minerals rose 15% in 2025.", AFTER],
        [((0,), (0,)), ((1,), (1,)), ((2,), (2,))],
    ),
    "1-2 split by the reference": (
        [
            BEFORE,
            "The minister said that supply chains are fragile and that Japan will "
            "diversify its sources of rare earths with like-minded partners.",
            AFTER,
        ],
        [
            BEFORE,
            "The minister said that supply chains are fragile.",
            "Japan will diversify its sources of rare earths with like-minded partners.",
            AFTER,
        ],
        [((0,), (0,)), ((1,), (1, 2)), ((2,), (3,))],
    ),
    "2-1 merged by the reference": (
        [
            BEFORE,
            "The United Kingdom launched a supply chain centre.",
            "It works with companies to secure resilient supply networks.",
            AFTER,
        ],
        [
            BEFORE,
            "The United Kingdom launched a supply chain centre, which works with companies "
            "to secure resilient supply networks.",
            AFTER,
        ],
        [((0,), (0,)), ((1, 2), (1,)), ((3,), (2,))],
    ),
    # Null beads need a document around them: in a three-sentence document an unrelated
    # extra sentence skews the length ratio and is merged into a neighbour's bead instead.
    "1-0 machine text with no reference": (
        [*OPENING, "Zebra quantum pancakes orbit the violet harbor quietly.", *CLOSING],
        [*OPENING, *CLOSING],
        [((0,), (0,)), ((1,), (1,)), ((2,), ()), ((3,), (2,)), ((4,), (3,))],
    ),
    "0-1 reference the machine left out": (
        [*OPENING, *CLOSING],
        [*OPENING, "Semiconductors, quantum and biotechnology are strategic fields.", *CLOSING],
        [((0,), (0,)), ((1,), (1,)), ((), (2,)), ((2,), (3,)), ((3,), (4,))],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_known_beads(name):
    hyp, ref, expected = CASES[name]
    links = align_sentences(ref, hyp)
    assert [(link.left, link.right) for link in links] == expected


def test_empty_sides():
    assert [link.kind for link in align_sentences([], ["a", "b"])] == ["1-0", "1-0"]
    assert [link.kind for link in align_sentences(["a"], [])] == ["0-1"]
    assert align_sentences([], []) == []


def test_source_only_alignment_follows_numbers_and_latin_words():
    src = [
        "2025年12月15日に東京でフォーラムを開催した。",
        "CPTPPの拡大について議論した。",
        "参加者は539人だった。",
    ]
    ref = [
        "The forum was held in Tokyo on December 15, 2025.",
        "Participants discussed the expansion of the CPTPP.",
        "There were 539 participants.",
    ]
    links = align_sentences(ref, src=src)
    assert [(link.left, link.right) for link in links] == [((0,), (0,)), ((1,), (1,)), ((2,), (2,))]
    assert all(link.similarity > 0 for link in links)


def test_hyp_and_src_must_be_parallel():
    with pytest.raises(ValueError, match="src has"):
        align_sentences(["a"], ["a", "b"], src=["x"])


# --- the pieces of the cost --------------------------------------------------------------


@pytest.mark.parametrize(
    ("hyp", "ref"),
    [
        ("The cat sat on the mat.", "The cat is on the mat."),
        ("Economic security matters.", "Economic security is important."),
        ("", "Something"),
        ("aaaa aaaa", "aaa"),
        ("重要鉱物", "重要な鉱物"),
    ],
)
def test_chrf_matches_sacrebleu_sentence_chrf(hyp, ref):
    ngrams = CharNgrams([hyp, ref])
    ours = chrf_from_bits(ngrams.group(0, 1), ngrams.group(1, 2), beta=2)
    assert ours * 100 == pytest.approx(CHRF().sentence_score(hyp, [ref]).score, abs=1e-9)
    assert chrf1(hyp, ref) * 100 == pytest.approx(
        CHRF(beta=1).sentence_score(hyp, [ref]).score, abs=1e-9
    )


def char_ngram_counts(texts: list[str], order: int) -> Counter:
    return Counter(
        line[i : i + order]
        for line in ("".join(t.split()) for t in texts)
        for i in range(len(line) - order + 1)
    )


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="ab c経済", max_size=12), min_size=2, max_size=5),
    data=st.data(),
)
def test_group_bits_count_chrf_matches(texts, data):
    """For any two groups of sentences, AND-ing their bits counts, per order, what chrF
    counts: the sum over n-grams of the smaller of the two groups' counts."""
    ngrams = CharNgrams(texts)
    spans = []
    for _ in range(2):
        start = data.draw(st.integers(0, len(texts) - 1))
        spans.append((start, data.draw(st.integers(start + 1, len(texts)))))
    left, right = (ngrams.group(*span) for span in spans)
    for order in range(1, 7):
        counts = [char_ngram_counts(texts[slice(*span)], order) for span in spans]
        (left_bits, left_count), (right_bits, right_count) = left[order - 1], right[order - 1]
        assert left_count == sum(counts[0].values())
        assert right_count == sum(counts[1].values())
        assert (left_bits & right_bits).bit_count() == sum((counts[0] & counts[1]).values())


def test_gale_church_cost_grows_with_length_mismatch():
    costs = [gale_church_cost(100, right, ratio=1.0, variance=6.8) for right in (100, 120, 200)]
    assert costs[0] == pytest.approx(0.0)
    assert costs[0] < costs[1] < costs[2]
    assert math.isfinite(gale_church_cost(1, 100_000, ratio=1.0, variance=6.8))
    assert gale_church_cost(0, 0, ratio=1.0, variance=6.8) == 0.0


def test_anchors():
    left = left_anchors("2025年に227億円、CPTPPとAIについて", ["economic security"])
    assert {"#2025", "#227", "cptpp", "ai", "=economic security"} <= left
    right = right_anchors("In 2025, 22.7 billion yen for AI and economic security.", left)
    assert {"#2025", "#227", "ai", "=economic security"} <= right
    assert "cptpp" not in right
    assert "#4" in right_anchors("Four panels", frozenset({"#4"}))
    assert left_anchors("The Minister met JETRO and G7 partners", english=True) == {
        "jetro",
        "g7",
        "#7",
    }


# --- the scorer (vecalign's strict and lax P/R/F1) ---------------------------------------


def test_alignment_prf_perfect_and_partial():
    gold = [[((0,), (0,)), ((1, 2), (1,)), ((), (2,))]]
    assert alignment_prf(gold, gold)["f1_strict"] == 1.0
    test = [[((0,), (0,)), ((1,), (1,)), ((2,), ()), ((), (2,))]]
    result = alignment_prf(gold, test)
    # precision: 2 of 4 test beads exact; lax adds (1,)-(1,) which overlaps the gold 2-1
    assert result["precision_strict"] == pytest.approx(2 / 4)
    assert result["precision_lax"] == pytest.approx(3 / 4)
    # recall: gold without null beads is 2 beads, 1 exact; lax both
    assert result["recall_strict"] == pytest.approx(1 / 2)
    assert result["recall_lax"] == pytest.approx(1.0)


def test_perturbed_gold_is_a_partition_and_the_aligner_recovers_it():
    ref = [
        f"Sentence number {k} talks about {topic} and the {k}th panel of the forum."
        for k, topic in enumerate(
            ["minerals", "AI", "trade", "export controls", "semiconductors", "energy"] * 6
        )
    ]
    filler = ["A completely unrelated line about weather and gardening in spring."]
    hyp, gold = perturb_sentences(ref, seed=3, filler=filler)
    assert_partition(gold, len(hyp), len(ref))
    links = align_sentences(ref, hyp)
    test = [(link.left, link.right) for link in links]
    result = alignment_prf([[(g.left, g.right) for g in gold]], [test])
    assert result["f1_strict"] > 0.85


# --- run folders and the CLI -----------------------------------------------------------


def make_run(tmp_path: Path, name: str, translations: dict[str, list[str]]) -> Path:
    """A fake run folder over a tiny two-document corpus written here."""
    data = tmp_path / "data"
    (data / "en").mkdir(parents=True, exist_ok=True)
    (data / "en" / "doc-a.txt").write_text(
        "Japan hosted the forum in 2025. Speakers discussed critical minerals.\n\n"
        "- The EU published a strategy in 2023.\n",
        encoding="utf-8",
    )
    (data / "en" / "doc-b.txt").write_text(
        "The CPTPP was discussed. Twenty-four speakers took part.\n", encoding="utf-8"
    )
    sources = {
        "doc-a": [
            "2025年にフォーラムを開催した。",
            "重要鉱物について議論した。",
            "EUは2023年に戦略を公表した。",
        ],
        "doc-b": ["CPTPPについて議論した。", "24人が登壇した。"],
    }
    run = tmp_path / name
    run.mkdir()
    records = []
    for doc_id, texts in sources.items():
        for index, (source, translation) in enumerate(
            zip(texts, translations[doc_id], strict=True)
        ):
            records.append(
                {
                    "doc_id": doc_id,
                    "seg_id": f"{doc_id}-{index + 1:03d}",
                    "index": index,
                    "source": source,
                    "translation": translation,
                    "terms": [],
                }
            )
    (run / "translations.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    (run / "run.json").write_text(json.dumps({"data_dir": str(data)}), encoding="utf-8")
    return run


GOOD = {
    "doc-a": [
        "Japan hosted the forum in 2025.",
        "Speakers discussed critical minerals.",
        "- The EU published a strategy in 2023.",
    ],
    "doc-b": ["The CPTPP was discussed.", "Twenty-four speakers took part."],
}


def test_align_run_writes_alignment_jsonl(tmp_path):
    run = make_run(tmp_path, "run", GOOD)
    beads = align_run(run, tmp_path / "data")
    assert read_beads(run / "alignment.jsonl") == [
        type(b)(**{**b.__dict__, "similarity": round(b.similarity, 4)}) for b in beads
    ]
    assert [seg for b in beads for seg in b.src_seg_ids] == [
        "doc-a-001",
        "doc-a-002",
        "doc-a-003",
        "doc-b-001",
        "doc-b-002",
    ]
    assert {b.doc_id for b in beads} == {"doc-a", "doc-b"}
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temp file left


def test_align_run_reports_bad_translations(tmp_path):
    run = make_run(tmp_path, "run", GOOD)
    (run / "translations.jsonl").write_text('{"doc_id": "doc-a"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="lacks"):
        align_run(run)


def test_cli_align_help():
    result = CliRunner().invoke(main, ["align", "--help"])
    assert result.exit_code == 0
    assert "Align machine sentences" in result.output


def test_cli_align_files(tmp_path):
    hyp, ref = CASES["2-1 merged by the reference"][:2]
    (tmp_path / "hyp.txt").write_text("\n".join(hyp) + "\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("\n".join(ref) + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["align", str(tmp_path / "hyp.txt"), str(tmp_path / "ref.txt")]
    )
    assert result.exit_code == 0, result.output
    rows = [line.split("\t")[:3] for line in result.output.splitlines()]
    assert rows == [["0", "0", "1-1"], ["1,2", "1", "2-1"], ["3", "2", "1-1"]]


def test_cli_align_source_only(tmp_path):
    (tmp_path / "ja.txt").write_text("2025年に開催。\nCPTPPを議論。\n", encoding="utf-8")
    (tmp_path / "en.txt").write_text("Held in 2025.\nThe CPTPP was discussed.\n", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["align", "--source-only", str(tmp_path / "ja.txt"), str(tmp_path / "en.txt")]
    )
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[:2] for line in result.output.splitlines()] == [["0", "0"], ["1", "1"]]


def test_cli_align_run_and_errors(tmp_path):
    run = make_run(tmp_path, "run", GOOD)
    result = CliRunner().invoke(main, ["align", str(run)])
    assert result.exit_code == 0, result.output
    assert "alignment.jsonl" in result.output
    assert (run / "alignment.jsonl").exists()
    missing = CliRunner().invoke(main, ["align", str(tmp_path / "nope.txt"), str(tmp_path / "x")])
    assert missing.exit_code == 2
    assert "file not found" in missing.output
