"""Reading the corpus: the manifest, the documents, and the checks every input file gets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from forumtranslate.corpus import load_documents, read_manifest, read_text
from forumtranslate.errors import InputError

from .conftest import DATA, REPO

SEED = REPO.parent / "shared" / "seeds" / "000_7d0f70a4a9b32d8e.txt"


def test_manifest_lists_the_nine_documents_in_order() -> None:
    ids = [info.doc_id for info in read_manifest(DATA / "manifest.tsv")]
    assert ids == [
        "overview",
        "opening-akazawa",
        "opening-onoda",
        "opening-malhotra",
        "opening-tsutsui",
        "panel-1",
        "panel-2",
        "panel-3",
        "panel-4",
    ]


@pytest.mark.parametrize("language", ["ja", "en"])
def test_every_document_loads_in_both_languages(language: str) -> None:
    documents = load_documents(DATA, language)
    assert len(documents) == 9
    assert all(doc.text.strip() for doc in documents)


@pytest.mark.skipif(not SEED.exists(), reason="the seed lies beside the checkout only")
def test_japanese_files_are_verbatim_pieces_of_the_seed(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("split_seed", REPO / "scripts" / "split_seed.py")
    assert spec and spec.loader
    split_seed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(split_seed)
    split_seed.split(SEED, tmp_path)
    for path in sorted((DATA / "ja").glob("*.txt")):
        assert (tmp_path / path.name).read_text(encoding="utf-8") == path.read_text(
            encoding="utf-8"
        )
    seed_lines = set(SEED.read_text(encoding="utf-8").splitlines())
    for path in (DATA / "ja").glob("*.txt"):
        assert set(path.read_text(encoding="utf-8").splitlines()) <= seed_lines


@pytest.mark.parametrize(
    ("content", "message", "line"),
    [
        (b"\xef\xbb\xbfabc\n", "byte-order mark", 1),
        (b"ok\n\xff\xfe broken\n", "not valid UTF-8", 2),
        (b"one\r\ntwo\r\n", "CRLF", 1),
        (b"\n  \n", "is empty", None),
    ],
)
def test_bad_text_files_name_file_and_line(
    tmp_path: Path, content: bytes, message: str, line: int | None
) -> None:
    path = tmp_path / "doc.txt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as caught:
        read_text(path)
    assert caught.value.path == str(path)
    assert caught.value.line == line


def test_manifest_and_files_must_agree(tmp_path: Path) -> None:
    (tmp_path / "ja").mkdir()
    header = "doc_id\tsection\tspeaker\trole\ttitle\tstart_time\n"
    (tmp_path / "manifest.tsv").write_text(header + "a\ts\tx\ty\tt\t13:00\n", encoding="utf-8")
    with pytest.raises(InputError, match="file is missing"):
        load_documents(tmp_path)
    (tmp_path / "ja" / "a.txt").write_text("本文。\n", encoding="utf-8")
    (tmp_path / "ja" / "b.txt").write_text("余分。\n", encoding="utf-8")
    with pytest.raises(InputError, match="no row in"):
        load_documents(tmp_path)


def test_manifest_rows_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "manifest.tsv"
    path.write_text("doc_id\tsection\n", encoding="utf-8")
    with pytest.raises(InputError, match="header must be"):
        read_manifest(path)
    header = "doc_id\tsection\tspeaker\trole\ttitle\tstart_time\n"
    path.write_text(header + "a\ts\tx\ty\n", encoding="utf-8")
    with pytest.raises(InputError, match="found 4") as caught:
        read_manifest(path)
    assert caught.value.line == 2
