"""Split the forum seed (a PDF extraction) into one file per document under data/ja/.

Each document is a range of the seed's lines, copied verbatim: page-break artefacts stay,
because repairing them is the segmenter's job. Leading and trailing blank lines of a range
are dropped. Rerun with the seed's path to regenerate data/ja/ exactly.
"""

from __future__ import annotations

import sys
from pathlib import Path

# doc_id -> list of inclusive 1-based line ranges of the seed
DOCUMENT_LINES: dict[str, list[tuple[int, int]]] = {
    "overview": [(1, 36), (236, 248)],
    "opening-akazawa": [(37, 49)],
    "opening-onoda": [(50, 60)],
    "opening-malhotra": [(61, 72)],
    "opening-tsutsui": [(73, 84)],
    "panel-1": [(85, 112)],
    "panel-2": [(113, 154)],
    "panel-3": [(155, 201)],
    "panel-4": [(202, 235)],
}


def split(seed: Path, out_dir: Path) -> None:
    lines = seed.read_text(encoding="utf-8").splitlines()
    out_dir.mkdir(parents=True, exist_ok=True)
    for doc_id, ranges in DOCUMENT_LINES.items():
        chunks = []
        for first, last in ranges:
            chunk = lines[first - 1 : last]
            while chunk and not chunk[0].strip():
                chunk.pop(0)
            while chunk and not chunk[-1].strip():
                chunk.pop()
            chunks.append("\n".join(chunk))
        (out_dir / f"{doc_id}.txt").write_text("\n\n\n".join(chunks) + "\n", encoding="utf-8")


if __name__ == "__main__":
    seed_path = Path(
        sys.argv[1] if len(sys.argv) > 1 else "../shared/seeds/000_7d0f70a4a9b32d8e.txt"
    )
    split(seed_path, Path("data/ja"))
