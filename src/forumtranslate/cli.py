"""The ``forumtranslate`` command: a thin layer over the Python API.

Each command parses its options, calls one API function and prints the result. Errors the
user can fix (``ForumTranslateError``) become one line on stderr and exit status 2; heavy
libraries (torch, transformers) are imported only inside the commands that need them.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from forumtranslate import __version__
from forumtranslate.errors import ForumTranslateError


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's own errors into a one-line message and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ForumTranslateError as err:
            click.echo(f"forumtranslate: error: {err}", err=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="forumtranslate")
def main() -> None:
    """Translate Japanese forum remarks into English under a glossary, align the output
    with human references, score it, and export it for review."""


# --- segment -------------------------------------------------------------------------


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--lang",
    type=click.Choice(["ja", "en"]),
    default=None,
    help="Language of the text (default: guessed from the path, data/en/ → en, else ja).",
)
@user_errors
def segment(path: Path, lang: str | None) -> None:
    """Print the sentences of PATH, one per line, with the PDF's line breaks repaired."""
    from forumtranslate.corpus import read_text
    from forumtranslate.segment import segment_text

    language = lang or ("en" if "en" in path.parts else "ja")
    for seg in segment_text(read_text(path), doc_id=path.stem, language=language):
        click.echo(seg.text)
