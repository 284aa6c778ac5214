"""Beam search with hard lexical constraints: every glossary term comes out, guaranteed.

Method: dynamic beam allocation (Post & Vilar 2018, "Fast Lexically Constrained Decoding
with Dynamic Beam Allocation"), run over the model's own step-by-step decoder and its
key/value cache, for a batch of sentences at once.

* Each glossary occurrence in a source sentence is a ``Constraint``: a set of token
  sequences (its allowed forms, each also capitalised: ``term_forms``) that the search can
  force.
* Whether a constraint is *met* is decided by a judge on the whole hypothesis, not by those
  token sequences: in a real run ``TextJudge`` reads the decoded text with
  ``glossary.TermMatcher``, the rule that scores term accuracy (whole words, any case, any
  segmentation, one rendering for one occurrence). So the model's own way of writing a term
  ("Economic Security", "▁econom" + "ic ▁security", after an opening quote) meets it, and
  the search never forces a second copy. ``TokenJudge`` is the same rule on token ids, for
  the toy scorers of the tests.
* Every step, each sentence's candidates are (a) the best ``2k`` continuations over its whole
  beam, as in ordinary beam search, (b) each hypothesis's single best token, and (c) for each
  hypothesis, the tokens that advance a constraint it has not met. The model's best
  candidate keeps a slot; the others are grouped into *banks* by how many constraint tokens
  they have produced, and the beam slots are dealt round-robin from the highest bank down,
  so hypotheses that honour the constraints survive pruning even when the model dislikes
  them.
* A hypothesis may end (EOS) only when all its constraints are met; a candidate whose text
  holds an avoided rendering (any case, any segmentation) is dropped.

The guarantee. Every hypothesis keeps the invariant ``needed <= remaining``: ``needed`` is the
length of the shortest *checked plan* (tokens after which the judge finds every constraint
met and nothing avoided; see ``ConstraintTracker.needed``) plus EOS, ``remaining`` the steps
left before the sentence's ``max_new_tokens``. Checking plans with the judge matters because
writing a term can change what the text before it meets ("strategic" + "autonomy" is the
longer term). Far from the limit a cheap upper bound (each unmet term's longest form after
a separator) shows the invariant holds; near it, only tokens after which a checked plan
still fits may follow, and the plan's next token always does. So every sentence finishes
inside its limit with every constraint met, for any model and any beam size, beam 1
included; the backend (``hf``) still checks the final text and would append a term the
vocabulary cannot spell (recorded as ``appended``).

After a credited rendering ends the text, the next token must start a new word (or be
punctuation or EOS), so the term cannot be glued into a longer word ("autonomy" + "s");
only near the limit does this rule give way to the plans, which are checked on the text.
Token sequences of renderings marked "avoid" are also blocked the way
``NoBadWordsLogitsProcessor`` blocks bad words.

Cost. The model work is that of beam search with the same beam; the extra is per step
``O(k · C)`` candidate scores gathered for ``C`` constraint tokens and, per candidate, the
judge's look at the end of its text (the hits far from the end are reused from the
parent). ``eval/bench_backends.py`` measures it on the corpus (``--terms off`` beside
``--terms hard``, time per generated token), and ``eval/terms_cost.py`` what it changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from forumtranslate.glossary import TermMatcher, written_forms
from forumtranslate.records import TermMatch
from forumtranslate.wordpieces import PieceText, decode_bytes

NEG_INF = float("-inf")


@dataclass(frozen=True)
class Constraint:
    """One required term: any one of ``alternatives`` (token-id sequences) satisfies it."""

    alternatives: tuple[tuple[int, ...], ...]
    label: str = ""

    def __post_init__(self) -> None:
        if not self.alternatives or any(len(alt) == 0 for alt in self.alternatives):
            raise ValueError(f"constraint {self.label!r} has an empty alternative")

    @property
    def min_length(self) -> int:
        return min(len(alt) for alt in self.alternatives)


class TokenJudge:
    """Decides which constraints a token sequence meets, on the token ids themselves.

    The rule is the one ``glossary.TermMatcher`` applies to text, on tokens: every
    alternative of every constraint is matched jointly, leftmost and then longest first,
    never overlapping, and the matches are assigned to the constraints (a maximum
    matching). So "5 6" meets ``(5, 6)`` and not also ``(6,)`` inside it. Used where there
    is no text: the toy scorers of the tests. ``TextJudge`` is the same rule on the
    decoded text.
    """

    def __init__(self, constraints: Sequence[Constraint]):
        self.constraints = list(constraints)
        self.owners: dict[tuple[int, ...], set[int]] = {}
        for c, constraint in enumerate(self.constraints):
            for alt in constraint.alternatives:
                self.owners.setdefault(alt, set()).add(c)
        self.lengths = sorted({len(alt) for alt in self.owners}, reverse=True)

    def start(self) -> tuple[int, ...]:
        return ()

    def extend(self, memo: tuple[int, ...], tokens: Sequence[int]) -> tuple[int, ...]:
        return (*memo, *tokens)

    def verdict(self, memo: tuple[int, ...]) -> tuple[tuple[bool, ...], bool, bool]:
        """(met per constraint, an avoided rendering present, a credited one ends here)."""
        hits: list[tuple[int, int, set[int]]] = []
        i = 0
        while i < len(memo):
            for n in self.lengths:
                owners = self.owners.get(tuple(memo[i : i + n]))
                if owners is not None and i + n <= len(memo):
                    hits.append((i, i + n, owners))
                    i += n
                    break
            else:
                i += 1
        spans = assign(hits, list(range(len(self.constraints))))
        at_end = any(s is not None and s[1] == len(memo) for s in spans)
        return tuple(s is not None for s in spans), False, at_end


def term_forms(match: TermMatch) -> list[str]:
    """The English strings that satisfy a term: each allowed form, also capitalised."""
    forms: list[str] = []
    for form in match.allowed or (match.target,):
        for variant in written_forms(form):
            if variant not in forms:
                forms.append(variant)
    return forms


class TextJudge:
    """What a hypothesis meets, read from its decoded text (``glossary.TermMatcher``).

    The search's ``memo`` is the hypothesis's bytes (``wordpieces.PieceText``), so a term
    counts however the model segmented or cased it, after a quote or a bracket.
    """

    def __init__(self, matcher: TermMatcher, pieces: PieceText):
        self.matcher = matcher
        self.pieces = pieces
        self._scans: dict[bytes, Any] = {}
        self._parents: dict[bytes, bytes] = {}
        self._verdicts: dict[bytes, tuple[tuple[bool, ...], bool, bool]] = {}

    def start(self) -> bytes:
        return b""

    def extend(self, memo: bytes, tokens: Sequence[int]) -> bytes:
        data = memo + self.pieces.data(tokens)
        self._parents.setdefault(data, memo)
        return data

    def verdict(self, memo: bytes) -> tuple[tuple[bool, ...], bool, bool]:
        found = self._verdicts.get(memo)
        if found is None:
            parent = self._scans.get(self._parents.get(memo, b""))
            scanned = self.matcher.scan(decode_bytes(memo), parent)
            self._scans[memo] = scanned
            found = self.matcher.verdict("", scanned)
            self._verdicts[memo] = found
        return found


def assign(
    hits: Sequence[tuple[int, int, set]], wanted: Sequence[Any]
) -> list[tuple[int, int] | None]:
    """Give each wanted item one hit whose owners include it, as many as possible
    (augmenting paths; earlier hits go to earlier items)."""
    owner_of: dict[int, int] = {}

    def place(item: int, seen: set[int]) -> bool:
        for h, (_, _, owners) in enumerate(hits):
            if wanted[item] in owners and h not in seen:
                seen.add(h)
                if h not in owner_of or place(owner_of[h], seen):
                    owner_of[h] = item
                    return True
        return False

    for item in range(len(wanted)):
        place(item, set())
    spans: list[tuple[int, int] | None] = [None] * len(wanted)
    for h, item in owner_of.items():
        spans[item] = (hits[h][0], hits[h][1])
    return spans


@dataclass(frozen=True)
class ConstraintState:
    """Where one hypothesis stands with its sentence's constraints.

    ``met`` is the judge's verdict on the whole hypothesis (the decoded text, in a real
    run): a constraint is met when its rendering is there, however the model spelled it
    in tokens. ``partials`` lists the constraints whose token alternatives the last tokens
    have started, as ``(constraint, those tokens)``; they steer the search (DBA's banks) and
    the forced steps. ``just_completed`` is set when a credited rendering ends at the last
    token. ``memo`` is what the judge reads (the tokens, or the text's bytes); ``plan``,
    when known, is a checked way to finish: tokens after which every constraint is met.
    """

    met: tuple[bool, ...]
    partials: tuple[tuple[int, tuple[int, ...]], ...] = ()
    just_completed: bool = False
    memo: Any = ()
    avoided: bool = False
    plan: tuple[int, ...] | None = None

    @classmethod
    def initial(cls, n_constraints: int, memo: Any = ()) -> ConstraintState:
        return cls(met=(False,) * n_constraints, memo=memo)

    def all_met(self) -> bool:
        return all(self.met)


INFINITE = 1 << 30


@dataclass
class ConstraintTracker:
    """The constraints of one sentence and the arithmetic on their states.

    ``judge`` decides what a hypothesis meets (``TokenJudge`` by default); ``filler`` is a
    token that separates words (a comma), used only in the plans that finish a sentence.
    """

    constraints: Sequence[Constraint]
    judge: Any = None
    filler: int | None = None
    _plans: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.judge is None:
            self.judge = TokenJudge(self.constraints)
        if self.filler is None:
            used = {t for c in self.constraints for alt in c.alternatives for t in alt}
            self.filler = next((t for t in range(1, 1 << 20) if t not in used), None)
        # Every unmet term written after a filler: an upper bound on a sure way to finish.
        self._spread = [max(len(a) for a in c.alternatives) + 1 for c in self.constraints]

    def initial(self) -> ConstraintState:
        state = ConstraintState.initial(len(self.constraints), self.judge.start())
        return self._judged(state.memo, (), None)

    def advance(self, state: ConstraintState, token: int) -> ConstraintState:
        """The state after ``token`` is appended to the hypothesis."""
        grown = [(c, (*prefix, token)) for c, prefix in state.partials]
        grown += [
            (c, (token,))
            for c, constraint in enumerate(self.constraints)
            if any(alt[0] == token for alt in constraint.alternatives)
        ]
        partials = tuple(
            sorted({(c, p) for c, p in grown if self._can_grow(c, p) and self._compatible(c, p)})
        )
        plan = state.plan[1:] if state.plan and state.plan[0] == token else None
        return self._judged(self.judge.extend(state.memo, (token,)), partials, plan)

    def _judged(self, memo: Any, partials: tuple, plan: tuple[int, ...] | None) -> ConstraintState:
        met, avoided, at_end = self.judge.verdict(memo)
        partials = tuple((c, p) for c, p in partials if not met[c])
        return ConstraintState(met, partials, at_end, memo, avoided, plan)

    def _compatible(self, c: int, prefix: tuple[int, ...]) -> bool:
        n = len(prefix)
        return any(alt[:n] == prefix for alt in self.constraints[c].alternatives)

    def _can_grow(self, c: int, prefix: tuple[int, ...]) -> bool:
        n = len(prefix)
        return any(alt[:n] == prefix and len(alt) > n for alt in self.constraints[c].alternatives)

    def base_needed(self, state: ConstraintState) -> int:
        """Tokens to finish if every started term is dropped: each unmet term's shortest
        alternative, then EOS (a lower bound: see ``needed``)."""
        return 1 + sum(self.constraints[c].min_length for c, m in enumerate(state.met) if not m)

    def surely_enough(self, state: ConstraintState) -> int:
        """An upper bound on ``needed`` that costs nothing: a filler, then each unmet term's
        longest alternative after a filler, then EOS. Written that way the terms cannot run
        into each other or into the text before them."""
        return 2 + sum(self._spread[c] for c, m in enumerate(state.met) if not m)

    def needed(self, state: ConstraintState) -> int:
        """Tokens of the shortest checked plan that meets every constraint, plus EOS.

        Plans: finish a started term (or none), then the other unmet terms one after
        another, each by its shortest alternative, with or without a filler before each;
        and the plan this state inherited from its parent. A plan counts only if the judge
        finds every constraint met after it and no avoided rendering: writing a term can
        also change what the text before it meets ("strategic" + "autonomy" is the longer
        term), so the arithmetic alone is not trusted.
        """
        if state.avoided:
            return INFINITE
        if state.all_met():
            return 1
        plan = self.plan(state)
        return INFINITE if plan is None else len(plan) + 1

    def plan(self, state: ConstraintState) -> tuple[int, ...] | None:
        key = (state.memo, state.partials, state.plan)
        if key in self._plans:
            return self._plans[key]
        candidates = [] if state.plan is None else [state.plan]
        starts: list[tuple[int | None, tuple[int, ...]]] = [(None, ())]
        for c, prefix in state.partials:
            n = len(prefix)
            rest = min(
                (alt[n:] for alt in self.constraints[c].alternatives if alt[:n] == prefix),
                key=len,
            )
            starts.append((c, rest))
        for separated in (False, True):
            for c, rest in starts:
                plan = list(rest)
                if separated and self.filler is not None and not rest:
                    plan.append(self.filler)
                for d, m in enumerate(state.met):
                    if not m and d != c:
                        shortest = min(self.constraints[d].alternatives, key=len)
                        if separated and self.filler is not None and plan:
                            plan.append(self.filler)
                        plan.extend(shortest)
                candidates.append(tuple(plan))
        best = None
        for plan in sorted(set(candidates), key=lambda p: (len(p), p)):
            for _repair in range(3):
                met, avoided, _ = self.judge.verdict(self.judge.extend(state.memo, plan))
                if avoided or all(met):
                    break
                # Writing a term took the rendering of another (the longer one wins):
                # write the terms that are unmet now as well, and look again.
                for d, m in enumerate(met):
                    if not m:
                        plan = (*plan, *min(self.constraints[d].alternatives, key=len))
            if all(met) and not avoided and (best is None or len(plan) < len(best)):
                best = plan
        self._plans[key] = best
        return best

    def progress_tokens(self, state: ConstraintState) -> set[int]:
        """Tokens that continue a started term, or start an unmet one."""
        tokens: set[int] = set()
        for c, prefix in state.partials:
            n = len(prefix)
            for alt in self.constraints[c].alternatives:
                if alt[:n] == prefix and len(alt) > n:
                    tokens.add(alt[n])
        for c, constraint in enumerate(self.constraints):
            if not state.met[c]:
                tokens.update(alt[0] for alt in constraint.alternatives)
        return tokens

    def bank(self, state: ConstraintState) -> int:
        """Constraint tokens produced so far: the unit by which DBA allocates the beam."""
        done = sum(self.constraints[c].min_length for c, m in enumerate(state.met) if m)
        longest = max((len(p) for _, p in state.partials), default=0)
        return done + longest


@dataclass(frozen=True)
class SearchOptions:
    beam_size: int
    eos_id: int
    start_id: int
    forced_first_id: int | None = None  # NLLB's target-language token
    banned_ids: tuple[int, ...] = ()  # never generated (padding)
    length_penalty: float = 1.0
    eos_at_limit: bool = False  # the model's generation config forces EOS at the length limit
    exact_length: bool = False  # benchmarks: EOS banned until the length limit ends a hypothesis


@dataclass
class _Hypothesis:
    tokens: list[int]
    score: float
    state: ConstraintState


def constrained_beam_search(
    step: Callable[[torch.Tensor], torch.Tensor],
    reorder: Callable[[torch.Tensor], None],
    options: SearchOptions,
    constraints: Sequence[Sequence[Constraint]],
    max_new_tokens: Sequence[int],
    blocked: Sequence[Sequence[tuple[int, ...]]] | None = None,
    word_continuation: torch.Tensor | None = None,
    judges: Sequence[Any] | None = None,
    filler: int | None = None,
) -> list[list[int]]:
    """Decode a batch; return each sentence's best finished token ids (EOS excluded).

    ``step(last_tokens)`` runs the decoder one step for every live row and returns
    log-probabilities of shape ``(rows, vocab)``; ``reorder(rows)`` makes row ``i`` of the
    decoder's cache continue from old row ``rows[i]``. Rows come ``beam_size`` per live
    sentence; finished sentences are dropped from the batch. ``word_continuation`` is a boolean
    vector over the vocabulary marking tokens that would glue onto the previous word.
    ``judges`` (one per sentence, or None for ``TokenJudge``) decide what a hypothesis meets;
    ``filler`` is a token that separates words, for the plans that finish a sentence.
    """
    k = options.beam_size
    n_sent = len(constraints)
    blocked = blocked or [()] * n_sent
    judges = judges or [None] * n_sent
    trackers = [
        ConstraintTracker(list(cs), judge, filler) if cs else ConstraintTracker([], _NoJudge())
        for cs, judge in zip(constraints, judges)
    ]
    # The first step may be spent on a forced token; without a forced EOS the limit itself
    # ends a hypothesis (see _mask_logprobs), so the budget is one larger.
    budget_offset = (0 if options.eos_at_limit else 1) - (options.forced_first_id is not None)
    initial = [tracker.initial() for tracker in trackers]
    for b, tracker in enumerate(trackers):
        if tracker.needed(initial[b]) > max_new_tokens[b] + budget_offset:
            raise ValueError(f"sentence {b}: max_new_tokens too small for its constraints")
    beams: list[list[_Hypothesis]] = [
        [_Hypothesis([], 0.0 if j == 0 else NEG_INF, initial[b]) for j in range(k)]
        for b in range(n_sent)
    ]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n_sent)]
    live = list(range(n_sent))
    last = torch.full((n_sent * k,), options.start_id, dtype=torch.long)
    t = 0
    while live:
        logprobs = step(last)
        _mask_logprobs(
            logprobs, live, beams, trackers, options, blocked, max_new_tokens, t, word_continuation
        )
        # Scores add up in float64: near -3000 after a few hundred tokens, float32 steps by
        # 2.4e-4, which would round two different candidates to a tie.
        flat_scores = torch.tensor([h.score for b in live for h in beams[b]], dtype=torch.float64)
        candidates = logprobs.double() + flat_scores[:, None]
        vocab = candidates.shape[1]
        top_values, top_indices = candidates.view(len(live), k * vocab).topk(
            min(2 * k, k * vocab), dim=1
        )
        best_values, best_tokens = candidates.max(dim=1)
        progress_rows, progress_cols = [], []
        for row, b in enumerate(live):
            for j, hyp in enumerate(beams[b]):
                if trackers[b].constraints and hyp.score > NEG_INF:
                    wanted = trackers[b].progress_tokens(hyp.state)
                    if hyp.tokens and not any(
                        len(p) > 1 and p[-1] == hyp.tokens[-1] for _, p in hyp.state.partials
                    ):
                        # Not the same word again ("strategic strategic"): a term's first
                        # token that was just written and not continued is not offered anew.
                        wanted.discard(hyp.tokens[-1])
                    plan = hyp.state.plan
                    if plan:
                        wanted.add(plan[0])
                    for token in sorted(wanted):
                        progress_rows.append(row * k + j)
                        progress_cols.append(token)
        progress_values = candidates[progress_rows, progress_cols].tolist() if progress_rows else []
        proposals: list[dict[tuple[int, int], float]] = [{} for _ in live]
        for row, (values, indices) in enumerate(zip(top_values.tolist(), top_indices.tolist())):
            for value, index in zip(values, indices):
                proposals[row][divmod(index, vocab)] = value
        for flat, (value, token) in enumerate(zip(best_values.tolist(), best_tokens.tolist())):
            proposals[flat // k][(flat % k, token)] = value
        for flat, token, value in zip(progress_rows, progress_cols, progress_values):
            proposals[flat // k][(flat % k, token)] = value

        next_live, source_rows, next_tokens = [], [], []
        for row, b in enumerate(live):
            remaining = max_new_tokens[b] - t + (0 if options.eos_at_limit else 1)
            chosen = _select(
                beams[b], proposals[row], trackers[b], options, finished[b], t, remaining
            )
            if t + 1 >= max_new_tokens[b]:  # the length limit: the live hypotheses end here
                for parent, token, score, state in chosen:
                    if score > NEG_INF and state.all_met() and not state.avoided:
                        length = (t + 1) ** options.length_penalty
                        finished[b].append((score / length, [*beams[b][parent].tokens, token]))
                if not finished[b]:  # cannot happen while the plans hold; the caller checks
                    best = max(chosen, key=lambda item: item[2])
                    finished[b].append((best[2], [*beams[b][best[0]].tokens, best[1]]))
                continue
            if _is_done(finished[b], chosen, k, t, options.length_penalty):
                continue
            next_live.append(b)
            for parent, token, _score, _state in chosen:
                source_rows.append(row * k + parent)
                next_tokens.append(token)
            beams[b] = [
                _Hypothesis([*beams[b][parent].tokens, token], score, state)
                for parent, token, score, state in chosen
            ]
        live = next_live
        if live:
            reorder(torch.tensor(source_rows, dtype=torch.long))
            last = torch.tensor(next_tokens, dtype=torch.long)
        t += 1
    return [max(f, key=lambda item: item[0])[1] for f in finished]


class _NoJudge:
    """A sentence without constraints: nothing to judge."""

    def start(self) -> tuple:
        return ()

    def extend(self, memo: tuple, tokens: Sequence[int]) -> tuple:
        return ()

    def verdict(self, memo: tuple) -> tuple[tuple[bool, ...], bool, bool]:
        return (), False, False


def _mask_logprobs(
    logprobs: torch.Tensor,
    live: list[int],
    beams: list[list[_Hypothesis]],
    trackers: list[ConstraintTracker],
    options: SearchOptions,
    blocked: Sequence[Sequence[tuple[int, ...]]],
    max_new_tokens: Sequence[int],
    t: int,
    word_continuation: torch.Tensor | None,
) -> None:
    """Forbid, in place, every token that would break a rule for its hypothesis."""
    k = options.beam_size
    if options.banned_ids:
        logprobs[:, list(options.banned_ids)] = NEG_INF
    if t == 0 and options.forced_first_id is not None:
        keep = logprobs[:, options.forced_first_id].clone()
        logprobs.fill_(NEG_INF)
        logprobs[:, options.forced_first_id] = keep
        return
    glue_rows = []
    for row, b in enumerate(live):
        tracker = trackers[b]
        # Tokens that may still be emitted, EOS included. Without a forced EOS the length
        # limit itself ends a hypothesis, as in transformers, so the limit counts as one more.
        remaining = max_new_tokens[b] - t + (0 if options.eos_at_limit else 1)
        for j, hyp in enumerate(beams[b]):
            flat = row * k + j
            state = hyp.state
            if not state.all_met():
                logprobs[flat, options.eos_id] = NEG_INF
            progress = tracker.progress_tokens(state)
            for sequence in blocked[b]:
                ends_prefix = (
                    tuple(hyp.tokens[len(hyp.tokens) - len(sequence) + 1 :]) == sequence[:-1]
                )
                if ends_prefix and sequence[-1] not in progress:
                    logprobs[flat, sequence[-1]] = NEG_INF
            if not tracker.constraints:
                if remaining <= 1:  # the last token the limit leaves: EOS
                    keep = logprobs[flat, options.eos_id].clone()
                    logprobs[flat] = NEG_INF
                    logprobs[flat, options.eos_id] = keep
                elif options.exact_length:
                    logprobs[flat, options.eos_id] = NEG_INF
                continue
            if hyp.score == NEG_INF or remaining - 1 >= tracker.surely_enough(state):
                if options.exact_length:
                    logprobs[flat, options.eos_id] = NEG_INF
                if state.just_completed and word_continuation is not None:
                    glue_rows.append(flat)
                continue
            # Near the limit: only tokens after which a checked plan still fits may follow,
            # among the model's favourites, the terms' tokens and the plan's next token.
            plan = tracker.plan(state)
            state = hyp.state = dataclasses.replace(state, plan=plan)
            wanted = set(progress)
            wanted.update(logprobs[flat].topk(min(k + 1, logprobs.shape[1])).indices.tolist())
            if plan:
                wanted.add(plan[0])
            wanted.discard(options.eos_id)
            allowed = [
                token
                for token in wanted
                if tracker.needed(tracker.advance(state, token)) <= remaining - 1
            ]
            if state.all_met() and not state.avoided:
                allowed.append(options.eos_id)
            keep = logprobs[flat, allowed].clone()
            logprobs[flat] = NEG_INF
            logprobs[flat, allowed] = keep
    if glue_rows:
        rows = torch.tensor(glue_rows, dtype=torch.long)
        logprobs[rows] = logprobs[rows].masked_fill(word_continuation[None, :], NEG_INF)


def _select(
    beam: list[_Hypothesis],
    proposals: dict[tuple[int, int], float],
    tracker: ConstraintTracker,
    options: SearchOptions,
    finished: list[tuple[float, list[int]]],
    t: int,
    remaining: int,
) -> list[tuple[int, int, float, ConstraintState]]:
    """Choose the next beam from the proposals; finished hypotheses go to ``finished``.

    A candidate that writes an avoided rendering, or after which no checked plan fits in
    what is left, is dropped. The model's best candidate always keeps a slot, the rest are
    dealt by DBA's banks.
    """
    k = options.beam_size
    ranked = sorted(
        ((score, parent, token) for (parent, token), score in proposals.items() if score > NEG_INF),
        key=lambda item: (-item[0], item[1], item[2]),
    )
    extended = []
    for rank, (score, parent, token) in enumerate(ranked):
        if token == options.eos_id:
            # As in transformers' beam search: an EOS ranked below the top k is not kept.
            if rank < k:
                length = t + 1
                finished.append((score / (length**options.length_penalty), beam[parent].tokens))
            continue
        if not tracker.constraints:
            extended.append((score, parent, token, beam[parent].state))
            continue
        state = tracker.advance(beam[parent].state, token)
        if state.avoided:
            continue
        if remaining - 1 < tracker.surely_enough(state):
            if tracker.needed(state) > remaining - 1:
                continue
            state = dataclasses.replace(state, plan=tracker.plan(state))
        extended.append((score, parent, token, state))
    if not tracker.constraints:
        chosen = extended[:k]
    else:
        # The model's own best paths keep half the beam; DBA's banks deal the rest.
        chosen = extended[: max(1, k // 2)]
        by_bank: dict[int, list] = {}
        for item in extended[len(chosen) :]:
            by_bank.setdefault(tracker.bank(item[3]), []).append(item)
        queues = [by_bank[bank] for bank in sorted(by_bank, reverse=True)]
        depth = 0
        while len(chosen) < k and any(depth < len(q) for q in queues):
            for queue in queues:
                if depth < len(queue) and len(chosen) < k:
                    chosen.append(queue[depth])
            depth += 1
        chosen.sort(key=lambda item: (-item[0], item[1], item[2]))
    result = [(parent, token, score, state) for score, parent, token, state in chosen]
    while len(result) < k:  # too few candidates: pad with dead hypotheses
        result.append((0, options.eos_id, NEG_INF, beam[0].state))
    return result


def _is_done(
    finished: list[tuple[float, list[int]]],
    chosen: list[tuple[int, int, float, ConstraintState]],
    k: int,
    t: int,
    length_penalty: float,
) -> bool:
    """transformers' rule (early_stopping=False): stop when no live hypothesis can beat the
    k-th best finished one at the current length."""
    best_live = max(score for _, _, score, _ in chosen)
    if best_live == NEG_INF:
        return True
    if len(finished) < k:
        return False
    finished.sort(key=lambda item: -item[0])
    del finished[k:]
    return finished[-1][0] >= best_live / ((t + 1) ** length_penalty)
