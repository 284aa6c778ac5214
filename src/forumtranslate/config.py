"""The project config file, ``forumtranslate.toml``: defaults for ``forumtranslate run``.

Options given on the command line win over the file, and the file over built-in defaults.
Unknown keys are errors, so a misspelt option cannot be silently ignored.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from forumtranslate.errors import InputError

CONFIG_FILE = "forumtranslate.toml"
RUN_KEYS = {
    "model": str,
    "revision": str,
    "backend": str,
    "device": str,
    "dtype": str,
    "threads": int,
    "beam_size": int,
    "terms": str,
    "max_batch_tokens": int,
    "shortlist": int,
    "confidence": bool,
    "data": str,
    "glossary": str,
    "out": str,
}
AT_LEAST_ONE = ("threads", "beam_size", "max_batch_tokens")


def load_run_config(path: str | Path = CONFIG_FILE) -> dict[str, Any]:
    """The ``[run]`` table of the config file, checked; empty if there is no file."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        # Python 3.14 gives err.lineno; before, the line is only in the message
        found = re.search(r"\(at line (\d+), column \d+\)$", str(err))
        line = getattr(err, "lineno", None) or (int(found.group(1)) if found else None)
        message = str(err)[: found.start()].strip() if found else str(err)
        raise InputError(f"not valid TOML: {message}", path, line) from None
    except UnicodeDecodeError:
        raise InputError("not valid UTF-8", path) from None
    table = document.get("run", {})
    if not isinstance(table, dict):
        raise InputError("[run] must be a table", path)
    for key, value in table.items():
        if key not in RUN_KEYS:
            raise InputError(f"unknown key run.{key} (known: {', '.join(sorted(RUN_KEYS))})", path)
        wanted = RUN_KEYS[key]
        if not isinstance(value, wanted) or (isinstance(value, bool) and wanted is not bool):
            kind = {int: "an integer", str: "a string", bool: "true or false"}[wanted]
            raise InputError(f"run.{key} must be {kind}", path)
        if key in AT_LEAST_ONE and value < 1:  # as the command line's options require
            raise InputError(f"run.{key} must be at least 1, not {value}", path)
    return table
