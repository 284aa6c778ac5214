"""Build random-weight translation models offline, for tests and speed benchmarks.

The model hubs cannot be reached from CI, so the tests build real ``transformers`` models
on the fly: a SentencePiece vocabulary trained on the corpus's own text and a
``MarianConfig`` or ``M2M100Config`` with random weights. Their output is nonsense, but
every code path (tokenisation, batching, the decoding loop, constraints, saving and loading
a model folder) is the real one. ``shape="opus-mt"`` / ``"nllb-600m"`` give the layer
sizes of the real models for benchmarks.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Layer sizes. The real vocabularies are far larger than the corpus can train, so a
# benchmark pads the vocabulary up to ``vocab_size`` with unused pieces.
SHAPES: dict[str, dict[str, int]] = {
    "tiny": dict(layers=2, d_model=64, heads=4, ffn=128, vocab_size=0),
    # trained stand-ins (forumtranslate.train): small enough to train on this CPU in minutes
    "standin": dict(layers=2, d_model=128, heads=4, ffn=512, vocab_size=0),
    "opus-mt": dict(layers=6, d_model=512, heads=8, ffn=2048, vocab_size=60716),
    "nllb-600m": dict(layers=12, d_model=1024, heads=16, ffn=4096, vocab_size=256206),
}


# Tokenizer kinds a tiny Marian model can have, as real models do: SentencePiece unigram
# (OPUS-MT) or BPE, with or without byte fallback (unknown characters as <0xNN> pieces),
# one vocabulary per side or one shared; or byte-level BPE from the ``tokenizers`` library
# (the Ġ-spelled pieces of GPT-2, Llama 3, Qwen), wrapped as a PreTrainedTokenizerFast.
TOKENIZER_KINDS = ("spm", "byte-bpe")


@dataclass(frozen=True)
class TinyModelSpec:
    family: str  # "marian" | "nllb"
    shape: str = "tiny"
    spm_vocab_size: int = 2000
    seed: int = 0
    tokenizer: str = "spm"  # marian only: spm | byte-bpe
    spm_type: str = "unigram"  # marian spm: unigram | bpe
    byte_fallback: bool = False  # marian spm: unknown characters as byte pieces
    shared_vocab: bool = False  # marian spm: one SentencePiece model for both sides
    character_coverage: float = 1.0  # below 1, rare characters are left to byte fallback


def _train_sentencepiece(
    text: str,
    prefix: Path,
    vocab_size: int,
    model_type: str,
    byte_fallback: bool = False,
    character_coverage: float = 1.0,
) -> Path:
    import sentencepiece as spm

    corpus = Path(f"{prefix}.train.txt")
    corpus.write_text(text, encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        byte_fallback=byte_fallback,
        hard_vocab_limit=False,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        unk_id=0,
        num_threads=1,
        seed_sentencepiece_size=100000,
        minloglevel=2,
    )
    corpus.unlink()
    return Path(f"{prefix}.model")


def _read_corpus(data_dir: Path, language: str) -> str:
    return "\n".join(
        p.read_text(encoding="utf-8") for p in sorted((data_dir / language).glob("*.txt"))
    )


def build_tiny_model(
    out_dir: str | Path, spec: TinyModelSpec, data_dir: str | Path = "data"
) -> Path:
    """Write a loadable model folder (config, safetensors weights, tokenizer) to ``out_dir``."""
    import torch

    out_dir, data_dir = Path(out_dir), Path(data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(spec.seed)
    ja_text, en_text = _read_corpus(data_dir, "ja"), _read_corpus(data_dir, "en")
    if spec.family == "marian" and spec.tokenizer == "byte-bpe":
        _build_marian_byte_bpe(out_dir, spec, ja_text + "\n" + en_text)
    elif spec.family == "marian":
        _build_marian(out_dir, spec, ja_text, en_text)
    elif spec.family == "nllb":
        _build_nllb(out_dir, spec, ja_text + "\n" + en_text)
    else:
        raise ValueError(f"unknown model family {spec.family!r}")
    return out_dir


def _config_sizes(spec: TinyModelSpec) -> dict[str, int]:
    shape = SHAPES[spec.shape]
    return dict(
        encoder_layers=shape["layers"],
        decoder_layers=shape["layers"],
        d_model=shape["d_model"],
        encoder_attention_heads=shape["heads"],
        decoder_attention_heads=shape["heads"],
        encoder_ffn_dim=shape["ffn"],
        decoder_ffn_dim=shape["ffn"],
    )


def _build_marian(out_dir: Path, spec: TinyModelSpec, ja_text: str, en_text: str) -> None:
    """OPUS-MT layout: two SentencePiece models and one joint vocab.json, ``<pad>`` last."""
    from transformers import MarianTokenizer

    options = dict(
        model_type=spec.spm_type,
        byte_fallback=spec.byte_fallback,
        character_coverage=spec.character_coverage,
    )
    with tempfile.TemporaryDirectory() as tmp:
        if spec.shared_vocab:
            both = _train_sentencepiece(
                ja_text + "\n" + en_text, Path(tmp) / "shared", spec.spm_vocab_size, **options
            )
            source = target = both
        else:
            source = _train_sentencepiece(
                ja_text, Path(tmp) / "source", spec.spm_vocab_size, **options
            )
            target = _train_sentencepiece(
                en_text, Path(tmp) / "target", spec.spm_vocab_size, **options
            )
        (out_dir / "source.spm").write_bytes(source.read_bytes())
        (out_dir / "target.spm").write_bytes(target.read_bytes())
    import sentencepiece as spm

    pieces: list[str] = ["</s>", "<unk>"]
    for model_file in ("source.spm", "target.spm"):
        processor = spm.SentencePieceProcessor(model_file=str(out_dir / model_file))
        pieces += [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    vocab: dict[str, int] = {}
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    target_size = max(SHAPES[spec.shape]["vocab_size"] - 1, len(vocab))
    while len(vocab) < target_size:  # benchmark shapes: pad to the real vocabulary size
        vocab[f"<unused{len(vocab)}>"] = len(vocab)
    vocab["<pad>"] = len(vocab)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = MarianTokenizer(
        source_spm=str(out_dir / "source.spm"),
        target_spm=str(out_dir / "target.spm"),
        vocab=str(out_dir / "vocab.json"),
        source_lang="ja",
        target_lang="en",
    )
    tokenizer.save_pretrained(out_dir)
    _save_marian(out_dir, spec, len(vocab), vocab["<pad>"], eos_id=0)


def _save_marian(
    out_dir: Path, spec: TinyModelSpec, vocab_size: int, pad_id: int, eos_id: int
) -> None:
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(
        vocab_size=vocab_size,
        pad_token_id=pad_id,
        decoder_start_token_id=pad_id,
        eos_token_id=eos_id,
        max_position_embeddings=512,
        share_encoder_decoder_embeddings=True,
        **_config_sizes(spec),
    )
    model = MarianMTModel(config)
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)


def _build_marian_byte_bpe(out_dir: Path, spec: TinyModelSpec, text: str) -> None:
    """A Marian-shaped model whose one vocabulary is byte-level BPE (``tokenizers``): every
    byte is a piece, a leading space is spelled "Ġ", and Japanese characters are often
    split into byte pieces. ``<pad>`` goes last, as Marian (and CTranslate2) expect."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.spm_vocab_size,
        special_tokens=["</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(text.splitlines(), trainer=trainer)
    backend.add_special_tokens(["<pad>"])
    eos = backend.token_to_id("</s>")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A $B </s>", special_tokens=[("</s>", eos)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=512,
    )
    tokenizer.save_pretrained(out_dir)
    _save_marian(out_dir, spec, len(tokenizer), tokenizer.pad_token_id, eos_id=eos)


def _build_nllb(out_dir: Path, spec: TinyModelSpec, text: str) -> None:
    """NLLB layout: one SentencePiece BPE model shared by both sides, language codes added."""
    from transformers import AddedToken, M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        model_file = _train_sentencepiece(
            text, Path(tmp) / "sentencepiece.bpe", spec.spm_vocab_size, "bpe", spec.byte_fallback
        )
        (Path(tmp) / "spm").mkdir()
        (Path(tmp) / "spm" / "sentencepiece.bpe.model").write_bytes(model_file.read_bytes())
        tokenizer = NllbTokenizer.from_pretrained(
            Path(tmp) / "spm", src_lang="jpn_Jpan", tgt_lang="eng_Latn"
        )
    codes = [AddedToken(code, special=True, normalized=False) for code in ("jpn_Jpan", "eng_Latn")]
    tokenizer.add_tokens(codes, special_tokens=True)
    target_size = SHAPES[spec.shape]["vocab_size"]
    if target_size > len(tokenizer):  # benchmark shapes: pad to the real vocabulary size
        tokenizer.add_tokens([f"<unused{i}>" for i in range(target_size - len(tokenizer))])
    tokenizer.src_lang = "jpn_Jpan"
    tokenizer.save_pretrained(out_dir)
    config = M2M100Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        max_position_embeddings=1024,
        scale_embedding=True,
        **_config_sizes(spec),
    )
    model = M2M100ForConditionalGeneration(config)
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)


# --- decoder-only (causal) models -------------------------------------------------------

# Chat templates for the tiny causal models, in the layout of each family's real template
# (written here): ChatML for Qwen, turns for Gemma, [INST] for Llama 2 / Mistral.
CHAT_TEMPLATES = {
    "qwen3": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n"
        "{% endif %}{% endif %}"
    ),
    "gemma3": (
        "{{ bos_token }}{% for m in messages %}<start_of_turn>"
        "{{ 'model' if m['role'] == 'assistant' else 'user' }}\n{{ m['content'] }}"
        "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n"
        "{% endif %}"
    ),
    "llama": (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] "
        "{{ m['content'] }} [/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}"
        "{% endfor %}"
    ),
}
CAUSAL_SPECIALS = {
    "qwen3": dict(
        eos="<|im_end|>", pad="<|endoftext|>", extra=["<|im_start|>", "<think>", "</think>"]
    ),
    "gemma3": dict(
        bos="<bos>", eos="<end_of_turn>", pad="<pad>", extra=["<start_of_turn>", "<eos>"]
    ),
    "llama": dict(bos="<s>", eos="</s>", pad="<unk>", extra=[]),
}


@dataclass(frozen=True)
class TinyCausalSpec:
    """A tiny decoder-only model: ``family`` qwen3 | gemma3 | llama; ``tokenizer`` byte-bpe
    (Qwen, Llama 3) or spm-bytes (SentencePiece BPE with byte fallback: Gemma, Llama 2)."""

    family: str
    tokenizer: str = "byte-bpe"
    vocab_size: int = 1500
    layers: int = 2
    d_model: int = 64
    heads: int = 4
    ffn: int = 128
    seed: int = 0
    pad_vocab_to: int = 0  # benchmarks: pad the vocabulary to a real model's size


def build_tiny_causal(
    out_dir: str | Path, spec: TinyCausalSpec, data_dir: str | Path = "data"
) -> Path:
    """Write a loadable decoder-only model folder (config, safetensors, tokenizer with a
    chat template) to ``out_dir``; the tokenizer is trained on the corpus, offline."""
    import torch

    out_dir, data_dir = Path(out_dir), Path(data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(spec.seed)
    text = _read_corpus(data_dir, "ja") + "\n" + _read_corpus(data_dir, "en")
    specials = CAUSAL_SPECIALS[spec.family]
    if spec.tokenizer == "byte-bpe":
        tokenizer = _causal_byte_bpe(text, spec, specials)
    elif spec.tokenizer == "spm-bytes":
        tokenizer = _causal_spm(text, spec, specials)
    else:
        raise ValueError(f"unknown tokenizer kind {spec.tokenizer!r}")
    if spec.pad_vocab_to > len(tokenizer):
        tokenizer.add_tokens([f"<unused{i}>" for i in range(spec.pad_vocab_to - len(tokenizer))])
    tokenizer.chat_template = CHAT_TEMPLATES[spec.family]
    tokenizer.model_max_length = 2048
    tokenizer.save_pretrained(out_dir)
    _save_causal(out_dir, spec, tokenizer)
    return out_dir


def _causal_byte_bpe(text: str, spec: TinyCausalSpec, specials: dict) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    names = [specials[k] for k in ("bos", "eos", "pad") if k in specials] + specials["extra"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=names,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(text.splitlines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=specials.get("bos"),
        eos_token=specials["eos"],
        pad_token=specials["pad"],
        additional_special_tokens=specials["extra"],
    )


def _causal_spm(text: str, spec: TinyCausalSpec, specials: dict) -> object:
    """SentencePiece BPE with byte fallback, as Gemma and Llama 2 have, read by transformers'
    Gemma or Llama tokenizer from the trained ``tokenizer.model``."""
    from transformers import GemmaTokenizer, LlamaTokenizer

    cls = GemmaTokenizer if spec.family == "gemma3" else LlamaTokenizer
    with tempfile.TemporaryDirectory() as tmp:
        _train_sentencepiece(
            text,
            Path(tmp) / "tokenizer",
            spec.vocab_size,
            "bpe",
            byte_fallback=True,
            character_coverage=0.995,
        )
        tokenizer = cls.from_pretrained(
            tmp,
            bos_token=specials.get("bos", "<s>"),
            eos_token=specials["eos"],
            unk_token="<unk>",
            pad_token=specials["pad"],
            add_bos_token=False,
            add_eos_token=False,
        )
    tokenizer.add_special_tokens({"additional_special_tokens": specials["extra"]})
    return tokenizer


def _save_causal(out_dir: Path, spec: TinyCausalSpec, tokenizer: object) -> None:
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig, Qwen3Config

    sizes = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.d_model,
        intermediate_size=spec.ffn,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=max(1, spec.heads // 2),
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
    )
    if spec.family == "qwen3":
        config = Qwen3Config(head_dim=spec.d_model // spec.heads, **sizes)
    elif spec.family == "gemma3":
        config = Gemma3TextConfig(head_dim=spec.d_model // spec.heads, sliding_window=16, **sizes)
    elif spec.family == "llama":
        config = LlamaConfig(**sizes)
    else:
        raise ValueError(f"unknown causal family {spec.family!r}")
    model = AutoModelForCausalLM.from_config(config)
    model.eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
