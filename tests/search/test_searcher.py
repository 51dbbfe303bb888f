"""The Pareto searcher's suggest / complete cycle without Ray: resumed studies, infeasible trials, hand-off."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest

from search.resources import DeviceInfo
from search.searcher import CONSTRAINT, build_searcher, make_space, space
from spaces.pareto import build_config, grid_points, suggest_params
from trainables.config import TrialConfig
from trainables.memory import arch_for, estimate
from trainables.records import flatten
from trainables.result import TrialResult, TrialStatus

optuna.logging.set_verbosity(optuna.logging.ERROR)

DEVICE = DeviceInfo("cpu", 64_000.0, 2)
LAYERS = 2
OBJ = {"accuracy": "max", "peak_memory_mb": "min"}


def base_cfg(max_steps: int = 3) -> TrialConfig:
    return TrialConfig.from_dict(
        {
            "task": {"name": "sst2"},
            "model": {"name": "tiny-bert"},
            "training": {"max_steps": max_steps, "seq_len": 32, "batch_size": 4, "eval_examples": 16},
        }
    )


@pytest.fixture(scope="module")
def arch() -> Any:
    return arch_for(base_cfg())


def searcher_for(
    arch: Any,
    storage: Any,
    *,
    sampler: str = "random",
    objectives: dict[str, str] = OBJ,
    budget: float | None = None,
    points: list[dict[str, Any]] | None = None,
    experiment_dir: Path | None = None,
    max_steps: int = 3,
) -> Any:
    return build_searcher(
        space=make_space(
            base=base_cfg(max_steps).to_dict(),
            num_layers=LAYERS,
            budget_mb=budget,
            device=DEVICE,
            concurrency=1,
            arch=arch,
        ),
        objectives=objectives,
        sampler=sampler,
        seed=0,
        storage=storage,
        study_name="s",
        points_to_evaluate=points,
        experiment_dir=experiment_dir,
    )


def trainable_result(trial_id: str, config: dict[str, Any]) -> dict[str, Any]:
    """What the trainable reports for this config, without training: the infeasible row when the space said so
    (built as the trainable builds it), else a completed row with made-up metrics."""
    cfg = TrialConfig.from_dict(config["trial"])
    if config.get("infeasible", config["predicted_peak_mb"] > (config["memory_budget_mb"] or math.inf)):
        result = TrialResult.of(
            cfg,
            status=TrialStatus.INFEASIBLE,
            predicted_peak_mb=round(config["predicted_peak_mb"], 1),
            **config.get("known", {}),
        )
    else:
        result = TrialResult.of(
            cfg,
            accuracy=0.6,
            peak_memory_mb=config["predicted_peak_mb"],
            weight_memory_mb=1.0,
            trainable_params=1000,
            train_time_s=5.0,
            total_rank=4,
            steps=cfg.training.max_steps,
        )
    return flatten(trial_id, cfg, result)


def run_cycle(searcher: Any, ids: list[str]) -> list[dict[str, Any]]:
    configs = []
    for tid in ids:
        config = searcher.suggest(tid)
        searcher.on_trial_complete(tid, trainable_result(tid, config))
        configs.append(config)
    return configs


def sampled(study: optuna.Study) -> list[dict[str, Any]]:
    return [t.params for t in study.trials]


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2"])
def test_an_extended_study_continues_instead_of_repeating_its_first_trials(arch: Any, sampler: str) -> None:
    storage = optuna.storages.InMemoryStorage()
    run_cycle(searcher_for(arch, storage, sampler=sampler), ["a_00000", "a_00001"])
    # --resume / a larger --trials: a new searcher (and sampler, same --seed) on the same study
    resumed = searcher_for(arch, storage, sampler=sampler)
    run_cycle(resumed, ["b_00000", "b_00001"])
    params = sampled(resumed._ot_study)
    assert len(params) == 4
    assert params[2:] != params[:2]
    # a fresh search with the same seed is still reproducible
    again = searcher_for(arch, optuna.storages.InMemoryStorage(), sampler=sampler)
    run_cycle(again, ["c_00000", "c_00001"])
    assert sampled(again._ot_study) == params[:2]


def grid_predictions(arch: Any) -> list[float]:
    preds = []
    for point in grid_points(LAYERS):
        study = optuna.create_study(directions=["maximize", "minimize"])
        study.enqueue_trial(point)
        cfg = build_config(suggest_params(study.ask(), LAYERS), base_cfg(), LAYERS)
        preds.append(estimate(arch, cfg, DEVICE.kind).total_mb)
    return preds


@pytest.mark.parametrize(
    "objectives",
    [
        {"accuracy": "max", "weight_memory_mb": "min"},
        {"accuracy": "max", "train_time_s": "min"},
        {"accuracy": "max", "trainable_params": "min", "total_rank": "min"},
    ],
)
def test_infeasible_trials_never_beat_trained_ones_and_stay_off_the_front(
    arch: Any, objectives: dict[str, str]
) -> None:
    preds = grid_predictions(arch)
    budget = (min(preds) + max(preds)) / 2  # the 16-bit grid points are over it
    storage = optuna.storages.InMemoryStorage()
    searcher = searcher_for(arch, storage, objectives=objectives, budget=budget, points=grid_points(LAYERS))
    run_cycle(searcher, [f"x_{i:05d}" for i in range(6)])
    study = searcher._ot_study
    infeasible = [t for t in study.trials if t.user_attrs.get("status") == "infeasible"]
    trained = [t for t in study.trials if t.user_attrs.get("status") != "infeasible"]
    assert infeasible and trained
    for t in infeasible:
        known = t.user_attrs.get("known", {})
        for i, (name, direction) in enumerate(objectives.items()):
            value = t.values[i]
            if name in known:  # fixed by the config: the value training would report
                assert value == pytest.approx(known[name]) and value > 0, name
                continue
            # never measured: the worst possible value, never better than any trained trial's
            assert value == (0.0 if direction == "max" else math.inf), name
            trained_values = [u.values[i] for u in trained]
            assert value <= min(trained_values) if direction == "max" else value >= max(trained_values)
    # the random sampler has no constraints_func: the front must still hold trained trials only
    assert study.best_trials and {t.number for t in study.best_trials} <= {t.number for t in trained}
    assert all(t.constraints[CONSTRAINT] > 0 for t in infeasible)
    assert all(t.constraints[CONSTRAINT] <= 0 for t in trained)


def test_feasibility_is_decided_once_on_the_unrounded_prediction(arch: Any) -> None:
    """A prediction just above the budget (265.738 vs 265.7) is infeasible for Optuna and for the trainable."""
    chosen = None
    for point, pred in zip(grid_points(LAYERS), grid_predictions(arch)):
        below = math.floor(pred * 10) / 10
        if 0 < pred - below < 0.05:  # rounds down to 0.1 MB: a budget of `below` split the two decisions
            chosen = (point, pred, below)
            break
    if chosen is None:  # no grid point rounds down: aim the budget just under one prediction instead
        point, pred = grid_points(LAYERS)[0], grid_predictions(arch)[0]
        chosen = (point, pred, pred - 1e-6)
    point, pred, budget = chosen
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial(point)
    trial = study.ask()
    config = space(
        trial,
        base=base_cfg().to_dict(),
        num_layers=LAYERS,
        budget_mb=budget,
        device=DEVICE,
        concurrency=1,
        arch=arch,
    )
    assert pred > budget
    # what the trainable decides on: the space's verdict, and the prediction it would fall back to
    assert config["predicted_peak_mb"] > config["memory_budget_mb"]
    assert config.get("infeasible") is True
    assert study.trials[0].constraints[CONSTRAINT] == pytest.approx(pred - budget)


def test_short_step_budgets_propose_only_runnable_adapters(arch: Any) -> None:
    storage = optuna.storages.InMemoryStorage()
    searcher = searcher_for(arch, storage, max_steps=2)
    for i in range(12):
        config = searcher.suggest(f"t_{i:05d}")
        cfg = TrialConfig.from_dict(config["trial"])
        if cfg.adapter.method == "adalora":
            cfg.adapter.schedule(cfg.training.max_steps)  # raises ConfigError when it cannot run
        searcher.on_trial_complete(f"t_{i:05d}", trainable_result(f"t_{i:05d}", config))
    methods = {t.params["method"] for t in searcher._ot_study.trials}
    assert methods == {"lora"}


def test_study_names_its_objectives_and_links_trials_to_tune(arch: Any, tmp_path: Path) -> None:
    storage = optuna.storages.InMemoryStorage()
    experiment = tmp_path / "tune"
    (experiment / "trial-sst2-s0_ab123_00000" / "adapter").mkdir(parents=True)
    searcher = searcher_for(arch, storage, experiment_dir=experiment)
    run_cycle(searcher, ["ab123_00000", "ab123_00001"])
    study = optuna.load_study(study_name="s", storage=storage)
    assert study.metric_names == list(OBJ)
    first, second = study.trials
    assert first.user_attrs["tune_trial_id"] == "ab123_00000"
    assert first.user_attrs["trial_dir"] == str((experiment / "trial-sst2-s0_ab123_00000").resolve())
    assert first.user_attrs["adapter_dir"] == str(
        (experiment / "trial-sst2-s0_ab123_00000" / "adapter").resolve()
    )
    assert second.user_attrs["tune_trial_id"] == "ab123_00001" and "trial_dir" not in second.user_attrs


def test_hand_off_helpers_refuse_folders_they_cannot_open(tmp_path: Path) -> None:
    from search import load_study, restore_tuner
    from trainables.errors import ConfigError

    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / "experiment.json").write_text('{"kind": "grid"}')
    with pytest.raises(ConfigError, match="no restorable Tune experiment"):
        restore_tuner(tmp_path / "grid")
    with pytest.raises(ConfigError, match="not a Pareto search"):
        load_study(tmp_path / "grid")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "experiment.json").write_text('{"kind": "pareto"}')
    with pytest.raises(ConfigError, match="no study.db"):
        load_study(tmp_path / "p")


def test_gp_without_scipy_is_refused_before_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from search.searcher import make_sampler
    from trainables.errors import ConfigError

    monkeypatch.setitem(sys.modules, "scipy", None)  # import scipy raises ImportError
    with pytest.raises(ConfigError, match="--sampler gp needs scipy"):
        make_sampler("gp", 0, 2)
