"""Glossary-constrained decoding: the constraint arithmetic, the search, real models.

Three layers, each usable as an example:

1. ``ConstraintTracker`` on small integer token ids: which token sequences meet which
   constraints, and the counts the search steers by (``needed``, ``progress_tokens``, ``bank``).
2. ``constrained_beam_search`` over a toy scorer (a fixed random bigram table), which tests
   the search algorithm itself: greedy equivalence, every constraint met within the length
   limit for any beam, blocked sequences never produced, and a hypothesis property test.
3. The tiny random-weight Marian and NLLB models on real corpus sentences: with
   ``terms="hard"`` every glossary term comes out (100% term accuracy), with ``terms="off"``
   they do not, and an avoided rendering is never produced.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forumtranslate.constrain import (
    Constraint,
    ConstraintState,
    ConstraintTracker,
    SearchOptions,
    constrained_beam_search,
    term_forms,
)
from forumtranslate.glossary import check_terms, contains_form, load_glossary
from forumtranslate.hf import TransformersTranslator
from forumtranslate.records import TermMatch
from forumtranslate.segment import segment_text
from forumtranslate.translate import DecodingOptions

from .conftest import DATA, GLOSSARY


def c(*alternatives: tuple[int, ...]) -> Constraint:
    """A constraint met by any one of ``alternatives``: ``c((5,), (6, 7))``."""
    return Constraint(tuple(alternatives))


def replay(constraints: Sequence[Constraint], tokens: Sequence[int]) -> ConstraintState:
    """The tracker's state after ``tokens``, fed one at a time as the search does."""
    tracker = ConstraintTracker(list(constraints))
    state = ConstraintState.initial(len(constraints))
    for token in tokens:
        state = tracker.advance(state, token)
    return state


def contains(tokens: Sequence[int], part: Sequence[int]) -> bool:
    """Whether ``part`` occurs in ``tokens`` as a contiguous run."""
    n = len(part)
    return any(tuple(tokens[i : i + n]) == tuple(part) for i in range(len(tokens) - n + 1))


# --- 1. ConstraintTracker ------------------------------------------------------------------

# (constraints, tokens, which constraints are met afterwards)
MET_CASES = [
    pytest.param([c((5,))], [1, 5, 2], (True,), id="single token"),
    pytest.param([c((5,))], [1, 2, 3], (False,), id="single token absent"),
    pytest.param([c((5, 6, 7))], [1, 5, 6, 7], (True,), id="multi-token"),
    pytest.param([c((5, 6, 7))], [5, 6], (False,), id="multi-token unfinished"),
    pytest.param([c((5, 6, 7))], [7, 6, 5], (False,), id="multi-token out of order"),
    pytest.param([c((5,), (6, 7, 8))], [5], (True,), id="disjunctive: the short one"),
    pytest.param([c((5,), (6, 7, 8))], [6, 7, 8], (True,), id="disjunctive: the long one"),
    pytest.param([c((5,), (6, 7, 8))], [6, 7], (False,), id="disjunctive: long one unfinished"),
    pytest.param([c((5, 6)), c((5, 6))], [5, 6], (True, False), id="same term twice: once"),
    pytest.param([c((5, 6)), c((5, 6))], [5, 6, 1, 5, 6], (True, True), id="same term twice"),
    pytest.param([c((5, 6)), c((5, 6))], [5, 6, 5, 6], (True, True), id="twice back to back"),
    pytest.param([c((5,)), c((5,))], [5, 5], (True, True), id="single token twice"),
    pytest.param([c((5, 6, 7))], [5, 6, 1, 7], (False,), id="abandoned partial"),
    pytest.param([c((5, 6, 7))], [5, 6, 1, 5, 6, 7], (True,), id="abandoned then restarted"),
    pytest.param([c((5, 5, 6))], [5, 5, 5, 6], (True,), id="overlapping partials"),
    pytest.param([c((5, 6, 5, 7))], [5, 6, 5, 6, 5, 7], (True,), id="overlap mid-term"),
    pytest.param([c((5, 6)), c((7,))], [7, 1, 5, 6], (True, True), id="two terms, any order"),
    # One rendering, one term: overlapping renderings cannot both count (issue 14).
    pytest.param([c((5, 6, 7)), c((6, 7, 8))], [5, 6, 7, 8], (True, False), id="terms sharing"),
    pytest.param([c((5, 6, 7)), c((6, 7, 8))], [5, 6, 7, 6, 7, 8], (True, True), id="each its own"),
    pytest.param([c((6,)), c((5, 6))], [5, 6], (False, True), id="long term holds the short"),
    pytest.param([c((6,)), c((5, 6))], [5, 6, 6], (True, True), id="short one after it"),
]


@pytest.mark.parametrize(("constraints", "tokens", "met"), MET_CASES)
def test_which_constraints_a_token_sequence_meets(
    constraints: list[Constraint], tokens: list[int], met: tuple[bool, ...]
) -> None:
    assert replay(constraints, tokens).met == met


def test_just_completed_marks_the_token_that_finishes_a_term() -> None:
    tracker = ConstraintTracker([c((5, 6))])
    flags = []
    state = ConstraintState.initial(1)
    for token in (1, 5, 6, 2):
        state = tracker.advance(state, token)
        flags.append(state.just_completed)
    assert flags == [False, False, True, False]


def test_an_empty_alternative_is_refused() -> None:
    with pytest.raises(ValueError, match="empty alternative"):
        Constraint(((5,), ()), label="x")
    with pytest.raises(ValueError, match="empty alternative"):
        Constraint((), label="x")


# (constraints, tokens so far, needed: fewest tokens to meet all that is unmet, then EOS)
NEEDED_CASES = [
    pytest.param([], [], 1, id="no constraints: just EOS"),
    pytest.param([c((5, 6, 7))], [], 4, id="three tokens + EOS"),
    pytest.param([c((5, 6, 7))], [5], 3, id="one in"),
    pytest.param([c((5, 6, 7))], [5, 6], 2, id="two in"),
    pytest.param([c((5, 6, 7))], [5, 6, 7], 1, id="met"),
    pytest.param([c((5, 6, 7))], [5, 6, 1], 4, id="abandoned"),
    pytest.param([c((5, 6, 7)), c((8,))], [], 5, id="two terms"),
    pytest.param([c((5, 6, 7)), c((8,))], [8], 4, id="short one met"),
    pytest.param([c((6, 7, 8), (5,))], [], 2, id="disjunctive: shortest counts"),
    pytest.param([c((6, 7, 8), (5,))], [6, 7], 2, id="long one nearly done"),
    pytest.param([c((5, 5, 6))], [5, 5, 5], 2, id="overlap: still one token short"),
]


@pytest.mark.parametrize(("constraints", "tokens", "needed"), NEEDED_CASES)
def test_needed_counts_the_fewest_tokens_left(
    constraints: list[Constraint], tokens: list[int], needed: int
) -> None:
    tracker = ConstraintTracker(constraints)
    assert tracker.needed(replay(constraints, tokens)) == needed


def best_progress(tracker: ConstraintTracker, state: ConstraintState) -> int:
    """The smallest ``needed`` reachable in one token that advances a constraint."""
    return min(tracker.needed(tracker.advance(state, t)) for t in tracker.progress_tokens(state))


# The guarantee rests on this: while a term is unmet, some progress token brings ``needed``
# down by at least one, so the search can always spend its last steps finishing terms.
FALLS_BY_ONE_CASES = [
    pytest.param([c((5, 6, 7))], [], id="start"),
    pytest.param([c((5, 6, 7))], [5, 6], id="continue"),
    pytest.param([c((5, 6, 7)), c((8,))], [5], id="continue one of two"),
    pytest.param([c((6, 7, 8), (5,))], [6], id="switch to the short alternative"),
    pytest.param([c((5, 6)), c((5, 6))], [5, 6, 5], id="second occurrence"),
    pytest.param([c((5, 5, 6))], [5, 5], id="overlapping partials"),
    pytest.param([c((5, 6)), c((6,))], [5], id="suffix term listed second"),
]


@pytest.mark.parametrize(("constraints", "tokens"), FALLS_BY_ONE_CASES)
def test_needed_falls_along_the_best_progress_token(
    constraints: list[Constraint], tokens: list[int]
) -> None:
    tracker = ConstraintTracker(constraints)
    state = replay(constraints, tokens)
    assert best_progress(tracker, state) <= tracker.needed(state) - 1


def test_a_term_inside_another_is_taken_by_it() -> None:
    """ "6" alone meets the first term, but "5 6 7" takes it into the second (one rendering,
    one term), so finishing the second needs the first again: ``needed`` checks its plans
    with the judge instead of trusting the arithmetic."""
    constraints = [c((6,)), c((5, 6, 7))]
    tracker = ConstraintTracker(constraints)
    state = replay(constraints, [5])
    assert tracker.needed(state) == 4  # 6 7 6 EOS
    after = tracker.advance(state, 6)
    assert after.met == (True, False)
    assert tracker.needed(after) == 3  # 7 (which un-meets the first), 6, EOS


def test_a_token_that_ends_two_terms_meets_only_the_longer() -> None:
    """ "autonomy" listed before "strategic autonomy": the last token of the long term also
    ends the short one, but one rendering counts for one term (as in check_terms), so the
    short term still needs its own. This test asserted the opposite before issue 14."""
    constraints = [c((6,)), c((5, 6))]
    tracker = ConstraintTracker(constraints)
    state = replay(constraints, [5])  # "strategic" begun
    assert tracker.needed(state) == 3  # 6 (meets the long one), 6, EOS
    after = tracker.advance(state, 6)
    assert after.met == (False, True)
    assert tracker.needed(after) == 2


# (constraints, tokens so far, progress tokens, bank)
PROGRESS_CASES = [
    pytest.param([c((5, 6, 7))], [], {5}, 0, id="start"),
    pytest.param([c((5, 6, 7))], [5], {5, 6}, 1, id="continue or restart"),
    pytest.param([c((5, 6, 7))], [5, 6], {5, 7}, 2, id="two in"),
    pytest.param([c((5, 6, 7))], [5, 6, 7], set(), 3, id="met: nothing to do"),
    pytest.param([c((5, 6, 7)), c((8, 9))], [5, 6, 7], {8}, 3, id="one met, one to start"),
    pytest.param([c((5, 6, 7)), c((8, 9))], [5, 6, 7, 8], {8, 9}, 4, id="met plus partial"),
    pytest.param([c((5,), (6, 7))], [], {5, 6}, 0, id="disjunctive: either start"),
    pytest.param([c((5,), (6, 7))], [6], {5, 6, 7}, 1, id="disjunctive: partial"),
    pytest.param([c((5,), (6, 7))], [6, 7], set(), 1, id="met by the long one: min length"),
    pytest.param([c((5, 5, 6))], [5, 5], {5, 6}, 2, id="overlap: longest partial counts"),
]


@pytest.mark.parametrize(("constraints", "tokens", "progress", "bank"), PROGRESS_CASES)
def test_progress_tokens_and_bank(
    constraints: list[Constraint], tokens: list[int], progress: set[int], bank: int
) -> None:
    tracker = ConstraintTracker(constraints)
    state = replay(constraints, tokens)
    assert tracker.progress_tokens(state) == progress
    assert tracker.bank(state) == bank


# --- 2. constrained_beam_search on a toy scorer --------------------------------------------

VOCAB = 30
EOS = 0
START = 1  # fed to the first step, like Marian's decoder start token; may also be generated


class BigramScorer:
    """A stand-in for a decoder: the next token's log-probabilities depend only on the last
    token, through a fixed random table. It has no cache, so ``reorder`` only checks that
    the search asks for rows that exist, and remembers how many there are now."""

    def __init__(self, seed: int, eos_bias: float = 0.0):
        generator = torch.Generator().manual_seed(seed)
        logits = 3.0 * torch.randn(VOCAB, VOCAB, generator=generator)
        logits[:, EOS] += eos_bias  # > 0: a model that likes to stop early
        self.table = torch.log_softmax(logits, dim=-1)
        self.rows: int | None = None

    def step(self, last_tokens: torch.Tensor) -> torch.Tensor:
        assert self.rows is None or len(last_tokens) == self.rows
        return self.table[last_tokens]  # a copy: the search masks it in place

    def reorder(self, rows: torch.Tensor) -> None:
        assert self.rows is None or all(0 <= r < self.rows for r in rows.tolist())
        self.rows = len(rows)


def search(
    scorer: BigramScorer,
    constraints: Sequence[Constraint] = (),
    *,
    beam: int = 1,
    max_new: int = 20,
    blocked: Sequence[tuple[int, ...]] = (),
    eos_at_limit: bool = False,
    forced_first_id: int | None = None,
) -> list[int]:
    """Decode one sentence; the token ids without EOS."""
    scorer.rows = None  # a new decoding: any number of rows to begin with
    options = SearchOptions(
        beam_size=beam,
        eos_id=EOS,
        start_id=START,
        forced_first_id=forced_first_id,
        eos_at_limit=eos_at_limit,
    )
    [tokens] = constrained_beam_search(
        scorer.step, scorer.reorder, options, [list(constraints)], [max_new], [list(blocked)]
    )
    return tokens


def greedy(table: torch.Tensor, max_new: int) -> list[int]:
    """Greedy decoding written out by hand: always the most likely next token."""
    tokens: list[int] = []
    last = START
    for _ in range(max_new):
        last = int(table[last].argmax())
        if last == EOS:
            break
        tokens.append(last)
    return tokens


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("eos_bias", [0.0, 4.0])
@pytest.mark.parametrize("max_new", [1, 5, 25])
def test_without_constraints_beam_1_is_greedy_search(
    seed: int, eos_bias: float, max_new: int
) -> None:
    scorer = BigramScorer(seed, eos_bias)
    assert search(scorer, beam=1, max_new=max_new) == greedy(scorer.table, max_new)


def test_greedy_reference_sometimes_stops_early() -> None:
    """The greedy comparison above covers both ways to end: EOS and the length limit."""
    lengths = {len(greedy(BigramScorer(seed, 4.0).table, 25)) for seed in range(6)}
    assert 25 in lengths
    assert min(lengths) < 25


# Tokens chosen from the middle of the vocabulary; none is EOS.
TOY_CONSTRAINTS = [
    c((7,)),
    c((11, 12, 13)),
    c((20, 21), (22,)),  # either "20 21" or "22"
]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("beam", [1, 2, 4])
@pytest.mark.parametrize("eos_at_limit", [False, True])
def test_every_constraint_appears_within_the_limit(
    seed: int, beam: int, eos_at_limit: bool
) -> None:
    scorer = BigramScorer(seed, eos_bias=2.0)
    max_new = 12
    free = search(scorer, beam=beam, max_new=max_new, eos_at_limit=eos_at_limit)
    assert not replay(TOY_CONSTRAINTS, free).all_met()  # the model does not do it by itself

    tokens = search(scorer, TOY_CONSTRAINTS, beam=beam, max_new=max_new, eos_at_limit=eos_at_limit)
    for constraint in TOY_CONSTRAINTS:
        assert any(contains(tokens, alt) for alt in constraint.alternatives), (constraint, tokens)
    # A forced EOS takes the last step, and it is not returned.
    assert len(tokens) <= (max_new - 1 if eos_at_limit else max_new)


@pytest.mark.parametrize("beam", [1, 3])
def test_the_tightest_limit_still_fits_every_constraint(beam: int) -> None:
    """``max_new_tokens`` equal to ``needed``: the terms, in some order, then EOS."""
    constraints = [c((11, 12, 13)), c((7,))]
    max_new = ConstraintTracker(constraints).needed(ConstraintState.initial(2))
    for seed in range(4):
        scorer = BigramScorer(seed)
        tokens = search(scorer, constraints, beam=beam, max_new=max_new, eos_at_limit=True)
        assert sorted(tokens) == [7, 11, 12, 13]
        assert replay(constraints, tokens).all_met()


def test_a_limit_too_small_for_the_constraints_is_refused() -> None:
    with pytest.raises(ValueError, match="max_new_tokens too small"):
        search(BigramScorer(0), [c((11, 12, 13))], max_new=2)


def test_forced_first_token_then_constraints() -> None:
    """NLLB's target-language token comes first; the constraints still fit after it."""
    constraints = [c((11, 12)), c((7,))]
    for seed in range(4):
        tokens = search(BigramScorer(seed), constraints, beam=2, max_new=6, forced_first_id=29)
        assert tokens[0] == 29
        assert replay(constraints, tokens).all_met()


TALKATIVE_SEEDS = (0, 1, 2, 4, 5, 6)  # seeds whose model writes on (3 stops at once)


@pytest.mark.parametrize("beam", [1, 4])
def test_blocked_sequences_never_appear(beam: int) -> None:
    for seed in TALKATIVE_SEEDS:
        scorer = BigramScorer(seed)
        free = search(scorer, beam=beam, max_new=20)
        assert len(free) >= 7
        # Block what the model would write: a bigram and a single token from its own output.
        blocked = [tuple(free[2:4]), (free[6],)]
        tokens = search(scorer, beam=beam, max_new=20, blocked=blocked)
        for sequence in blocked:
            assert not contains(tokens, sequence), (seed, sequence, tokens)


def test_blocked_sequences_and_constraints_together() -> None:
    for seed in TALKATIVE_SEEDS:
        scorer = BigramScorer(seed)
        free = search(scorer, beam=2, max_new=20)
        assert len(free) >= 7
        blocked = [s for s in (tuple(free[2:4]), tuple(free[5:7])) if not {11, 12, 7} & set(s)]
        tokens = search(scorer, [c((11, 12)), c((7,))], beam=2, max_new=20, blocked=blocked)
        assert replay([c((11, 12)), c((7,))], tokens).all_met()
        for sequence in blocked:
            assert not contains(tokens, sequence), (seed, sequence, tokens)


@pytest.mark.parametrize("beam", [1, 3])
def test_a_finished_term_is_not_glued_onto(beam: int) -> None:
    """After a term's last token the next may not continue the word ("autonomy" + "s"),
    except in the final steps that the length limit forces."""
    glue = torch.zeros(VOCAB, dtype=torch.bool)
    glue[15:] = True  # tokens 15..29 continue the previous word
    constraints = [c((11, 12)), c((7,)), c((13,))]
    max_new = 30  # forcing starts only in the last 1 + 2 + 1 + 1 steps
    options = SearchOptions(beam_size=beam, eos_id=EOS, start_id=START)
    glued_after_a_term = 0
    for seed in range(8):
        scorer = BigramScorer(seed)
        free = search(scorer, constraints, beam=beam, max_new=max_new)
        glued_after_a_term += sum(
            free[i + 1] >= 15 for i in completions(constraints, free) if i + 1 < len(free)
        )
        [tokens] = constrained_beam_search(
            scorer.step, scorer.reorder, options, [constraints], [max_new], None, glue
        )
        assert replay(constraints, tokens).all_met()
        for i in completions(constraints, tokens):
            if i + 1 < min(len(tokens), max_new - 5):
                assert not glue[tokens[i + 1]], (seed, i, tokens)
    assert glued_after_a_term > 0  # without the rule the toy does glue


def completions(constraints: Sequence[Constraint], tokens: Sequence[int]) -> list[int]:
    """Positions of the tokens that complete a constraint."""
    tracker = ConstraintTracker(list(constraints))
    state = ConstraintState.initial(len(constraints))
    found = []
    for i, token in enumerate(tokens):
        state = tracker.advance(state, token)
        if state.just_completed:
            found.append(i)
    return found


def test_a_batch_decodes_each_sentence_as_alone() -> None:
    """Sentences of one batch finish at different steps and are dropped from it; the
    others carry on unchanged."""
    scorer_seed = 3
    sentences = [
        ([c((11, 12, 13))], 9),
        ([], 4),
        ([c((7,)), c((20, 21), (22,))], 15),
        ([c((5, 5))], 6),
    ]
    options = SearchOptions(beam_size=3, eos_id=EOS, start_id=START)
    scorer = BigramScorer(scorer_seed, eos_bias=2.0)
    together = constrained_beam_search(
        scorer.step, scorer.reorder, options, [cs for cs, _ in sentences], [n for _, n in sentences]
    )
    alone = [
        search(BigramScorer(scorer_seed, eos_bias=2.0), cs, beam=3, max_new=n)
        for cs, n in sentences
    ]
    assert together == alone


def prefers_strategic() -> BigramScorer:
    """A model that likes token 5 ("strategic") best and 6 ("autonomy") second, always."""
    scorer = BigramScorer(0)
    scorer.table = torch.log_softmax(torch.zeros(VOCAB, VOCAB), dim=-1)
    scorer.table[:, 5] += 2.0
    scorer.table[:, 6] += 1.0
    return scorer


@pytest.mark.parametrize(
    ("scorer", "constraints", "beam", "max_new", "eos_at_limit"),
    [
        pytest.param(prefers_strategic(), [c((6,)), c((5, 6))], 1, 4, False, id="hand-made"),
        pytest.param(prefers_strategic(), [c((6,)), c((5, 6))], 1, 4, True, id="eos at limit"),
        # as hypothesis shrank it
        pytest.param(BigramScorer(0), [c((1,)), c((2, 1))], 1, 13, False, id="slack 10"),
        pytest.param(BigramScorer(0), [c((1,)), c((2, 1))], 2, 8, False, id="beam 2"),
    ],
)
def test_a_short_term_that_ends_a_long_one_still_fits(
    scorer: BigramScorer,
    constraints: list[Constraint],
    beam: int,
    max_new: int,
    eos_at_limit: bool,
) -> None:
    tokens = search(scorer, constraints, beam=beam, max_new=max_new, eos_at_limit=eos_at_limit)
    assert replay(constraints, tokens).all_met()


def test_the_limit_counts_the_forced_first_token() -> None:
    """A forced first token (NLLB's language code) uses a step of the limit: a limit that
    leaves no room for the terms is refused up front, one step more is met."""
    with pytest.raises(ValueError, match="too small"):
        search(BigramScorer(0), [c((7,))], max_new=2, eos_at_limit=True, forced_first_id=29)
    tokens = search(BigramScorer(0), [c((7,))], max_new=3, eos_at_limit=True, forced_first_id=29)
    assert tokens[0] == 29
    assert replay([c((7,))], tokens).all_met()


tokens_st = st.integers(min_value=1, max_value=VOCAB - 1)  # any token but EOS
alternative_st = st.lists(tokens_st, min_size=1, max_size=3).map(tuple)
constraint_st = st.lists(alternative_st, min_size=1, max_size=2, unique=True).map(
    lambda alts: Constraint(tuple(alts))
)


@pytest.mark.parametrize("eos_at_limit", [False, True])
@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**16),
    constraints=st.lists(constraint_st, min_size=1, max_size=4),
    beam=st.integers(min_value=1, max_value=4),
    slack=st.integers(min_value=1, max_value=10),
)
def test_property_every_constraint_is_met_within_the_limit(
    eos_at_limit: bool, seed: int, constraints: list[Constraint], beam: int, slack: int
) -> None:
    max_new = sum(max(len(alt) for alt in cn.alternatives) for cn in constraints) + slack
    tokens = search(
        BigramScorer(seed), constraints, beam=beam, max_new=max_new, eos_at_limit=eos_at_limit
    )
    assert replay(constraints, tokens).all_met()
    assert len(tokens) <= (max_new - 1 if eos_at_limit else max_new)


@settings(max_examples=200, deadline=None)
@given(
    constraints=st.lists(constraint_st, min_size=1, max_size=4),
    tokens=st.lists(tokens_st, max_size=12),
)
def test_property_some_progress_token_lowers_needed(
    constraints: list[Constraint], tokens: list[int]
) -> None:
    """The lemma behind the guarantee, on random prefixes."""
    tracker = ConstraintTracker(constraints)
    state = replay(constraints, tokens)
    if state.all_met():
        assert tracker.needed(state) == 1
    else:
        assert best_progress(tracker, state) <= tracker.needed(state) - 1


# --- 3. real models, real sentences --------------------------------------------------------


def corpus_segment(seg_id: str) -> str:
    doc_id = seg_id.rsplit("-", 1)[0]
    text = (DATA / "ja" / f"{doc_id}.txt").read_text(encoding="utf-8")
    [found] = [s.text for s in segment_text(text, doc_id) if s.seg_id == seg_id]
    return found


# What each sentence tests, and the glossary terms it holds.
CORPUS_CASES = {
    "economic security twice": (["opening-tsutsui-010"], ["economic-security"] * 2),
    "coercion twice, in two source forms": (
        ["opening-tsutsui-014"],
        ["cptpp", "coercion", "coercion"],
    ),
    "variant spelling デリスクング among nine terms": (
        ["panel-4-036"],
        [
            "critical-minerals",
            "semiconductors",
            "supply-disruption",
            "industrial-base",
            "de-risking",
            "allies",
            "like-minded-countries",
            "supply-chain",
            "interdependence",
        ],
    ),
    "戦略的自律性 twice (two sentences joined)": (
        ["panel-1-026", "opening-akazawa-009"],
        [
            "strategic-autonomy",
            "strategic-indispensability",
            "strategic-autonomy",
            "critical-minerals",
            "stable-supply",
            "diversification",
            "national-stockpile",
            "heavy-rare-earths",
            "magnets",
        ],
    ),
    "short terms before the long ones that end in them (two sentences joined)": (
        ["panel-4-023", "panel-1-026"],
        ["indispensability", "autonomy", "strategic-autonomy", "strategic-indispensability"],
    ),
}


@pytest.fixture(scope="module")
def corpus_cases() -> dict[str, tuple[str, list[TermMatch]]]:
    glossary = load_glossary(GLOSSARY)
    cases = {}
    for name, (seg_ids, entry_ids) in CORPUS_CASES.items():
        sentence = "".join(corpus_segment(seg_id) for seg_id in seg_ids)
        terms = glossary.find_terms(sentence)
        assert [t.entry_id for t in terms] == entry_ids, name
        cases[name] = (sentence, terms)
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_hard_terms_give_full_term_accuracy(
    loaded_models: dict, corpus_cases: dict, family: str, beam: int
) -> None:
    translator = TransformersTranslator(
        loaded_models[family], DecodingOptions(beam_size=beam, terms="hard")
    )
    names = list(corpus_cases)
    sources = [corpus_cases[name][0] for name in names]
    terms = [corpus_cases[name][1] for name in names]
    for name, text, found in zip(names, translator.translate(sources, terms), terms):
        missing = [t.target for t, ok in zip(found, check_terms(text, found)) if not ok]
        assert not missing, f"{name}: {missing} not in {text!r}"


@pytest.mark.slow
@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_without_constraints_the_terms_are_missed(
    loaded_models: dict, corpus_cases: dict, family: str
) -> None:
    """The random-weight models never write a term by chance, so the test above can fail."""
    translator = TransformersTranslator(
        loaded_models[family], DecodingOptions(beam_size=1, terms="off")
    )
    sentence, terms = corpus_cases["economic security twice"]
    [text] = translator.translate([sentence], [terms])
    assert check_terms(text, terms) == [False, False]


def model_word(text: str, terms: Sequence[TermMatch]) -> str | None:
    """The model's favourite word in ``text`` that belongs to no term's rendering."""
    term_words = {w.casefold() for t in terms for form in term_forms(t) for w in form.split()}
    words = [w for w in text.split() if re.fullmatch(r"[a-z]{2,}", w)]
    counts = Counter(w for w in words if w not in term_words).most_common(1)
    return counts[0][0] if counts else None


@pytest.mark.slow
@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_an_avoided_rendering_never_appears(
    loaded_models: dict, corpus_cases: dict, family: str
) -> None:
    """Avoid a word the model writes anyway, given in title case: it goes in every case,
    and the terms stay."""
    translator = TransformersTranslator(
        loaded_models[family], DecodingOptions(beam_size=1, terms="hard")
    )
    tried = []
    for sentence, terms in corpus_cases.values():
        [before] = translator.translate([sentence], [terms])
        word = model_word(before, terms)
        tried.append(before)
        if word is not None:
            break
    assert word is not None, tried
    assert contains_form(before, word)

    avoiding = [dataclasses.replace(terms[0], avoid=(word.title(),)), *terms[1:]]
    [after] = translator.translate([sentence], [avoiding])
    assert not contains_form(after, word), (word, after)
    assert all(check_terms(after, avoiding))
