"""Beam search with hard lexical constraints: every glossary term comes out, guaranteed.

Method: dynamic beam allocation (Post & Vilar 2018, "Fast Lexically Constrained Decoding
with Dynamic Beam Allocation"), run over the model's own step-by-step decoder and its
key/value cache, for a batch of sentences at once.

* Each glossary occurrence in a source sentence is a ``Constraint``: a set of token
  sequences, any one of which satisfies it (a disjunctive constraint: the approved English,
  its acceptable variants, each also capitalised for the start of a sentence).
* Every step, each sentence's candidates are (a) the best ``2k`` continuations over its whole
  beam, as in ordinary beam search, (b) each hypothesis's single best token, and (c) for each
  hypothesis, the tokens that advance a constraint it has not met. Candidates are grouped
  into *banks* by how many constraint tokens they have produced, and the ``k`` beam slots are
  dealt round-robin from the highest bank down, so hypotheses that honour the constraints
  survive pruning even when the model dislikes them.
* A hypothesis may end (EOS) only when all its constraints are met.

The guarantee. DBA alone does not promise that a finished hypothesis exists before the length
limit. Here every hypothesis keeps the invariant ``needed <= remaining``: ``needed`` is the
fewest tokens that can still complete all its unmet constraints plus EOS, ``remaining`` the
steps left before the sentence's ``max_new_tokens``. When an unconstrained token would break
the invariant, only tokens that advance a constraint are allowed (``needed`` then falls by
one as ``remaining`` does). So every sentence finishes inside its limit with every
constraint met, for any model and any beam size, beam 1 included.

After a constraint is completed, the next token must start a new word (or be punctuation or
EOS), so the term cannot be glued into a longer word ("autonomy" + "s") and the decoded text
contains it on word boundaries; only in the final forced steps, where the length limit leaves
no choice, does this rule give way to the constraints. Token sequences of renderings marked
"avoid" are blocked the way ``NoBadWordsLogitsProcessor`` blocks bad words.

Cost. The model work is that of beam search with the same beam; the extra is per step
``O(k · C)`` candidate scores gathered for ``C`` constraint tokens and a little Python per
sentence to deal slots. Measured on the corpus it is reported by ``eval/bench_constraints.py``.
With beam 1 the guarantee holds but the terms are placed where the single hypothesis can fit
them; a beam of at least ``C + 1`` gives DBA room to place them well.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

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


@dataclass(frozen=True)
class ConstraintState:
    """Where one hypothesis stands with its sentence's constraints.

    ``partials`` lists every unmet constraint whose alternative has been started by the last
    tokens, as ``(constraint, those tokens)``; several may run at once, from different start
    positions, as in multi-pattern string matching. ``just_completed`` is set when the last
    token completed a constraint.
    """

    met: tuple[bool, ...]
    partials: tuple[tuple[int, tuple[int, ...]], ...] = ()
    just_completed: bool = False

    @classmethod
    def initial(cls, n_constraints: int) -> ConstraintState:
        return cls(met=(False,) * n_constraints)

    def all_met(self) -> bool:
        return all(self.met)


@dataclass
class ConstraintTracker:
    """The constraints of one sentence and the arithmetic on their states."""

    constraints: Sequence[Constraint]
    _advance_cache: dict = field(default_factory=dict, repr=False)

    def advance(self, state: ConstraintState, token: int) -> ConstraintState:
        """The state after ``token`` is appended to the hypothesis."""
        key = (state, token)
        cached = self._advance_cache.get(key)
        if cached is None:
            cached = self._advance(state, token)
            self._advance_cache[key] = cached
        return cached

    def _advance(self, state: ConstraintState, token: int) -> ConstraintState:
        grown = [(c, (*prefix, token)) for c, prefix in state.partials]
        grown += [
            (c, (token,))
            for c, constraint in enumerate(self.constraints)
            if not state.met[c] and any(alt[0] == token for alt in constraint.alternatives)
        ]
        grown = [(c, p) for c, p in grown if self._compatible(c, p)]
        completed = sorted({c for c, p in grown if p in self.constraints[c].alternatives})
        # A token may end several different terms at once ("strategic autonomy" also ends
        # "autonomy"): each is met. Of identical terms (the same term twice) only one is: an
        # occurrence in the output counts once, as check_terms counts it.
        credited: list[int] = []
        for c in completed:
            if all(
                self.constraints[c].alternatives != self.constraints[d].alternatives
                for d in credited
            ):
                credited.append(c)
        met = tuple(m or i in credited for i, m in enumerate(state.met))
        grown = [(c, p) for c, p in grown if c not in credited]
        partials = tuple(sorted({(c, p) for c, p in grown if self._can_grow(c, p)}))
        return ConstraintState(met, partials, just_completed=bool(credited))

    def _compatible(self, c: int, prefix: tuple[int, ...]) -> bool:
        n = len(prefix)
        return any(alt[:n] == prefix for alt in self.constraints[c].alternatives)

    def _can_grow(self, c: int, prefix: tuple[int, ...]) -> bool:
        n = len(prefix)
        return any(alt[:n] == prefix and len(alt) > n for alt in self.constraints[c].alternatives)

    def base_needed(self, state: ConstraintState) -> int:
        """Tokens to finish if every started term is dropped: each unmet term's shortest
        alternative, then EOS. The cost after a token that advances no constraint."""
        return 1 + sum(self.constraints[c].min_length for c, m in enumerate(state.met) if not m)

    def needed(self, state: ConstraintState) -> int:
        """Fewest tokens that complete every unmet constraint and then EOS."""
        base = self.base_needed(state)
        best = base
        for c, prefix in state.partials:
            n = len(prefix)
            rest = min(
                len(alt) - n
                for alt in self.constraints[c].alternatives
                if alt[:n] == prefix and len(alt) > n
            )
            best = min(best, base - self.constraints[c].min_length + rest)
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
) -> list[list[int]]:
    """Decode a batch; return each sentence's best finished token ids (EOS excluded).

    ``step(last_tokens)`` runs the decoder one step for every live row and returns
    log-probabilities of shape ``(rows, vocab)``; ``reorder(rows)`` makes row ``i`` of the
    decoder's cache continue from old row ``rows[i]``. Rows come ``beam_size`` per live
    sentence; finished sentences are dropped from the batch. ``word_continuation`` is a boolean
    vector over the vocabulary marking tokens that would glue onto the previous word.
    """
    k = options.beam_size
    n_sent = len(constraints)
    blocked = blocked or [()] * n_sent
    trackers = [ConstraintTracker(list(cs)) for cs in constraints]
    # The first step may be spent on a forced token; without a forced EOS the limit itself
    # ends a hypothesis (see _mask_logprobs), so the budget is one larger.
    budget_offset = (0 if options.eos_at_limit else 1) - (options.forced_first_id is not None)
    for b, tracker in enumerate(trackers):
        initial = ConstraintState.initial(len(tracker.constraints))
        if tracker.needed(initial) > max_new_tokens[b] + budget_offset:
            raise ValueError(f"sentence {b}: max_new_tokens too small for its constraints")
    beams: list[list[_Hypothesis]] = [
        [
            _Hypothesis([], 0.0 if j == 0 else NEG_INF, ConstraintState.initial(len(t.constraints)))
            for j in range(k)
        ]
        for t in trackers
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
        flat_scores = torch.tensor([h.score for b in live for h in beams[b]], dtype=logprobs.dtype)
        candidates = logprobs + flat_scores[:, None]
        vocab = candidates.shape[1]
        top_values, top_indices = candidates.view(len(live), k * vocab).topk(
            min(2 * k, k * vocab), dim=1
        )
        best_values, best_tokens = candidates.max(dim=1)
        progress_rows, progress_cols = [], []
        for row, b in enumerate(live):
            for j, hyp in enumerate(beams[b]):
                if trackers[b].constraints and hyp.score > NEG_INF:
                    for token in sorted(trackers[b].progress_tokens(hyp.state)):
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
            chosen = _select(beams[b], proposals[row], trackers[b], options, finished[b], t)
            if t + 1 >= max_new_tokens[b]:  # the length limit: the live hypotheses end here
                for parent, token, score, state in chosen:
                    if score > NEG_INF:
                        assert state.all_met(), "constraint invariant broken"
                        length = (t + 1) ** options.length_penalty
                        finished[b].append((score / length, [*beams[b][parent].tokens, token]))
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
            progress = tracker.progress_tokens(state) if tracker.constraints else set()
            for sequence in blocked[b]:
                ends_prefix = (
                    tuple(hyp.tokens[len(hyp.tokens) - len(sequence) + 1 :]) == sequence[:-1]
                )
                if ends_prefix and sequence[-1] not in progress:
                    logprobs[flat, sequence[-1]] = NEG_INF
            if remaining - 1 >= tracker.base_needed(state):
                if options.exact_length:
                    logprobs[flat, options.eos_id] = NEG_INF
                if state.just_completed and word_continuation is not None:
                    glue_rows.append(flat)
                continue
            # Only tokens that keep every constraint reachable may follow.
            allowed = [
                token
                for token in progress
                if tracker.needed(tracker.advance(state, token)) <= remaining - 1
            ]
            if state.all_met():
                allowed = [options.eos_id]
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
) -> list[tuple[int, int, float, ConstraintState]]:
    """Choose the next beam from the proposals; finished hypotheses go to ``finished``."""
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
        extended.append((score, parent, token, tracker.advance(beam[parent].state, token)))
    if not tracker.constraints:
        chosen = extended[:k]
    else:
        by_bank: dict[int, list] = {}
        for item in extended:
            by_bank.setdefault(tracker.bank(item[3]), []).append(item)
        queues = [by_bank[bank] for bank in sorted(by_bank, reverse=True)]
        chosen = []
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
