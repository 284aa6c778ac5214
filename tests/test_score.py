"""Scoring: every number must equal sacrebleu's own CLI; runs, comparisons and the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sacrebleu.metrics import BLEU, CHRF

from forumtranslate.align import align_run
from forumtranslate.cli import main
from forumtranslate.errors import InputError
from forumtranslate.records import Bead
from forumtranslate.score import (
    METRICS,
    SegmentStatistics,
    compare_runs,
    format_scores,
    make_metrics,
    paired_units,
    score_files,
    score_run,
    term_accuracy,
)

SACREBLEU = Path(sys.executable).with_name("sacrebleu")

HYPS = [
    "The international economic environment is shifting from globalization to state intervention.",
    "Japan will diversify its supply sources of critical minerals.",
    "",
    "AKAZAWA Ryosei, Minister of Economy, Trade and Industry (video message)   ",
    "Exports rose 15% in 2025 — a record « high ».",
    "The EU published its strategy in 2023 and new guidance in December 2025.",
]
REFS = [
    "The international economic environment is undergoing a major shift from an era of "
    "globalization to an era in which states intervene deeply in markets.",
    "Japan will promote the diversification of supply sources for critical minerals.",
    "This forum has been organized as a venue for further cooperation.",
    "AKAZAWA Ryosei, Minister of Economy, Trade and Industry (video message)",
    "Exports rose by 15% in 2025, a record high.",
    "The EU published its Economic Security Strategy in 2023, and it announced new guidance "
    "in December 2025.",
]


def sacrebleu_cli(ref: Path, hyp: Path, *args: str) -> dict[str, tuple[str, str]]:
    """Run sacrebleu's own CLI; {metric name: (signature, printed score)}."""
    out = subprocess.run(
        [str(SACREBLEU), str(ref), "-i", str(hyp), *args, "-f", "text"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        match = re.match(r"\s*([^|\s]+)\|(\S+) = (\S+)", line)
        if match:
            found[match.group(1)] = (match.group(2), match.group(3))
    return found


def sacrebleu_expected(ref: Path, hyp: Path, width: int) -> dict[str, tuple[str, str]]:
    expected = sacrebleu_cli(ref, hyp, "-m", "bleu", "chrf", "ter", "-w", str(width))
    expected.update(
        sacrebleu_cli(ref, hyp, "-m", "chrf", "--chrf-word-order", "2", "-w", str(width))
    )
    assert set(expected) == set(METRICS)
    return expected


def table_rows(output: str) -> dict[str, tuple[str, str]]:
    """{metric: (signature, score)} from our table's first block."""
    rows = {}
    for line in output.splitlines()[1:]:
        if not line.strip():
            break
        cells = line.split()
        if cells[0] in METRICS:
            rows[cells[0]] = (cells[2], cells[1])
    return rows


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("\n".join(HYPS) + "\n", encoding="utf-8")
    ref.write_text("\n".join(REFS) + "\n", encoding="utf-8")
    return hyp, ref


@pytest.mark.parametrize("width", [1, 2, 4])
def test_score_files_equal_sacrebleu_cli_to_the_last_digit(files, width):
    hyp, ref = files
    expected = sacrebleu_expected(ref, hyp, width)
    result = CliRunner().invoke(
        main, ["score", "--hyp", str(hyp), "--ref", str(ref), "-w", str(width)]
    )
    assert result.exit_code == 0, result.output
    assert table_rows(result.output) == expected


@pytest.mark.parametrize("picked", [None, [0], [1, 3], [2, 4, 5]])
def test_scores_of_any_subset_equal_sacrebleu_corpus_score(picked):
    """Counting each segment once and summing subsets (how a run scores its documents)
    gives exactly sacrebleu's corpus scores of those segments."""
    statistics = SegmentStatistics(HYPS, REFS)
    ours = statistics.corpus(picked)
    chosen = range(len(HYPS)) if picked is None else picked
    for name, metric in make_metrics().items():
        theirs = metric.corpus_score([HYPS[k] for k in chosen], [[REFS[k] for k in chosen]])
        assert ours[name].score == theirs.score, name
        assert ours[name].signature == metric.get_signature().format()


def test_sentence_scores_equal_sacrebleu_sentence_score():
    rows, signatures = SegmentStatistics(HYPS, REFS).sentences()
    bleu, chrf = BLEU(effective_order=True), CHRF()
    for row, hyp, ref in zip(rows, HYPS, REFS, strict=True):
        assert row == {
            "BLEU": bleu.sentence_score(hyp, [ref]).score,
            "chrF2": chrf.sentence_score(hyp, [ref]).score,
        }
    assert signatures == {
        "BLEU": bleu.get_signature().format(),
        "chrF2": chrf.get_signature().format(),
    }


def test_segment_statistics_refuse_unequal_or_empty_input():
    with pytest.raises(InputError, match="2 hypothesis segments but 1"):
        SegmentStatistics(["a", "b"], ["a"])
    with pytest.raises(InputError, match="nothing to score"):
        SegmentStatistics([], []).corpus()


def test_score_json_carries_full_precision_and_signatures(files):
    hyp, ref = files
    result = CliRunner().invoke(main, ["score", "--hyp", str(hyp), "--ref", str(ref), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    expected = sacrebleu_expected(ref, hyp, 4)
    for name in METRICS:
        assert f"{data['corpus'][name]['score']:.4f}" == expected[name][1]
        assert data["corpus"][name]["signature"] == expected[name][0]
    assert data["segments"] == len(HYPS)


def test_score_files_refuses_unequal_line_counts(tmp_path, files):
    hyp, _ = files
    short = tmp_path / "short.txt"
    short.write_text("one line\n", encoding="utf-8")
    with pytest.raises(InputError, match="align them first"):
        score_files(hyp, short)
    result = CliRunner().invoke(main, ["score", "--hyp", str(hyp), "--ref", str(short)])
    assert result.exit_code == 2
    assert "align them first" in result.output


def test_score_cli_needs_a_run_or_both_files(files):
    hyp, _ = files
    assert CliRunner().invoke(main, ["score"]).exit_code == 2
    assert CliRunner().invoke(main, ["score", "--hyp", str(hyp)]).exit_code == 2


@pytest.mark.parametrize("command", ["score", "compare"])
def test_help(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "sacrebleu" in result.output


# --- run folders -------------------------------------------------------------------------

REFERENCE = (
    "Japan hosted the forum in 2025. Speakers discussed critical minerals and supply chains.\n\n"
    "- The EU published its Economic Security Strategy in 2023. It announced new guidance in "
    "December 2025.\n\n"
    "- The UK launched a Supply Chain Center. It will also set up a new advisory body.\n\n"
    "- India launched the Japan-India Economic Security Initiative in August 2025.\n"
)


def make_run(tmp_path: Path, name: str, translations: list[str], found: list[bool]) -> Path:
    """A run folder whose translations.jsonl holds the given strings (no model involved)."""
    data = tmp_path / "data"
    (data / "en").mkdir(parents=True, exist_ok=True)
    (data / "en" / "doc.txt").write_text(REFERENCE, encoding="utf-8")
    run = tmp_path / name
    run.mkdir()
    records = []
    for k, text in enumerate(translations):
        terms = []
        if k < len(found):  # one glossary term in each of the first sentences
            terms = [
                {
                    "entry_id": "t",
                    "source": "経済安全保障",
                    "target": "economic security",
                    "found": found[k],
                }
            ]
        records.append(
            {
                "doc_id": "doc",
                "seg_id": f"doc-{k + 1:03d}",
                "index": k,
                "source": f"原文{k}。",
                "translation": text,
                "terms": terms,
            }
        )
    (run / "translations.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    (run / "run.json").write_text(json.dumps({"data_dir": str(data)}), encoding="utf-8")
    return run


GOOD = [
    "Japan hosted the forum in 2025.",
    "Speakers discussed critical minerals and supply chains.",
    "The EU published its Economic Security Strategy in 2023 and announced new guidance in "
    "December 2025.",
    "The UK launched a Supply Chain Center.",
    "It will also set up a new advisory body.",
    "India launched the Japan-India Economic Security Initiative in August 2025.",
]
POOR = [
    "Japan forum 2025 was hosted.",
    "Minerals were talked about by speakers.",
    "EU strategy 2023, guidance December.",
    "The UK center launched supply.",
    "Body new advisory too.",
    "India initiative Japan 2025 August.",
]


def test_score_run_writes_scores_that_sacrebleu_reproduces(tmp_path):
    run = make_run(tmp_path, "run", GOOD, found=[True, False, True])
    result = score_run(run)
    assert (run / "alignment.jsonl").exists()  # aligned on the way, from run.json's data_dir
    saved = json.loads((run / "scores.json").read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(result))

    expected = sacrebleu_expected(run / "aligned.ref.txt", run / "aligned.hyp.txt", 1)
    assert table_rows(format_scores(result, 1)) == expected
    assert saved["reproduce"] == "sacrebleu aligned.ref.txt -i aligned.hyp.txt -m bleu chrf ter"
    # The second command prints chrF2++ (the first cannot): run it as written.
    command = saved["reproduce_chrf++"].split()
    assert command[:4] == ["sacrebleu", "aligned.ref.txt", "-i", "aligned.hyp.txt"]
    printed = sacrebleu_cli(run / command[1], run / command[3], *command[4:], "-w", "1")
    assert printed == {"chrF2++": expected["chrF2++"]}

    # Issue 14 added keys beside these three (how the terms got there, lemma-tolerant
    # success, consistency); the three keep their values.
    terminology = saved["terminology"]
    assert {k: terminology[k] for k in ("found", "total", "accuracy")} == {
        "found": 2,
        "total": 3,
        "accuracy": pytest.approx(2 / 3),
    }
    # Records from before issue 14 have no ``how``: a term found counts as decoded.
    assert (terminology["decoded"], terminology["edited"], terminology["appended"]) == (2, 0, 0)
    # One entry, three times in one document, once missing: not consistent.
    assert terminology["consistency"] == {"repeated": 1, "consistent": 0, "rate": 0.0}
    assert set(saved["documents"]) == {"doc"}
    assert saved["documents"]["doc"]["beads"] == len(saved["beads"])
    assert saved["signature"]["alignment"].startswith("align:")
    assert [seg for bead in saved["beads"] for seg in bead["src_seg_ids"]] == [
        f"doc-{k + 1:03d}" for k in range(len(GOOD))
    ]


def test_bead_scores_equal_sacrebleu_sentence_level(tmp_path):
    run = make_run(tmp_path, "run", POOR, found=[])
    result = score_run(run)
    for metric, args in (("BLEU", ["-m", "bleu"]), ("chrF2", ["-m", "chrf"])):
        out = subprocess.run(
            [
                str(SACREBLEU),
                str(run / "aligned.ref.txt"),
                "-i",
                str(run / "aligned.hyp.txt"),
                *args,
                "-sl",
                "-b",
                "-w",
                "4",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        assert [f"{bead[metric]:.4f}" for bead in result["beads"]] == out


def test_score_cli_on_a_run_prints_documents_and_writes_json(tmp_path):
    run = make_run(tmp_path, "run", GOOD, found=[True])
    result = CliRunner().invoke(main, ["score", str(run)])
    assert result.exit_code == 0, result.output
    assert "terminology accuracy: 1/1" in result.output
    assert re.search(r"^doc\s+\d+\s", result.output, re.MULTILINE)
    assert (run / "scores.json").exists()
    as_json = CliRunner().invoke(main, ["score", str(run), "--json"])
    assert json.loads(as_json.output)["documents"]["doc"]["beads"] > 0


# --- comparing runs ----------------------------------------------------------------------


def bead(hyp: tuple[str, ...], ref: tuple[str, ...]) -> Bead:
    return Bead("d", tuple(f"s-{h}" for h in hyp), hyp, ref, ref, f"{len(hyp)}-{len(ref)}", 0.5)


def test_paired_units_follow_boundaries_both_runs_share():
    a = [bead(("a0",), ("r0",)), bead(("a1",), ("r1", "r2")), bead(("a2",), ("r3",))]
    b = [
        bead(("b0", "b1"), ("r0",)),
        bead(("b2",), ("r1",)),
        bead(("b3",), ()),
        bead(("b4",), ("r2",)),
        bead(("b5",), ("r3",)),
    ]
    hyps_a, hyps_b, refs = paired_units(a, b)
    assert refs == ["r0", "r1 r2", "r3"]
    assert hyps_a == ["a0", "a1", "a2"]
    assert hyps_b == ["b0 b1", "b2 b3 b4", "b5"]


def test_paired_units_refuse_different_references():
    a = [bead(("a0",), ("r0",))]
    b = [bead(("b0",), ("other",))]
    with pytest.raises(InputError, match="differ"):
        paired_units(a, b)


def big_run(tmp_path: Path, name: str, damage: bool) -> Path:
    """A run over a real reference document, the machine side being the reference itself,
    perfect or with every third word dropped: a difference far beyond noise."""
    from forumtranslate.segment import segment_text

    data = tmp_path / "data"
    (data / "en").mkdir(parents=True, exist_ok=True)
    text = (Path(__file__).resolve().parent.parent / "data" / "en" / "panel-2.txt").read_text(
        encoding="utf-8"
    )
    (data / "en" / "panel-2.txt").write_text(text, encoding="utf-8")
    sentences = [s.text for s in segment_text(text, "panel-2", "en")]
    if damage:
        sentences = [" ".join(w for k, w in enumerate(s.split()) if k % 3 != 2) for s in sentences]
    run = tmp_path / name
    run.mkdir()
    records = [
        {"doc_id": "panel-2", "seg_id": f"p-{k}", "index": k, "source": "原文。", "translation": s}
        for k, s in enumerate(sentences)
    ]
    (run / "translations.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    (run / "run.json").write_text(json.dumps({"data_dir": str(data)}), encoding="utf-8")
    return run


def test_compare_finds_a_real_difference(tmp_path):
    worse = big_run(tmp_path, "worse", damage=True)
    better = big_run(tmp_path, "better", damage=False)
    result = compare_runs(worse, better, n_bootstrap=200, n_trials=500)
    assert result["units"] > 30
    for name in METRICS:
        item = result["metrics"][name]
        assert item["p_bs"] < 0.05
        assert item["p_ar"] < 0.05
        assert item["a"]["ci"] >= 0 and item["b"]["mean"] is not None
    assert result["metrics"]["BLEU"]["difference"] > 0
    assert result["metrics"]["TER"]["difference"] < 0
    assert "signature_bs" in result["metrics"]["BLEU"]


def test_compare_cli(tmp_path):
    run_a = make_run(tmp_path / "a", "run", POOR, found=[False])
    run_b = make_run(tmp_path / "b", "run", GOOD, found=[True])
    align_run(run_a)
    table = CliRunner().invoke(
        main, ["compare", str(run_a), str(run_b), "--n-bootstrap", "100", "--n-trials", "100"]
    )
    assert table.exit_code == 0, table.output
    assert "p (bootstrap)" in table.output and "p (approx. rand.)" in table.output
    assert "terminology accuracy: A 0/1, B 1/1" in table.output
    as_json = CliRunner().invoke(
        main, ["compare", str(run_a), str(run_b), "--test", "bs", "--n-bootstrap", "100", "--json"]
    )
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["tests"] == ["bs"]
    assert data["metrics"]["chrF2"]["difference"] > 0


def test_compare_cli_reports_missing_run(tmp_path):
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "x"), str(tmp_path / "y")])
    assert result.exit_code == 2
    assert "not found" in result.output


def term(entry_id: str, found: bool, how: str, rendering: str | None, lemma: bool) -> dict:
    return {
        "entry_id": entry_id,
        "source": "原",
        "target": "x",
        "found": found,
        "how": how,
        "rendering": rendering,
        "lemma_found": lemma,
    }


def test_term_accuracy_splits_terms_by_how_they_got_there() -> None:
    records = [
        {"doc_id": "a", "terms": [term("cm", True, "decoded", "critical minerals", True)]},
        {"doc_id": "a", "terms": [term("cm", True, "edited", "Critical Minerals", True)]},
        {"doc_id": "a", "terms": [term("es", False, "missing", None, True)]},
        {"doc_id": "a", "terms": [term("es", True, "appended", "economic security", True)]},
        {"doc_id": "b", "terms": [term("cm", True, "decoded", "critical mineral", True)]},
        {"doc_id": "b", "terms": [term("cm", False, "missing", None, False)]},
    ]
    result = term_accuracy(records)
    assert (result["found"], result["total"]) == (4, 6)
    assert (result["decoded"], result["edited"], result["appended"]) == (2, 1, 1)
    assert result["decoded_accuracy"] == pytest.approx(2 / 6)
    assert result["lemma_found"] == 5
    # cm in a: the same rendering in two casings (consistent); es in a: missing once; cm in
    # b: missing once.
    assert result["consistency"] == {"repeated": 3, "consistent": 1, "rate": pytest.approx(1 / 3)}
    assert term_accuracy([])["accuracy"] is None
