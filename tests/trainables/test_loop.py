import math

import pytest
import torch

from trainables import adapters, loop
from trainables.config import TrialConfig
from trainables.result import TrialStatus


def tiny_cfg(data_dir, model="tiny-bert", task="sst2", **sections):
    base = {
        "task": {"name": task, "data_dir": str(data_dir)},
        "model": {"name": model},
        "training": {
            "max_steps": 12,
            "batch_size": 8,
            "seq_len": 48,
            "lr": 3e-3,
            "log_every": 2,
            "eval_tokens": 512,
        },
    }
    for key, value in sections.items():
        base.setdefault(key, {}).update(value)
    return TrialConfig.from_dict(base)


@pytest.mark.parametrize(
    "bits",
    [
        {"default_bits": 32},
        {"default_bits": 4},
        {"default_bits": 4, "layer_bits": {1: 8}},
        {"default_bits": 16},
    ],
)
def test_tiny_model_loss_falls(tiny_data, bits):
    cfg = tiny_cfg(
        tiny_data,
        model="tiny-llama",
        task="wikitext2",
        quantization=bits,
        training={"max_steps": 20, "lr": 1e-2},
    )
    result = loop.fit(cfg)
    assert result.status is TrialStatus.COMPLETED, result.error
    losses = [loss for _, loss in result.loss_curve]
    assert losses[-1] < losses[0] - 0.5
    assert math.isfinite(result.perplexity) and result.perplexity < 260
    assert result.bits_per_layer == [
        bits.get("layer_bits", {}).get(i, bits["default_bits"]) for i in range(2)
    ]


def test_result_holds_every_metric(tiny_data, tmp_path):
    cfg = tiny_cfg(
        tiny_data,
        quantization={"default_bits": 4, "layer_bits": {0: 8}},
        adapter={"layer_ranks": {0: 4, 1: 12}},
    )
    result = loop.fit(cfg, adapter_dir=tmp_path / "adapter")
    assert result.status is TrialStatus.COMPLETED, result.error
    assert 0 <= result.accuracy <= 1 and result.eval_loss > 0
    assert result.trainable_params > 0 and 0 < result.trainable_pct < 100
    assert result.total_params > result.trainable_params
    assert result.weight_memory_mb > 0 and result.peak_memory_mb > 0 and result.peak_load_memory_mb >= 0
    assert result.predicted_peak_mb > 0 and result.train_time_s > 0 and result.tokens_per_s > 0
    assert result.ranks_per_layer == [4.0, 12.0] and result.total_rank == 6 * 4 + 6 * 12
    assert result.bits_per_layer == [8, 4] and result.bits_per_weight_per_layer[1] < 4.2
    assert result.versions["torch"] and result.device == "cpu" and result.memory_measure
    assert (tmp_path / "adapter" / "adapter_config.json").exists()


def test_rank_pattern_lands_on_the_right_modules(tiny_data):
    cfg = tiny_cfg(tiny_data, adapter={"r": 8, "layer_ranks": {1: 2}, "target_modules": ["query", "value"]})
    p = loop.prepare(cfg)
    ranks = adapters.active_ranks(p.model, trained=False)
    assert len(ranks) == 4
    for name, r in ranks.items():
        assert name.endswith(("query", "value"))
        assert r == (2 if ".layer.1." in name else 8)


def test_adalora_ends_with_fewer_active_ranks(tiny_data):
    cfg = tiny_cfg(
        tiny_data,
        adapter={"method": "adalora", "init_r": 8, "target_r": 2, "tinit": 2, "tfinal": 4, "deltaT": 1},
        training={"max_steps": 16, "lr": 1e-2},
    )
    result = loop.fit(cfg)
    assert result.status is TrialStatus.COMPLETED, result.error
    assert result.initial_total_rank == 12 * 8
    assert 0 < result.total_rank < result.initial_total_rank
    assert result.total_rank <= 12 * 2 + 1  # the budget is pruned to about target_r per module
    # the penalty is computed on logged steps only (log_every=2): every logged task loss is known
    assert [s for s, _ in result.penalty_curve] == [s for s, _ in result.loss_curve] == list(range(2, 17, 2))
    assert not any(math.isnan(v) for _, v in result.loss_curve)


def test_non_finite_loss_stops_the_trial_at_once(tiny_data, monkeypatch):
    calls = {"n": 0}
    original = torch.nn.functional.cross_entropy

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        out = original(*args, **kwargs)
        return out * float("nan") if calls["n"] == 3 else out

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", poisoned)
    result = loop.fit(tiny_cfg(tiny_data))
    assert result.status is TrialStatus.FAILED
    assert "non-finite loss" in result.error and "step 3" in result.error


def test_same_config_and_seed_give_identical_metrics(tiny_data):
    cfg = tiny_cfg(
        tiny_data, quantization={"default_bits": 4}, adapter={"method": "adalora", "init_r": 4, "target_r": 2}
    )
    a, b = loop.fit(cfg), loop.fit(cfg)
    assert a.accuracy == b.accuracy and a.eval_loss == b.eval_loss and a.loss_curve == b.loss_curve
    c = loop.fit(cfg.with_overrides(["training.seed=1"]))
    assert c.loss_curve != a.loss_curve


def test_gpt2_style_model_quantizes_and_trains(tiny_data):
    cfg = tiny_cfg(
        tiny_data,
        model="tiny-gpt2",
        task="wikitext2",
        quantization={"default_bits": 4},
        training={"max_steps": 16, "lr": 1e-2},
    )
    result = loop.fit(cfg)
    assert result.status is TrialStatus.COMPLETED, result.error
    assert result.loss_curve[-1][1] < result.loss_curve[0][1]


def test_device_auto_prefers_mps_then_cuda(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert loop.pick_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loop.pick_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loop.pick_device("auto").type == "cpu"


def test_adalora_logs_its_task_loss_and_the_penalty_apart(tiny_data):
    """AdaLoRA's `.loss` includes its orthogonality term; the logged loss must not (issue 13 item 4). At step 1
    LoRA (B = 0) and AdaLoRA (E = 0) both compute the base model's output, so their task losses are equal."""
    training = {"max_steps": 3, "log_every": 1}
    lora = loop.fit(tiny_cfg(tiny_data, training=training))
    ada = loop.fit(
        tiny_cfg(tiny_data, training=training, adapter={"method": "adalora", "tinit": 0, "tfinal": 1})
    )
    assert ada.status is TrialStatus.COMPLETED, ada.error
    assert ada.loss_curve[0][1] == pytest.approx(lora.loss_curve[0][1], abs=1e-4)
    assert ada.penalty_curve[0][0] == 1 and ada.penalty_curve[0][1] > 0.5  # 0.5 x ||P P^T - I||, P near 0
    assert ada.final_orth_penalty == ada.penalty_curve[-1][1] and not lora.penalty_curve


def test_orth_penalty_is_what_peft_adds_to_the_loss(tiny_data):
    p = loop.prepare(tiny_cfg(tiny_data, adapter={"method": "adalora", "orth_reg_weight": 0.3}))
    p.model.eval()
    batch = next(p.task_data.train.iterate())
    with torch.no_grad():
        total = float(p.model(**batch).loss)
        labels = batch.pop("labels")
        task = float(torch.nn.functional.cross_entropy(p.model(**batch).logits, labels))
    assert total - task == pytest.approx(adapters.orth_penalty(p.model)(), rel=1e-4)
    assert adapters.orth_penalty(loop.prepare(tiny_cfg(tiny_data)).model) is None


def test_a_diverged_run_gets_its_own_status_and_keeps_its_metrics(tiny_data):
    """lr=10 on SST-2: loss 0.70 -> ~20; it used to count as completed (issue 13 item 9)."""
    result = loop.fit(tiny_cfg(tiny_data, training={"lr": 10.0}))
    assert result.status is TrialStatus.DIVERGED
    assert result.error.startswith("diverged: training loss rose from") and "training.lr" in result.error
    assert result.accuracy is not None and result.eval_loss is not None
    off = loop.fit(tiny_cfg(tiny_data, training={"lr": 10.0, "divergence_factor": None}))
    assert off.status is TrialStatus.COMPLETED and off.accuracy == result.accuracy
