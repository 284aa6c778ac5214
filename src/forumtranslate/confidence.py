"""How sure the model was of its own output: a reference-free score per sentence.

Why: chrF tells a reviewer how far the machine is from the reference, but a corpus run
with ``--input`` has no reference, and even with one the reviewer wants to know where the
model itself hesitated. Both backends give the same signal: the decoder's output tokens
are scored once more by the model under teacher forcing (the source, then each output
token given the ones before it), and the log-probabilities of those tokens are summarised
as their mean and their minimum, with the minimum's position.

What is scored: the tokens the decoder produced, as it produced them, before any term is
edited in or appended after decoding, so words the model did not write never count. The
forced target-language token (NLLB) and the end-of-sentence token are left out; a term the
constrained beam search made the model write is in, with the probability the model gave
it, so a term the model resisted lowers the score. A sentence cut into pieces for the
encoder is summarised over all its pieces' tokens, positions counted across them.

What it is not: a calibrated probability of being right. A mean log-probability of -0.2 is
not "82% correct"; models are often confident and wrong (a fluent hallucination) and
unsure and right (a rare name). It ranks sentences within one run of one model for review;
comparing it across models or backends' compute types compares the models' habits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DECIMALS = 4  # batch padding moves the last float digits; a resumed run must not
POSITIONS_PER_PASS = 2048  # decoder positions scored at once (see teacher_forced_logprobs)


@dataclass(frozen=True)
class Confidence:
    """The model's own score of one output: mean and lowest token log-probability (natural
    log, at most 0), the lowest one's position among the scored tokens and its text."""

    mean_logprob: float
    min_logprob: float
    min_position: int
    min_token: str
    tokens: int

    def to_json(self) -> dict[str, Any]:
        return {
            "mean_logprob": self.mean_logprob,
            "min_logprob": self.min_logprob,
            "min_position": self.min_position,
            "min_token": self.min_token,
            "tokens": self.tokens,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Confidence | None:
        """The record's ``confidence`` field; None where the run has none (older runs,
        backends that give none, empty outputs)."""
        if not data:
            return None
        return cls(
            mean_logprob=float(data["mean_logprob"]),
            min_logprob=float(data["min_logprob"]),
            min_position=int(data["min_position"]),
            min_token=str(data.get("min_token", "")),
            tokens=int(data["tokens"]),
        )


def summarise(logprobs: Sequence[float], tokens: Sequence[str]) -> Confidence | None:
    """Mean and minimum of one sentence's token log-probabilities (None for no tokens);
    the earliest token wins a tie for the minimum."""
    if not logprobs:
        return None
    if len(tokens) != len(logprobs):
        raise ValueError(f"{len(logprobs)} log-probabilities for {len(tokens)} tokens")
    values = [float(v) for v in logprobs]
    position = min(range(len(values)), key=lambda k: (values[k], k))
    return Confidence(
        mean_logprob=round(sum(values) / len(values), DECIMALS),
        min_logprob=round(values[position], DECIMALS),
        min_position=position,
        min_token=str(tokens[position]),
        tokens=len(values),
    )


def combine(parts: Sequence[Confidence | None]) -> Confidence | None:
    """One summary of several outputs read as one (a bead's sentences, a sentence's
    pieces): the token-weighted mean and the lowest token, positions counted across."""
    known = [(offset, c) for offset, c in _offsets(parts) if c is not None]
    if not known:
        return None
    total = sum(c.tokens for _, c in known)
    mean = sum(c.mean_logprob * c.tokens for _, c in known) / total
    offset, lowest = min(known, key=lambda item: (item[1].min_logprob, item[0]))
    return Confidence(
        mean_logprob=round(mean, DECIMALS),
        min_logprob=lowest.min_logprob,
        min_position=offset + lowest.min_position,
        min_token=lowest.min_token,
        tokens=total,
    )


def _offsets(parts: Sequence[Confidence | None]) -> list[tuple[int, Confidence | None]]:
    out, offset = [], 0
    for part in parts:
        out.append((offset, part))
        offset += part.tokens if part else 0
    return out


def teacher_forced_logprobs(
    model: Any,
    encoded: Mapping[str, Any],
    outputs: Sequence[Sequence[int]],
    start_id: int,
    pad_id: int,
    device: str,
    positions: int = POSITIONS_PER_PASS,
) -> list[list[float]]:
    """Log-probability the seq2seq ``model`` gives each token of each output, given its
    source (row of ``encoded``, a padded tokenizer batch) and the output tokens before it.

    Outputs go through the model a few at a time, at most ``positions`` decoder positions
    per pass, since the pass holds logits for every position over the whole vocabulary
    (a batch's worth would be gigabytes for a 60k vocabulary)."""
    import torch

    scores: list[list[float]] = []
    for rows in _passes([max(1, len(ids)) for ids in outputs], positions):
        picked = [outputs[k] for k in rows]
        longest = max(max(1, len(ids)) for ids in picked)
        inputs = torch.full((len(picked), longest), pad_id, dtype=torch.long)
        targets = torch.full((len(picked), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(picked), longest), dtype=torch.long)
        for row, ids in enumerate(picked):
            inputs[row, 0] = start_id
            inputs[row, 1 : len(ids)] = torch.tensor(list(ids[:-1]), dtype=torch.long)
            targets[row, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
            mask[row, : max(1, len(ids))] = 1
        index = torch.tensor(rows, dtype=torch.long)
        with torch.inference_mode():
            logits = model(
                input_ids=encoded["input_ids"][index].to(device),
                attention_mask=encoded["attention_mask"][index].to(device),
                decoder_input_ids=inputs.to(device),
                decoder_attention_mask=mask.to(device),
            ).logits.float()
            chosen = logits.gather(-1, targets.to(device)[..., None]).squeeze(-1)
            values = (chosen - torch.logsumexp(logits, dim=-1)).cpu()
        scores += [values[row, : len(ids)].tolist() for row, ids in enumerate(picked)]
    return scores


def _passes(lengths: Sequence[int], positions: int) -> list[list[int]]:
    """Consecutive rows whose padded length × count stays within ``positions`` (one row at
    least per pass)."""
    passes: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for k, length in enumerate(lengths):
        if current and max(longest, length) * (len(current) + 1) > positions:
            passes.append(current)
            current, longest = [], 0
        current.append(k)
        longest = max(longest, length)
    if current:
        passes.append(current)
    return passes
