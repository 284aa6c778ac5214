"""The README's first steps, as a new user on a connected machine takes them.

The set-up command must be the one CI runs (it is not run here: no pip install in a test).
The main command is then run as a new process, as typed, in a folder laid out like the
repository, against a stand-in of the Hub (tests/hubstub.py) that serves a tiny model under
the default id the way the real repository is laid out: ``pytorch_model.bin`` on ``main``,
``model.safetensors`` in the conversion bot's pull request. The cache starts empty.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from forumtranslate.models import CONVERSION_BOT, CONVERSION_TITLE, DEFAULT_MODEL

from .conftest import GLOSSARY, REPO, make_corpus
from .hubstub import PullRequest, StubHub, StubRepo, split_model_folder

QUIET_FLAGS = {"--quiet", "--disable-pip-version-check"}


def fresh_machine_commands() -> list[str]:
    """The ```sh blocks of the README's "On a fresh machine" section: set-up, run, tests."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## On a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_the_readme_set_up_is_what_ci_runs() -> None:
    setup, main_command, tests_command = fresh_machine_commands()[:3]
    ci_lines = [
        shlex.split(line)
        for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    ci_commands = [[word for word in words if word not in QUIET_FLAGS] for words in ci_lines]
    steps = [shlex.split(step) for step in setup.split("&&")]
    assert len(steps) == 2
    for step in steps:
        assert step in ci_commands, f"README set-up step {step} is not in .ci/run"
    # CI runs them in the README's order, then the README's test command
    positions = [ci_commands.index(step) for step in steps]
    assert positions == sorted(positions)
    assert shlex.split(tests_command) in ci_commands
    assert shlex.split(main_command) == [".venv/bin/forumtranslate", "run"]


def _as_typed(command: str) -> list[str]:
    """The README's ``.venv/bin/forumtranslate ...`` with this test's interpreter's venv."""
    words = shlex.split(command)
    script = Path(sys.executable).parent / "forumtranslate"
    if words[0] == ".venv/bin/forumtranslate" and script.is_file():
        return [str(script), *words[1:]]
    return [sys.executable, "-m", "forumtranslate", *words[1:]]


@pytest.mark.slow
def test_the_readme_main_command_runs_from_an_empty_cache(
    tmp_path: Path, tiny_marian: Path
) -> None:
    main_command = fresh_machine_commands()[1]
    project = tmp_path / "project"
    make_corpus(project)  # two documents of the corpus, to keep the test short
    (project / "glossary").mkdir()
    shutil.copy(GLOSSARY, project / "glossary" / "terms.tsv")
    shutil.copy(REPO / "forumtranslate.toml", project / "forumtranslate.toml")
    main, safetensors = split_model_folder(tiny_marian)
    bot = PullRequest(1, CONVERSION_BOT, CONVERSION_TITLE, {"model.safetensors": safetensors})
    with StubHub([StubRepo(DEFAULT_MODEL, main, [bot])]) as hub:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))
        }
        env.update(
            HF_HOME=str(tmp_path / "hf"),  # empty
            HF_ENDPOINT=hub.url,
            HF_HUB_DISABLE_TELEMETRY="1",
            OMP_NUM_THREADS="1",
            PYTHONPATH=os.pathsep.join([str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])]),
        )
        first = subprocess.run(
            _as_typed(main_command),
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        print(f"$ {main_command}\n{first.stdout}{first.stderr}")  # what the user sees
        assert first.returncode == 0, first.stderr
        main_commit, pr_commit = (
            hub.commit(DEFAULT_MODEL, "main"),
            hub.commit(DEFAULT_MODEL, "refs/pr/1"),
        )
        assert f"taking them from refs/pr/1 ({pr_commit[:12]})" in first.stderr
        assert "Fetching" in first.stderr  # huggingface_hub's download progress
        assert hub.fetched("model.safetensors") and not hub.fetched("pytorch_model.bin")
        known = ("/api/models/", f"/{DEFAULT_MODEL}/resolve/")
        assert all(path.startswith(known) for _, path, _ in hub.requests)

    run_dir = project / "runs" / "opus-mt-ja-en-terms-hard-beam4"
    assert f"→ {Path('runs') / run_dir.name}" in first.stdout
    scores = json.loads((run_dir / "scores.json").read_text(encoding="utf-8"))
    assert scores["segments"] > 0 and scores["corpus"]["BLEU"]["signature"]
    translator = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["translator"]
    assert translator["model"] == DEFAULT_MODEL
    assert translator["revision"] == main_commit
    assert translator["weights"] == {"ref": "refs/pr/1", "revision": pr_commit}

    # the README's offline paragraph: the hub is gone, the cache holds what the run needs
    env["HF_HUB_OFFLINE"] = "1"
    listing = subprocess.run(
        _as_typed(".venv/bin/forumtranslate models list"),
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(f"$ HF_HUB_OFFLINE=1 forumtranslate models list\n{listing.stdout}{listing.stderr}")
    assert listing.returncode == 0, listing.stderr
    assert f"weights from refs/pr/1 ({pr_commit[:12]})" in listing.stdout


def test_the_readme_lists_every_module_once_and_no_other() -> None:
    """ "How the code is organised" names each module of the package, one line each."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## How the code is organised", 1)[1].split("\n## ", 1)[0]
    listed = [
        name
        for line in section.splitlines()
        if line.startswith("- ")
        for name in re.findall(r"`([\w/]+\.py)`", line)
    ]
    package = REPO / "src" / "forumtranslate"
    files = [
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.name != "__init__.py"
    ]
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert sorted(listed) == sorted(files)
