"""Files that survive a crash: atomic writes and a checksummed append-only journal.

Every output of a run is either written whole (temporary file, fsync, rename: a reader sees
the old file or the new one, never half) or appended to a journal whose every line carries
a checksum, so that a line torn by a crash is recognised and redone rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forumtranslate.corpus import read_text
from forumtranslate.errors import ForumTranslateError, InputError

TEMP_SUFFIX = ".tmp"  # ".<name>.<random>.tmp": what a crash mid-write can leave behind


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; once written, it replaces ``path``.

    The file is fsynced before the rename and the folder after it, so a reader (or a run
    started after a crash) sees the old file or the new one, never half of one. On any
    error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise ForumTranslateError(
            f"cannot write here: {err.strerror or err}", path.parent
        ) from None
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary, readable files
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ForumTranslateError(f"cannot write: {err.strerror or err}", path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


LOCK_FILE = ".forumtranslate.lock"


@contextmanager
def hold_folder(folder: str | Path) -> Iterator[None]:
    """Keep a run folder to this process while it writes there.

    Two runs started into one folder would both append to its journal and both rewrite
    its files; the second is refused instead. The lock is the kernel's (``flock``) on a
    file in the folder, so it goes with the process: a crashed or killed run leaves no
    lock behind. Where ``fcntl`` is missing (Windows) there is no lock.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_FILE, "a")  # noqa: SIM115 - held for the block
    except OSError as err:
        message = f"cannot use this folder: {err.strerror or err}"
        raise ForumTranslateError(message, folder) from None
    try:
        try:
            import fcntl
        except ImportError:
            fcntl = None  # type: ignore[assignment]
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ForumTranslateError(
                    "another forumtranslate run is writing to this folder; wait for it to "
                    "finish, or give this one another --out",
                    folder,
                ) from None
        yield
    finally:
        handle.close()


def write_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step."""
    with replacing(path) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete the temporary files that a crash in ``replacing`` left in ``folder``."""
    for stale in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; not every platform can open a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file; a bad line is an InputError naming file and line."""
    records = []
    for line_no, line in enumerate(read_text(path, allow_empty=True).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"not valid JSON: {err.msg}", path, line_no) from None
        if not isinstance(record, dict):
            raise InputError("expected a JSON object", path, line_no)
        records.append(record)
    return records


def dumps_line(record: Any) -> str:
    """One JSON line, stable across runs: the same record always gives the same bytes."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _checksum(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class Journal:
    """An append-only JSON-lines log of finished work units, one checksummed line each.

    ``load`` returns the units whose lines are intact and cuts the file back to them: a torn
    or corrupted tail (a crash mid-write) is dropped, and its unit will be done again.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise ForumTranslateError(
                f"cannot read the run journal: {err.strerror or err}", self.path
            ) from None
        units: dict[str, Any] = {}
        good_bytes = 0
        for line in raw.splitlines(keepends=True):
            entry = self._parse(line)
            if entry is None:
                break
            units[entry["unit"]] = entry["data"]
            good_bytes += len(line)
        if good_bytes != len(raw):
            try:
                with self.path.open("r+b") as handle:
                    handle.truncate(good_bytes)
                    os.fsync(handle.fileno())
            except OSError as err:
                raise ForumTranslateError(
                    f"cannot cut a torn line off the run journal: {err.strerror or err}",
                    self.path,
                ) from None
        return units

    @staticmethod
    def _parse(line: bytes) -> dict[str, Any] | None:
        if not line.endswith(b"\n"):
            return None
        try:
            entry = json.loads(line)
            payload = dumps_line(entry["data"])
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(entry.get("unit"), str) or entry.get("sha256") != _checksum(payload):
            return None
        return entry

    def append(self, unit: str, data: Any) -> None:
        """Add one finished unit, durably, before the next one starts."""
        line = dumps_line({"unit": unit, "data": data, "sha256": _checksum(dumps_line(data))})
        try:
            with self.path.open("a", encoding="utf-8", newline="\n") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as err:
            raise ForumTranslateError(
                f"cannot append to the run journal: {err.strerror or err}; finished batches are "
                "kept, run the same command again to resume",
                self.path,
            ) from None
