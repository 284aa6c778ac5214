"""The model's confidence in its output: summaries, and the scores of both backends checked
against transformers' own ``generate``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from forumtranslate.confidence import Confidence, combine, summarise
from forumtranslate.hf import TransformersTranslator
from forumtranslate.translate import DecodingOptions

SOURCES = [
    "経済安全保障は重要です。",
    "本日はお集まりいただきありがとうございます。",
    "ＡＩと半導体、そして量子技術について話します。",  # full-width letters
    "\u200b新しい取り組み\t（試行）",  # a zero-width space and a tab
]


def test_summarise_takes_the_mean_and_the_earliest_lowest_token() -> None:
    confidence = summarise([-0.5, -2.0, -0.25, -2.0], ["▁a", "▁b", "c", "▁d"])
    assert confidence == Confidence(-1.1875, -2.0, 1, "▁b", 4)
    assert summarise([], []) is None
    with pytest.raises(ValueError):
        summarise([-1.0], [])


def test_combine_weights_by_tokens_and_counts_positions_across_parts() -> None:
    first = Confidence(-1.0, -3.0, 2, "▁x", 4)
    second = Confidence(-0.5, -4.0, 1, "▁y", 2)
    both = combine([first, None, second])
    assert both is not None
    assert both.mean_logprob == pytest.approx((-1.0 * 4 - 0.5 * 2) / 6, abs=1e-4)
    assert (both.min_logprob, both.min_position, both.min_token, both.tokens) == (
        -4.0,
        5,
        "▁y",
        6,
    )
    assert combine([None, None]) is None
    assert Confidence.from_json(both.to_json()) == both
    assert Confidence.from_json(None) is None


@pytest.mark.slow
def test_transformers_confidence_is_generate_s_own_greedy_score(tiny_model: Path) -> None:
    """Greedy, terms off: our decode and score must agree with what transformers'
    ``generate`` (code we did not write) picks and the logits it saw at each step."""
    import torch

    from forumtranslate.models import load_model

    loaded = load_model(str(tiny_model), device="cpu")
    translator = TransformersTranslator(
        loaded, DecodingOptions(beam_size=1, terms="off", shortlist=0)
    )
    texts, confidences = translator.translate_batch_scored(SOURCES, [[] for _ in SOURCES])
    assert texts == translator.translate_batch(SOURCES, [[] for _ in SOURCES])
    tokenizer, model = loaded.tokenizer, loaded.model
    for source, text, confidence in zip(SOURCES, texts, confidences):
        encoded = tokenizer([source], return_tensors="pt")
        kwargs = {}
        if loaded.forced_first_id is not None:
            kwargs["forced_bos_token_id"] = loaded.forced_first_id
        limit = math.ceil(2.0 * encoded["input_ids"].shape[1]) + 10 + (kwargs != {})
        with torch.inference_mode():
            out = model.generate(
                **encoded,
                num_beams=1,
                do_sample=False,
                max_new_tokens=limit,
                output_logits=True,
                return_dict_in_generate=True,
                bad_words_ids=[[model.config.pad_token_id]],
                **kwargs,
            )
        ids = out.sequences[0, 1:].tolist()  # the decoder start token is not generated
        # the model's raw logits at each step, normalised over the whole vocabulary (the
        # decoder bans padding, but its probability mass is the model's)
        values = [
            float(torch.log_softmax(step[0].float(), dim=-1)[token])
            for step, token in zip(out.logits, ids)
        ]
        keep = [
            k
            for k, token in enumerate(ids)
            if token not in (model.config.eos_token_id, model.config.pad_token_id)
            and not (k == 0 and loaded.forced_first_id is not None)
        ]
        assert tokenizer.decode([ids[k] for k in keep], skip_special_tokens=True).strip() == text
        if not keep:
            assert confidence is None
            continue
        expected = [values[k] for k in keep]
        assert confidence is not None
        assert confidence.tokens == len(expected)
        assert confidence.mean_logprob == pytest.approx(sum(expected) / len(expected), abs=2e-4)
        assert confidence.min_logprob == pytest.approx(min(expected), abs=2e-4)
        assert expected[confidence.min_position] == pytest.approx(min(expected), abs=2e-4)
        assert confidence.min_token == tokenizer.convert_ids_to_tokens(
            ids[keep[confidence.min_position]]
        )


@pytest.mark.slow
def test_scoring_in_small_passes_gives_the_same_numbers(tiny_marian: Path) -> None:
    """The memory bound (few decoder positions per pass) changes no score."""
    from forumtranslate.confidence import teacher_forced_logprobs
    from forumtranslate.models import load_model

    loaded = load_model(str(tiny_marian), device="cpu")
    translator = TransformersTranslator(
        loaded, DecodingOptions(beam_size=1, terms="off", shortlist=0)
    )
    ids = translator._decode(SOURCES, [[] for _ in SOURCES])
    encoded = loaded.tokenizer(SOURCES, return_tensors="pt", padding=True)
    config = loaded.model.config
    args = (config.decoder_start_token_id, config.pad_token_id, "cpu")
    whole = teacher_forced_logprobs(loaded.model, encoded, ids, *args, positions=10**6)
    small = teacher_forced_logprobs(loaded.model, encoded, ids, *args, positions=1)
    assert [len(v) for v in whole] == [len(i) for i in ids]
    for a, b in zip(whole, small):
        assert a == pytest.approx(b, abs=1e-4)
