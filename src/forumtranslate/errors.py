"""The one exception family the CLI turns into a one-line message and exit status 2."""

from __future__ import annotations

from pathlib import Path


class ForumTranslateError(Exception):
    """A problem the user can fix: bad input, a missing model, an unwritable folder.

    Carries the file and line it is about, so the message can point at them.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


class InputError(ForumTranslateError):
    """A file the user gave us is malformed."""


class ModelNotAvailableError(ForumTranslateError):
    """A model could not be found locally and cannot be downloaded."""
