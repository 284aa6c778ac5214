"""A reviewer's post-edits stored in a run, and their HTER.

Why apart from the page: post-edits come back from the exports (TSV, XLIFF) long after the
page was written. They are kept in the run as ``postedits.jsonl``, each segment with only
its latest correction; ``score_postedits`` measures the editing effort as HTER
(``forumtranslate.score.hter_scores``), per unit and over the corpus, written to
``hter.json``, which the page then shows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forumtranslate.align import read_jsonl, read_translations
from forumtranslate.errors import InputError
from forumtranslate.records import PostEdit
from forumtranslate.score import hter_scores
from forumtranslate.storage import check_shape, dumps_line, write_atomic

POSTEDITS_FILE = "postedits.jsonl"
HTER_FILE = "hter.json"


def read_postedits(run_dir: str | Path) -> list[PostEdit]:
    """The post-edits stored in a run (none if it has no ``postedits.jsonl``)."""
    path = Path(run_dir) / POSTEDITS_FILE
    if not path.exists():
        return []
    postedits = []
    shape = {"doc_id": str, "seg_ids": [str], "machine": str, "post_edit": str, "origin": str}
    for line_no, record in enumerate(read_jsonl(path), start=1):
        check_shape(record, shape, path, line_no)
        try:
            postedits.append(
                PostEdit(
                    doc_id=str(record["doc_id"]),
                    seg_ids=tuple(str(s) for s in record["seg_ids"]),
                    machine=str(record["machine"]),
                    post_edit=str(record["post_edit"]),
                    origin=str(record.get("origin", "")),
                )
            )
        except (KeyError, TypeError) as err:
            raise InputError(f"malformed post-edit ({err})", path, line_no) from None
    return postedits


def save_postedits(run_dir: str | Path, new: Sequence[PostEdit]) -> dict[str, Any]:
    """Merge ``new`` into the run's post-edits, then score them all; return the HTER.

    A new post-edit replaces every stored one that shares a segment with it, so a
    reviewer can send a document back twice, or move from the TSV to XLIFF, and each
    segment keeps only its latest correction. Written atomically, in corpus order.
    """
    run_dir = Path(run_dir)
    order = {str(r["seg_id"]): k for k, r in enumerate(read_translations(run_dir))}
    taken = {seg_id for pe in new for seg_id in pe.seg_ids}
    kept = [pe for pe in read_postedits(run_dir) if not taken & set(pe.seg_ids)]
    merged = sorted([*kept, *new], key=lambda pe: min(order.get(s, -1) for s in pe.seg_ids))
    write_atomic(
        run_dir / POSTEDITS_FILE, "".join(dumps_line(pe.to_json()) + "\n" for pe in merged)
    )
    return score_postedits(run_dir)


def score_postedits(run_dir: str | Path) -> dict[str, Any]:
    """HTER of a run's stored post-edits; writes ``hter.json`` beside them."""
    run_dir = Path(run_dir)
    postedits = read_postedits(run_dir)
    if not postedits:
        raise InputError(
            f"no post-edits to score; import some (forumtranslate postedit import {run_dir} FILE)",
            run_dir,
        )
    result = hter_scores(postedits)
    write_atomic(run_dir / HTER_FILE, json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    return result
