"""Train a small MarianMT on sentence pairs: stand-in models that write real English.

Why: real weights cannot be downloaded here, and random-weight models write no English, so
they cannot show what constraints do to the sentence around a term. A model trained on the
corpus's own aligned sentences can: it reproduces the references closely, stops where a
sentence ends and has cross-attention that points at the source, and we choose what it
knows (the approved terms, or wrong renderings of them).

The model starts as ``tiny.build_tiny_model`` builds it (SentencePiece vocabularies trained
on a data folder, a ``MarianConfig`` of the chosen shape) and is then trained with teacher
forcing. Training is deterministic for a given spec, data and torch version on the CPU: a
fixed seed, a fixed thread count, batches drawn by a seeded generator.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from forumtranslate.tiny import TinyModelSpec, build_tiny_model

TRAINING_FILE = "training.json"


@dataclass(frozen=True)
class TrainSpec:
    """Everything that decides the trained weights; written to ``training.json``."""

    shape: str = "standin"  # a key of tiny.SHAPES
    spm_vocab_size: int = 2000
    epochs: int = 80
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    seed: int = 0
    # Scale token embeddings by sqrt(d_model), as OPUS-MT's Marian models do: unscaled, the
    # small initial embeddings drown under the sinusoidal positions and training crawls
    # (measured: loss 5.3 after 17 epochs unscaled on the gold beads).
    scale_embedding: bool = True
    dropout: float = 0.1
    # torch intra-op threads; part of the spec, as sums depend on it. One: on a busy 2-core
    # machine two threads trained 4x slower than one (measured: 45 s against 10 s an epoch).
    threads: int = 1


@dataclass
class TrainResult:
    """What training measured: for the record beside the model."""

    pairs: int
    steps: int
    epochs: int
    seconds: float
    final_loss: float  # mean token cross-entropy of the last epoch
    epoch_losses: list[float] = field(default_factory=list)


def train_marian(
    pairs: Sequence[tuple[str, str]],
    out_dir: str | Path,
    spec: TrainSpec,
    data_dir: str | Path = "data",
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a MarianMT on (Japanese, English) ``pairs`` and save a loadable model folder.

    The SentencePiece vocabularies come from ``data_dir`` (its ``ja/`` and ``en/`` texts),
    so a held-out model can be given a folder without the document it will translate.
    """
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    if not pairs:
        raise ValueError("no sentence pairs to train on")
    out_dir = Path(out_dir)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        build_tiny_model(
            out_dir,
            TinyModelSpec(
                "marian", shape=spec.shape, spm_vocab_size=spec.spm_vocab_size, seed=spec.seed
            ),
            data_dir,
        )
        tokenizer = MarianTokenizer.from_pretrained(out_dir)
        config = MarianConfig.from_pretrained(out_dir)
        config.scale_embedding = spec.scale_embedding
        config.dropout = spec.dropout
        torch.manual_seed(spec.seed)
        model = MarianMTModel(config)  # fresh weights of the built shape and vocabulary
        result = _fit(model, tokenizer, pairs, spec, log or (lambda _line: None))
        model.eval()
        model.save_pretrained(out_dir, safe_serialization=True)
    finally:
        torch.set_num_threads(previous_threads)
    record = {"spec": asdict(spec), "result": asdict(result)}
    (out_dir / TRAINING_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return result


def _fit(
    model: object,
    tokenizer: object,
    pairs: Sequence[tuple[str, str]],
    spec: TrainSpec,
    log: Callable[[str], None],
) -> TrainResult:
    import torch

    encoded = [
        (tokenizer(ja)["input_ids"], tokenizer(text_target=en)["input_ids"]) for ja, en in pairs
    ]
    pad = tokenizer.pad_token_id
    steps_per_epoch = math.ceil(len(encoded) / spec.batch_size)
    total = steps_per_epoch * spec.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.0)
    # linear warm-up, then linear decay to a tenth: settles the memorised references
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min((step + 1) / spec.warmup_steps, 1.0) * max(0.1, 1.0 - step / max(total, 1))
        ),
    )
    # batches of similar length (little padding), formed once, taken in a seeded order
    by_length = sorted(range(len(encoded)), key=lambda i: (len(encoded[i][0]), i))
    batches = [
        by_length[start : start + spec.batch_size]
        for start in range(0, len(by_length), spec.batch_size)
    ]
    generator = torch.Generator().manual_seed(spec.seed)
    model.train()
    losses: list[float] = []
    started = time.perf_counter()
    steps = 0
    for epoch in range(spec.epochs):
        token_loss = token_count = 0.0
        for b in torch.randperm(len(batches), generator=generator).tolist():
            batch = [encoded[i] for i in batches[b]]
            inputs = _pad([src for src, _ in batch], pad)
            labels = _pad([tgt for _, tgt in batch], -100)
            output = model(input_ids=inputs, attention_mask=(inputs != pad).long(), labels=labels)
            optimizer.zero_grad()
            output.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            steps += 1
            tokens = float((labels != -100).sum())
            token_loss += float(output.loss.detach()) * tokens
            token_count += tokens
        losses.append(token_loss / token_count)
        log(
            f"epoch {epoch + 1}/{spec.epochs}: loss {losses[-1]:.4f} "
            f"({time.perf_counter() - started:.0f} s)"
        )
    return TrainResult(
        pairs=len(encoded),
        steps=steps,
        epochs=spec.epochs,
        seconds=round(time.perf_counter() - started, 1),
        final_loss=round(losses[-1], 5),
        epoch_losses=[round(x, 5) for x in losses],
    )


def _pad(rows: Sequence[Sequence[int]], value: int) -> object:
    import torch

    width = max(len(row) for row in rows)
    return torch.tensor([list(row) + [value] * (width - len(row)) for row in rows])
