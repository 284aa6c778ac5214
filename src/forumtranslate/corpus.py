"""Read the corpus: the manifest, the Japanese documents and their English references.

All text enters the program through ``read_text`` so that every input file gets the same
checks: strict UTF-8 (an error names the file and line of the first bad byte), no byte-order
mark, Unix line ends, no NUL character, not empty. Lines are split at "\n" alone, never with
``str.splitlines()``, which also splits at U+2028, U+0085 and other characters that may
stand inside a sentence.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from forumtranslate.errors import InputError
from forumtranslate.records import Document, DocumentInfo

MANIFEST_COLUMNS = ("doc_id", "section", "speaker", "role", "title", "start_time")
# The columns that are text for people: they go into the review page, XLIFF notes and
# TMX props, where a control character would make the file ill-formed or lie hidden.
MANIFEST_TEXT = ("section", "speaker", "role", "title", "start_time")


def read_text(path: str | Path, *, allow_empty: bool = False) -> str:
    """Read a UTF-8 text file, refusing what would silently change meaning or offsets."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a text file", path) from None
    except PermissionError:
        raise InputError("cannot read: permission denied", path) from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raise InputError("starts with a UTF-8 byte-order mark; save it without one", path, 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputError(
            f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start})", path, line
        ) from None
    if "\r" in text:
        line = text[: text.index("\r")].count("\n") + 1
        raise InputError("has Windows (CRLF) or old Mac (CR) line ends; convert to LF", path, line)
    if "\x00" in text:  # no export format can hold it, and C libraries stop at it
        line = text[: text.index("\x00")].count("\n") + 1
        raise InputError("holds a NUL character (U+0000); remove it", path, line)
    if not allow_empty and not text.strip():
        raise InputError("is empty", path)
    return text


def check_doc_id(doc_id: str) -> str | None:
    """Why ``doc_id`` cannot name a document (None if it can).

    It becomes a file name (``ja/<id>.txt``), a run's segment ids and an XML id, so it is
    letters, digits, ``.``, ``_`` and ``-`` only, starting with a letter or digit: no
    ``/`` or ``..`` that would reach outside ``ja/``, no space that would split an id list.
    """
    if not doc_id:
        return "empty doc_id"
    if not doc_id[0].isalnum() or not all(ch.isalnum() or ch in "._-" for ch in doc_id):
        return (
            f"doc_id {doc_id!r} may hold only letters, digits, '.', '_' and '-', "
            "and must start with a letter or digit"
        )
    return None


def read_manifest(path: str | Path) -> list[DocumentInfo]:
    """Parse data/manifest.tsv; every row must have exactly the manifest's columns."""
    path = Path(path)
    rows = [line.split("\t") for line in read_text(path).split("\n")]
    header = tuple(rows[0])
    if header != MANIFEST_COLUMNS:
        raise InputError(
            f"header must be {' / '.join(MANIFEST_COLUMNS)}, found {' / '.join(header)}", path, 1
        )
    infos: list[DocumentInfo] = []
    seen: set[str] = set()
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(MANIFEST_COLUMNS):
            raise InputError(
                f"expected {len(MANIFEST_COLUMNS)} tab-separated fields, found {len(row)}",
                path,
                line_no,
            )
        info = DocumentInfo(*(cell.strip() for cell in row))
        for name in MANIFEST_TEXT:
            problem = _text_problem(getattr(info, name))
            if problem:
                raise InputError(
                    f"{name} (column {MANIFEST_COLUMNS.index(name) + 1}) {problem}", path, line_no
                )
        problem = check_doc_id(info.doc_id)
        if problem:
            raise InputError(problem, path, line_no)
        if info.doc_id in seen:
            raise InputError(f"duplicate doc_id {info.doc_id!r}", path, line_no)
        seen.add(info.doc_id)
        infos.append(info)
    if not infos:
        raise InputError("lists no documents", path)
    return infos


def _text_problem(value: str) -> str | None:
    """Why ``value`` cannot be a line of text for people: a control character (C0, DEL,
    C1) or a noncharacter (U+FFFE, U+FFFF); None if it can."""
    for char in value:
        if unicodedata.category(char) == "Cc" or char in "\ufffe\uffff":
            return f"has a control character U+{ord(char):04X}; remove it"
    return None


def load_documents(data_dir: str | Path, language: str = "ja") -> list[Document]:
    """Load every manifest document of one language, in manifest order.

    A manifest row without a file and a file without a manifest row are both errors:
    either would silently drop or invent part of the corpus.
    """
    data_dir = Path(data_dir)
    manifest_path = data_dir / "manifest.tsv"
    infos = read_manifest(manifest_path)
    text_dir = data_dir / language
    if not text_dir.is_dir():
        raise InputError(f"no folder for language {language!r}", text_dir)
    listed = {info.doc_id for info in infos}
    for extra in sorted(text_dir.glob("*.txt")):
        if extra.stem not in listed:
            raise InputError(f"document has no row in {manifest_path}", extra)
    documents = []
    for info in infos:
        path = text_dir / f"{info.doc_id}.txt"
        if not path.exists():
            raise InputError(f"listed in {manifest_path} but the file is missing", path)
        documents.append(Document(info=info, text=read_text(path), path=str(path)))
    return documents
