"""Optuna inside Ray Tune for the Pareto search: samplers, storage, the define-by-run space, the searcher.

`RankbitsOptunaSearch` corrects how Ray hands trial ends to Optuna:
- a trial stopped early by ASHA ends on an intermediate report (status "running"); Ray would tell Optuna it is
  COMPLETE with partial values, so it is told PRUNED instead (Optuna's own state for early-stopped trials);
- a trial the memory model predicted over budget never trains. Feasibility is decided once, in `space`, on the
  unrounded prediction: the trial carries the Optuna constraint `CONSTRAINT` (predicted peak - budget, MB; > 0 is
  infeasible, read by every sampler and by `study.best_trials`), and the trainable obeys the same verdict. It is
  told COMPLETE with `infeasible_values`: for each objective the value known without training (weight memory,
  trainable parameters, predicted peak, LoRA ranks), else the worst possible value in that objective's direction;
- a failed or diverged trial (training loss far above its start) is told FAIL.

The study names its objectives (`study.set_metric_names`, shown by optuna-dashboard), and each Optuna trial links
to its Tune trial: user attributes `tune_trial_id`, and at its end `trial_dir` and `adapter_dir` (absolute paths).
A study that already holds trials (a resumed or extended search) gets a sampler seeded from (seed, trials so far),
so it continues instead of repeating its first proposals (`sampler_seed`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from search.common import SAMPLERS  # declared beside the CLI flags, so --help needs no Ray
from trainables.columns import COLUMNS, objective_columns, worst_values
from trainables.config import TrialConfig
from trainables.errors import ConfigError

CONSTRAINT = "peak_over_budget_mb"
"""Optuna constraint key: predicted peak minus the memory budget (MB = 2^20 bytes); > 0 means infeasible."""
KNOWN_RESULT_FIELDS = tuple(c.name for c in COLUMNS if c.known)
"""Result fields a trial's config fixes without training (`Column.known`: weight memory, trainable parameters,
total and initial rank); recorded for infeasible trials too."""


def sampler_seed(seed: int, trials_before: int) -> int:
    """The sampler seed for a study that already holds `trials_before` trials.

    0 trials: `seed` itself (a fresh search is reproducible and unchanged); otherwise a 32-bit seed drawn from
    (seed, trials_before), so an extended or resumed search continues with new proposals instead of replaying the
    stream its first run used. Different extensions of one study get different seeds."""
    if trials_before <= 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, trials_before]).generate_state(1)[0])


def make_sampler(name: str, seed: int, n_objectives: int, trials_before: int = 0) -> Any:
    """An Optuna sampler (`SAMPLERS`), seeded with `sampler_seed(seed, trials_before)`. Constraints are read from
    each trial (`trial.set_constraint` in `space`), which TPE, NSGA-II and GP use to learn the infeasible
    region. Raises ConfigError for an unknown name, or gp without scipy installed."""
    import optuna

    s = sampler_seed(seed, trials_before)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=s, n_startup_trials=5)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s, population_size=8)
    if name == "gp":
        try:  # Optuna's GP sampler fits with scipy; without it the first proposal would crash mid-search
            import scipy  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--sampler gp needs scipy: pip install scipy, or use tpe / nsga2 / random"
            ) from None
        return optuna.samplers.GPSampler(seed=s, n_startup_trials=5)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=s)
    raise ConfigError(f"--sampler {name!r}: choose one of {', '.join(SAMPLERS)}")


def study_size(storage: Any, name: str) -> int:
    """Trials (any state) the study `name` holds in `storage`; 0 when there is no such study."""
    import optuna

    if not any(s.study_name == name for s in optuna.get_all_study_summaries(storage)):
        return 0
    return len(optuna.load_study(study_name=name, storage=storage).trials)


def worst_value(column: str, direction: str | None = None) -> float:
    """The worst possible value of an objective column in `direction` (default: its own), from the result-column
    table (`trainables.columns.Column.worst`): its lowest value for "max" (0: no accuracy, no throughput), its
    highest for "min" (+inf: Optuna stores it, GP clips it for fitting). ConfigError for a non-objective."""
    return worst_values({column: direction or objective_columns().get(column, "min")})[column]


def known_values(arch: Any, cfg: TrialConfig, est: Any) -> dict[str, float]:
    """Result columns fixed by the config alone, for trials that never train: `predicted_peak_mb`,
    `weight_memory_mb` (the base weights as stored, MB = 2^20 bytes, the same count training reports),
    `trainable_params` (the memory model's adapter + head count, never below what training reports), and for LoRA
    `total_rank` / `initial_total_rank` (rank summed over adapted modules). AdaLoRA's final rank is unknown.
    `est` is the config's `trainables.memory.MemoryEstimate` on `arch`."""
    from trainables.adapters import target_names
    from trainables.memory import MB, adapter_param_count

    known: dict[str, float] = {
        "predicted_peak_mb": est.total_mb,
        "weight_memory_mb": round(est.weights / MB, 3),
        "trainable_params": adapter_param_count(arch, cfg),
    }
    modules = target_names("b", [[n for n, *_ in block] for block in arch.block_linears], cfg.adapter)
    ranks = cfg.adapter.ranks_per_layer(arch.num_layers)
    initial = sum(r * len(layer) for r, layer in zip(ranks, modules))
    known["initial_total_rank"] = initial
    if cfg.adapter.method == "lora":
        known["total_rank"] = initial
    return known


def infeasible_values(objectives: dict[str, str], known: dict[str, float]) -> list[float]:
    """What Optuna is told for a trial that never trained, one value per objective (in order): the known value
    (`known_values`) where the config fixes it, else `worst_value` of the objective's direction. A task metric,
    time or throughput is never known, so such a trial is never better than a trained one there."""
    worst = worst_values(objectives)
    return [float(known[m]) if m in known else worst[m] for m in objectives]


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
    objectives: list[str] | None = None,
    harness: Any = None,
    search_space: str = "full",
    order: list[int] | None = None,
) -> dict[str, Any]:
    """Ray's define-by-run function: sample, build the TrialConfig, predict its peak, decide its feasibility
    (once, unrounded: predicted peak > budget_mb), plan its resources. `search_space` and `order`: the space
    (`spaces.pareto.SPACES`) and the measured block order it may place 8-bit blocks by (`spaces.pareto.propose`;
    computed once by the caller). Returns the trial's Tune config:
    {"trial": TrialConfig dict, "memory_budget_mb", "predicted_peak_mb", "infeasible": bool, "known": result
    fields fixed without training, "threads", "memory_fraction", "forked", "resources"}."""
    from search.resources import plan_trial
    from spaces.pareto import build_config, checkpointing_choices, propose, runnable_methods
    from trainables.predict import predict_peak

    base_cfg = TrialConfig.from_dict(base)
    choices = checkpointing_choices(objectives or [], base_cfg)
    params = propose(trial, search_space, num_layers, runnable_methods(base_cfg), choices, order)
    cfg = build_config(params, base_cfg, num_layers)
    est = predict_peak(cfg, device.kind, arch)
    predicted = est.total_mb
    known = known_values(arch, cfg, est)
    infeasible = budget_mb is not None and predicted > budget_mb
    trial.set_user_attr("predicted_peak_mb", round(predicted, 1))
    trial.set_user_attr("known", known)
    if budget_mb is not None:
        trial.set_constraint(CONSTRAINT, predicted - budget_mb)
    if cfg.config_id:
        trial.set_user_attr("config_id", cfg.config_id)
    res = plan_trial(device, min(predicted, budget_mb or predicted), concurrency, harness)
    return {
        "trial": cfg.to_dict(),
        "memory_budget_mb": budget_mb,
        "predicted_peak_mb": predicted,
        "infeasible": infeasible,
        "known": {k: v for k, v in known.items() if k in KNOWN_RESULT_FIELDS},
        "threads": res.threads,
        "memory_fraction": res.memory_fraction,
        "forked": res.forked,
        "harness": harness.to_dict() if harness is not None else {},  # trainables.harness: recorded per trial
        "resources": res.ray_request(True),
        "study_trial": trial.number,  # progress lines name trials by their study number
    }


def make_space(**kwargs: Any) -> Any:
    return functools.partial(space, **kwargs)


class RankbitsOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna stopped, infeasible and failed trials apart, names the study's objectives and
    links each Optuna trial to its Tune trial (see module docstring).

    `experiment_dir`: the Tune experiment folder the trials are written to (for the `trial_dir` and `adapter_dir`
    user attributes); None leaves those out."""

    def __init__(self, *args: Any, experiment_dir: str | Path | None = None, **kwargs: Any) -> None:
        self._experiment_dir = Path(experiment_dir).resolve() if experiment_dir is not None else None
        super().__init__(*args, **kwargs)

    def _setup_study(self, mode: str | list) -> None:
        super()._setup_study(mode)
        metrics = self._metric if isinstance(self._metric, list) else [self._metric]
        if self._ot_study is not None and all(isinstance(m, str) for m in metrics):
            import warnings

            import optuna

            with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._ot_study.set_metric_names(list(metrics))

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and "tune_trial_id" not in ot_trial.user_attrs:
            ot_trial.set_user_attr("tune_trial_id", trial_id)
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        import optuna

        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        modes = self.mode if isinstance(self.mode, list) else [self.mode]
        status = (result or {}).get("status")
        reported = [(result or {}).get(m) for m in metrics]
        values: list[Any] | None = reported
        self._link(ot_trial, trial_id)
        if status == "infeasible":
            known = dict(ot_trial.user_attrs.get("known") or {})
            values = infeasible_values(dict(zip(metrics, modes)), known)
            ot_trial.set_user_attr("status", "infeasible")
            state = optuna.trial.TrialState.COMPLETE
        elif status == "running":  # ended on an intermediate report: stopped early by the scheduler
            values, state = None, optuna.trial.TrialState.PRUNED
        elif error or status in ("failed", "diverged") or any(v is None for v in reported):
            values, state = None, optuna.trial.TrialState.FAIL
        else:
            state = optuna.trial.TrialState.COMPLETE
        study: Any = self._ot_study
        try:
            study.tell(ot_trial, values, state=state)
        except (ValueError, RuntimeError):
            study.tell(ot_trial, None, state=optuna.trial.TrialState.FAIL)
        self._completed_trials.add(trial_id)

    def _link(self, ot_trial: Any, trial_id: str) -> None:
        """User attributes pointing from the Optuna trial to its Tune trial folder and PEFT adapter."""
        root = getattr(self, "_experiment_dir", None)  # absent in searchers pickled by an older version
        ot_trial.set_user_attr("tune_trial_id", trial_id)
        if root is None or not root.is_dir():
            return
        folder = next((d for d in sorted(root.glob(f"*{trial_id}")) if d.is_dir()), None)
        if folder is None:
            return
        ot_trial.set_user_attr("trial_dir", str(folder.resolve()))
        if (folder / "adapter").is_dir():
            ot_trial.set_user_attr("adapter_dir", str((folder / "adapter").resolve()))


def build_searcher(
    *,
    space: Any,
    objectives: dict[str, str],
    sampler: str,
    seed: int,
    storage: Any,
    study_name: str,
    points_to_evaluate: list[dict[str, Any]] | None = None,
    experiment_dir: str | Path | None = None,
) -> RankbitsOptunaSearch:
    """The searcher of `rankbits pareto`: study `study_name` in `storage` (created or continued), objectives in
    order ({column: "min" | "max"}), a `sampler` seeded from `seed` and the trials the study already holds (a
    resumed search continues, it does not replay its first proposals). Raises ConfigError for an unknown sampler."""
    return RankbitsOptunaSearch(
        space=space,
        metric=list(objectives),
        mode=list(objectives.values()),
        sampler=make_sampler(sampler, seed, len(objectives), study_size(storage, study_name)),
        storage=storage,
        study_name=study_name,
        points_to_evaluate=points_to_evaluate,
        experiment_dir=experiment_dir,
    )
