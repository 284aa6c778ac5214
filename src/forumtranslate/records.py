"""Plain records that flow between the pipeline stages.

Every stage takes and returns these frozen dataclasses, so a stage can be run, tested
and replaced on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DocumentInfo:
    """One row of data/manifest.tsv: which document, who spoke, and when."""

    doc_id: str
    section: str
    speaker: str
    role: str
    title: str
    start_time: str


@dataclass(frozen=True)
class Document:
    """A document's raw text as it stands in its file, with its manifest row."""

    info: DocumentInfo
    text: str
    path: str

    @property
    def doc_id(self) -> str:
        return self.info.doc_id


@dataclass(frozen=True)
class Segment:
    """One sentence (or bullet, or heading) cut from a document.

    ``start`` and ``end`` are character offsets into the document text; ``text`` is the
    sentence with the PDF's line breaks repaired, so it may differ from the raw slice by
    whitespace only.
    """

    doc_id: str
    seg_id: str
    index: int
    text: str
    start: int
    end: int
    kind: str = "sentence"  # sentence | bullet | heading


# How a glossary term got into a translation: the model's search wrote it (beam search with
# constraints, or plain decoding); it was edited in after decoding where the model rendered
# the term (ct2); it was appended after the sentence (the last-resort fallback); or it is
# not there.
HOW = ("decoded", "edited", "appended", "missing")


@dataclass(frozen=True)
class TermMatch:
    """A glossary term found in a source sentence."""

    entry_id: str
    source: str  # the text as it stands in the sentence (a variant, perhaps)
    start: int
    end: int
    target: str  # the approved English
    allowed: tuple[str, ...] = field(default_factory=tuple)  # approved + acceptable variants
    avoid: tuple[str, ...] = field(default_factory=tuple)  # renderings that must not appear
    # what the term names (glossary KINDS); shown to reviewers, no constraint on decoding,
    # so it takes no part in comparing matches (a glossary change's impact)
    kind: str = field(default="term", compare=False)


@dataclass(frozen=True)
class Bead:
    """One alignment bead: machine sentences (with their Japanese segment ids) and the
    reference sentences they translate, so scores compare like with like.

    ``kind`` is "<machine count>-<reference count>" (1-1, 2-1, 1-0, ...); ``similarity`` is
    what the aligner saw (chrF1 of the two sides, or anchor overlap without machine text).
    """

    doc_id: str
    src_seg_ids: tuple[str, ...]
    hyp: tuple[str, ...]
    ref: tuple[str, ...]
    ref_ids: tuple[str, ...]
    kind: str
    similarity: float


@dataclass(frozen=True)
class PostEdit:
    """A reviewer's correction of the machine output of one or more segments.

    ``machine`` is the output as it was when the post-edit came in, so HTER measures the
    edit actually made; ``origin`` says which file and line it came from.
    """

    doc_id: str
    seg_ids: tuple[str, ...]
    machine: str
    post_edit: str
    origin: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "seg_ids": list(self.seg_ids),
            "machine": self.machine,
            "post_edit": self.post_edit,
            "origin": self.origin,
        }
