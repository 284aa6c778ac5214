"""The comparison page: word differences, verdicts, ``compare --html`` on two real runs, and
its filters in a real browser."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from forumtranslate.cli import main
from forumtranslate.comparison import ComparedUnit, word_diff
from forumtranslate.confidence import Confidence
from forumtranslate.glossary import check_terms, load_glossary
from forumtranslate.score import paired_units, score_run

from .conftest import GLOSSARY
from .test_review import CHROMIUM, MARKUP, SCREENSHOT, browser_page, review_run_dir


def test_word_diff_marks_words_and_escapes_them() -> None:
    a, b = word_diff("the <b>cat</b> sat on a mat", "the <b>dog</b> sat  on the mat & more")
    assert a == "the <del>&lt;b&gt;cat&lt;/b&gt;</del> sat on <del>a</del> mat"
    assert b == (
        "the <ins>&lt;b&gt;dog&lt;/b&gt;</ins> sat on <ins>the</ins> mat <ins>&amp; more</ins>"
    )
    assert word_diff("", "new") == ("", "<ins>new</ins>")
    assert word_diff("same", "same") == ("same", "same")


@pytest.mark.parametrize(
    ("chrf", "confidence", "texts", "verdict"),
    [
        ((10.0, 20.0), (None, None), ("a", "b"), "better"),
        ((20.0, 10.0), (-0.1, -0.05), ("a", "b"), "worse"),  # chrF decides over confidence
        ((None, None), (-1.0, -0.5), ("a", "b"), "better"),  # no reference: confidence
        ((10.0, 20.0), (None, None), ("a", "a"), "same"),  # unchanged text
        ((None, None), (None, None), ("a", "b"), "same"),  # nothing to judge by
        ((None, None), (-1.0, -1.004), ("a", "b"), "same"),  # printed as −0.00
        ((30.0, 30.04), (None, None), ("a", "b"), "same"),  # printed as +0.0
    ],
)
def test_verdict_is_chrf_where_there_is_a_reference_else_confidence(
    chrf: tuple, confidence: tuple, texts: tuple, verdict: str
) -> None:
    conf = [None if c is None else Confidence(c, c, 0, "▁x", 1) for c in confidence]
    unit = ComparedUnit("d", "d-001", "日本語", None, *texts, *chrf, *conf)
    assert unit.verdict == verdict


# --- two real runs -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, tiny_marian: Path) -> tuple[Path, Path]:
    """Run A is the review tests' run; run B is A with some translations replaced by their
    references (better), one emptied (worse), and one sentence's text in markup."""
    run_a = review_run_dir(tmp_path_factory, tiny_marian)
    run_b = tmp_path_factory.mktemp("compare") / "run-b"
    shutil.copytree(run_a, run_b)
    beads = [json.loads(line) for line in (run_a / "alignment.jsonl").open()]
    one_to_one = [b for b in beads if len(b["src_seg_ids"]) == 1 and len(b["ref"]) == 1]
    # beads whose machine output misses a term come first, so a reference brings one back
    lines = (run_a / "translations.jsonl").read_text(encoding="utf-8").split("\n")
    by_id = {r["seg_id"]: r for r in (json.loads(line) for line in lines if line)}
    one_to_one.sort(key=lambda b: all(t["found"] for t in by_id[b["src_seg_ids"][0]]["terms"]))
    better = {b["src_seg_ids"][0]: b["ref"][0] for b in one_to_one[:3]}
    worse = {one_to_one[3]["src_seg_ids"][0]: "Nothing."}
    markup = {one_to_one[4]["src_seg_ids"][0]: "A" + MARKUP}
    records = [json.loads(line) for line in (run_a / "translations.jsonl").open()]
    glossary = load_glossary(GLOSSARY)
    with (run_b / "translations.jsonl").open("w", encoding="utf-8") as out:
        for record in records:
            seg_id = record["seg_id"]
            record["translation"] = {**better, **worse, **markup}.get(seg_id, record["translation"])
            found = check_terms(record["translation"], glossary.find_terms(record["source"]))
            for term, hit in zip(record["terms"], found, strict=True):
                term["found"] = hit
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    for name in ("alignment.jsonl", "scores.json", "review.html"):
        (run_b / name).unlink()
    score_run(run_b)
    return run_a, run_b


def expected_units(run_a: Path, run_b: Path) -> tuple[int, int, int, int]:
    """(units, changed, better, worse) by sacrebleu directly on the paired units."""
    from sacrebleu.metrics import CHRF

    from forumtranslate.align import run_beads

    hyps_a, hyps_b, refs = paired_units(run_beads(run_a), run_beads(run_b))
    metric = CHRF()
    changed = better = worse = 0
    for a, b, ref in zip(hyps_a, hyps_b, refs):
        if a == b:
            continue
        changed += 1
        delta = metric.sentence_score(b, [ref]).score - metric.sentence_score(a, [ref]).score
        better += round(delta, 1) > 0  # as the page prints it
        worse += round(delta, 1) < 0
    return len(refs), changed, better, worse


@pytest.mark.slow
def test_compare_html_writes_both_runs_side_by_side(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    run_a, run_b = two_runs
    out = tmp_path / "compare.html"
    args = ["compare", str(run_a), str(run_b), "--html", str(out)]
    result = CliRunner().invoke(main, [*args, "--n-bootstrap", "50", "--n-trials", "50"])
    assert result.exit_code == 0, result.output
    assert "p (bootstrap)" in result.stdout  # the table is printed as before
    page = out.read_text(encoding="utf-8")
    units, changed, better, worse = expected_units(run_a, run_b)
    assert (changed, better, worse) == (5, 3, 2)  # the markup sentence is worse too
    assert len(re.findall(r'<tr class="unit ', page)) == units
    assert page.count('data-changed="1"') == changed
    assert page.count('data-verdict="better"') == better
    assert page.count('data-verdict="worse"') == worse
    assert MARKUP not in page and html.escape(MARKUP.strip()) in page
    assert page.count("<script>") == 1
    assert "p (paired bootstrap)" in page and "chrF2++" in page
    assert "<ins>" in page and "<del>" in page
    # the worse unit's approved term went missing; a better one's came back
    changes = [html.unescape(c) for c in re.findall(r"<li>(.*?)</li>", page)]
    assert any(c.endswith(": decoded → missing") for c in changes)
    assert any(c.endswith(": missing → decoded") for c in changes), changes
    assert not re.search(r"\s(src|href)=", page)
    again = tmp_path / "again.html"
    CliRunner().invoke(
        main, [*args[:3], "--html", str(again), "--n-bootstrap", "50", "--n-trials", "50"]
    )
    assert again.read_bytes() == out.read_bytes()  # no timestamp: same inputs, same bytes


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_comparison_filters_in_a_headless_browser(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("playwright.sync_api", reason="playwright (dev extra)")
    from forumtranslate.comparison import compare_run_folders, write_comparison

    run_a, run_b = two_runs
    out = write_comparison(compare_run_folders(run_a, run_b), tmp_path / "compare.html")
    units, changed, better, worse = expected_units(run_a, run_b)
    with browser_page(900) as (page, errors, dialogs):
        page.goto(out.as_uri())
        visible = page.locator("tr.unit:visible")
        assert visible.count() == units
        for value, count in (("changed", changed), ("better", better), ("worse", worse)):
            page.select_option("#c-filter", value)
            assert visible.count() == count, value
            assert page.text_content("#shown") == f"{count} of {units} units shown"
        page.select_option("#c-filter", "changed")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT.with_name("compare-changed.png")))
        page.select_option("#c-filter", "worse")
        page.screenshot(path=str(SCREENSHOT.with_name("compare-worse.png")))
        assert page.locator("td b").count() == 0 and dialogs == []
        assert errors == []
