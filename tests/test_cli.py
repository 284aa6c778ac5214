"""The command line: every command answers --help and is documented in the README."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from forumtranslate import __version__
from forumtranslate.cli import main

from .conftest import REPO


def all_commands(group: click.Group = main, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        found.append(path)
        if isinstance(command, click.Group):
            found += all_commands(command, path)
    return found


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_has_help_and_is_in_the_readme(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"forumtranslate {' '.join(path)}" in readme


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_does_not_import_torch() -> None:
    """Heavy libraries load only when a command needs a model."""
    code = (
        "import sys; from click.testing import CliRunner; from forumtranslate.cli import main;"
        "CliRunner().invoke(main, ['--help']); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
