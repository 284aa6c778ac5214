"""Review a run: one self-contained HTML page, the reviewer's post-edits, and their HTER.

Why a single file: a reviewer opens it from a run folder, mails it, or prints it, with no
network and no server; ``serve`` exists only for browsers that restrict ``file://``. The
page is deterministic (no timestamp), so a resumed run writes the same bytes.

Safety: every piece of text enters the page through ``html.escape``. Glossary terms are
highlighted by character offsets into the original text, escaping each slice, so a
sentence can never inject markup. The page's Content-Security-Policy allows no network
at all and only the page's own script and style (by hash).

Post-edits (a reviewer's corrections of the machine output) are stored in the run as
``postedits.jsonl``; ``score_postedits`` measures the editing effort as HTER: sacrebleu's
TER of the machine output against its post-edit (case-sensitive, since fixing case is
work the reviewer did), per unit and over the corpus, written to ``hter.json``.

Where each part lives:

- ``view``: what the page shows: the run folder joined into ``RunView`` (documents, beads,
  sentences, term flags, post-edits) and the term highlighting;
- ``page``: the HTML page itself (CSS, script, pictures) and ``write_review``;
- ``postedits``: storing post-edits and scoring them (HTER itself is
  ``forumtranslate.score.hter_scores``);
- ``server``: the loopback server.

The names are re-exported here, so ``from forumtranslate.review import X`` works for all.
"""

from forumtranslate.records import PostEdit
from forumtranslate.review.page import (
    FONT_STACK,
    MID_CHRF,
    REVIEW_FILE,
    render_chart,
    render_review,
    run_charts,
    write_review,
)
from forumtranslate.review.postedits import (
    HTER_FILE,
    POSTEDITS_FILE,
    read_postedits,
    save_postedits,
    score_postedits,
)
from forumtranslate.review.server import DEFAULT_PORT, ReviewServer, serve_in_background
from forumtranslate.review.view import (
    HOW_NOTES,
    JSON_SHAPES,
    LOW_CHRF,
    BeadView,
    DocumentView,
    RunView,
    SentenceView,
    Span,
    TermFlag,
    english_spans,
    highlight,
    japanese_spans,
    join_english,
    join_japanese,
    load_run_view,
    term_how,
)
from forumtranslate.score import hter_scores

__all__ = [
    "DEFAULT_PORT",
    "FONT_STACK",
    "HOW_NOTES",
    "HTER_FILE",
    "JSON_SHAPES",
    "LOW_CHRF",
    "MID_CHRF",
    "POSTEDITS_FILE",
    "REVIEW_FILE",
    "BeadView",
    "DocumentView",
    "PostEdit",
    "ReviewServer",
    "RunView",
    "SentenceView",
    "Span",
    "TermFlag",
    "english_spans",
    "highlight",
    "hter_scores",
    "japanese_spans",
    "join_english",
    "join_japanese",
    "load_run_view",
    "read_postedits",
    "render_chart",
    "render_review",
    "run_charts",
    "save_postedits",
    "score_postedits",
    "serve_in_background",
    "term_how",
    "write_review",
]
