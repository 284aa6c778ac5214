"""The review page: what it shows, that nothing in it is unescaped, the loopback server,
HTER, and the page in a real headless browser (Debian's chromium, through Playwright)."""

from __future__ import annotations

import html
import json
import re
import shutil
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from forumtranslate.cli import main
from forumtranslate.glossary import avoided_found, check_terms, load_glossary
from forumtranslate.records import TermMatch
from forumtranslate.review import (
    LOW_CHRF,
    PostEdit,
    ReviewServer,
    Span,
    english_spans,
    highlight,
    hter_scores,
    join_japanese,
    load_run_view,
    serve_in_background,
    write_review,
)
from forumtranslate.run import RunConfig, make_translator, prepare_sources, run
from forumtranslate.translate import DecodingOptions, Translation, Translator

from .conftest import GLOSSARY, REPO, make_corpus

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "tests" / "artifacts" / "review.png"
MARKUP = ' <script>alert("x")</script> & <b>bold</b>'
JAPANESE_FONTS = ("Noto Sans CJK JP", "Noto Sans JP", "Hiragino", "Yu Gothic", "Meiryo")


# --- a run with something to review ------------------------------------------------------


class Spoiled(Translator):
    """A real tiny-model translator whose output is spoiled in chosen sentences, so the
    review has missing and avoided terms, and markup it must escape."""

    def __init__(self, inner: Translator, spoil: Mapping[str, Callable[[str], str]]):
        self.inner, self.spoil = inner, spoil
        self.options = inner.options

    def translate_batch(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> list[str]:
        return [t.text for t in self.translate_batch_terms(sources, terms)]

    def translate_batch_terms(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> list[Translation]:
        """The model's confidence stays that of its own output, as for a term edited in."""
        return [
            replace(done, text=self.spoil.get(src, lambda text: text)(done.text))
            for src, done in zip(sources, self.inner.translate_batch_terms(sources, terms))
        ]

    def count_tokens(self, sources: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(sources)

    def signature(self) -> dict[str, Any]:
        return self.inner.signature()


def _replacing(forms: Sequence[str], by: str) -> Callable[[str], str]:
    pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)), re.I)
    return lambda text: pattern.sub(by, text)


def review_run_dir(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Path:
    """A scored two-document run with its review page, built once per test session (the
    export tests share it): one sentence uses an avoided rendering, one lacks its term,
    one carries HTML markup."""
    base = tmp_path_factory.getbasetemp() / "review-run"
    out = base / "run"
    if (out / "review.html").exists():
        return out
    data = make_corpus(base)
    glossary = load_glossary(GLOSSARY)
    sources = [s for s in prepare_sources(data, glossary) if s.segment.kind == "sentence"]
    with_avoid = next(s for s in sources if any(t.avoid for t in s.terms))
    term = next(t for t in with_avoid.terms if t.avoid)
    without = next(s for s in sources if s.terms and s is not with_avoid)
    plain = next(s for s in sources if s not in (with_avoid, without))
    spoil = {
        with_avoid.segment.text: _replacing(term.allowed, term.avoid[0]),
        without.segment.text: _replacing([f for t in without.terms for f in t.allowed], "XXX"),
        plain.segment.text: lambda text: text + MARKUP,
    }
    config = RunConfig(
        out_dir=out,
        data_dir=data,
        glossary_path=GLOSSARY,
        model=str(model),
        device="cpu",
        decoding=DecodingOptions(beam_size=1, max_batch_tokens=2000),
    )
    run(config, translator=Spoiled(make_translator(config), spoil), progress=lambda *_: None)
    write_review(out, data, glossary_path=GLOSSARY)
    return out


@pytest.fixture(scope="module")
def review_run(tmp_path_factory: pytest.TempPathFactory, tiny_marian: Path) -> Path:
    return review_run_dir(tmp_path_factory, tiny_marian)


def expected_problems(run_dir: Path) -> list[int]:
    """Term problems per bead, straight from the glossary functions: the page must agree."""
    glossary = load_glossary(GLOSSARY)
    records = {
        r["seg_id"]: r
        for r in map(json.loads, (run_dir / "translations.jsonl").read_text().splitlines())
    }
    counts = []
    for line in (run_dir / "alignment.jsonl").read_text().splitlines():
        problems = 0
        for seg_id in json.loads(line)["src_seg_ids"]:
            source, translation = records[seg_id]["source"], records[seg_id]["translation"]
            terms = glossary.find_terms(source)
            problems += check_terms(translation, terms).count(False)
            for entry_id in dict.fromkeys(t.entry_id for t in terms):
                problems += len(avoided_found(translation, glossary.get(entry_id)))
        counts.append(problems)
    return counts


# --- the page as HTML --------------------------------------------------------------------


@pytest.mark.slow
def test_page_has_every_bead_the_run_settings_and_the_speakers(review_run: Path) -> None:
    page = (review_run / "review.html").read_text(encoding="utf-8")
    scores = json.loads((review_run / "scores.json").read_text())
    rows = re.findall(r'<tr class="bead (low|mid|high)" data-doc="([^"]+)"', page)
    assert [doc for _, doc in rows] == [b["doc_id"] for b in scores["beads"]]
    for (band, _), bead in zip(rows, scores["beads"]):
        assert band == (
            "low" if bead["chrF2"] < LOW_CHRF else "mid" if bead["chrF2"] < 50 else "high"
        )
    assert "AKAZAWA Ryosei" in page and "ONODA Kimi" in page  # the manifest's speakers
    assert f"{scores['corpus']['chrF2']['score']:.1f}" in page
    assert "terms hard, beam 1" in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp and html.unescape(csp.group(1)).startswith("default-src 'none';")
    assert not re.search(r"\s(src|href)=", page), "the page must load nothing"


@pytest.mark.slow
def test_text_is_escaped_and_problems_are_flagged(review_run: Path) -> None:
    page = (review_run / "review.html").read_text(encoding="utf-8")
    assert MARKUP not in page
    assert html.escape(MARKUP) in page
    assert page.count("<script>") == 1  # the page's own
    assert 'class="flag missing"' in page and 'class="flag avoid"' in page
    assert '<mark class="term miss"' in page and '<mark class="avoid"' in page
    assert sum(expected_problems(review_run)) == page.count('<li class="flag')


def test_terms_show_their_kind(review_run: Path) -> None:
    """A name is marked as what it names: the reviewer sees a person, not just a term."""
    page = (review_run / "review.html").read_text(encoding="utf-8")
    glossary = load_glossary(GLOSSARY)
    for entry_id in ("akazawa-ryosei", "minister-of-economy-trade-and-industry", "rieti"):
        entry = glossary.get(entry_id)
        assert f"{entry.source} → {entry.target} [{entry.kind}: {entry.id}]" in page
    assert "[term: economic-security]" in page


@pytest.mark.parametrize(
    ("text", "spans", "expected"),
    [
        (
            "a <b> c",
            [Span(2, 5, "term", "t")],
            'a <mark class="term" title="t">&lt;b&gt;</mark> c',
        ),
        (
            'x"&y',
            [Span(0, 1, "avoid", 'say "hi"')],
            '<mark class="avoid" title="say &quot;hi&quot;">x</mark>&quot;&amp;y',
        ),
        # overlapping: leftmost, then longest, wins
        (
            "abcdef",
            [Span(1, 3, "term", "s"), Span(1, 5, "term", "l"), Span(4, 6, "term", "o")],
            'a<mark class="term" title="l">bcde</mark>f',
        ),
        ("", [], ""),
    ],
)
def test_highlight_escapes_every_slice(text: str, spans: list[Span], expected: str) -> None:
    assert highlight(text, spans) == expected


def test_english_terms_are_found_on_the_nfkc_form_but_cut_the_original() -> None:
    glossary = load_glossary(GLOSSARY)
    entry = glossary.get("economic-security")
    text = "Ｅｃｏｎｏｍｉｃ　ｓｅｃｕｒｉｔｙ and economic safety; economic securityfoo"
    spans = english_spans(text, [entry])
    found = [(text[s.start : s.end], s.css) for s in spans]
    assert found == [("Ｅｃｏｎｏｍｉｃ　ｓｅｃｕｒｉｔｙ", "term"), ("economic safety", "avoid")]


@pytest.mark.parametrize(
    ("sentences", "joined"),
    [
        (["経済産業省", "Ministry of Economy"], "経済産業省 Ministry of Economy"),
        (["です。", "次に"], "です。次に"),
        (["AI", "です"], "AI です"),
        (["経済産業大臣", "(ビデオレター)"], "経済産業大臣(ビデオレター)"),
        (["Trade and Industry.", "経済"], "Trade and Industry. 経済"),
        ([], ""),
    ],
)
def test_join_japanese(sentences: list[str], joined: str) -> None:
    assert join_japanese(sentences) == joined


# --- HTER --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "post_edit", "hter"),
    [
        ("the cat sat on the mat", "the cat sat on the mat", 0.0),
        ("the cat sat on mat", "the cat sat on the mat", 100 / 6),
        ("Economic Safety", "economic security", 100.0),  # case counts: the reviewer fixed it
        ("sat on the mat the cat", "the cat sat on the mat", 100 / 6),  # one block shift
    ],
)
def test_hter_is_sacrebleu_ter_against_the_post_edit(
    machine: str, post_edit: str, hter: float
) -> None:
    result = hter_scores([PostEdit("d", ("d-001",), machine, post_edit)])
    assert result["corpus"]["score"] == pytest.approx(hter)
    assert result["segments"][0]["HTER"] == pytest.approx(hter)
    assert "case:mixed" in result["corpus"]["signature"]
    assert result["edited"] == (machine != post_edit)


# --- serving -----------------------------------------------------------------------------


def _get(url: str, host: str | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        return err.code, b"", ""


def test_server_serves_only_the_page_on_loopback(tmp_path: Path) -> None:
    page = tmp_path / "review.html"
    page.write_text("<!DOCTYPE html><title>レビュー</title>\n", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("no", encoding="utf-8")
    server = ReviewServer(page, port=0)
    serve_in_background(server)
    try:
        assert server.server_address[0] == "127.0.0.1"
        port = server.server_address[1]
        status, body, kind = _get(server.url)
        assert (status, body, kind) == (200, page.read_bytes(), "text/html; charset=utf-8")
        assert _get(f"http://127.0.0.1:{port}/")[0] == 200
        assert _get(f"http://127.0.0.1:{port}/secret.txt")[0] == 404
        assert _get(f"http://127.0.0.1:{port}/../secret.txt")[0] == 404
        assert _get(server.url, host=f"attacker.example:{port}")[0] == 403
    finally:
        server.shutdown()
        server.server_close()


# --- the command -------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_review_writes_the_page(review_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "page.html"
    result = CliRunner().invoke(
        main,
        ["review", str(review_run), "--glossary", str(GLOSSARY), "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == (review_run / "review.html").read_bytes()  # deterministic


@pytest.mark.slow
def test_review_of_an_unscored_run_says_what_to_do(review_run: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("run.json", "translations.jsonl"):
        shutil.copy(review_run / name, bare / name)
    result = CliRunner().invoke(main, ["review", str(bare), "--glossary", str(GLOSSARY)])
    assert result.exit_code == 2
    assert "forumtranslate score" in result.output


@pytest.mark.slow
def test_page_shows_hter_once_post_edits_exist(review_run: Path, tmp_path: Path) -> None:
    from forumtranslate.review import save_postedits

    run_dir = tmp_path / "run"
    shutil.copytree(review_run, run_dir)
    view = load_run_view(run_dir, glossary_path=GLOSSARY)
    bead = next(b for b in view.beads if b.sentences)
    first = bead.sentences[0]
    save_postedits(
        run_dir, [PostEdit(bead.bead.doc_id, (first.seg_id,), first.translation, "Fixed.")]
    )
    page = write_review(run_dir, glossary_path=GLOSSARY).read_text(encoding="utf-8")
    assert ">HTER</th>" in page and "1 post-edits" in page
    assert 'class="pe"' in page and "Fixed." in page


# --- in a real browser -------------------------------------------------------------------

BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@contextmanager
def browser_page(height: int) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A Chromium page, 1366 wide, with the console errors and the dialogs it raises."""
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": height})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            yield page, errors, dialogs
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed (.ci/run installs it with fonts-noto-cjk)",
)
def test_page_in_a_headless_browser(review_run: Path) -> None:
    pytest.importorskip("playwright.sync_api", reason="playwright (dev extra)")
    scores = json.loads((review_run / "scores.json").read_text())
    chrf = [b["chrF2"] for b in scores["beads"]]
    docs = [b["doc_id"] for b in scores["beads"]]
    problems = expected_problems(review_run)
    threshold = sorted(chrf)[len(chrf) // 2] + 0.5
    with browser_page(768) as (page, errors, dialogs):
        page.goto((review_run / "review.html").as_uri())
        visible = page.locator("tr.bead:visible")

        assert visible.count() == len(chrf)
        assert page.text_content("#shown") == f"{len(chrf)} of {len(chrf)} beads shown"

        page.fill("#f-threshold", f"{threshold}")
        page.check("#f-below")
        below = sum(c < threshold for c in chrf)
        assert 0 < below < len(chrf)
        assert visible.count() == below

        page.uncheck("#f-below")
        page.check("#f-terms")
        assert visible.count() == sum(p > 0 for p in problems) >= 2

        page.uncheck("#f-terms")
        page.select_option("#f-doc", "opening-onoda")
        assert visible.count() == docs.count("opening-onoda")
        page.check("#f-terms")
        assert visible.count() == sum(
            p > 0 and d == "opening-onoda" for p, d in zip(problems, docs)
        )

        page.uncheck("#f-terms")
        page.select_option("#f-doc", "")
        page.select_option("#f-sort", "asc")
        shown = [float(v) for v in visible.evaluate_all("rs => rs.map(r => r.dataset.chrf)")]
        assert shown == sorted(chrf)
        page.select_option("#f-sort", "corpus")
        shown = [float(v) for v in visible.evaluate_all("rs => rs.map(r => r.dataset.chrf)")]
        assert shown == chrf

        # the injected markup shows as text; it neither runs nor renders
        assert page.get_by_text(MARKUP.strip(), exact=False).count() == 1
        assert page.locator("td b").count() == 0
        assert dialogs == []

        cdp = page.context.new_cdp_session(page)
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument")["root"]["nodeId"]
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "td.ja p"})
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})
        families = [f["familyName"] for f in fonts["fonts"]]
        assert any(name in family for family in families for name in JAPANESE_FONTS), (
            f"Japanese renders in {families}: install fonts-noto-cjk"
        )

        page.emulate_media(media="print")
        assert not page.is_visible("nav.controls")
        page.emulate_media(media="screen")

        page.fill("#f-threshold", f"{LOW_CHRF:g}")
        page.evaluate("window.scrollTo(0, 0)")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
        page.check("#f-terms")  # and one of the beads a reviewer has to look at
        page.screenshot(path=str(SCREENSHOT.with_name("review-terms.png")))
        print(f"review page screenshots: {SCREENSHOT}, {SCREENSHOT.with_name('review-terms.png')}")
        assert errors == []


# --- pictures, confidence and the review-first order -------------------------------------


def page_svg(page: str, key: str) -> ET.Element:
    """The inline SVG of the picture ``key``, parsed as the XML it is."""
    figure = re.search(rf'<figure class="chart" id="{key}">(.*?)</figure>', page, re.S)
    assert figure, f"no picture {key}"
    svg = re.search(r"<svg .*?</svg>", figure.group(1), re.S)
    assert svg
    return ET.fromstring(svg.group(0))


def number_table(page: str, key: str) -> list[list[str]]:
    figure = re.search(rf'<figure class="chart" id="{key}">(.*?)</figure>', page, re.S)
    assert figure
    body = re.search(r"<tbody>(.*?)</tbody>", figure.group(1), re.S)
    assert body
    return [
        [html.unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body.group(1))
    ]


def _height(root: ET.Element, gid: str) -> float:
    [g] = [e for e in root.iter() if e.get("id") == gid]
    path = g.find("{http://www.w3.org/2000/svg}path")
    assert path is not None
    ys = [float(y) for y in re.findall(r"[ML] [-\d.e]+ ([-\d.e]+)", path.get("d", ""))]
    return max(ys) - min(ys)


def bead_confidence(run_dir: Path) -> list[float | None]:
    """Each bead's token-weighted mean log-probability, straight from translations.jsonl."""
    records = {
        r["seg_id"]: r
        for r in map(json.loads, (run_dir / "translations.jsonl").read_text().splitlines())
    }
    out: list[float | None] = []
    for line in (run_dir / "alignment.jsonl").read_text().splitlines():
        scored = [
            records[s]["confidence"]
            for s in json.loads(line)["src_seg_ids"]
            if records[s].get("confidence")
        ]
        tokens = sum(c["tokens"] for c in scored)
        out.append(
            sum(c["mean_logprob"] * c["tokens"] for c in scored) / tokens if tokens else None
        )
    return out


@pytest.mark.slow
def test_pictures_draw_the_numbers_of_scores_json(review_run: Path) -> None:
    page = (review_run / "review.html").read_text(encoding="utf-8")
    scores = json.loads((review_run / "scores.json").read_text())

    bars = page_svg(page, "chart-chrf-doc")
    axes = _height(bars, "chart-chrf-doc-axes")
    for k, (doc_id, doc) in enumerate(scores["documents"].items()):
        drawn = _height(bars, f"chart-chrf-doc-bar-{k}") / axes * 100  # the axis is 0-100
        assert drawn == pytest.approx(doc["chrF2"], abs=0.05), doc_id
    assert number_table(page, "chart-chrf-doc") == [
        [doc_id, f"{doc['chrF2']:.1f}"] for doc_id, doc in scores["documents"].items()
    ]

    chrf = [b["chrF2"] for b in scores["beads"]]
    counts = [
        sum(lo <= c < lo + 10 or (lo == 90 and c == 100) for c in chrf) for lo in range(0, 100, 10)
    ]
    assert [int(row[1]) for row in number_table(page, "chart-chrf-hist")] == counts
    histogram = page_svg(page, "chart-chrf-hist")
    labels = {
        int(e.get("id", "").rsplit("-", 1)[1]): "".join(e.itertext()).strip()
        for e in histogram.iter()
        if e.get("id", "").startswith("chart-chrf-hist-label-")
    }
    assert labels == {k: str(c) for k, c in enumerate(counts) if c}

    confidence = bead_confidence(review_run)
    assert all(c is not None for c, b in zip(confidence, scores["beads"]) if b["src_seg_ids"])
    scatter = page_svg(page, "chart-scatter")
    points = [e for e in scatter.iter() if e.get("id") == "chart-scatter-points"]
    drawn_points = points[0].findall(".//{http://www.w3.org/2000/svg}use")
    assert len(drawn_points) == sum(c is not None for c in confidence)
    rows = number_table(page, "chart-scatter")
    expected = [(c, b["chrF2"]) for c, b in zip(confidence, scores["beads"]) if c is not None]
    assert len(rows) == len(expected)
    for (_, conf, chrf_cell), (c, f) in zip(rows, expected):
        assert float(conf) == pytest.approx(c, abs=1e-3)
        assert float(chrf_cell) == pytest.approx(f, abs=0.05)

    records = [json.loads(line) for line in (review_run / "translations.jsonl").open()]
    terms = number_table(page, "chart-terms")
    for doc_id, *cells in terms:
        found = [t["found"] for r in records if r["doc_id"] == doc_id for t in r["terms"]]
        assert cells[:4] == [str(sum(found)), "0", "0", str(found.count(False))]

    # the confidence column shows what the records say
    shown = re.findall(r'data-confidence="([^"]*)"', page)
    assert len(shown) == len(confidence)
    for cell, c in zip(shown, confidence):
        assert (cell == "") == (c is None)
        if c is not None:
            assert float(cell) == pytest.approx(c, abs=1e-3)


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_pictures_and_the_review_first_order_in_a_headless_browser(review_run: Path) -> None:
    pytest.importorskip("playwright.sync_api", reason="playwright (dev extra)")
    scores = json.loads((review_run / "scores.json").read_text())
    chrf = [b["chrF2"] for b in scores["beads"]]
    problems = expected_problems(review_run)
    with browser_page(900) as (page, errors, _dialogs):
        page.goto((review_run / "review.html").as_uri())

        pictures = page.locator("figure.chart svg")
        assert pictures.count() == 5
        for k in range(5):
            box = pictures.nth(k).bounding_box()
            assert box and box["width"] > 200 and box["height"] > 100
        # the numbers behind a picture open for a reader
        table = page.locator("#chart-chrf-doc table.numbers")
        assert not table.is_visible()
        page.click("#chart-chrf-doc summary")
        assert table.is_visible()
        assert page.get_by_role("img", name=re.compile("^Bar chart of chrF2")).count() == 1
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT.with_name("review-charts.png")), full_page=False)

        visible = page.locator("tr.bead:visible")
        conf = [
            None if v == "" else float(v)
            for v in visible.evaluate_all("rs => rs.map(r => r.dataset.confidence)")
        ]
        page.select_option("#f-sort", "conf")
        order = [int(v) for v in visible.evaluate_all("rs => rs.map(r => r.dataset.order)")]
        big = float("inf")
        assert order == sorted(
            range(len(conf)), key=lambda k: (conf[k] if conf[k] is not None else big, k)
        )

        known = sorted(c for c in conf if c is not None)
        quartile = known[(len(known) - 1) // 4]
        urgency = [
            int(c is not None and c <= quartile) + int(p > 0) + int(f < LOW_CHRF)
            for c, p, f in zip(conf, problems, chrf)
        ]
        page.select_option("#f-sort", "first")
        order = [int(v) for v in visible.evaluate_all("rs => rs.map(r => r.dataset.order)")]
        assert order == sorted(
            range(len(conf)),
            key=lambda k: (-urgency[k], conf[k] if conf[k] is not None else big, chrf[k], k),
        )
        assert urgency[order[0]] >= 2
        page.evaluate("window.scrollTo(0, document.querySelector('nav.controls').offsetTop)")
        page.screenshot(path=str(SCREENSHOT.with_name("review-first.png")))

        limit = (known[0] + known[-1]) / 2
        page.fill("#f-conf", f"{limit}")
        page.check("#f-unsure")
        assert visible.count() == sum(c is not None and c < limit for c in conf)
        assert errors == []
