"""Optuna inside Ray Tune for the Pareto search: samplers, storage, the define-by-run space, the searcher.

`RankbitsOptunaSearch` corrects how Ray hands trial ends to Optuna:
- a trial stopped early by ASHA ends on an intermediate report (status "running"); Ray would tell Optuna it is
  COMPLETE with partial values, so it is told PRUNED instead (Optuna's own state for early-stopped trials);
- a trial the memory model predicted over budget never trains; it is told COMPLETE with the worst task value and
  its predicted memory, and carries the violated constraint (user attribute "constraint" > 0), which the
  constrained samplers (TPE, NSGA-II, GP) use to learn the infeasible region;
- a failed trial is told FAIL.
"""

from __future__ import annotations

import functools
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from trainables.config import TrialConfig
from trainables.errors import ConfigError

SAMPLERS = ("tpe", "nsga2", "gp", "random")
WORST = {"accuracy": 0.0, "perplexity": 1e9}


def constraints(trial: Any) -> list[float]:
    """Optuna constraints function: > 0 means infeasible (predicted peak above the memory budget)."""
    return list(trial.user_attrs.get("constraint", [0.0]))


def make_sampler(name: str, seed: int, n_objectives: int) -> Any:
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constraints_func=constraints, n_startup_trials=5)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constraints, population_size=8)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, constraints_func=constraints, n_startup_trials=5)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"--sampler {name!r}: choose one of {', '.join(SAMPLERS)}")


def make_storage(url: str) -> Any:
    """An Optuna RDB storage (sqlite:///path.db, postgresql://..., mysql://...); ConfigError when unusable."""
    import optuna

    if "://" not in url:
        raise ConfigError(f"--storage {url!r}: not a database URL; use e.g. sqlite:///results/study.db")
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=None)
    except Exception as exc:  # noqa: BLE001 - any driver / URL error becomes one line
        raise ConfigError(
            f"--storage {url!r}: cannot open it ({exc.__class__.__name__}); check the URL and that "
            "its database driver is installed"
        ) from exc


def space(
    trial: Any,
    *,
    base: dict[str, Any],
    num_layers: int,
    budget_mb: float | None,
    device: Any,
    concurrency: int,
    arch: Any,
) -> dict[str, Any]:
    """Ray's define-by-run function: sample, build the TrialConfig, predict its peak, plan its resources."""
    from search.resources import plan_trial
    from spaces.pareto import build_config, suggest_params
    from trainables.predict import predicted_peak_mb

    params = suggest_params(trial, num_layers)
    cfg = build_config(params, TrialConfig.from_dict(base), num_layers)
    predicted = predicted_peak_mb(cfg, device.kind, arch)
    trial.set_user_attr("predicted_peak_mb", round(predicted, 1))
    trial.set_user_attr("constraint", [predicted - budget_mb if budget_mb is not None else 0.0])
    if cfg.config_id:
        trial.set_user_attr("config_id", cfg.config_id)
    res = plan_trial(device, min(predicted, budget_mb or predicted), concurrency)
    return {
        "trial": cfg.to_dict(),
        "memory_budget_mb": budget_mb,
        "predicted_peak_mb": round(predicted, 1),
        "threads": res.threads,
        "memory_fraction": res.memory_fraction,
        "forked": res.forked,
        "resources": res.ray_request(True),
    }


def make_space(**kwargs: Any) -> Any:
    return functools.partial(space, **kwargs)


class RankbitsOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna stopped, infeasible and failed trials apart (see module docstring)."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        import optuna

        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        status = (result or {}).get("status")
        reported = [(result or {}).get(m) for m in metrics]
        values: list[Any] | None = reported
        if status == "infeasible":
            fallback = (result or {}).get("predicted_peak_mb") or 0.0
            values = [
                WORST[m] if m in WORST else (v if v is not None else fallback)
                for m, v in zip(metrics, reported)
            ]
            ot_trial.set_user_attr("status", "infeasible")
            state = optuna.trial.TrialState.COMPLETE
        elif status == "running":  # ended on an intermediate report: stopped early by the scheduler
            values, state = None, optuna.trial.TrialState.PRUNED
        elif error or status == "failed" or any(v is None for v in reported):
            values, state = None, optuna.trial.TrialState.FAIL
        else:
            state = optuna.trial.TrialState.COMPLETE
        study: Any = self._ot_study
        try:
            study.tell(ot_trial, values, state=state)
        except (ValueError, RuntimeError):
            study.tell(ot_trial, None, state=optuna.trial.TrialState.FAIL)
        self._completed_trials.add(trial_id)
