"""Interruption and resume (issue 8): a run killed at any moment, or stopped with Ctrl-C,
then started again with the same command, ends with the files of an uninterrupted run and
never translates a batch twice; a run folder is never resumed with other settings.

The kill test drives a real ``forumtranslate run`` process (tiny Marian model, two
documents, batches of 200 tokens) and SIGKILLs it at moments drawn from a fixed seed, each
recognised from outside by what the run folder holds: while the model loads, in the middle
of two batches (each kill then leaves half a journal line, as a kill inside a write would),
while aligning and while scoring.

Also here: Ctrl-C, refusing to resume with other options, the journal's handling of
what a crash leaves, and a fuzz test of constrained decoding on the real tiny models.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import forumtranslate.run
from forumtranslate.cli import main
from forumtranslate.glossary import check_terms
from forumtranslate.hf import TransformersTranslator
from forumtranslate.records import TermMatch
from forumtranslate.storage import Journal
from forumtranslate.translate import (
    DecodingOptions,
    Translation,
    Translator,
)

from .conftest import DATA, GLOSSARY, make_corpus

KILL_SEED = 8  # the number; change it to explore other kill points
BEAM, BATCH_TOKENS = "2", "200"  # small batches, so that a run has several


def run_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """The one command every start of a run repeats."""
    return [
        "run",
        *("--model", str(model), "--data", str(data), "--glossary", str(GLOSSARY)),
        *("--out", str(out), "--beam", BEAM, "--max-batch-tokens", BATCH_TOKENS),
        *("--device", "cpu", *extra),
    ]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a run folder, hidden ones included: a leftover temporary file counts."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def journal_units(folder: Path) -> list[str]:
    """The units of the journal's complete lines (a torn last line is not one)."""
    journal = folder / "journal.jsonl"
    if not journal.exists():
        return []
    units = []
    for line in journal.read_bytes().split(b"\n")[:-1]:
        try:
            units.append(json.loads(line)["unit"])
        except ValueError:
            break
    return units


def journal_sentences(journal: bytes) -> int:
    return sum(len(json.loads(line)["data"]["indices"]) for line in journal.splitlines())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def uninterrupted(
    tiny_marian: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The run folder of one uninterrupted run: what every resumed run must end as."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = CliRunner().invoke(main, run_args(tiny_marian, corpus, out))
    assert result.exit_code == 0, result.output
    return out


# --- SIGKILL at random points, then the same command again ----------------------------


@dataclass(frozen=True)
class KillPoint:
    """When to kill, as seen from outside: the model still loading (no run.json yet), a
    number of batches in the journal, or a file this start has written; then a delay."""

    name: str
    batches: int | None = None
    written: str | None = None
    delay: float = 0.0

    def reached(self, out: Path, started_ns: int) -> bool:
        if self.batches is not None:
            return len(journal_units(out)) >= self.batches
        if self.written is not None:
            path = out / self.written
            return path.exists() and path.stat().st_mtime_ns >= started_ns
        return out.is_dir() and not (out / "run.json").exists()


def kill_points(rng: random.Random, batches: int) -> list[KillPoint]:
    """One kill in each stage of a run, two while translating, at seeded random moments."""
    first = rng.randint(1, batches // 2)
    second = rng.randint(first + 1, batches - 1)
    return [
        KillPoint("loading the model", delay=rng.uniform(0.0, 1.0)),
        KillPoint(f"translating batch {first + 1}", batches=first, delay=rng.uniform(0, 0.3)),
        KillPoint(f"translating batch {second + 1}", batches=second, delay=rng.uniform(0, 0.3)),
        KillPoint("aligning", written="translations.parquet", delay=rng.uniform(0.0, 0.2)),
        KillPoint("scoring", written="alignment.jsonl", delay=rng.uniform(0.0, 0.2)),
    ]


def subprocess_env() -> dict[str, str]:
    """One thread, as in the tests: on a busy machine OpenMP threads fight each other."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def describe(out: Path) -> str:
    """What the run folder shows: the stage a kill actually hit."""
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    return f"{len(journal_units(out))} batches in the journal; files: {', '.join(names)}"


def start_and_kill(args: Sequence[str], out: Path, point: KillPoint, log: Path) -> str:
    """Start the run, SIGKILL it once ``point`` is reached; what the folder held then."""
    started_ns = time.time_ns()
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "forumtranslate", *args],
            stdout=output,
            stderr=output,
            env=subprocess_env(),
        )
        try:
            while process.poll() is None and not point.reached(out, started_ns):
                time.sleep(0.01)
            time.sleep(point.delay)
            if process.poll() is not None:
                return f"finished first (exit {process.returncode})"
            seen = describe(out)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
            return seen
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def tear_last_line(journal: Path, full_line: bytes) -> None:
    """What a kill in the middle of writing a journal line leaves: half of it."""
    with journal.open("ab") as handle:
        handle.write(full_line[: len(full_line) // 2])


def test_killed_at_random_points_then_resumed_ends_byte_for_byte_like_an_uninterrupted_run(
    tiny_marian: Path, corpus: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    expected = folder_bytes(uninterrupted)
    batches = len(journal_units(uninterrupted))
    assert batches >= 5, "the kill points need a run of several batches"
    out, log = tmp_path / "run", tmp_path / "log.txt"
    args = run_args(tiny_marian, corpus, out)

    hits = {}
    for point in kill_points(random.Random(KILL_SEED), batches):
        hits[point.name] = start_and_kill(args, out, point, log)
        if point.name.startswith("translating"):
            done = len(journal_units(out))
            tear_last_line(out / "journal.jsonl", expected["journal.jsonl"].splitlines()[done])
    print("\n".join(f"killed while {name}: {seen}" for name, seen in hits.items()))
    assert not [seen for seen in hits.values() if seen.startswith("finished")], hits

    sentences_saved = journal_sentences((out / "journal.jsonl").read_bytes())
    final = subprocess.run(
        [sys.executable, "-m", "forumtranslate", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert final.returncode == 0, final.stderr + log.read_text(errors="replace")
    total = journal_sentences(expected["journal.jsonl"])
    now = f"{total - sentences_saved} translated now, {sentences_saved} from an earlier start"
    assert now in final.stdout

    assert folder_bytes(out) == expected  # same names (no temporary file left), same bytes
    assert journal_units(out) == [str(n) for n in range(batches)]  # each batch written once
    assert "Traceback" not in log.read_text(errors="replace")


# --- Ctrl-C ------------------------------------------------------------------------------


class CtrlCDuringBatch(Translator):
    """A real translator, and a real SIGINT to this process while batch ``batch`` runs."""

    def __init__(self, inner: Translator, batch: int):
        self.inner, self.batch, self.calls = inner, batch, 0
        self.options = inner.options

    def translate_batch(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> list[str]:
        return [t.text for t in self.translate_batch_terms(sources, terms)]

    def translate_batch_terms(
        self, sources: Sequence[str], terms: Sequence[Sequence[TermMatch]]
    ) -> list[Translation]:
        self.calls += 1
        if self.calls == self.batch:
            os.kill(os.getpid(), signal.SIGINT)
        return self.inner.translate_batch_terms(sources, terms)

    def count_tokens(self, sources: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(sources)

    def signature(self) -> dict[str, Any]:
        return self.inner.signature()


def test_ctrl_c_finishes_the_batch_in_hand_says_how_to_resume_and_resumes(
    tiny_marian: Path,
    corpus: Path,
    uninterrupted: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "run"
    real = forumtranslate.run.make_translator
    with monkeypatch.context() as patch:
        patch.setattr(
            forumtranslate.run, "make_translator", lambda c: CtrlCDuringBatch(real(c), batch=2)
        )
        stopped = CliRunner().invoke(main, run_args(tiny_marian, corpus, out))
    assert stopped.exit_code == 2
    assert "Traceback" not in stopped.output
    saved = journal_sentences((out / "journal.jsonl").read_bytes())
    total = journal_sentences((uninterrupted / "journal.jsonl").read_bytes())
    assert journal_units(out) == ["0", "1"]  # batch 2 was finished and saved, then it stopped
    assert stopped.stderr.splitlines()[-1] == (
        f"forumtranslate: error: {out}: interrupted after {saved} of {total} sentences; "
        "finished batches are saved, run the same command again to resume"
    )

    resumed = CliRunner().invoke(main, run_args(tiny_marian, corpus, out))
    assert resumed.exit_code == 0, resumed.output
    assert f"({total - saved} translated now, {saved} from an earlier start)" in resumed.stdout
    assert folder_bytes(out) == folder_bytes(uninterrupted)


def test_ctrl_c_while_the_model_loads_says_how_to_resume(
    tiny_marian: Path, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ctrl_c_while_loading(_config: Any) -> Translator:
        raise KeyboardInterrupt

    monkeypatch.setattr(forumtranslate.run, "make_translator", ctrl_c_while_loading)
    result = CliRunner().invoke(main, run_args(tiny_marian, corpus, tmp_path / "run"))
    assert result.exit_code == 2
    assert result.stderr == (
        f"forumtranslate: error: {tmp_path / 'run'}: interrupted; finished batches are saved, "
        "run the same command again to resume\n"
    )


# --- never mix two runs in one folder -----------------------------------------------------


def edited_glossary(tmp: Path) -> str:
    copy = tmp / "terms.tsv"
    copy.write_text(
        GLOSSARY.read_text(encoding="utf-8") + "new-term\tterm\t新用語\t\tnew term\t\t\t\n"
    )
    return str(copy)


OTHER_OPTIONS = [  # (what changed, the options added to the command, what the message names)
    ("beam", lambda tmp, nllb: ["--beam", "1"], "translator.decoding.beam_size"),
    ("batch size", lambda tmp, nllb: ["--max-batch-tokens", "300"], "max_batch_tokens"),
    ("glossary off", lambda tmp, nllb: ["--terms", "off"], "translator.decoding.terms"),
    ("model", lambda tmp, nllb: ["--model", str(nllb)], "translator.model"),
    ("glossary", lambda tmp, nllb: ["--glossary", edited_glossary(tmp)], "glossary.sha256"),
]


@pytest.mark.parametrize(
    ("options", "named"),
    [(options, named) for _what, options, named in OTHER_OPTIONS],
    ids=[what for what, _options, _named in OTHER_OPTIONS],
)
def test_starting_again_with_other_options_is_refused_and_changes_nothing(
    options: Callable[[Path, Path], list[str]],
    named: str,
    tiny_marian: Path,
    tiny_nllb: Path,
    corpus: Path,
    uninterrupted: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    args = [*run_args(tiny_marian, corpus, out), *options(tmp_path, tiny_nllb)]  # last one wins
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith(f"forumtranslate: error: {out}: this run folder holds a run with ")
    assert named in message and "Use another --out folder" in message
    assert folder_bytes(out) == folder_bytes(uninterrupted)


def test_a_journal_that_run_json_does_not_vouch_for_is_refused(
    tiny_marian: Path, corpus: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    (out / "run.json").unlink()
    result = CliRunner().invoke(main, run_args(tiny_marian, corpus, out))
    assert result.exit_code == 2
    assert "holds a journal.jsonl but no run.json" in result.stderr

    shutil.copy(uninterrupted / "run.json", out / "run.json")
    Journal(out / "journal.jsonl").append("99", {"indices": [0], "translations": ["x"]})
    result = CliRunner().invoke(main, run_args(tiny_marian, corpus, out))
    assert result.exit_code == 2
    assert "batch '99' is not one this run plans" in result.stderr


# --- what a crash leaves behind ------------------------------------------------------------


CRASHED_JOURNALS = [  # (what a crash left, the journal's two lines → the file, units trusted)
    ("intact", lambda a, b: a + b, ["0", "1"]),
    ("torn last line", lambda a, b: a + b[: len(b) // 2], ["0"]),
    ("last line without its newline", lambda a, b: a + b[:-1], ["0"]),
    ("checksum does not match", lambda a, b: a + b.replace(b"[1]", b"[2]"), ["0"]),
    ("garbage, then a good line", lambda a, b: a + b"\x00\x00\n" + b, ["0"]),
    ("JSON, but not a journal line", lambda a, b: a + b"[1, 2]\n", ["0"]),
    ("empty", lambda a, b: b"", []),
]


@pytest.mark.parametrize(
    ("crashed", "trusted"),
    [(crashed, trusted) for _name, crashed, trusted in CRASHED_JOURNALS],
    ids=[name for name, _crashed, _trusted in CRASHED_JOURNALS],
)
def test_the_journal_trusts_only_intact_lines_and_cuts_off_the_rest(
    crashed: Callable[[bytes, bytes], bytes], trusted: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "journal.jsonl"
    Journal(path).append("0", {"indices": [0], "translations": ["a"]})
    Journal(path).append("1", {"indices": [1], "translations": ["b"]})
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(crashed(*lines))

    assert list(Journal(path).load()) == trusted
    assert path.read_bytes() == b"".join(lines[: len(trusted)])  # the rest is cut off


def test_leftovers_of_a_crash_are_cleaned_up_and_redone(
    tiny_marian: Path, corpus: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    lines = (out / "journal.jsonl").read_bytes().splitlines(keepends=True)
    (out / "journal.jsonl").write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # torn
    for name in ("translations.jsonl", "alignment.jsonl", "scores.json"):
        (out / f".{name}.k3j9x2.tmp").write_text("half a fi")  # killed inside replacing()
    (out / "scores.json").unlink()

    result = CliRunner().invoke(main, run_args(tiny_marian, corpus, out))
    assert result.exit_code == 0, result.output
    redone = len(json.loads(lines[-1])["data"]["indices"])
    kept = journal_sentences(b"".join(lines[:-1]))
    assert f"({redone} translated now, {kept} from an earlier start)" in result.stdout
    assert folder_bytes(out) == folder_bytes(uninterrupted)


# --- fuzzed: constraint decoding on the real tiny models -------------------------------


def english_words() -> list[str]:
    """Words of the references, on which the tiny models' vocabularies were trained."""
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted((DATA / "en").glob("*.txt")))
    return sorted({word.lower() for word in re.findall(r"\b[A-Za-z]{4,12}\b", text)})


WORDS = english_words()
PHRASES = st.lists(st.sampled_from(WORDS), min_size=1, max_size=2).map(" ".join)
SOURCES = [  # short sentences like the corpus's, to keep decoding quick
    "経済安全保障は重要である。",
    "小野田紀美 経済安全保障担当大臣(ビデオレター)",
    "重要鉱物の安定供給確保を喫緊の課題とする。",
    "ご清聴ありがとうございました。",
]


@pytest.fixture(scope="module")
def translators(loaded_models: dict) -> dict[tuple[str, int], TransformersTranslator]:
    return {
        (family, beam): TransformersTranslator(loaded, DecodingOptions(beam_size=beam))
        for family, loaded in loaded_models.items()
        for beam in (1, 2, 4)
    }


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    family=st.sampled_from(["marian", "nllb"]),
    beam=st.sampled_from([1, 2, 4]),
    source=st.sampled_from(SOURCES),
    words=st.lists(PHRASES, min_size=1, max_size=3, unique=True),
    variants=st.lists(st.sampled_from(WORDS), min_size=3, max_size=3),
    with_variant=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_every_required_term_appears_in_the_tiny_models_output(
    translators: dict[tuple[str, int], TransformersTranslator],
    family: str,
    beam: int,
    source: str,
    words: list[str],
    variants: list[str],
    with_variant: list[bool],
) -> None:
    translator = translators[family, beam]
    unknown = translator.loaded.tokenizer.unk_token_id
    assume(not any(unknown in translator.target_ids(w) for w in words + variants))
    terms = [
        TermMatch(
            entry_id=f"term-{n}",
            source=word,
            start=0,
            end=0,
            target=word,
            allowed=(word, variant) if extra and variant not in words else (word,),
        )
        for n, (word, variant, extra) in enumerate(zip(words, variants, with_variant))
    ]
    [translation] = translator.translate_batch([source], [terms])
    assert all(check_terms(translation, terms)), (translation, terms)
