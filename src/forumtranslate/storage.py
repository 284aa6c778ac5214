"""Files that survive a crash: atomic writes and a checksummed append-only journal.

Every output of a run is either written whole (temporary file, fsync, rename: a reader sees
the old file or the new one, never half) or appended to a journal whose every line carries
a checksum, so that a line torn by a crash is recognised and redone rather than trusted.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
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
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        handle = os.fdopen(open_own(folder / LOCK_FILE, flags), "a")
    except ForumTranslateError:
        raise
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


def open_own(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` of a regular file that refuses a symbolic link: a run writes only in its
    own folder.

    A link planted in a run folder (``journal.jsonl`` -> a file elsewhere) would otherwise
    make the run append to, or cut, whatever it points at; a FIFO or a device there would
    hang it or write to the device.
    """
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # a FIFO would block the open
    try:
        fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | nonblocking, mode)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EMLINK):  # EMLINK: FreeBSD's O_NOFOLLOW
            refuse_link(path)
        if err.errno == errno.ENXIO:  # a FIFO with no reader
            raise ForumTranslateError("is not a regular file; remove it", path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ForumTranslateError("is not a regular file; remove it", path)
    if nonblocking:
        os.set_blocking(fd, True)
    return fd


def refuse_link(path: str | Path) -> None:
    """The checks of ``open_own`` for code that opens ``path`` itself."""
    if Path(path).is_symlink():
        raise ForumTranslateError(
            "is a symbolic link; a run folder's files must be its own. Remove the link", path
        )
    if Path(path).exists() and not Path(path).is_file():
        raise ForumTranslateError("is not a regular file; remove it", path)


def write_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step."""
    with replacing(path) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def write_output(path: str | Path, text: str) -> None:
    """Write a file the user named with ``-o``: atomically if it is (to be) a regular file.

    A device or a FIFO (``-o /dev/stdout``) is written to directly, since replacing it would
    put a regular file where the device was; a symbolic link is refused rather than
    replaced (which would break it) or followed (which may write far from where it seems).
    """
    path = Path(path)
    try:
        info = path.lstat()
    except FileNotFoundError:
        info = None
    except OSError as err:
        raise ForumTranslateError(f"cannot write: {err.strerror or err}", path) from None
    if info is not None and stat.S_ISLNK(info.st_mode):
        raise ForumTranslateError(
            "is a symbolic link; give the path of the file it points to", path
        )
    if info is None or stat.S_ISREG(info.st_mode):
        write_atomic(path, text)
        return
    if stat.S_ISDIR(info.st_mode):
        raise ForumTranslateError("is a folder; give a file name", path)
    try:
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
    except OSError as err:
        raise ForumTranslateError(f"cannot write: {err.strerror or err}", path) from None


# The files that hold a run's results, which an export or a page written with -o must not
# replace (a review page over translations.jsonl would lose the run).
RUN_RECORDS = (
    "run.json",
    "journal.jsonl",
    "translations.jsonl",
    "translations.parquet",
    "alignment.jsonl",
    "scores.json",
    "aligned.hyp.txt",
    "aligned.ref.txt",
    "postedits.jsonl",
    "hter.json",
    LOCK_FILE,
)


def refuse_run_record(path: str | Path, run_dir: str | Path) -> None:
    """Refuse an output path that is one of ``run_dir``'s own records."""
    path, run_dir = Path(path), Path(run_dir)
    if path.name in RUN_RECORDS and path.parent.resolve() == run_dir.resolve():
        raise ForumTranslateError("is one of the run's own files; write the output elsewhere", path)


def remove_stale_temporaries(folder: str | Path, names: Iterable[str]) -> None:
    """Delete the temporary files that a crash in ``replacing`` left in ``folder``.

    Only those of ``names`` (glob patterns of the files written there): a ``.notes.tmp``
    of the user's is not ours to delete.
    """
    for name in names:
        for stale in Path(folder).glob(f".{name}.*{TEMP_SUFFIX}"):
            if stale.is_file() or stale.is_symlink():
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
    # "\n" only: str.splitlines() also splits at U+2028, U+0085 and others, which JSON
    # strings may hold unescaped.
    for line_no, line in enumerate(read_text(path, allow_empty=True).split("\n"), start=1):
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


# What ``check_shape`` accepts: a type (or tuple of types), {key: shape} for an object
# whose listed keys are optional, [shape] for a list of them, ("map", shape) for an object
# whose every value has that shape.
Shape = Any
_KINDS = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


def check_shape(
    value: Any, shape: Shape, path: str | Path, line: int | None = None, where: str = ""
) -> None:
    """Refuse a hand-edited run file whose values have the wrong JSON types (``[]`` for an
    object, ``"3"`` for an index) with an ``InputError`` naming the file and the key, rather
    than fail later, wherever the value is first used, with a traceback."""

    def fail(wanted: str) -> None:
        found = type(value).__name__ if value is not None else "null"
        raise InputError(f"{where or 'the file'} must be {wanted}, not {found}", path, line)

    if isinstance(shape, dict):
        if not isinstance(value, dict):
            fail("an object")
        for key, inner in shape.items():
            if key in value:
                check_shape(value[key], inner, path, line, f"{where}.{key}".lstrip("."))
    elif isinstance(shape, list):
        if not isinstance(value, list):
            fail("a list")
        for number, item in enumerate(value):
            check_shape(item, shape[0], path, line, f"{where}[{number}]")
    elif isinstance(shape, tuple) and shape and shape[0] == "map":
        if not isinstance(value, dict):
            fail("an object")
        for key, item in value.items():
            check_shape(item, shape[1], path, line, f"{where}.{key}".lstrip("."))
    else:
        kinds = shape if isinstance(shape, tuple) else (shape,)
        numeric = float in kinds and isinstance(value, int)
        if (isinstance(value, bool) and bool not in kinds) or not (
            isinstance(value, kinds) or numeric
        ):
            fail(" or ".join(_KINDS.get(kind, kind.__name__) for kind in kinds))


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
            with os.fdopen(open_own(self.path, os.O_RDONLY), "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise ForumTranslateError(
                f"cannot read the run journal: {err.strerror or err}", self.path
            ) from None
        units: dict[str, Any] = {}
        good_bytes = 0
        for line in raw.split(b"\n")[:-1]:  # the part after the last "\n" is torn
            entry = self._parse(line + b"\n")
            if entry is None:
                break
            units[entry["unit"]] = entry["data"]
            good_bytes += len(line) + 1
        if good_bytes != len(raw):
            try:
                with os.fdopen(open_own(self.path, os.O_RDWR), "r+b") as handle:
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
        refuse_link(self.path)
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
