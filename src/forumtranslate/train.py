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
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forumtranslate.tiny import TinyModelSpec, build_tiny_model

TRAINING_FILE = "training.json"


@dataclass(frozen=True)
class TrainSpec:
    """Everything that decides the trained weights; written to ``training.json``."""

    shape: str = "standin"  # a key of tiny.SHAPES
    spm_vocab_size: int = 2000
    epochs: int = 40
    batch_size: int = 16
    learning_rate: float = 1.5e-3
    warmup_steps: int = 100
    seed: int = 0
    # Scale token embeddings by sqrt(d_model), as OPUS-MT's Marian models do: unscaled, the
    # small initial embeddings drown under the sinusoidal positions and training crawls
    # (measured: loss 5.3 after 17 epochs unscaled on the gold beads).
    scale_embedding: bool = True
    dropout: float = 0.1
    # Share of the decoder's input tokens replaced by <unk> in training. Without it the
    # decoder memorised the 306 references from their first tokens and the encoder was
    # ignored (measured: training loss 0.27, identical with shuffled sources; every
    # sentence translated as one of five references). Corrupting the prefix leaves the
    # source as the only reliable guide.
    target_dropout: float = 0.25
    # torch intra-op threads; part of the spec, as sums depend on it. One: on a busy 2-core
    # machine two threads trained 4x slower than one (measured: 45 s against 10 s an epoch).
    threads: int = 1
    # Keep the decoder's start embedding (<pad>) a zero vector, as Marian itself does and as
    # CTranslate2 assumes of every Marian model (it starts the decoder from zeros). Left to
    # training, the output projection tied to the embeddings moves that row, and CTranslate2
    # then translates another model (measured on the faithful stand-in: 4.9% of outputs
    # identical with transformers, every first word lost: "ic Security Forum Tokyo").
    zero_start_embedding: bool = True


@dataclass
class TrainResult:
    """What training measured: for the record beside the model."""

    pairs: int
    steps: int
    epochs: int
    seconds: float
    final_loss: float  # mean token cross-entropy of the last epoch
    epoch_losses: list[float] = field(default_factory=list)
    source_gaps: list[float] = field(default_factory=list)  # every 5 epochs, see _source_gap


def train_marian(
    pairs: Sequence[tuple[str, str]],
    out_dir: str | Path,
    spec: TrainSpec,
    data_dir: str | Path = "data",
    log: Callable[[str], None] | None = None,
    init_from: str | Path | None = None,
) -> TrainResult:
    """Train a MarianMT on (Japanese, English) ``pairs`` and save a loadable model folder.

    The SentencePiece vocabularies come from ``data_dir`` (its ``ja/`` and ``en/`` texts),
    so a held-out model can be given a folder without the document it will translate.
    With ``init_from`` (a folder this function wrote), training continues from that
    model's weights and vocabulary instead: a second stage with other settings.
    """
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    if not pairs:
        raise ValueError("no sentence pairs to train on")
    out_dir = Path(out_dir)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        if init_from is not None:
            shutil.copytree(init_from, out_dir, dirs_exist_ok=True)
        else:
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
        if init_from is not None:
            model = MarianMTModel.from_pretrained(out_dir, config=config)
        else:
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
    gaps: list[float] = []
    started = time.perf_counter()
    steps = 0
    start_id = model.config.decoder_start_token_id
    unk = tokenizer.unk_token_id
    embeddings = model.get_decoder().embed_tokens.weight  # the encoder's too where shared
    if spec.zero_start_embedding:
        with torch.no_grad():
            embeddings[start_id].zero_()
    for epoch in range(spec.epochs):
        token_loss = token_count = 0.0
        for b in torch.randperm(len(batches), generator=generator).tolist():
            batch = [encoded[i] for i in batches[b]]
            inputs = _pad([src for src, _ in batch], pad)
            labels = _pad([tgt for _, tgt in batch], -100)
            decoder_inputs = _pad([[start_id, *tgt[:-1]] for _, tgt in batch], pad)
            if spec.target_dropout > 0:
                drop = torch.rand(decoder_inputs.shape, generator=generator) < spec.target_dropout
                drop[:, 0] = False  # keep the start token
                decoder_inputs = decoder_inputs.masked_fill(drop & (decoder_inputs != pad), unk)
            output = model(
                input_ids=inputs,
                attention_mask=(inputs != pad).long(),
                decoder_input_ids=decoder_inputs,
                labels=labels,
            )
            optimizer.zero_grad()
            output.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            if spec.zero_start_embedding:
                with torch.no_grad():
                    embeddings[start_id].zero_()
            steps += 1
            tokens = float((labels != -100).sum())
            token_loss += float(output.loss.detach()) * tokens
            token_count += tokens
        losses.append(token_loss / token_count)
        line = f"epoch {epoch + 1}/{spec.epochs}: loss {losses[-1]:.4f}"
        if (epoch + 1) % 5 == 0 or epoch + 1 == spec.epochs:
            gaps.append(round(_source_gap(model, encoded[: spec.batch_size * 2], pad), 4))
            line += f", source gap {gaps[-1]:.3f}"
        log(f"{line} ({time.perf_counter() - started:.0f} s)")
    return TrainResult(
        pairs=len(encoded),
        steps=steps,
        epochs=spec.epochs,
        seconds=round(time.perf_counter() - started, 1),
        final_loss=round(losses[-1], 5),
        epoch_losses=[round(x, 5) for x in losses],
        source_gaps=gaps,
    )


def _source_gap(model: Any, pairs: Sequence[tuple[list[int], list[int]]], pad: int) -> float:
    """Loss with each target paired with another pair's source, minus the true loss: about
    zero when the model ignores the source (a decoder that memorised the references)."""
    import torch

    targets = _pad([tgt for _, tgt in pairs], -100)
    true_src = _pad([src for src, _ in pairs], pad)
    rolled = [src for src, _ in pairs]
    other_src = _pad(rolled[1:] + rolled[:1], pad)
    model.eval()
    with torch.no_grad():
        true = model(input_ids=true_src, attention_mask=(true_src != pad).long(), labels=targets)
        other = model(input_ids=other_src, attention_mask=(other_src != pad).long(), labels=targets)
    model.train()
    return float(other.loss - true.loss)


def _pad(rows: Sequence[Sequence[int]], value: int) -> object:
    import torch

    width = max(len(row) for row in rows)
    return torch.tensor([list(row) + [value] * (width - len(row)) for row in rows])
