import optuna
import pytest

from spaces.grid import GRID_IDS, grid_config
from spaces.pareto import (
    build_config,
    grid_points,
    place_high,
    runnable_methods,
    spread_ranks,
    suggest_params,
)
from trainables.config import TrialConfig

BASE = TrialConfig.from_dict(
    {"task": {"name": "sst2"}, "model": {"name": "minilm-l6"}, "training": {"lr": 1e-3}}
)


def fixed_trial(params):
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial(params)
    return study.ask()


@pytest.mark.parametrize(
    "params",
    [
        {
            "method": "lora",
            "low_bits": 4,
            "n_high": 2,
            "high_bits": 16,
            "placement": "top",
            "rank_spread": "falling",
            "rank_budget": 6,
        },
        {
            "method": "lora",
            "low_bits": 8,
            "n_high": 3,
            "placement": "middle",
            "rank_spread": "per_layer",
            **{f"rank_{i}": i + 1 for i in range(6)},
        },
        {"method": "lora", "low_bits": 16, "rank_spread": "uniform", "rank_budget": 4},
        {"method": "adalora", "low_bits": 4, "n_high": 0, "init_r": 16, "target_ratio": 0.25},
        {
            "method": "adalora",
            "low_bits": 4,
            "n_high": 1,
            "high_bits": 8,
            "placement": "bottom",
            "init_r": 4,
            "target_ratio": 0.75,
        },
    ],
)
def test_every_branch_gives_a_valid_trial_config(params):
    trial = fixed_trial(params)
    sampled = suggest_params(trial, 6)
    cfg = build_config(sampled, BASE, 6)
    assert isinstance(cfg, TrialConfig)
    bits = cfg.quantization.bits_per_layer(6)
    assert set(bits) <= {4, 8, 16} and bits == sampled["bits"]
    if cfg.adapter.method == "lora":
        assert cfg.adapter.ranks_per_layer(6) == sampled["ranks"] and min(sampled["ranks"]) >= 1
    else:
        assert 1 <= cfg.adapter.target_r <= cfg.adapter.init_r
        assert cfg.training.lr == pytest.approx(5e-3)
    assert trial.params["method"] == params["method"]


def test_random_samples_are_always_valid():
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=3)
    )
    for _ in range(60):
        trial = study.ask()
        cfg = build_config(suggest_params(trial, 6), BASE, 6)
        cfg.quantization.bits_per_layer(6)
        study.tell(trial, [0.5, 1.0])


def test_grid_points_reproduce_the_grid_configs():
    for config_id, point in zip(GRID_IDS, grid_points(6)):
        cfg = build_config(suggest_params(fixed_trial(point), 6), BASE, 6)
        ref = grid_config(config_id, "sst2", "minilm-l6", 6)
        assert cfg.config_id == config_id
        assert cfg.quantization.bits_per_layer(6) == ref.quantization.bits_per_layer(6)
        assert cfg.adapter.method == ref.adapter.method


def test_placements_and_spreads():
    assert place_high(6, 2, "ends") == [0, 5] and place_high(6, 2, "top") == [4, 5]
    assert place_high(6, 2, "bottom") == [0, 1] and place_high(6, 2, "middle") == [2, 3]
    assert spread_ranks(6, 8, "rising") == [4, 4, 8, 8, 12, 12]
    assert spread_ranks(6, 8, "falling") == [12, 12, 8, 8, 4, 4]


@pytest.mark.parametrize(
    "steps, overrides, methods",
    [
        (2, {}, ["lora"]),  # default tinit 1 + tfinal 1 is not below 2 steps
        (3, {}, ["lora", "adalora"]),
        (300, {}, ["lora", "adalora"]),
        (10, {"adapter.tinit": 5, "adapter.tfinal": 5}, ["lora"]),  # the user's own schedule counts too
        (2, {"training.epochs": 1.0}, ["lora", "adalora"]),  # steps depend on the data: left to the run
    ],
)
def test_runnable_methods_follow_the_step_budget(steps, overrides, methods):
    base = BASE.with_overrides({"training.max_steps": steps, **overrides})
    assert runnable_methods(base) == methods


def test_a_short_budget_proposes_and_enqueues_only_runnable_configs():
    base = BASE.with_overrides({"training.max_steps": 2})
    methods = runnable_methods(base)
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    for _ in range(30):
        trial = study.ask()
        cfg = build_config(suggest_params(trial, 6, methods), base, 6)
        assert cfg.adapter.method == "lora"
        study.tell(trial, [0.5, 1.0])
    points = grid_points(6, methods)
    assert [p["method"] for p in points] == ["lora", "lora", "lora"]  # B-FP, B-Q4, Joint-3
    assert len(grid_points(6)) == len(GRID_IDS)


def test_checkpointing_is_searched_only_with_a_time_objective():
    from spaces.pareto import checkpointing_choices

    base = grid_config("B-Q4", "sst2", "tiny-bert", 2)
    assert checkpointing_choices(["accuracy", "peak_memory_mb"], base) == [True]
    choices = checkpointing_choices(["accuracy", "train_time_s"], base)
    assert choices == [True, False]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        params = suggest_params(trial, 2, ["lora"], choices)
        cfg = build_config(params, base, 2)
        seen.add(cfg.training.gradient_checkpointing)
        assert trial.params["gradient_checkpointing"] == cfg.training.gradient_checkpointing
    assert seen == {True, False}
    trial = study.ask()
    assert "gradient_checkpointing" not in suggest_params(trial, 2, ["lora"], [True])
