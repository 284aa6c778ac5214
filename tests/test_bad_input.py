"""Bad input (issue 8): every case below ends ``forumtranslate run`` with one line,
``forumtranslate: error: FILE[:LINE]: ...``, exit status 2 and no traceback, and leaves the
run folder that an earlier run wrote exactly as it was.

Each case starts from a copy of a folder holding a finished run and everything it was made
from (``data/``, ``terms.tsv``, ``model`` → the tiny Marian model, ``run/``), breaks one
thing, runs the same command in it, and checks the message and the run folder. Paths in
the command are relative, so the messages are too. The disk cases, once the disk has room
again, also run the command once more and must end with the files of the finished run.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from click.testing import CliRunner

from forumtranslate.cli import main

from .conftest import DATA, GLOSSARY, make_corpus

COMMAND = {
    "--model": "model",
    "--data": "data",
    "--glossary": "terms.tsv",
    "--out": "run",
    "--beam": "1",
    "--max-batch-tokens": "200",
    "--device": "cpu",
}
JA = "data/ja/opening-onoda.txt"
EN = "data/en/opening-onoda.txt"
MANIFEST = "data/manifest.tsv"
TERMS = "terms.tsv"  # line 3: national-security, a row of all eight fields


@dataclass
class Folder:
    """The working folder of one case, and what the case changed in the command."""

    root: Path
    monkeypatch: pytest.MonkeyPatch
    options: dict[str, str] = field(default_factory=lambda: dict(COMMAND))
    recover: Callable[[], None] | None = None  # undo the breakage, for a second run

    def args(self) -> list[str]:
        return ["run", *(item for pair in self.options.items() for item in pair)]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tiny_marian: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a finished run in run/, made by the command every case repeats."""
    root = tmp_path_factory.mktemp("finished")
    make_corpus(root)
    shutil.copy(GLOSSARY, root / TERMS)
    (root / "model").symlink_to(tiny_marian, target_is_directory=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        result = CliRunner().invoke(main, Folder(root, mp).args())
    assert result.exit_code == 0, result.output
    return root


# --- ways to break things -------------------------------------------------------------

Breaker = Callable[[Folder], Any]


def edit(path: str, change: Callable[[bytes], bytes]) -> Breaker:
    def apply(f: Folder) -> None:
        target = f.root / path
        target.write_bytes(change(target.read_bytes()))

    return apply


def edit_line(path: str, number: int, change: Callable[[bytes], bytes]) -> Breaker:
    def change_line(raw: bytes) -> bytes:
        lines = raw.split(b"\n")
        lines[number - 1] = change(lines[number - 1])
        return b"\n".join(lines)

    return edit(path, change_line)


def edit_field(path: str, line: int, index: int, value: str) -> Breaker:
    def change(row: bytes) -> bytes:
        cells = row.decode().split("\t")
        cells[index] = value
        return "\t".join(cells).encode()

    return edit_line(path, line, change)


def bad_byte(path: str, line: int) -> Breaker:
    return edit_line(path, line, lambda row: b"\xff" + row)


def bom(path: str) -> Breaker:
    return edit(path, lambda raw: b"\xef\xbb\xbf" + raw)


def crlf(path: str) -> Breaker:
    return edit(path, lambda raw: raw.replace(b"\n", b"\r\n"))


def contents(path: str, raw: bytes) -> Breaker:
    return edit(path, lambda _old: raw)


def create(path: str, raw: bytes) -> Breaker:
    return lambda f: (f.root / path).write_bytes(raw)


def delete(path: str) -> Breaker:
    return lambda f: (f.root / path).unlink()


def option(name: str, value: str) -> Breaker:
    return lambda f: f.options.__setitem__(name, value)


def both(*breakers: Breaker) -> Breaker:
    def apply(f: Folder) -> None:
        for breaker in breakers:
            breaker(f)

    return apply


def model_copy(change: Callable[[Path], Any]) -> Breaker:
    """--model broken-model: a copy of the tiny model, then ``change`` applied to it."""

    def apply(f: Folder) -> None:
        folder = f.root / "broken-model"
        shutil.copytree(f.root / "model", folder)
        change(folder)
        f.options["--model"] = "broken-model"

    return apply


def run_folder_read_only(f: Folder) -> None:
    """chmod 555 run/. Root ignores permission bits (and CI may run as root), so there the
    refusal the kernel gives everyone else is simulated where the run creates files."""
    out = f.root / "run"
    out.chmod(0o555)
    if os.geteuid() != 0:
        return
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: Any, dir: Any = None, **kwargs: Any) -> Any:
        if dir is not None and Path(dir).resolve() == out.resolve():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    f.monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


class FullDisk:
    """The disk holding run/ has ``room`` bytes left: a write past that writes what fits
    and fails with ENOSPC, as write(2) does; so a journal line can be torn, as on a real
    full disk. The run opens its text files with ``Path.open``, where this sits; the
    Parquet file, which pyarrow writes itself, has its own case below."""

    room: int | None

    def __init__(self, f: Folder, room: int):
        self.room, self.folder = room, (f.root / "run").resolve()
        real_open = Path.open

        def open_(path: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_open(path, mode, *args, **kwargs)
            if self.room is not None and path.resolve().parent == self.folder and mode[0] in "wa":
                return _Quota(handle, self, path)
            return handle

        f.monkeypatch.setattr(Path, "open", open_)
        f.recover = self.free

    def free(self) -> None:
        self.room = None


class _Quota:
    def __init__(self, handle: Any, disk: FullDisk, path: Path):
        self.handle, self.disk, self.path = handle, disk, path

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        if self.disk.room is not None and len(data) > self.disk.room:
            self.handle.write(data[: self.disk.room].decode("utf-8", errors="ignore"))
            self.handle.flush()
            self.disk.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        if self.disk.room is not None:
            self.disk.room -= len(data)
        return self.handle.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> _Quota:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def disk_full(f: Folder) -> None:
    FullDisk(f, room=0)


def disk_fills_while_translating(f: Folder) -> None:
    """An earlier start saved one batch; the disk has room for run.json and one more."""
    journal = f.root / "run" / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(lines[0])
    room = (f.root / "run" / "run.json").stat().st_size + len(lines[1]) + len(lines[2]) // 2
    FullDisk(f, room)


def disk_fills_while_writing_results(f: Folder) -> None:
    FullDisk(f, room=(f.root / "run" / "run.json").stat().st_size + 1000)


def disk_fills_while_writing_parquet(f: Folder) -> None:
    import pyarrow.parquet

    real_write_table = pyarrow.parquet.write_table

    def write_table(table: Any, where: Any, *args: Any, **kwargs: Any) -> None:
        Path(where).write_bytes(b"PAR1 and then")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as pyarrow raises it

    f.monkeypatch.setattr(pyarrow.parquet, "write_table", write_table)
    f.recover = lambda: f.monkeypatch.setattr(pyarrow.parquet, "write_table", real_write_table)


def write_config(text: str) -> Breaker:
    return lambda f: (f.root / "forumtranslate.toml").write_text(text, encoding="utf-8")


def link_outside(path: str) -> Breaker:
    """Replace a run-folder file by a symbolic link to a file of the user's elsewhere."""

    def apply(f: Folder) -> None:
        (f.root / "notes.txt").write_text("the user's own notes, not a journal\n")
        (f.root / path).unlink(missing_ok=True)
        (f.root / path).symlink_to(f.root / "notes.txt")

    return apply


def outside_files(root: Path) -> dict[str, bytes]:
    """Every file of the case folder outside run/ (the model is a link to the fixture)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in ("run", "model")
    }


# --- the cases --------------------------------------------------------------------------


class Case(NamedTuple):
    name: str
    breaks: Breaker
    where: str  # what the message starts with: the file (and line) or the model at fault


CASES = [
    # the Japanese documents
    Case("document: bytes that are not UTF-8", bad_byte(JA, 3), f"{JA}:3: not valid UTF-8"),
    Case("document: UTF-8 byte-order mark", bom(JA), f"{JA}:1: starts with a UTF-8 byte-order"),
    Case("document: CRLF line ends", crlf(JA), f"{JA}:1: has Windows (CRLF)"),
    Case("document: a lone CR", edit_line(JA, 2, lambda r: r + b"\r"), f"{JA}:2: has Windows"),
    Case("document: empty", contents(JA, b""), f"{JA}: is empty"),
    Case("document: blank lines only", contents(JA, "\n \u3000\n".encode()), f"{JA}: is empty"),
    Case("document: a folder", both(delete(JA), lambda f: (f.root / JA).mkdir()), f"{JA}: is a"),
    Case("manifest row without a file", delete(JA), f"{JA}: listed in {MANIFEST} but the file"),
    Case(
        "file without a manifest row",
        create("data/ja/stray.txt", "迷子の文書。\n".encode()),
        f"data/ja/stray.txt: document has no row in {MANIFEST}",
    ),
    # the manifest
    Case("manifest: missing", delete(MANIFEST), f"{MANIFEST}: file not found"),
    Case("manifest: data folder missing", option("--data", "nowhere"), "nowhere/manifest.tsv"),
    Case("manifest: empty", contents(MANIFEST, b""), f"{MANIFEST}: is empty"),
    Case("manifest: bytes that are not UTF-8", bad_byte(MANIFEST, 2), f"{MANIFEST}:2: not valid"),
    Case("manifest: UTF-8 byte-order mark", bom(MANIFEST), f"{MANIFEST}:1: starts with a UTF-8"),
    Case("manifest: CRLF line ends", crlf(MANIFEST), f"{MANIFEST}:1: has Windows (CRLF)"),
    Case("manifest: wrong header", edit_field(MANIFEST, 1, 0, "id"), f"{MANIFEST}:1: header"),
    Case(
        "manifest: a row with too few fields",
        edit_line(MANIFEST, 3, lambda row: row.rsplit(b"\t", 1)[0]),
        f"{MANIFEST}:3: expected 6 tab-separated fields, found 5",
    ),
    Case(
        "manifest: a duplicate doc_id",
        edit_field(MANIFEST, 3, 0, "opening-akazawa"),
        f"{MANIFEST}:3: duplicate doc_id 'opening-akazawa'",
    ),
    Case(
        "manifest: a control character in a text field",
        edit_field(MANIFEST, 3, 3, "Minister\x14"),
        f"{MANIFEST}:3: role (column 4) has a control character U+0014",
    ),
    Case(
        "manifest: a separator character that splitlines() would cut the row at",
        edit_field(MANIFEST, 3, 4, "Opening\x1cremarks"),
        f"{MANIFEST}:3: title (column 5) has a control character U+001C",
    ),
    Case(
        "manifest: a header and no rows",
        edit(MANIFEST, lambda raw: raw.split(b"\n")[0] + b"\n"),
        f"{MANIFEST}: lists no documents",
    ),
    # issue 16: a doc_id names a file (ja/<id>.txt), so it must stay inside ja/
    Case(
        "manifest: an id that climbs out of ja/ to a file that exists",
        both(
            create("data/outside.txt", "外の文書。\n".encode()),
            edit_field(MANIFEST, 3, 0, "../outside"),
            delete(JA),
        ),
        f"{MANIFEST}:3: doc_id '../outside' may hold only letters, digits, '.', '_' and '-'",
    ),
    Case(
        "manifest: an absolute id",
        edit_field(MANIFEST, 3, 0, "/etc/hostname"),
        f"{MANIFEST}:3: doc_id '/etc/hostname' may hold only",
    ),
    Case(
        "manifest: an id with a space",
        edit_field(MANIFEST, 3, 0, "opening onoda"),
        f"{MANIFEST}:3: doc_id 'opening onoda' may hold only",
    ),
    Case("manifest: the id '..'", edit_field(MANIFEST, 3, 0, ".."), f"{MANIFEST}:3: doc_id '..'"),
    Case(
        "manifest: an id with a backslash",
        edit_field(MANIFEST, 3, 0, "ja\\opening-onoda"),
        f"{MANIFEST}:3: doc_id 'ja\\\\opening-onoda' may hold only",
    ),
    # issue 16: NUL characters, refused where they are read
    Case(
        "document: a NUL character",
        edit_line(JA, 3, lambda row: b"\x00" + row),
        f"{JA}:3: holds a NUL character",
    ),
    Case(
        "reference: a NUL character",
        edit_line(EN, 2, lambda row: row + b"\x00"),
        f"{EN}:2: holds a NUL character",
    ),
    Case(
        "manifest: a NUL character",
        edit_field(MANIFEST, 3, 4, "Opening\x00remarks"),
        f"{MANIFEST}:3: holds a NUL character",
    ),
    Case(
        "glossary: a NUL character",
        edit_field(TERMS, 3, 7, "a note\x00"),
        f"{TERMS}:3: holds a NUL character",
    ),
    # the references
    Case("reference missing for a document", delete(EN), f"{EN}: reference translation missing"),
    Case("reference: bytes that are not UTF-8", bad_byte(EN, 2), f"{EN}:2: not valid UTF-8"),
    Case("reference: UTF-8 byte-order mark", bom(EN), f"{EN}:1: starts with a UTF-8 byte-order"),
    Case("reference: CRLF line ends", crlf(EN), f"{EN}:1: has Windows (CRLF)"),
    Case("reference: empty", contents(EN, b""), f"{EN}: is empty"),
    # the glossary
    Case("glossary: missing", delete(TERMS), f"{TERMS}: file not found"),
    Case("glossary: empty", contents(TERMS, b""), f"{TERMS}: is empty"),
    Case("glossary: bytes that are not UTF-8", bad_byte(TERMS, 3), f"{TERMS}:3: not valid UTF-8"),
    Case("glossary: UTF-8 byte-order mark", bom(TERMS), f"{TERMS}:1: starts with a UTF-8"),
    Case("glossary: CRLF line ends", crlf(TERMS), f"{TERMS}:1: has Windows (CRLF)"),
    Case("glossary: wrong header", edit_field(TERMS, 1, 1, "ja"), f"{TERMS}:1: header must be"),
    Case(
        "glossary: a row with too few fields",
        edit_line(TERMS, 3, lambda row: row.rsplit(b"\t", 1)[0]),
        f"{TERMS}:3: expected 8 tab-separated fields, found 7",
    ),
    Case(
        "glossary: a row with too many fields",
        edit_line(TERMS, 3, lambda row: row + b"\tone too many"),
        f"{TERMS}:3: expected 8 tab-separated fields, found 9",
    ),
    Case(
        "glossary: a term that normalises to empty",
        edit_field(TERMS, 3, 2, "\u3000"),
        f"{TERMS}:3: source '\\u3000' is empty once normalised",  # the cell, as repr() shows it
    ),
    Case(
        "glossary: a rendering that normalises to empty",
        edit_field(TERMS, 3, 4, "\u00a0"),
        f"{TERMS}:3: target '\\xa0' is empty once normalised",
    ),
    Case(
        "glossary: a variant that normalises to empty",
        edit_field(TERMS, 3, 3, "安保 | \u3000"),
        f"{TERMS}:3: source_variants has an empty variant",
    ),
    Case("glossary: an empty id", edit_field(TERMS, 3, 0, ""), f"{TERMS}:3: empty required"),
    Case(
        "glossary: a control character in a term",
        edit_field(TERMS, 3, 2, "国家\x07安全保障"),
        f"{TERMS}:3: source has a control character U+0007",
    ),
    # issue 16: hard terms the model's target vocabulary cannot spell (no byte fallback)
    Case(
        "glossary: a target with letters the model never saw",
        edit_field(TERMS, 3, 4, "Wałęsa"),
        f"{TERMS}:3: the model's target vocabulary cannot write 'Wałęsa' (it comes out as 'Wasa')",
    ),
    Case(
        "glossary: a variant with the euro sign",
        edit_field(TERMS, 3, 5, "€-security"),
        f"{TERMS}:3: the model's target vocabulary cannot write '€-security'",
    ),
    Case(
        "glossary: a Cyrillic target",
        edit_field(TERMS, 3, 4, "национальная безопасность"),
        f"{TERMS}:3: the model's target vocabulary cannot write 'национальная",
    ),
    # the model
    Case(
        "model: unknown id, offline",
        option("--model", "nobody/no-such-model"),
        "model 'nobody/no-such-model' is not in the local Hugging Face cache",
    ),
    Case(
        "model: folder that does not exist",
        option("--model", "./no-such-model"),
        "model folder './no-such-model' does not exist",
    ),
    Case(
        "model: folder with no tokenizer",
        model_copy(lambda m: [(m / name).unlink() for name in ("source.spm", "target.spm")]),
        "broken-model: model folder has no tokenizer",
    ),
    Case(
        "model: folder with a corrupt tokenizer",
        model_copy(lambda m: (m / "source.spm").write_bytes(b"not a sentencepiece model")),
        "broken-model: cannot load the model: ",
    ),
    Case(
        "model: folder with no config.json",
        model_copy(lambda m: (m / "config.json").unlink()),
        "broken-model: no config.json: not a transformers model folder",
    ),
    Case(
        "model: folder with a corrupt config.json",
        model_copy(lambda m: (m / "config.json").write_text('{"model_type": ')),
        "broken-model: cannot read config.json: ",
    ),
    Case(
        "model: folder with pickled weights only",
        model_copy(lambda m: (m / "model.safetensors").rename(m / "pytorch_model.bin")),
        "broken-model: model folder has no .safetensors weights",
    ),
    # issue 16: devices torch knows but a translation cannot run on
    Case("device: tpu", option("--device", "tpu"), "unknown device 'tpu'; use cpu, cuda"),
    Case("device: meta", option("--device", "meta"), "unknown device 'meta'; use cpu, cuda"),
    Case("device: cuda:x", option("--device", "cuda:x"), "unknown device 'cuda:x'"),
    Case("device: empty", option("--device", ""), "unknown device ''"),
    # issue 16: the run folder is the only place a run writes
    Case("output folder is the data folder", option("--out", "data"), "data: the run folder is"),
    Case(
        "output folder inside the data folder",
        option("--out", "data/ja"),
        "data/ja: the run folder is inside the data folder data",
    ),
    Case(
        "output folder above the data folder",
        option("--out", "."),
        ".: the run folder holds the data folder data",
    ),
    Case(
        "output folder inside the local model folder",
        both(model_copy(lambda m: None), option("--out", "broken-model/run")),
        "broken-model/run: the run folder is inside the model folder broken-model",
    ),
    Case(
        "run folder: journal.jsonl is a link to the user's file",
        link_outside("run/journal.jsonl"),
        "run/journal.jsonl: is a symbolic link",
    ),
    Case(
        "run folder: the lock file is a link to the user's file",
        link_outside("run/.forumtranslate.lock"),
        "run/.forumtranslate.lock: is a symbolic link",
    ),
    # the output folder and the disk
    Case(
        "output folder inside a file",
        both(create("a-file", b"x"), option("--out", "a-file/run")),
        "a-file/run: cannot create the run folder: Not a directory",
    ),
    Case("output folder read-only", run_folder_read_only, "run: cannot write here: Permission"),
    Case("disk already full", disk_full, "run/run.json: cannot write: No space left on device"),
    Case(
        "disk fills up while translating",
        disk_fills_while_translating,
        "run/journal.jsonl: cannot append to the run journal: No space left on device; "
        "finished batches are kept, run the same command again to resume",
    ),
    Case(
        "disk fills up while writing the results",
        disk_fills_while_writing_results,
        "run/translations.jsonl: cannot write: No space left on device",
    ),
    Case(
        "disk fills up while writing the Parquet file",
        disk_fills_while_writing_parquet,
        "run/translations.parquet: cannot write: No space left on device",
    ),
    # the config file
    Case(
        "config: not TOML",
        write_config("[run]\nbeam_size =\n"),
        "forumtranslate.toml:2: not valid TOML: Invalid value",
    ),
    Case(
        "config: an unknown key",
        write_config("[run]\nbeam = 4\n"),
        "forumtranslate.toml: unknown key run.beam",
    ),
    Case(
        "config: a value of the wrong type",
        write_config('[run]\nbeam_size = "4"\n'),
        "forumtranslate.toml: run.beam_size must be an integer",
    ),
    Case(
        "config: no threads",
        write_config("[run]\nthreads = 0\n"),
        "forumtranslate.toml: run.threads must be at least 1, not 0",
    ),
    Case(
        "config: a negative beam (the command line's --beam would win)",
        write_config("[run]\nbeam_size = -1\n"),
        "forumtranslate.toml: run.beam_size must be at least 1, not -1",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_line_exit_2_and_damages_nothing(
    case: Case, finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "case"
    shutil.copytree(finished, root, symlinks=True)
    monkeypatch.chdir(root)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a model that is not here is never fetched
    folder = Folder(root, monkeypatch)
    case.breaks(folder)
    before = folder_bytes(root / "run")
    before_outside = outside_files(root)

    result = CliRunner().invoke(main, folder.args())

    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = [  # the progress bar shares stderr while translating
        line for line in result.stderr.splitlines() if line.strip() and "translating:" not in line
    ]
    assert lines == [lines[0]] and lines[0].startswith(f"forumtranslate: error: {case.where}")
    after = folder_bytes(root / "run")
    assert after.keys() == before.keys()  # no file added, none removed, no temporary left
    for name, old in before.items():
        if name == "journal.jsonl":  # append-only: what was there stays, byte for byte
            assert after[name].startswith(old)
        else:
            assert after[name] == old, name
    assert outside_files(root) == before_outside  # nothing outside run/ touched

    if folder.recover is not None:  # room on the disk again: the same command completes
        folder.recover()
        again = CliRunner().invoke(main, folder.args())
        assert again.exit_code == 0, again.output
        assert folder_bytes(root / "run") == folder_bytes(finished / "run")


# --- issue 16: other commands, and inputs that must succeed ----------------------------


@pytest.fixture
def case(finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the finished folder, made the working folder, for one test to change."""
    root = tmp_path / "case"
    shutil.copytree(finished, root, symlinks=True)
    monkeypatch.chdir(root)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


def one_line_error(result: Any, where: str) -> None:
    """Exit 2, no traceback, stdout empty, and one line on stderr that starts with ``where``."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"forumtranslate: error: {where}"), lines[0]


def usage_error(result: Any, option: str) -> None:
    """Click's refusal of an option value: exit 2, the option named, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"Invalid value for '{option}'" in result.stderr


def test_a_users_temporary_file_in_the_run_folder_is_not_deleted(case: Path) -> None:
    """Only the temporaries of the files a run writes are its own to clean up."""
    mine = case / "run" / ".mynotes.tmp"
    mine.write_text("mine")
    stale = case / "run" / ".scores.json.x1y2z3.tmp"  # what a kill inside replacing() leaves
    stale.write_text("half a fi")
    result = CliRunner().invoke(main, Folder(case, pytest.MonkeyPatch()).args())
    assert result.exit_code == 0, result.output
    assert mine.read_text() == "mine"
    assert not stale.exists()


# post-edits: a strict TSV and XLIFF reader


def exported(case: Path, fmt: str) -> Path:
    result = CliRunner().invoke(main, ["export", "run", "--format", fmt])
    assert result.exit_code == 0, result.output
    return case / "run" / f"export.{'xlf' if fmt == 'xliff' else fmt}"


def edit_postedit(path: Path, row: int, value: str) -> None:
    """Write ``value`` raw (no quoting) as the post_edit cell of data row ``row``."""
    lines = path.read_bytes().decode("utf-8-sig").split("\r\n")
    cells = lines[row].split("\t")
    cells[-1] = value
    lines[row] = "\t".join(cells)
    path.write_bytes("\r\n".join(lines).encode("utf-8"))


@pytest.mark.parametrize(
    ("value", "line", "message"),
    [
        ('"An unbalanced quote', 3, "not a well-formed TSV row ('\\t' expected after '\"')"),
        ('"An unbalanced quote at the end"', None, None),  # balanced: fine
        ('"with a\ttab"', 3, "the post-edit holds a tab"),
        ('"two\nlines"', 3, "a cell spans several lines"),
        ('"a lone\rCR"', 3, "a cell spans several lines"),
        ('"closed" then more', 3, "not a well-formed TSV row"),
        ("with a NUL\x00", 3, "holds a NUL character"),
        ("x" * 140_000, 3, "not a well-formed TSV row (field larger than field limit"),
    ],
    ids=["unbalanced", "balanced", "tab", "newline", "CR", "stray-quote", "NUL", "huge-cell"],
)
def test_postedit_tsv_is_parsed_strictly(
    case: Path, value: str, line: int | None, message: str | None
) -> None:
    tsv = exported(case, "tsv")
    edit_postedit(tsv, 2, value)
    before = folder_bytes(case / "run")
    result = CliRunner().invoke(main, ["postedit", "import", "run", str(tsv)])
    if message is None:
        assert result.exit_code == 0, result.output
        return
    one_line_error(result, f"{tsv}:{line}: {message}")
    assert folder_bytes(case / "run") == before


def test_a_postedit_that_starts_with_an_apostrophe_keeps_it(case: Path) -> None:
    tsv = exported(case, "tsv")
    edit_postedit(tsv, 1, "'Tis the season, said the minister.")
    edit_postedit(tsv, 2, "''Quoted' twice")  # the export's guard, then a ' of the text
    result = CliRunner().invoke(main, ["postedit", "import", "run", str(tsv)])
    assert result.exit_code == 0, result.output
    stored = [
        json.loads(line)["post_edit"]
        for line in (case / "run" / "postedits.jsonl").read_text().splitlines()
    ]
    assert "'Tis the season, said the minister." in stored
    assert "'Quoted' twice" in stored


@pytest.mark.parametrize(
    ("cp", "message"),
    [
        ('<cp hex="0"/>', '<cp hex="0"> is a NUL character'),
        ('<cp hex="ZZ"/>', "<cp hex='ZZ'> is not a hexadecimal code point"),
        ('<cp hex=""/>', "<cp hex=''> is not a hexadecimal code point"),
        ("<cp/>", "<cp hex=None> is not a hexadecimal code point"),
        ('<cp hex="110000"/>', "<cp hex='110000'> is not a Unicode character (U+110000)"),
        ('<cp hex="D800"/>', "<cp hex='D800'> is not a Unicode character (U+D800)"),
        ('<cp hex="-1"/>', "<cp hex='-1'> is not a hexadecimal code point"),
        ('<cp hex="0x41"/>', "<cp hex='0x41'> is not a hexadecimal code point"),
    ],
)
def test_bad_xliff_code_points_name_the_line(case: Path, cp: str, message: str) -> None:
    xlf = exported(case, "xliff")
    text = xlf.read_text(encoding="utf-8")
    at = text.index("</target>")
    line = text[:at].count("\n") + 1
    xlf.write_text(text[:at] + cp + text[at:], encoding="utf-8")
    before = folder_bytes(case / "run")
    result = CliRunner().invoke(main, ["postedit", "import", "run", str(xlf)])
    one_line_error(result, f"{xlf}:{line}: {message}")
    assert folder_bytes(case / "run") == before


@pytest.mark.parametrize("insert", ["\tand a tab", "\nand a line", '<cp hex="9"/>and a tab'])
def test_an_xliff_post_edit_of_several_lines_names_its_unit(case: Path, insert: str) -> None:
    xlf = exported(case, "xliff")
    text = xlf.read_text(encoding="utf-8")
    at = text.index("</target>")
    unit_line = text[: text.rindex("<unit ", 0, at)].count("\n") + 1
    xlf.write_text(text[:at] + insert + text[at:], encoding="utf-8")
    result = CliRunner().invoke(main, ["postedit", "import", "run", str(xlf)])
    one_line_error(result, f"{xlf}:{unit_line}: the post-edit holds a tab or a line break")


def test_an_xliff_code_point_outside_xml_is_imported(case: Path) -> None:
    """What ``<cp>`` is for: a character XML cannot hold (here U+0001) comes back."""
    xlf = exported(case, "xliff")
    text = xlf.read_text(encoding="utf-8")
    at = text.index("</target>")
    xlf.write_text(text[:at] + '<cp hex="1"/>' + text[at:], encoding="utf-8")
    result = CliRunner().invoke(main, ["postedit", "import", "run", str(xlf)])
    assert result.exit_code == 0, result.output
    assert "\\u0001" in (case / "run" / "postedits.jsonl").read_text()


# run-folder JSON of the wrong type, hand-edited


def replace_first_record(path: str, change: Callable[[dict], Any]) -> Breaker:
    def apply(f: Folder) -> None:
        lines = (f.root / path).read_text().split("\n")
        record = json.loads(lines[0])
        change(record)
        lines[0] = json.dumps(record, ensure_ascii=False)
        (f.root / path).write_text("\n".join(lines))

    return apply


def hter_file(f: Folder) -> None:
    tsv = exported(f.root, "tsv")
    edit_postedit(tsv, 1, "A post-edit.")
    result = CliRunner().invoke(main, ["postedit", "import", "run", str(tsv)])
    assert result.exit_code == 0, result.output
    (f.root / "run" / "hter.json").write_text("5\n")


def first_record(path: str, **values: Any) -> Breaker:
    return replace_first_record(path, lambda record: record.update(values))


class WrongType(NamedTuple):
    name: str
    breaks: Breaker
    args: list[str]
    where: str


WRONG_TYPES = [
    WrongType(
        "scores.json is a list",
        contents("run/scores.json", b"[]\n"),
        ["review", "run"],
        "run/scores.json: the file must be an object, not list",
    ),
    WrongType(
        "scores.json is a list (export)",
        contents("run/scores.json", b"[]\n"),
        ["export", "run"],
        "run/scores.json: the file must be an object",
    ),
    WrongType(
        "scores.json's beads are strings",
        contents("run/scores.json", b'{"beads": ["a", "b"]}\n'),
        ["export", "run", "--format", "tmx"],
        "run/scores.json: beads[0] must be an object, not str",
    ),
    WrongType(
        "run.json is a list",
        contents("run/run.json", b"[1, 2]\n"),
        ["review", "run"],
        "run/run.json: the file must be an object, not list",
    ),
    WrongType(
        "run.json's glossary is a string",
        contents("run/run.json", b'{"glossary": "terms.tsv"}\n'),
        ["export", "run"],
        "run/run.json: glossary must be an object, not str",
    ),
    WrongType(
        "run.json's data_dir is a number",
        contents("run/run.json", b'{"data_dir": 5}\n'),
        ["align", "run"],
        "run/run.json: data_dir must be a string, not int",
    ),
    WrongType(
        "hter.json is a number",
        hter_file,
        ["review", "run"],
        "run/hter.json: the file must be an object, not int",
    ),
    WrongType(
        "a record's index is a string",
        first_record("run/translations.jsonl", index="0"),
        ["score", "run"],
        "run/translations.jsonl:1: index must be an integer, not str",
    ),
    WrongType(
        "a record's terms is a string",
        first_record("run/translations.jsonl", terms="none"),
        ["score", "run"],
        "run/translations.jsonl:1: terms must be a list, not str",
    ),
    WrongType(
        "a term's found is a string",
        first_record("run/translations.jsonl", terms=[{"found": "yes"}]),
        ["compare", "run", "run"],
        "run/translations.jsonl:1: terms[0].found must be true or false, not str",
    ),
    WrongType(
        "a bead's src_seg_ids is a string",
        first_record("run/alignment.jsonl", src_seg_ids="s1"),
        ["score", "run"],
        "run/alignment.jsonl:1: src_seg_ids must be a list, not str",
    ),
]


@pytest.mark.parametrize(
    ("breaks", "args", "where"),
    [wrong[1:] for wrong in WRONG_TYPES],
    ids=[wrong.name for wrong in WRONG_TYPES],
)
def test_run_files_of_the_wrong_json_type_are_one_line_errors(
    case: Path, breaks: Breaker, args: list[str], where: str
) -> None:
    breaks(Folder(case, pytest.MonkeyPatch()))
    before = folder_bytes(case / "run")
    result = CliRunner().invoke(main, args)
    one_line_error(result, where)
    assert folder_bytes(case / "run") == before


# options out of range


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["score", "run", "-w", "-1"], "-w"),
        (["compare", "run", "run", "-w", "-1"], "-w"),
        (["compare", "run", "run", "--n-bootstrap", "0"], "--n-bootstrap"),
        (["compare", "run", "run", "--n-trials", "0"], "--n-trials"),
        (["compare", "run", "run", "--n-bootstrap", "-5"], "--n-bootstrap"),
    ],
)
def test_numbers_out_of_range_are_refused(case: Path, args: list[str], option: str) -> None:
    result = CliRunner().invoke(main, args)
    usage_error(result, option)


# cells over csv's 131,072-character limit


def test_a_glossary_cell_over_the_csv_field_limit_is_read(case: Path) -> None:
    edit_field(TERMS, 3, 7, " ".join(["a long note"] * 20_000))(Folder(case, pytest.MonkeyPatch()))
    result = CliRunner().invoke(main, ["glossary", "lint", TERMS, "--data", "data"])
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1), result.output  # 1: the corpus warnings of lint
    assert f"{TERMS}: 0 error(s)" in result.stderr


@pytest.mark.slow
def test_a_manifest_cell_over_the_csv_field_limit_is_read(case: Path) -> None:
    edit_field(MANIFEST, 3, 4, " ".join(["A long title"] * 20_000))(
        Folder(case, pytest.MonkeyPatch())
    )
    args = Folder(case, pytest.MonkeyPatch()).args()
    args[args.index("run", 1)] = "run2"  # another run folder: the inputs changed
    result = CliRunner().invoke(main, [*args, "--no-score"])
    assert result.exit_code == 0, result.output


# -o to what is not a regular file


def fifo_reader(path: Path) -> tuple[threading.Thread, list[bytes]]:
    """Read a FIFO on a thread, as a pipe's other end would; a daemon, so that a writer
    that never opens the FIFO cannot hang the test run."""
    got: list[bytes] = []

    def read() -> None:
        with path.open("rb") as handle:
            got.append(handle.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, got


@pytest.mark.parametrize(
    "args",
    [
        ["export", "run", "--format", "tsv", "-o"],
        ["review", "run", "-o"],
        ["glossary", "export", TERMS, "--format", "tbx", "-o"],
    ],
    ids=["export", "review", "glossary-export"],
)
def test_output_to_a_fifo_is_written_through_it(case: Path, args: list[str]) -> None:
    fifo = case / "pipe"
    os.mkfifo(fifo)
    thread, got = fifo_reader(fifo)
    result = CliRunner().invoke(main, [*args, "pipe"])
    assert result.exit_code == 0, result.output
    thread.join(timeout=30)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still the FIFO, not a regular file
    assert got and len(got[0]) > 100


@pytest.mark.parametrize(
    "args",
    [
        ["export", "run", "--format", "xliff", "-o"],
        ["review", "run", "-o"],
        ["glossary", "export", TERMS, "--format", "csv", "-o"],
    ],
    ids=["export", "review", "glossary-export"],
)
def test_output_to_a_symbolic_link_is_refused(case: Path, args: list[str]) -> None:
    (case / "notes.txt").write_text("the user's notes\n")
    (case / "link").symlink_to(case / "notes.txt")
    result = CliRunner().invoke(main, [*args, "link"])
    one_line_error(result, "link: is a symbolic link")
    assert (case / "link").is_symlink()
    assert (case / "notes.txt").read_text() == "the user's notes\n"


def test_output_to_a_character_device_is_written_through_it(case: Path) -> None:
    """A device node of the test's own (a twin of /dev/null; making one needs root), not
    /dev/stdout itself: a build that replaced it would break the machine."""
    try:
        os.mknod(case / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("making a device node needs root")
    args = ["glossary", "export", TERMS, "--format", "csv", "-o", "null"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    after = (case / "null").lstat()
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == os.makedev(1, 3)


# runs that must finish, and finish right


def run_args(case: Path, out: str, *extra: str, model: str = "model") -> list[str]:
    folder = Folder(case, pytest.MonkeyPatch())
    folder.options.update({"--out": out, "--model": model})
    return [*folder.args(), *extra]


def records_of(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in (folder / "translations.jsonl").read_text().split("\n")[:-1]
    ]


@pytest.mark.slow
def test_a_sentence_with_more_terms_than_the_decoder_has_positions(case: Path) -> None:
    """30 terms of 2-3 target tokens each, 90 tokens, in a model whose decoder has 64
    positions (Marian's positions are sinusoidal, not weights, so the copy loads): the
    sentence is cut until its terms fit, and every term is in the output."""
    shutil.copytree(case / "model", case / "short-model")
    config = json.loads((case / "short-model" / "config.json").read_text())
    config["max_position_embeddings"] = 64
    (case / "short-model" / "config.json").write_text(json.dumps(config))
    # and a sentence with no term whose length limit (2 x 63 + 10) passes 64 too
    long_without_terms = "あいうえおかきくけこ" * 6 + "。"
    (case / JA).write_text("経済安全保障、" * 30 + f"です。\n{long_without_terms}\n")
    args = run_args(case, "run2", "--no-score", model="short-model")

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    [long, _] = [r for r in records_of(case / "run2") if r["doc_id"] == "opening-onoda"]
    assert len(long["terms"]) == 30 and all(term["found"] for term in long["terms"])
    assert long["translation"].lower().count("economic security") >= 30

    again = CliRunner().invoke(main, args)  # and a resume has nothing left to do
    assert again.exit_code == 0, again.output
    assert "(0 translated now" in again.stdout


LINE_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # \r is refused where text is read


@pytest.mark.slow
def test_line_breaking_characters_inside_sentences(case: Path) -> None:
    """Every character ``str.splitlines()`` splits at, inside a sentence: the run, its
    resume, the export, the post-edit import of that export and the review page all read
    the run's own files at "\\n" alone."""
    lines = (case / JA).read_text(encoding="utf-8").split("\n")
    for char in LINE_BREAKS:
        lines.insert(-1, f"経済安全保障の{char}会議です。")
    (case / JA).write_text("\n".join(lines), encoding="utf-8")
    args = run_args(case, "run2")

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    sources = "".join(record["source"] for record in records_of(case / "run2"))
    assert [char for char in LINE_BREAKS if char in sources] == list(LINE_BREAKS)
    finished_files = folder_bytes(case / "run2")

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "(0 translated now" in again.stdout
    assert folder_bytes(case / "run2") == finished_files
    for command in (["export", "run2"], ["postedit", "import", "run2", "run2/export.tsv"]):
        done = CliRunner().invoke(main, command)
        assert done.exit_code == 0, done.output
    review = CliRunner().invoke(main, ["review", "run2"])
    assert review.exit_code == 0, review.output


# hard terms and the model's target vocabulary


@pytest.fixture(scope="module")
def byte_fallback_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Marian model whose SentencePiece vocabularies fall back to bytes: every
    character can be written, so every term must pass the spelling check."""
    from forumtranslate.tiny import TinyModelSpec, build_tiny_model

    spec = TinyModelSpec("marian", byte_fallback=True)
    return build_tiny_model(tmp_path_factory.mktemp("byte-fallback"), spec, DATA)


# letters no document of the corpus holds (Känkänen would not do: the references hold it)
UNSEEN = ("Wałęsa", "€-security", "национальная безопасность")


@pytest.mark.slow
def test_terms_the_vocabulary_spells_in_bytes_are_enforced(
    case: Path, byte_fallback_marian: Path
) -> None:
    """The forms the fixture model cannot write (see CASES), as an approved rendering and
    two variants: every one passes the check, and the term is forced into the output.
    (economic-security: the small corpus holds 国家安全保障 only inside 国家安全保障局.)"""
    folder = Folder(case, pytest.MonkeyPatch())
    edit_field(TERMS, 2, 4, UNSEEN[0])(folder)
    edit_field(TERMS, 2, 5, " | ".join(UNSEEN[1:]))(folder)
    (case / "bf-model").symlink_to(byte_fallback_marian, target_is_directory=True)
    result = CliRunner().invoke(main, run_args(case, "run2", "--no-score", model="bf-model"))
    assert result.exit_code == 0, result.output
    with_term = [
        r
        for r in records_of(case / "run2")
        if any(t["entry_id"] == "economic-security" for t in r["terms"])
    ]
    assert with_term
    for record in with_term:
        assert all(t["found"] for t in record["terms"] if t["entry_id"] == "economic-security")
        assert any(form.lower() in record["translation"].lower() for form in UNSEEN)


@pytest.mark.slow
def test_unspellable_terms_can_be_allowed_and_are_recorded(case: Path) -> None:
    edit_field(TERMS, 2, 4, "Wałęsa")(Folder(case, pytest.MonkeyPatch()))
    args = run_args(case, "run2", "--no-score", "--allow-unspellable-terms")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (
        f"forumtranslate: warning: {TERMS}:2: the model's target vocabulary cannot write "
        "'Wałęsa'" in result.stderr
    )
    economic = [
        t
        for r in records_of(case / "run2")
        for t in r["terms"]
        if t["entry_id"] == "economic-security"
    ]
    assert economic and all(t.get("unspellable") is True for t in economic)
    settings = json.loads((case / "run2" / "run.json").read_text())
    assert settings["glossary"]["unspellable"] == {"economic-security": []}
    other = [
        t
        for r in records_of(case / "run2")
        for t in r["terms"]
        if t["entry_id"] != "economic-security"
    ]
    assert other and all("unspellable" not in t for t in other)


# signals and the review server


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_sigterm_stops_a_run_with_the_resume_message(case: Path, finished: Path) -> None:
    """kill (or a scheduler's stop) during translating: the batch in hand is finished,
    the message says how to resume, and the same command then ends as an uninterrupted run."""
    shutil.rmtree(case / "run")
    args = Folder(case, pytest.MonkeyPatch()).args()
    process = subprocess.Popen(
        [sys.executable, "-m", "forumtranslate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
    )
    journal = case / "run" / "journal.jsonl"
    deadline = time.monotonic() + 300
    while not (journal.exists() and journal.stat().st_size > 0) and process.poll() is None:
        assert time.monotonic() < deadline, "the run never saved a batch"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    text = stderr.decode()
    assert process.returncode == 2, text
    assert "Traceback" not in text
    last = text.replace("\r", "\n").strip().split("\n")[-1]
    assert last.startswith("forumtranslate: error: run: interrupted"), last
    assert last.endswith("run the same command again to resume"), last

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert folder_bytes(case / "run") == folder_bytes(finished / "run")


@pytest.mark.slow
def test_review_server_says_nothing_when_a_client_hangs_up(case: Path) -> None:
    """A client that resets the connection in the middle of its request line, and one
    that hangs up before reading the page: no traceback on the server's stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "forumtranslate", "review", "run", "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
    )
    try:
        assert process.stdout is not None
        url = ""
        while "serving" not in url:
            url = process.stdout.readline().decode()
            assert url, process.stderr.read().decode() if process.stderr else ""
        port = int(re.search(r"127\.0\.0\.1:(\d+)/", url).group(1))  # type: ignore[union-attr]
        for request in (b"GET /review.html HT", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"):
            for _ in range(5):
                client = socket.create_connection(("127.0.0.1", port))
                client.sendall(request)
                time.sleep(0.05)
                # SO_LINGER 0: close with a reset, as a crashed or cancelled client does
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
        time.sleep(0.5)
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/review.html", timeout=30)
        assert page.status == 200  # still serving
    finally:
        process.send_signal(signal.SIGTERM)  # stops the server as Ctrl-C does
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "Traceback" not in stderr.decode()
    assert "Exception" not in stderr.decode()
