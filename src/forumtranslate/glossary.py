"""The terminology glossary: load ``glossary/terms.tsv``, find its terms, check renderings.

The glossary is a TSV file, one term a row, so that a change to a term is a one-line diff.
Loading is strict about structure (a malformed row is an ``InputError`` naming file and
line) but lenient about spacing; the stricter house rules (NFKC-normalised text, no stray
spaces, no duplicate or conflicting terms) are checked by ``lint_glossary``, which reports
every problem at once instead of stopping at the first.

Matching works on the NFKC form of a sentence, so full-width ``ＣＰＴＰＰ`` or half-width
``ﾃﾞﾘｽｸﾝｸﾞ`` find the same terms as their normal forms, while the offsets returned point
into the sentence as given (see ``_normalise_with_offsets``).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from forumtranslate.corpus import load_documents, read_text
from forumtranslate.errors import InputError
from forumtranslate.records import Document, TermMatch

COLUMNS = (
    "id",
    "kind",
    "source",
    "source_variants",
    "target",
    "target_variants",
    "avoid",
    "note",
)
# The layout before the kind column; still read (every row a term) so that a glossary
# from an older revision loads for the impact report, but lint asks for the kind.
LEGACY_COLUMNS = tuple(name for name in COLUMNS if name != "kind")
REQUIRED = ("id", "kind", "source", "target")
# What an entry names: names are what MT gets most visibly wrong, and a reviewer (and a
# CAT tool, via TBX) treats a person's or a body's name differently from a term.
KINDS = ("term", "organisation", "person", "programme", "title")
LIST_COLUMNS = ("source_variants", "target_variants", "avoid")
VARIANT_SEPARATOR = " | "
ID_PATTERN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


@dataclass(frozen=True)
class GlossaryEntry:
    """One approved term: its Japanese forms, its approved English, what not to write."""

    id: str
    source: str
    target: str
    source_variants: tuple[str, ...] = ()
    target_variants: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()
    note: str = ""
    kind: str = "term"  # one of KINDS
    line: int = field(default=0, compare=False)  # where it stands in the file, for messages

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source, *self.source_variants)

    @property
    def allowed(self) -> tuple[str, ...]:
        """Every English form that counts as using the term: approved first."""
        return (self.target, *self.target_variants)


@dataclass(frozen=True)
class Glossary:
    """The loaded glossary; ``sha256`` goes into every result's signature."""

    entries: tuple[GlossaryEntry, ...]
    path: str = ""
    text: str = field(default="", repr=False)  # the file as read; hashed, never parsed again

    @cached_property
    def sha256(self) -> str:
        """Hash of the file's bytes (read_text is lossless), so it equals ``sha256sum``."""
        text = self.text or format_glossary(self.entries)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get(self, entry_id: str) -> GlossaryEntry:
        return self._by_id[entry_id]

    @cached_property
    def _by_id(self) -> dict[str, GlossaryEntry]:
        return {entry.id: entry for entry in self.entries}

    @cached_property
    def _index(self) -> dict[str, list[tuple[str, GlossaryEntry]]]:
        """Normalised source forms by first character, longest first.

        A form claimed twice keeps its first entry (lint reports the conflict), so matching
        stays deterministic even on a glossary that does not lint clean.
        """
        seen: set[str] = set()
        index: dict[str, list[tuple[str, GlossaryEntry]]] = defaultdict(list)
        for entry in self.entries:
            for form in entry.sources:
                norm = nfkc(form).strip()
                if norm and norm not in seen:
                    seen.add(norm)
                    index[norm[0]].append((norm, entry))
        for forms in index.values():
            forms.sort(key=lambda item: -len(item[0]))
        return dict(index)

    def find_terms(self, sentence: str) -> list[TermMatch]:
        """Every glossary term in ``sentence``, leftmost-longest, in order, never overlapping.

        Scanning left to right, the first position where any source form starts wins, and
        there the longest form: so 重要鉱物サプライチェーン is one match when it is an entry,
        and a term that occurs twice is two matches. A match must cover whole characters of
        the original sentence, and a form that begins or ends with a letter or digit must
        not continue a Latin word or number (WTO in WTOs is no match).
        """
        norm, starts, ends = _normalise_with_offsets(sentence)
        boundary = [False] * (len(norm) + 1)  # normalised offsets that fall between groups
        boundary[0] = boundary[len(norm)] = True
        for i in range(1, len(norm)):
            boundary[i] = starts[i] != starts[i - 1]
        matches: list[TermMatch] = []
        i = 0
        while i < len(norm):
            found = self._match_at(norm, i, boundary)
            if found is None:
                i += 1
                continue
            form, entry = found
            start, end = starts[i], ends[i + len(form) - 1]
            matches.append(
                TermMatch(
                    entry_id=entry.id,
                    source=sentence[start:end],
                    start=start,
                    end=end,
                    target=entry.target,
                    allowed=entry.allowed,
                    avoid=entry.avoid,
                    kind=entry.kind,
                )
            )
            i += len(form)
        return _drop_glosses(sentence, matches)

    def _match_at(
        self, norm: str, i: int, boundary: list[bool]
    ) -> tuple[str, GlossaryEntry] | None:
        if not boundary[i]:
            return None
        for form, entry in self._index.get(norm[i], ()):
            end = i + len(form)
            if (
                norm.startswith(form, i)
                and boundary[end]
                and not (form[0].isascii() and form[0].isalnum() and _alnum_at(norm, i - 1))
                and not (form[-1].isascii() and form[-1].isalnum() and _alnum_at(norm, end))
            ):
                return form, entry
        return None


def _drop_glosses(sentence: str, matches: list[TermMatch]) -> list[TermMatch]:
    """Drop a match that only glosses the one before it: レアメタル(希少金属).

    A variant in brackets right after its own entry explains the term, it does not repeat
    it; counted twice, it would demand the English twice.
    """
    kept: list[TermMatch] = []
    for match in matches:
        previous = kept[-1] if kept else None
        if (
            previous is not None
            and previous.entry_id == match.entry_id
            and nfkc(sentence[previous.end : match.start]) == "("
            and nfkc(sentence[match.end : match.end + 1]) == ")"
        ):
            continue
        kept.append(match)
    return kept


def _alnum_at(text: str, i: int) -> bool:
    return 0 <= i < len(text) and text[i].isascii() and text[i].isalnum()


def _normalise_with_offsets(text: str) -> tuple[str, list[int], list[int]]:
    """NFKC-normalise ``text`` and map each normalised character back to the original.

    NFKC can change length (``ﾃﾞ`` → ``デ``, ``㍻`` → ``平成``), so the text is cut into
    groups that normalise independently: a character plus any that compose with it. Each
    group's normalised characters map to the group's original span; ``starts[k]`` and
    ``ends[k]`` are that span for normalised character ``k``. Adjacent groups whose joint
    form differs from their forms side by side are merged until none do; if the whole
    still differs (no known case) the text becomes one group, which is coarse but correct.
    """
    groups = list(text)
    merged = True
    while merged and len(groups) > 1:
        merged = False
        out = [groups[0]]
        for group in groups[1:]:
            if nfkc(out[-1] + group) != nfkc(out[-1]) + nfkc(group):
                out[-1] += group
                merged = True
            else:
                out.append(group)
        groups = out
    if "".join(nfkc(g) for g in groups) != nfkc(text):
        groups = [text] if text else []
    norm_parts: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    offset = 0
    for group in groups:
        normed = nfkc(group)
        norm_parts.append(normed)
        starts.extend([offset] * len(normed))
        ends.extend([offset + len(group)] * len(normed))
        offset += len(group)
    return "".join(norm_parts), starts, ends


# --- English side --------------------------------------------------------------------


def _form_pattern(form: str) -> str:
    """A regex for ``form`` as whole words; any run of whitespace matches a space."""
    words = [re.escape(word) for word in nfkc(form).split()]
    return r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)"


def contains_form(text: str, form: str) -> bool:
    """Whether ``form`` occurs in ``text`` as whole words, ignoring case and NFKC width."""
    return re.search(_form_pattern(form), nfkc(text), re.IGNORECASE) is not None


def term_found(translation: str, match: TermMatch) -> bool:
    """Whether the translation uses an allowed rendering of a matched term.

    Word-boundary aware, so "critical minerals" is not found in "critical mineralsfoo",
    and exact otherwise: plural and hyphenated forms count only when listed as variants.
    """
    allowed = match.allowed or (match.target,)
    return any(contains_form(translation, form) for form in allowed)


def capitalised(form: str) -> str:
    """A form as it opens a sentence: its first letter upper-cased, the rest kept
    ("de-risking" -> "De-risking", "G7" stays). The one rule every part that writes or
    expects a term at a sentence start uses (decoders, term editing, shortlist, speller)."""
    return form[:1].upper() + form[1:]


def written_forms(form: str) -> tuple[str, ...]:
    """The ways a form may be written into a sentence: as listed, and capitalised."""
    return tuple(dict.fromkeys((form, capitalised(form))))


@lru_cache(maxsize=1 << 16)
def _form_key(form: str) -> str:
    """How two renderings are compared: NFKC, case-folded, whitespace runs as one space.
    (Cached: the constrained search asks for the same few renderings at every step.)"""
    return " ".join(nfkc(form).split()).casefold()


class TermMatcher:
    """Finds a sentence's terms in an English text, one rendering for one occurrence.

    Why joint: "strategic autonomy" holds "autonomy", and a sentence with both 戦略的自律性
    and 自律性 must not count one English phrase twice. All the sentence's allowed forms are
    matched together, leftmost and then longest first, never overlapping, case-insensitively
    and as whole words; the spans are then assigned to the occurrences (a maximum bipartite
    matching, earlier spans to earlier occurrences). ``check_terms`` (which scores a run) and
    the constrained decoder (which decides when a term is met) both use this class.
    """

    def __init__(self, matches: Sequence[TermMatch], fold: Any = None) -> None:
        self.matches = list(matches)
        self._fold = fold  # lemmatising: a function on a lower-cased word, or None
        owners: dict[str, set[str]] = defaultdict(set)
        self._avoided: dict[str, str] = {}
        for match in self.matches:
            for form in match.allowed or (match.target,):
                owners[self._key(form)].add(match.entry_id)
        for match in self.matches:
            for form in match.avoid:
                if self._key(form) not in owners:
                    self._avoided.setdefault(self._key(form), form)
        self._owners = dict(owners)
        # Allowed and avoided forms in one pattern: an avoided phrase inside an approved
        # one ("security" in "economic security") is part of the approved rendering.
        self._pattern = _joint_pattern([*self._owners, *self._avoided])
        self._longest = max((len(k) for k in [*self._owners, *self._avoided]), default=0)
        self._assignments: dict[tuple[str, ...], tuple[tuple[int, int], ...]] = {}

    def _key(self, form: str) -> str:
        key = _form_key(form)
        return _fold_words(key, self._fold) if self._fold else key

    def _text(self, translation: str) -> str:
        text = nfkc(translation)
        return _fold_words(text, self._fold) if self._fold else text

    def _hits(self, text: str) -> list[tuple[int, int, str]]:
        return [(h.start(), h.end(), _form_key(h.group())) for h in self._pattern.finditer(text)]

    def spans(self, translation: str) -> list[tuple[int, int] | None]:
        """Per occurrence, the (start, end) of the rendering credited to it, or None.

        Offsets are into the NFKC form of ``translation`` (lemmatised, with ``fold``).
        """
        if not self.matches:
            return []
        return self._assign(self._hits(self._text(translation)))

    def _assign(self, found: list[tuple[int, int, str]]) -> list[tuple[int, int] | None]:
        hits = [(a, b, key) for a, b, key in found if key in self._owners]
        keys = tuple(key for _, _, key in hits)
        pairs = self._assignments.get(keys)
        if pairs is None:
            pairs = self._assignments[keys] = self._match(keys)
        spans: list[tuple[int, int] | None] = [None] * len(self.matches)
        for h, occurrence in pairs:
            spans[occurrence] = hits[h][:2]
        return spans

    def _match(self, keys: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
        """(hit, occurrence) pairs of a maximum matching of the hits, in text order, to the
        occurrences, earlier hits to earlier occurrences. It depends on the order of the
        hits' renderings only, not on where they are, so ``_assign`` keeps it per sequence:
        the search's hypotheses share a few such sequences."""
        owners = [self._owners[key] for key in keys]
        owner_of: dict[int, int] = {}  # hit -> occurrence

        def place(occurrence: int, seen: set[int]) -> bool:
            entry_id = self.matches[occurrence].entry_id
            for h, entries in enumerate(owners):
                if entry_id in entries and h not in seen:
                    seen.add(h)
                    if h not in owner_of or place(owner_of[h], seen):
                        owner_of[h] = occurrence
                        return True
            return False

        for occurrence in range(len(self.matches)):
            place(occurrence, set())
        return tuple(owner_of.items())

    def scan(self, translation: str, before: Any = None) -> Any:
        """The NFKC text and its form hits, for ``verdict``; ``before`` is the scan of a text
        this one continues (a hypothesis's parent), whose hits far from its end are reused:
        a hit is decided by the characters around it, so only the tail needs a new look."""
        text = nfkc(translation)
        if before is not None and "  " not in text:
            old_text, old_hits = before
            cut = len(old_text) - 2 * self._longest - 8
            if cut > 0 and text[: cut + self._longest + 4] == old_text[: cut + self._longest + 4]:
                kept = [h for h in old_hits if h[1] <= cut]
                dropped = [h[0] for h in old_hits if h[1] > cut]
                resume = min([cut, *dropped])
                fresh = [
                    (h.start(), h.end(), _form_key(h.group()))
                    for h in self._pattern.finditer(text, resume)
                ]
                return text, kept + fresh
        return text, self._hits(text)

    def verdict(self, translation: str, scanned: Any = None) -> tuple[tuple[bool, ...], bool, bool]:
        """What the decoder needs in one pass: which occurrences are met, whether an
        avoided rendering is in the text, and whether a credited rendering ends the text
        (so that the next piece must not glue onto it)."""
        text, found = scanned if scanned is not None else self.scan(translation)
        spans = self._assign(found)
        avoided = any(key in self._avoided for _, _, key in found)
        at_end = any(s is not None and s[1] == len(text) for s in spans)
        return tuple(s is not None for s in spans), avoided, at_end

    def found(self, translation: str) -> list[bool]:
        return [span is not None for span in self.spans(translation)]

    def renderings(self, translation: str) -> list[str | None]:
        """Per occurrence, the rendering credited to it as written (case kept), or None."""
        text = self._text(translation)
        return [None if s is None else text[s[0] : s[1]] for s in self.spans(translation)]

    def avoided(self, translation: str) -> list[str]:
        """The avoided renderings (of any of the sentence's entries) in the text, any case."""
        if not self._avoided:
            return []
        found = self._hits(self._text(translation))
        return [self._avoided[key] for _, _, key in found if key in self._avoided]


def _joint_pattern(keys: Any) -> re.Pattern[str]:
    """One regex for many forms: longest first, so at each position the longest wins."""
    forms = sorted(keys, key=lambda k: (-len(k), k))
    if not forms:
        return re.compile(r"(?!)")
    return re.compile("|".join(f"(?:{_form_pattern(form)})" for form in forms), re.IGNORECASE)


def _fold_words(text: str, fold: Any) -> str:
    return re.sub(r"\w+", lambda m: fold(m.group().lower()), text)


def lemmatiser() -> Any:
    """English lemmas with ``simplemma`` (a small, dictionary-based lemmatiser with no model
    to download): "minerals" and "mineral" both become "mineral"."""
    import simplemma

    @lru_cache(maxsize=65536)
    def lemma(word: str) -> str:
        return simplemma.lemmatize(word, lang="en").lower()

    return lemma


def check_terms(translation: str, matches: Sequence[TermMatch]) -> list[bool]:
    """For each matched occurrence, whether the translation renders it.

    Occurrences are counted and renderings are not shared: a term found twice in the
    source needs two non-overlapping allowed renderings, and one English phrase counts for
    one occurrence only, as ``TermMatcher`` assigns them (WMT exact-match term accuracy,
    per occurrence).
    """
    return TermMatcher(matches).found(translation)


def avoided_found(translation: str, entry: GlossaryEntry) -> list[str]:
    """The entry's to-be-avoided renderings that occur in the translation (empty: none)."""
    return [form for form in entry.avoid if contains_form(translation, form)]


def unspellable_forms(glossary: Glossary, tokenizer: Any) -> list[tuple[GlossaryEntry, str]]:
    """The target forms (approved or variant) that ``tokenizer``'s target side cannot write.

    A vocabulary without byte fallback has no piece for a character it never saw ("ä" in
    "Känkänen", "€", Cyrillic): the form comes out with unknown pieces and decodes to
    something else ("Knknen"), so forcing it would only force a misspelling. A form counts
    as writable when its pieces hold no unknown and decode back to it (the capitalised
    form too, which a sentence's start uses), up to NFKC and spacing, as terms are checked.
    """
    unknown = getattr(tokenizer, "unk_token_id", None)
    out = []
    for entry in glossary.entries:
        for form in entry.allowed:
            for variant in written_forms(form):
                ids = tokenizer(text_target=variant, add_special_tokens=False)["input_ids"]
                written = tokenizer.decode(ids, skip_special_tokens=True)
                if (unknown is not None and unknown in ids) or (
                    nfkc(written).split() != nfkc(variant).split()
                ):
                    out.append((entry, form))
                    break
    return out


# --- reading and writing the TSV -----------------------------------------------------


def _split_rows(text: str) -> list[tuple[int, list[str]]]:
    """The file's non-blank rows with their line numbers, header included."""
    # Plain splits, not csv: the file has no quoting, and csv's 131,072-character field
    # limit would make a long cell a traceback.
    rows = (line.split("\t") for line in text.split("\n"))
    return [
        (line_no, row)
        for line_no, row in enumerate(rows, start=1)
        if any(cell.strip() for cell in row)
    ]


def _columns(row: list[str], *, legacy: bool = True) -> tuple[str, ...] | str:
    """The layout a header row announces, or what is wrong with it."""
    header = tuple(cell.strip() for cell in row)
    if header == COLUMNS or (legacy and header == LEGACY_COLUMNS):
        return header
    if header == LEGACY_COLUMNS:
        return f"header has no kind column (add it after id: {' / '.join(COLUMNS)})"
    return f"header must be {' / '.join(COLUMNS)}, found {' / '.join(row)}"


def _row_problems(row: list[str], columns: tuple[str, ...] = COLUMNS) -> list[str]:
    """What makes a row unusable; a row with none of these can become an entry."""
    if len(row) != len(columns):
        return [f"expected {len(columns)} tab-separated fields, found {len(row)}"]
    cells = dict(zip(columns, row, strict=True))
    problems = []
    for name in REQUIRED:
        if name not in cells:
            continue  # a legacy file has no kind: every row is a term
        if cells[name] == "":
            problems.append(f"empty required field {name!r}")
        elif not nfkc(cells[name]).strip():
            problems.append(f"{name} {cells[name]!r} is empty once normalised")
    for name, cell in cells.items():  # it would hide in a page and break an XML export
        control = next((ch for ch in cell if unicodedata.category(ch) in ("Cc", "Cs")), None)
        if control is not None:
            problems.append(f"{name} has a control character U+{ord(control):04X}")
    if "kind" in cells and cells["kind"].strip() and cells["kind"].strip() not in KINDS:
        problems.append(f"kind {cells['kind'].strip()!r} is not one of {', '.join(KINDS)}")
    for name in LIST_COLUMNS:
        if cells[name].strip() and any(not nfkc(v).strip() for v in cells[name].split("|")):
            problems.append(f"{name} has an empty variant: {cells[name]!r}")
    return problems


def _split_variants(cell: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in cell.split("|")) if cell.strip() else ()


def _entry_from_row(row: list[str], line: int, columns: tuple[str, ...] = COLUMNS) -> GlossaryEntry:
    cells = dict(zip(columns, row, strict=True))
    return GlossaryEntry(
        id=cells["id"].strip(),
        source=cells["source"].strip(),
        target=cells["target"].strip(),
        source_variants=_split_variants(cells["source_variants"]),
        target_variants=_split_variants(cells["target_variants"]),
        avoid=_split_variants(cells["avoid"]),
        note=cells["note"].strip(),
        kind=cells.get("kind", "term").strip(),
        line=line,
    )


def load_glossary(path: str | Path) -> Glossary:
    """Read a glossary TSV; the first malformed row is an ``InputError`` at its line."""
    path = Path(path)
    text = read_text(path)
    rows = _split_rows(text)
    header_line, header = rows[0]
    columns = _columns(header)
    if isinstance(columns, str):
        raise InputError(columns, path, header_line)
    entries = []
    for line_no, row in rows[1:]:
        problems = _row_problems(row, columns)
        if problems:
            raise InputError(problems[0], path, line_no)
        entries.append(_entry_from_row(row, line_no, columns))
    return Glossary(entries=tuple(entries), path=str(path), text=text)


def format_glossary(entries: tuple[GlossaryEntry, ...] | list[GlossaryEntry]) -> str:
    """The TSV text for ``entries``, in the file's own layout."""
    lines = ["\t".join(COLUMNS)]
    for e in entries:
        cells = (
            e.id,
            e.kind,
            e.source,
            VARIANT_SEPARATOR.join(e.source_variants),
            e.target,
            VARIANT_SEPARATOR.join(e.target_variants),
            VARIANT_SEPARATOR.join(e.avoid),
            e.note,
        )
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


# --- lint ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LintMessage:
    """One finding, printed the way compilers do so editors can jump to it.

    ``line`` is None for a finding about a whole file (a reference that never uses a term).
    """

    path: str
    line: int | None
    level: str  # error | warning
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.level}: {self.message}"


def lint_glossary(path: str | Path, data_dir: str | Path | None = None) -> list[LintMessage]:
    """Every problem in the glossary, and with ``data_dir`` how it fits the corpus.

    Errors make the glossary wrong or ambiguous to apply; warnings are for a person to
    judge: a term the corpus never uses, a reference that renders a term otherwise.
    An unreadable file raises ``InputError`` as ``load_glossary`` does.
    """
    path = Path(path)
    rows = _split_rows(read_text(path))
    messages: list[LintMessage] = []

    def error(line: int, message: str) -> None:
        messages.append(LintMessage(str(path), line, "error", message))

    header_line, header = rows[0]
    problem = _columns(header, legacy=False)
    if isinstance(problem, str):
        error(header_line, problem)
        return messages
    entries: list[GlossaryEntry] = []
    for line_no, row in rows[1:]:
        problems = _row_problems(row)
        for problem in problems:
            error(line_no, problem)
        if len(row) == len(COLUMNS):
            for name, cell in zip(COLUMNS, row, strict=True):
                for problem in _cell_problems(name, cell):
                    error(line_no, problem)
        if not problems:
            entries.append(_entry_from_row(row, line_no))
    for line_no, problem in _conflicts(entries):
        error(line_no, problem)
    for entry in entries:
        for problem in _name_order_problems(entry):
            error(entry.line, problem)
    messages.sort(key=lambda message: message.line or 0)  # stable: a row's own order stays
    if data_dir is not None:
        glossary = Glossary(entries=tuple(entries), path=str(path))
        messages.extend(_corpus_warnings(glossary, Path(data_dir)))
    return messages


def _cell_problems(name: str, cell: str) -> list[str]:
    """House rules for one cell: tidy spacing, NFKC text, a plain id."""
    problems = []
    if name in LIST_COLUMNS and cell.strip():
        items = cell.split("|")
        if all(item.strip() for item in items) and not _well_separated(cell):
            problems.append(f"{name}: separate variants with {VARIANT_SEPARATOR!r}: {cell!r}")
    else:
        items = [cell]
        if cell != cell.strip():
            problems.append(f"{name} has leading or trailing spaces: {cell!r}")
    if name == "id" and cell.strip() and not ID_PATTERN.fullmatch(cell.strip()):
        problems.append(f"id {cell.strip()!r}: use lower-case letters, digits and hyphens")
    if name != "note":  # a note is for people; only the terms must match as written
        for item in (item.strip() for item in items):
            if item != nfkc(item):
                problems.append(f"{name} {item!r} is not NFKC-normalised (write {nfkc(item)!r})")
    return problems


_JAPANESE_NAME = re.compile(r"[\u3400-\u9fff\u3005]+(?:\s*[\u3040-\u309f\u3400-\u9fff\u3005]+)*")
_FAMILY_GIVEN = re.compile(r"[A-Z][A-Z'-]+ [A-Z][a-z'-]+")  # AKAZAWA Ryosei


def _name_order_problems(entry: GlossaryEntry) -> list[str]:
    """A Japanese person's name (written in kanji) in the house order, FAMILY Given; any
    other person's in their own order, so with no family name in capitals."""
    if entry.kind != "person":
        return []
    japanese = _JAPANESE_NAME.fullmatch(nfkc(entry.source)) is not None
    problems = []
    for form in entry.allowed:
        if " " not in form:
            continue  # a family name alone (Prime Minister Abe), as running text has it
        if japanese and not _FAMILY_GIVEN.fullmatch(form):
            problems.append(f"person {form!r}: write a Japanese name FAMILY Given (AKAZAWA Ryosei)")
        elif not japanese and _FAMILY_GIVEN.match(form):
            problems.append(
                f"person {form!r}: a non-Japanese name keeps its own order and case "
                "(Klevis Sevrani)"
            )
    return problems


def _well_separated(cell: str) -> bool:
    items = cell.split(VARIANT_SEPARATOR)
    return all(item and item == item.strip() and "|" not in item for item in items)


def _conflicts(entries: list[GlossaryEntry]) -> list[tuple[int, str]]:
    """Duplicate ids, source forms claimed twice, targets that are also to be avoided."""
    problems: list[tuple[int, str]] = []
    ids: dict[str, GlossaryEntry] = {}
    owners: dict[str, GlossaryEntry] = {}
    for entry in entries:
        if entry.id in ids:
            problems.append((entry.line, f"duplicate id {entry.id!r} (line {ids[entry.id].line})"))
        else:
            ids[entry.id] = entry
        for form in entry.sources:
            norm = nfkc(form).strip()
            owner = owners.get(norm)
            if owner is None:
                owners[norm] = entry
            elif owner is entry:
                problems.append((entry.line, f"source {form!r} listed twice in {entry.id!r}"))
            else:
                problems.append(
                    (
                        entry.line,
                        f"source {form!r} of {entry.id!r} is already claimed by "
                        f"{owner.id!r} (line {owner.line})",
                    )
                )
        avoided = {form.casefold() for form in entry.avoid}
        for form in entry.allowed:
            if form.casefold() in avoided:
                problems.append((entry.line, f"{form!r} is both allowed and to be avoided"))
    return problems


def _corpus_warnings(glossary: Glossary, data_dir: Path) -> list[LintMessage]:
    """Terms the Japanese never uses; references that avoid or miss approved renderings."""
    documents = load_documents(data_dir, "ja")
    found: dict[str, dict[str, list[TermMatch]]] = {}  # doc_id -> entry_id -> matches
    for doc in documents:
        per_entry: dict[str, list[TermMatch]] = defaultdict(list)
        for match in glossary.find_terms(doc.text):
            per_entry[match.entry_id].append(match)
        found[doc.doc_id] = per_entry
    messages: list[LintMessage] = []
    all_ja = "\n".join(nfkc(doc.text) for doc in documents)
    for entry in glossary.entries:
        if any(entry.id in per_entry for per_entry in found.values()):
            continue
        inside = [form for form in entry.sources if nfkc(form) in all_ja]
        detail = f"; {' / '.join(inside)} occurs only inside longer terms" if inside else ""
        messages.append(
            LintMessage(
                glossary.path,
                entry.line,
                "warning",
                f"{entry.id!r} never occurs in {data_dir / 'ja'}{detail}",
            )
        )
    for doc in documents:
        en_path = data_dir / "en" / f"{doc.doc_id}.txt"
        if not en_path.exists():
            continue  # references are still being written; a missing one is no finding
        en_text = read_text(en_path)
        for entry_id, matches in found[doc.doc_id].items():
            entry = glossary.get(entry_id)
            messages.extend(_reference_warnings(entry, matches, doc, en_text, en_path))
    return messages


def _reference_warnings(
    entry: GlossaryEntry,
    matches: list[TermMatch],
    doc: Document,
    en_text: str,
    en_path: Path,
) -> list[LintMessage]:
    """Warnings for one term in one reference: an avoided rendering, or no allowed one."""
    messages = []
    for form in avoided_found(en_text, entry):
        line = _first_line(en_text, form)
        messages.append(
            LintMessage(
                str(en_path),
                line,
                "warning",
                f"uses avoided rendering {form!r} for {entry.source} [{entry.id}]; "
                f"approved: {entry.target!r}",
            )
        )
    if not any(contains_form(en_text, form) for form in entry.allowed):
        first = doc.text[: matches[0].start].count("\n") + 1
        messages.append(
            LintMessage(
                str(en_path),
                None,
                "warning",
                f"never renders {entry.source} [{entry.id}] as "
                f"{' | '.join(entry.allowed)}; {doc.path}:{first} has it "
                f"{len(matches)} time{'s' if len(matches) != 1 else ''}",
            )
        )
    return messages


def _first_line(text: str, form: str) -> int | None:
    """The line where ``form`` first occurs (it may run on to the next)."""
    normalised = nfkc(text)  # NFKC neither adds nor removes line breaks
    found = re.search(_form_pattern(form), normalised, re.IGNORECASE)
    return None if found is None else normalised[: found.start()].count("\n") + 1
