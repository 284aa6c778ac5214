"""The Ray engine: the local engine's files on the same input, resume by shards, other inputs.

A local Ray cluster (2 CPUs, no dashboard, no network) is started once for the module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from forumtranslate.cli import main
from forumtranslate.distributed import (
    SHARD_DIR,
    InputSource,
    RayOptions,
    Shard,
    finished_shards,
    plan_shards,
    read_documents,
    run_ray,
    write_shard,
)
from forumtranslate.errors import ForumTranslateError, InputError
from forumtranslate.glossary import load_glossary
from forumtranslate.run import JOURNAL_FILE, make_translator, prepare_sources, run
from forumtranslate.storage import hold_folder

from .conftest import DATA, GLOSSARY, SMALL_DOCS, make_corpus
from .test_run import CrashAfter, config_for, read_records

NOT_COMPARED = {JOURNAL_FILE, SHARD_DIR}  # each engine's own resume state


@pytest.fixture(scope="module")
def ray_cluster() -> object:
    ray = pytest.importorskip(
        "ray", reason="the Ray engine needs the ray extra: pip install -e '.[ray]'"
    )
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # inherited by the Ray workers
        os.environ.setdefault(name, "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


def run_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name not in NOT_COMPARED}


def shard_records(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    rows = [
        r for p in sorted((out / SHARD_DIR).glob("*.parquet")) for r in pq.read_table(p).to_pylist()
    ]
    rows.sort(key=lambda r: r.pop("position"))
    return rows


@pytest.mark.slow
def test_ray_engine_writes_the_local_engine_files_on_several_documents(
    ray_cluster: object, tiny_marian: Path, tmp_path: Path
) -> None:
    """Three documents of the forum corpus (the whole corpus took this test 5 minutes on a
    busy machine, for no case the three lack: headings, bullets, several speakers)."""
    data = make_corpus(tmp_path / "corpus", (*SMALL_DOCS, "opening-tsutsui"))
    # same folder name under two parents: the review page shows it
    local, spread = tmp_path / "local" / "run", tmp_path / "ray" / "run"
    run(config_for(tiny_marian, data, local))
    result = run_ray(config_for(tiny_marian, data, spread), RayOptions(actors=2, shard_sentences=8))
    assert result.sentences == result.translated_now > 20
    expected = run_files(local)
    assert {"run.json", "translations.jsonl", "alignment.jsonl", "scores.json"} <= set(expected)
    got = run_files(spread)
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], name
    assert len(list((spread / SHARD_DIR).glob("shard-*.parquet"))) > 2
    assert shard_records(spread) == read_records(local)


@pytest.mark.slow
def test_an_interrupted_ray_run_resumes_without_redoing_finished_shards(
    ray_cluster: object, tiny_marian: Path, small_corpus: Path, tmp_path: Path
) -> None:
    # same folder name under two parents: the review page shows it
    local, spread = tmp_path / "local" / "run", tmp_path / "ray" / "run"
    run(config_for(tiny_marian, small_corpus, local))
    config = config_for(tiny_marian, small_corpus, spread)
    options = RayOptions(actors=1, shard_sentences=8)
    written = []

    def crash_after_two(step: int, done: int) -> None:
        written.append(step)
        if len(written) == 2:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        run_ray(config, options, progress=crash_after_two)
    assert not (spread / "translations.jsonl").exists()
    shards = {p.name: p.stat() for p in (spread / SHARD_DIR).glob("shard-*.parquet")}
    assert len(shards) == 2

    resumed = run_ray(config, options)
    assert resumed.resumed == sum(written) > 0
    assert resumed.translated_now == resumed.sentences - resumed.resumed
    for name, before in shards.items():  # finished shards were not written again
        after = (spread / SHARD_DIR / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert run_files(spread) == run_files(local)

    again = run_ray(config, options)
    assert (again.translated_now, again.resumed) == (0, again.sentences)
    with pytest.raises(ForumTranslateError, match="other settings"):
        run_ray(config_for(tiny_marian, small_corpus, spread, beam_size=1), options)


@pytest.mark.slow
def test_a_table_input_through_the_cli_gives_the_corpus_records(
    ray_cluster: object, tiny_marian: Path, small_corpus: Path, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    local = tmp_path / "local"
    run(config_for(tiny_marian, small_corpus, local, beam_size=1))
    _, documents = read_documents(InputSource(small_corpus))
    table = tmp_path / "docs.parquet"
    pq.write_table(
        pa.table({"doc_id": [d.doc_id for d in documents], "text": [d.text for d in documents]}),
        table,
    )
    out = tmp_path / "from-table"
    args = ["run", "--engine", "ray", "--input", str(table), "--model", str(tiny_marian)]
    args += ["--out", str(out), "--beam", "1", "--max-batch-tokens", "300", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (out / "translations.jsonl").read_bytes() == (local / "translations.jsonl").read_bytes()
    assert not (out / "scores.json").exists()  # a table has no references to score against
    settings = json.loads((out / "run.json").read_text())
    assert settings["input"]["format"] == "parquet"
    assert settings["input"]["documents"] == 2


# --- without a cluster ----------------------------------------------------------------


def write_inputs(documents: list, root: Path) -> dict[str, InputSource]:
    """The same documents as each input format, columns named ``id`` and ``body``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    rows = [{"id": d.doc_id, "body": d.text} for d in documents]
    jsonl = root / "docs.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (root / "parquet").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:1]), root / "parquet" / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(rows[1:]), root / "parquet" / "part-1.parquet")
    Dataset.from_list(rows).save_to_disk(str(root / "hf"))
    (root / "folder").mkdir()
    for d in documents:
        (root / "folder" / f"{d.doc_id}.txt").write_text(d.text, encoding="utf-8")
    columns = {"id_column": "id", "text_column": "body"}
    return {
        "jsonl": InputSource(jsonl, **columns),
        "parquet": InputSource(root / "parquet", **columns),
        "hf": InputSource(root / "hf", **columns),
        "folder": InputSource(root / "folder"),
    }


def test_every_input_format_reads_the_same_documents(small_corpus: Path, tmp_path: Path) -> None:
    fmt, documents = read_documents(InputSource(small_corpus))
    assert fmt == "data" and [d.doc_id for d in documents] == ["opening-akazawa", "opening-onoda"]
    for name, source in write_inputs(documents, tmp_path).items():
        found, read = read_documents(source)
        assert found == name
        assert [(d.doc_id, d.text) for d in read] == [(d.doc_id, d.text) for d in documents]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"doc_id": "a", "text": "一。"}', '{"doc_id": "a", "text": "二。"}'], "duplicate"),
        (['{"doc_id": "a", "body": "一。"}'], "lacks text"),
        (['{"doc_id": "a", "text": "一。\\r\\n二。"}'], "CRLF"),
        (['{"doc_id": "a", "text": "  "}'], "empty"),
        (['{"doc_id": 7, "text": "一。"}'], "non-empty string"),
        (['{"doc_id": "a", "text": "一\\u0000。"}'], "NUL character"),  # issue 16
        (['{"doc_id": "a", "text": "一\u2028二。"}', '{"doc_id": "b", "text": "三。"}'], None),
    ],
)
def test_bad_table_rows_are_input_errors(
    lines: list[str], message: str | None, tmp_path: Path
) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if message is None:  # a line separator inside a text is no line break of the file
        assert [d.doc_id for d in read_documents(InputSource(path))[1]] == ["a", "b"]
        return
    with pytest.raises(InputError, match=message):
        read_documents(InputSource(path))


@pytest.mark.parametrize(
    ("batches", "size", "expected"),
    [
        ([[0, 1], [2], [3, 4, 5], [6]], 3, [((0, 1), (0, 1, 2)), ((2,), (3, 4, 5)), ((3,), (6,))]),
        ([[5, 1], [0], [4, 2, 3]], 100, [((0, 1, 2), (0, 1, 2, 3, 4, 5))]),
        ([[1], [0]], 1, [((0,), (1,)), ((1,), (0,))]),
    ],
)
def test_shards_group_whole_planned_batches(
    batches: list[list[int]], size: int, expected: list[tuple]
) -> None:
    shards = plan_shards(batches, size)
    assert [(s.batches, s.positions) for s in shards] == expected
    assert [s.number for s in shards] == list(range(len(expected)))


def test_a_shard_of_another_run_is_refused(tmp_path: Path) -> None:
    sources = prepare_sources(DATA, load_glossary(GLOSSARY))[:3]
    shard = Shard(0, (0,), (0, 1, 2))
    write_shard(tmp_path, shard, sources, ["a", "b", "c"], "settings-1")
    assert finished_shards(tmp_path, [shard], "settings-1") == {0}
    with pytest.raises(ForumTranslateError, match="not a shard this run plans"):
        finished_shards(tmp_path, [shard], "settings-2")
    with pytest.raises(ForumTranslateError, match="not a shard this run plans"):
        finished_shards(tmp_path, [Shard(0, (0,), (0, 1))], "settings-1")
    (tmp_path / shard.name).write_bytes(b"torn")  # unreadable: redone, not trusted
    assert finished_shards(tmp_path, [shard], "settings-1") == set()


def test_importing_the_engine_does_not_import_ray() -> None:
    """Ray is an optional extra: only running the engine needs it."""
    code = "import sys, forumtranslate.distributed; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_busy_run_folder_is_refused_before_ray_starts(
    tiny_marian: Path, small_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    with hold_folder(out), pytest.raises(ForumTranslateError, match="another forumtranslate run"):
        run_ray(config_for(tiny_marian, small_corpus, out), RayOptions(actors=1))
    assert not (out / SHARD_DIR).exists()


@pytest.mark.slow
def test_each_engine_resumes_what_the_other_began(
    ray_cluster: object, tiny_marian: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """A local run stopped after two batches is finished by the Ray engine, and a Ray run
    stopped after two shards by the local engine; each without redoing the other's work,
    and each ends with the files of a run that was never stopped."""
    whole = tmp_path / "whole" / "run"  # same folder name everywhere: the review page shows it
    run(config_for(tiny_marian, small_corpus, whole))
    options = RayOptions(actors=1, shard_sentences=8)

    begun_locally = tmp_path / "local-first" / "run"
    config = config_for(tiny_marian, small_corpus, begun_locally)
    with pytest.raises(KeyboardInterrupt):
        run(config, translator=CrashAfter(make_translator(config), batches=2))
    journal = [json.loads(line) for line in (begun_locally / JOURNAL_FILE).read_text().splitlines()]
    by_local = sum(len(entry["data"]["indices"]) for entry in journal)
    finished = run_ray(config, options)
    # the shards whose batches the journal holds all of (a shard partly done is redone)
    assert 0 < finished.resumed <= by_local
    assert finished.translated_now == finished.sentences - finished.resumed
    assert run_files(begun_locally) == run_files(whole)

    begun_on_ray = tmp_path / "ray-first" / "run"
    config = config_for(tiny_marian, small_corpus, begun_on_ray)
    written: list[int] = []

    def crash_after_two(step: int, done: int) -> None:
        written.append(step)
        if len(written) == 2:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        run_ray(config, options, progress=crash_after_two)
    finished = run(config)
    assert finished.resumed == sum(written) > 0
    assert finished.translated_now == finished.sentences - finished.resumed
    assert run_files(begun_on_ray) == run_files(whole)


@pytest.mark.slow
def test_both_engines_treat_an_unspellable_term_alike(
    ray_cluster: object,
    tiny_marian: Path,
    small_corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One plan for both engines (``run.plan_run``): a hard term the model's vocabulary
    cannot write is, with --allow-unspellable-terms, a warning on the user's terminal,
    translated unconstrained and recorded as unspellable, in the same files."""
    from dataclasses import replace

    glossary = tmp_path / "terms.tsv"
    lines = GLOSSARY.read_text(encoding="utf-8").splitlines(keepends=True)
    cells = lines[1].split("\t")
    assert cells[0] == "economic-security"
    cells[4] = "Wałęsa"
    lines[1] = "\t".join(cells)
    glossary.write_text("".join(lines), encoding="utf-8")
    outs = {engine: tmp_path / engine / "run" for engine in ("local", "ray")}
    configs = {
        engine: replace(
            config_for(tiny_marian, small_corpus, out, beam_size=1),
            glossary_path=glossary,
            allow_unspellable_terms=True,
            align_and_score=False,
        )
        for engine, out in outs.items()
    }
    warning = (
        f"forumtranslate: warning: {glossary}:2: the model's target vocabulary cannot write "
        "'Wałęsa'"
    )
    run(configs["local"])
    assert warning in capsys.readouterr().err
    run_ray(configs["ray"], RayOptions(actors=1, shard_sentences=8))
    assert warning in capsys.readouterr().err
    assert run_files(outs["ray"]) == run_files(outs["local"])
    economic = [
        t
        for r in read_records(outs["ray"])
        for t in r["terms"]
        if t["entry_id"] == "economic-security"
    ]
    assert economic and all(t.get("unspellable") is True for t in economic)
