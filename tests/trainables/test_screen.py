"""Zero-training screen on a tiny Llama: the trial's own model building and scoring, no optimizer step."""

from __future__ import annotations

import pytest

from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.screen import FIDELITY, Screener, check_screenable, screen_config


def _cfg(tiny_data, task="wikitext2", model="tiny-llama", **quant):
    return TrialConfig.from_dict(
        {
            "model": {"name": model},
            "task": {"name": task, "data_dir": str(tiny_data)},
            "training": {"compute_dtype": "float32", "device": "cpu", "seq_len": 32, "max_steps": 3},
            "quantization": quant,
        }
    )


@pytest.fixture(scope="module")
def screener(tiny_data):
    return Screener(_cfg(tiny_data), examples=16)


@pytest.fixture(scope="module")
def scores(tiny_data, screener):
    return {bits: screener.score(_cfg(tiny_data, default_bits=bits)) for bits in (4, 8, 16)}


def test_screen_scores_the_sample_and_names_its_fidelity(scores, screener):
    s = scores[8]
    assert s.fidelity == FIDELITY and s.metric == "perplexity"
    assert s.eval_rows == min(16, len(screener.task_data.train.ids))  # blocks of 32 tokens, not 32,768 tokens
    assert s.value > 1 and s.loss > 0 and s.seconds > 0
    assert s.to_dict()["fidelity"] == FIDELITY


def test_more_bits_mean_less_damage_and_more_weight_memory(scores):
    # the untrained model's perplexity moves towards the 16-bit one as the weights get wider
    gap4 = abs(scores[4].value - scores[16].value)
    gap8 = abs(scores[8].value - scores[16].value)
    assert gap8 < gap4
    assert scores[4].weight_memory_mb < scores[8].weight_memory_mb < scores[16].weight_memory_mb


def test_screen_equals_the_trials_own_score_before_its_first_step(tiny_data, scores):
    # the trial's path (loop.prepare: quantize, attach LoRA at its zero update) scored on the same sample
    from trainables import loop

    cfg = _cfg(tiny_data, default_bits=4).with_overrides(
        {"training.eval_examples": 4, "training.eval_tokens": 4 * 32}
    )
    from trainables.screen import calibration_sample

    p = loop.prepare(cfg)
    p.task_data = calibration_sample(p.task_data, 16, cfg.training.seed)  # the screen's rows: training text
    value, loss = loop.score(p)
    assert scores[4].value == pytest.approx(value, rel=1e-5)
    assert scores[4].loss == pytest.approx(loss, rel=1e-5)
    again = screen_config(_cfg(tiny_data, default_bits=4), examples=16)  # deterministic
    assert again.value == pytest.approx(scores[4].value, rel=1e-6)


def test_a_candidate_of_another_model_is_refused(tiny_data, screener):
    with pytest.raises(ConfigError, match="differs from the base config"):
        screener.score(_cfg(tiny_data, model="tiny-gpt2"))


def test_a_task_whose_metric_is_meaningless_untrained_is_refused(tiny_data):
    with pytest.raises(ConfigError, match="meaningless before training") as info:
        check_screenable("sst2")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="meaningless before training"):
        screen_config(_cfg(tiny_data, task="sst2", model="tiny-bert"), examples=4)
    check_screenable("wikitext2")  # a language-model task is screenable
    check_screenable("lm")


def test_examples_must_be_positive(tiny_data):
    with pytest.raises(ConfigError, match="--screen-examples 0"):
        screen_config(_cfg(tiny_data), examples=0)


def test_the_screen_scores_training_text_never_the_evaluation_split(tiny_data, screener):
    # trials report their metric on the evaluation split: a screen that chose on it would select on the test text
    train = {tuple(ids) for ids in screener.task_data.train.ids}
    assert screener.task_data.eval_ids and all(tuple(ids) in train for ids in screener.task_data.eval_ids)
    from trainables import loop

    _, trial_data = loop.load_task_data(screener.base, screener.tokenizer, None)
    assert not {tuple(ids) for ids in trial_data.eval_ids} & {
        tuple(ids) for ids in screener.task_data.eval_ids
    }
