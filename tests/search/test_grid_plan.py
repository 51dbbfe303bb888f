"""What a grid prints before it runs: the trials and their predicted time (no Ray)."""

import json

from search.launch import plan_text, predict_time
from trainables.config import TrialConfig


def cell(task="sst2", model="tiny-bert", steps=100):
    return TrialConfig.from_dict(
        {
            "task": {"name": task},
            "model": {"name": model},
            "training": {"max_steps": steps, "batch_size": 4, "seq_len": 32},
        }
    )


def earlier(tmp_path, **result):
    entry = {
        "trial_id": "t0",
        "config": cell(steps=10).to_dict(),
        "result": {"status": "completed", "device": "cpu", "steps": 10, "train_time_s": 12.8}
        | {"load_time_s": 1.0, "eval_time_s": 2.0}
        | result,
    }
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "all_results.json").write_text(json.dumps([entry]))


def test_predicted_time_scales_earlier_trials_of_the_same_model_and_task(tmp_path):
    earlier(tmp_path)  # 12.8 s for 10 steps x 4 x 32 tokens: 0.01 s per token slot, plus 3 s load and eval
    when = predict_time(
        tmp_path, [cell(steps=100), cell(steps=50), cell(task="wikitext2", model="tiny-llama")], "cpu"
    )
    assert when.timed == 2 and when.samples == 1
    assert when.seconds == (128.0 + 3.0) + (64.0 + 3.0)
    text = plan_text(
        [cell(steps=100), cell(steps=50)],
        2,
        predict_time(tmp_path, [cell(steps=100), cell(steps=50)], "cpu"),
    )
    assert "sst2: 2 trials of tiny-bert, 100 steps x batch 4 x 32 tokens" in text
    assert "predicted time: ~2 min at up to 2 at once" in text  # 198 s / 2 at once


def test_no_earlier_trial_says_the_time_is_unknown(tmp_path):
    earlier(tmp_path, device="cuda")  # another device kind does not count
    when = predict_time(tmp_path, [cell()], "cpu")
    assert when.seconds is None and when.timed == 0
    assert "predicted time: unknown" in plan_text([cell()], 1, when)
