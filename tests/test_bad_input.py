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
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from click.testing import CliRunner

from forumtranslate.cli import main

from .conftest import GLOSSARY, make_corpus

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

    if folder.recover is not None:  # room on the disk again: the same command completes
        folder.recover()
        again = CliRunner().invoke(main, folder.args())
        assert again.exit_code == 0, again.output
        assert folder_bytes(root / "run") == folder_bytes(finished / "run")
