"""A term checker for the tests, written apart from ``glossary.check_terms``.

It answers the same question in another way: no regular expressions, no NFKC, no
bipartite matching. Every allowed form of every term is looked for with ``str.find`` in the
lower-cased text, as whole words (no letter, digit or underscore on either side, any run of
spaces between words); the terms are served longest form first, each occurrence taking a
span that no other occurrence has taken. A test that passes this checker holds every term
occurrence as whole words, each with its own rendering.
"""

from __future__ import annotations

from collections.abc import Sequence

from forumtranslate.records import TermMatch


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _spans(text: str, form: str) -> list[tuple[int, int]]:
    """Where ``form`` stands in ``text`` as whole words (lower case, spaces collapsed)."""
    found, start = [], 0
    while True:
        i = text.find(form, start)
        if i < 0:
            return found
        end = i + len(form)
        before = text[i - 1] if i > 0 else " "
        after = text[end] if end < len(text) else " "
        if not _word_char(before) and not _word_char(after):
            found.append((i, end))
        start = i + 1


def missing_terms(text: str, matches: Sequence[TermMatch]) -> list[str]:
    """The targets of the occurrences that ``text`` does not render (empty: all there)."""
    text = " ".join(text.split()).lower()
    taken: list[tuple[int, int]] = []
    missing = []
    order = sorted(
        range(len(matches)),
        key=lambda k: -max(len(f) for f in (matches[k].allowed or (matches[k].target,))),
    )
    for k in order:
        match = matches[k]
        forms = sorted(
            {" ".join(f.split()).lower() for f in (match.allowed or (match.target,))},
            key=len,
            reverse=True,
        )
        spot = None
        for form in forms:
            for a, b in _spans(text, form):
                if all(b <= x or a >= y for x, y in taken):
                    spot = (a, b)
                    break
            if spot:
                break
        if spot is None:
            missing.append(match.target)
        else:
            taken.append(spot)
    return missing
