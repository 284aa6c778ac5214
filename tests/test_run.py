"""The batch job end to end: the run folder, resume after a crash, refusal to mix runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from forumtranslate.cli import main
from forumtranslate.errors import ForumTranslateError
from forumtranslate.records import TermMatch
from forumtranslate.run import JOURNAL_FILE, RunConfig, make_translator, run
from forumtranslate.storage import hold_folder
from forumtranslate.translate import DecodingOptions, Translation, Translator

from .conftest import GLOSSARY

OUTPUTS = ("run.json", "translations.jsonl", "alignment.jsonl", "scores.json", "review.html")


def config_for(model: Path, data: Path, out: Path, **decoding: Any) -> RunConfig:
    options = {"beam_size": 2, "max_batch_tokens": 300, **decoding}
    return RunConfig(
        out_dir=out,
        data_dir=data,
        glossary_path=GLOSSARY,
        model=str(model),
        device="cpu",
        decoding=DecodingOptions(**options),
    )


class CrashAfter(Translator):
    """Delegates to a real translator, then dies like a killed process after ``batches``."""

    def __init__(self, inner: Translator, batches: int):
        self.inner, self.left = inner, batches
        self.options = inner.options
        self.calls = 0

    def translate_batch(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> list[str]:
        return [t.text for t in self.translate_batch_terms(sources, terms)]

    def translate_batch_terms(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> list[Translation]:
        """The inner translator's texts with how each term got there (edited, appended)
        and their confidence."""
        if self.left == 0:
            raise KeyboardInterrupt("simulated crash")
        self.left -= 1
        self.calls += 1
        return self.inner.translate_batch_terms(sources, terms)

    def count_tokens(self, sources: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(sources)

    def signature(self) -> dict[str, Any]:
        return self.inner.signature()


def read_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "translations.jsonl").read_text().splitlines()]


def test_run_writes_the_folder_in_corpus_order_with_every_term(
    tiny_model: Path, small_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = run(config_for(tiny_model, small_corpus, out))
    for name in (*OUTPUTS, "translations.parquet"):
        assert (out / name).is_file(), name
    records = read_records(out)
    assert result.sentences == len(records) == result.translated_now
    assert [r["doc_id"] for r in records] == sorted(
        (r["doc_id"] for r in records), key=["opening-akazawa", "opening-onoda"].index
    )
    for doc_id in ("opening-akazawa", "opening-onoda"):
        indices = [r["index"] for r in records if r["doc_id"] == doc_id]
        assert indices == list(range(len(indices)))
    terms = [t for r in records for t in r["terms"]]
    assert len(terms) > 10
    assert all(t["found"] for t in terms)
    settings = json.loads((out / "run.json").read_text())
    assert settings["translator"]["revision"].startswith("local-sha256:")
    assert settings["glossary"]["sha256"]
    assert "ja/opening-akazawa.txt" in settings["inputs_sha256"]
    scores = json.loads((out / "scores.json").read_text())
    assert scores["terminology"]["accuracy"] == 1.0


def test_terms_off_records_what_the_model_does_alone(
    tiny_marian: Path, small_corpus: Path, tmp_path: Path
) -> None:
    run(config_for(tiny_marian, small_corpus, tmp_path / "off", terms="off", beam_size=1))
    terms = [t for r in read_records(tmp_path / "off") for t in r["terms"]]
    assert terms and not all(t["found"] for t in terms)


def test_crash_then_resume_ends_with_the_same_files(
    tiny_marian: Path, small_corpus: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole" / "run"  # same folder name: the review page shows it
    run(config_for(tiny_marian, small_corpus, whole))

    broken = tmp_path / "broken" / "run"
    config = config_for(tiny_marian, small_corpus, broken)
    crashing = CrashAfter(make_translator(config), batches=2)
    with pytest.raises(KeyboardInterrupt):
        run(config, translator=crashing)
    assert not (broken / "translations.jsonl").exists()
    journal_lines = (broken / JOURNAL_FILE).read_text().splitlines()
    assert len(journal_lines) == 2

    resumed = run(config)
    assert resumed.resumed > 0
    assert resumed.translated_now == resumed.sentences - resumed.resumed
    for name in OUTPUTS:
        assert (broken / name).read_bytes() == (whole / name).read_bytes(), name


def test_a_torn_journal_line_is_redone_not_trusted(
    tiny_marian: Path, small_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = config_for(tiny_marian, small_corpus, out)
    first = run(config, translator=None)
    journal = out / JOURNAL_FILE
    lines = journal.read_text().splitlines(keepends=True)
    torn = lines[-1][: len(lines[-1]) // 2]
    journal.write_text("".join(lines[:-1]) + torn)
    expected = (out / "translations.jsonl").read_bytes()
    (out / "translations.jsonl").unlink()

    again = run(config)
    batch = json.loads(lines[-1])["data"]["indices"]
    assert again.translated_now == len(batch)
    assert (out / "translations.jsonl").read_bytes() == expected
    assert first.sentences == again.sentences


def test_other_settings_in_the_same_folder_are_refused(
    tiny_marian: Path, small_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run(config_for(tiny_marian, small_corpus, out, beam_size=1))
    with pytest.raises(ForumTranslateError, match="other settings"):
        run(config_for(tiny_marian, small_corpus, out, beam_size=2))


def test_a_second_run_into_a_busy_folder_is_refused_and_loses_nothing(
    tiny_marian: Path, small_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = config_for(tiny_marian, small_corpus, out, beam_size=1)
    with hold_folder(out):  # as a run in another process would hold it
        with pytest.raises(ForumTranslateError, match="another forumtranslate run") as refused:
            run(config)
        assert str(out) in str(refused.value)
        assert not (out / JOURNAL_FILE).exists()
    run(config)  # once the other run is gone, the folder is free
    assert read_records(out)


def test_cli_run_with_a_local_model(tiny_nllb: Path, small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-run"
    args = ["run", "--model", str(tiny_nllb), "--data", str(small_corpus), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--beam", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "terminology accuracy" in result.output
    assert (out / "scores.json").is_file()


def test_config_file_supplies_defaults_and_rejects_unknown_keys(
    tiny_marian: Path, small_corpus: Path, tmp_path: Path
) -> None:
    config = tmp_path / "forumtranslate.toml"
    config.write_text(
        f'[run]\nmodel = "{tiny_marian}"\ndata = "{small_corpus}"\nbeam_size = 1\n'
        f'out = "{tmp_path / "from-config"}"\ndevice = "cpu"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["run", "--config", str(config), "--no-score"])
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "from-config" / "run.json").read_text())
    assert settings["translator"]["decoding"]["beam_size"] == 1

    config.write_text("[run]\nbeam = 4\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert "unknown key run.beam" in result.output


@pytest.mark.parametrize("backend", ["transformers", "ct2"])
def test_no_confidence_skips_the_scoring_pass_and_changes_no_translation(
    tiny_marian: Path, small_corpus: Path, tmp_path: Path, backend: str
) -> None:
    """``--no-confidence`` is a speed option: the records' texts are the scored run's, their
    ``confidence`` is null, and run.json says the run was made without it."""
    common = ["run", "--model", str(tiny_marian), "--data", str(small_corpus), "--beam", "1"]
    common += ["--device", "cpu", "--backend", backend, "--no-score"]
    outputs = {}
    for name, extra in (("scored", []), ("unscored", ["--no-confidence"])):
        out = tmp_path / name
        result = CliRunner().invoke(main, [*common, "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        outputs[name] = read_records(out)
        decoding = json.loads((out / "run.json").read_text())["translator"]["decoding"]
        assert decoding["confidence"] is (name == "scored")
    scored, unscored = outputs["scored"], outputs["unscored"]
    assert [r["translation"] for r in unscored] == [r["translation"] for r in scored]
    assert all(r["confidence"] is not None for r in scored if r["translation"])
    assert all(r["confidence"] is None for r in unscored)


def test_config_file_takes_confidence_as_true_or_false(tmp_path: Path) -> None:
    from forumtranslate.config import load_run_config
    from forumtranslate.errors import InputError

    config = tmp_path / "forumtranslate.toml"
    config.write_text("[run]\nconfidence = false\n", encoding="utf-8")
    assert load_run_config(config) == {"confidence": False}
    config.write_text("[run]\nconfidence = 0\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"run\.confidence must be true or false"):
        load_run_config(config)
    config.write_text("[run]\nbeam_size = true\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"run\.beam_size must be an integer"):
        load_run_config(config)
