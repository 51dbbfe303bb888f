"""The Ray Tune function trainable: dict -> TrialConfig -> fit -> tune.report. The only module that imports Ray.

Tune config layout: {"cell": {"trial": TrialConfig.to_dict(), "threads": int, "memory_fraction": float | None,
"forked": bool, "harness": {...}, "resources": {...}}} for the grid; {"memory_budget_mb": float | None, <sampled values>} for
searches. Search spaces put their sampled values under other keys and `spaces.pareto` builds the "trial" dict from
them (see `trial_dict`).

A trial whose predicted peak is over `memory_budget_mb` never trains: it is reported with status infeasible (the
search space decides it once and passes "infeasible", with "known": the result fields the config fixes).
Each trial writes `trial_result.json` (full config + TrialResult) into its Tune trial folder and the PEFT adapter
into `adapter/` beside it. With "forked" (CPU trials on Linux) the training runs in a fresh child process
forked from a pre-imported template (`trainables.forked`), so a reused Ray worker measures every trial's peak as a
fresh process would. A trial that fails is reported with status failed and its reason, then raised so that
Tune marks it errored (and Optuna records it as failed), while the rest of the grid or search goes on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from trainables.config import TrialConfig
from trainables.errors import ConfigError, TrialFailed, TrialStopped
from trainables.records import flatten
from trainables.result import TrialResult, TrialStatus
from trainables.results_folder import (
    RESULT_FILE as RESULT_FILE,  # the folder format's owner; kept importable here
)
from trainables.results_folder import read_trial_file, write_trial_file


def trial_config(config: dict[str, Any]) -> TrialConfig:
    """The TrialConfig of a Tune config: its ready "trial" dict (grid cells and search spaces both build one).

    Raises ConfigError when the config holds none."""
    if "trial" not in config:
        raise ConfigError(
            f"Tune config without a 'trial' dict (keys: {', '.join(sorted(config))}); build it with "
            "TrialConfig.to_dict() in the search space"
        )
    return TrialConfig.from_dict(config["trial"])


def train_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable."""
    from ray import tune

    started = time.time()
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id() or "local"
    trial_dir = storage_trial_dir(ctx)
    config = config.get("cell", config)
    cfg = trial_config(config)
    harness = dict(config.get("harness") or {})  # trainables.harness: recorded in the result, applied below
    done = read_trial_file(trial_dir)
    if (
        done is not None
        and done.get("trial_id") == trial_id
        and done["result"]["status"]
        in (
            "completed",
            "diverged",
        )
    ):
        # Finished before the driver died (Tune had not recorded it yet): report it again instead of retraining.
        tune.report(flatten(trial_id, cfg, TrialResult.from_dict(done["result"])))
        return
    threads = config.get("threads")
    fraction = config.get("memory_fraction")
    if threads or fraction:
        cfg = cfg.with_overrides(
            {k: v for k, v in (("training.threads", threads), ("training.memory_fraction", fraction)) if v}
        )
    budget = config.get("memory_budget_mb")
    if budget is not None:
        predicted = config.get("predicted_peak_mb") or predicted_peak_mb(cfg)
        if config.get("infeasible", predicted > budget):  # the search space's verdict, when it gave one
            result = TrialResult.of(
                cfg,
                status=TrialStatus.INFEASIBLE,
                predicted_peak_mb=round(predicted, 1),
                error=f"predicted peak {predicted:.2f} MB is over the {budget:g} MB budget",
                harness=harness,
                **config.get("known", {}),  # result fields the config fixes without training
            )
            write_trial_file(trial_dir, trial_id, cfg, result, started)
            tune.report(
                flatten(trial_id, cfg, result)
            )  # never trains; the searcher tells Optuna "infeasible"
            return

    def progress(info: dict[str, Any]) -> None:
        row = {
            "trial_id": trial_id,
            "config_id": cfg.config_id or "",
            "task": cfg.task.name,
            "status": "running",
            "steps": info["step"],
            "train_loss": info["train_loss"],
        }
        for key in ("accuracy", "perplexity", "orth_penalty"):  # orth_penalty: AdaLoRA, apart from train_loss
            if key in info:
                row[key] = info[key]
        tune.report(row)

    if config.get("forked"):  # the worker itself never imports torch: the template process does
        from trainables.forked import fit_forked

        try:
            result = fit_forked(
                cfg,
                progress=progress,
                adapter_dir=trial_dir / "adapter",
                stop_requested=stop_requested,
                mmap_threshold=harness.get("mmap_threshold"),
            )
        except TrialStopped:
            return  # its last report was a progress row: Tune and the searcher record it as stopped
    else:
        from trainables.harness import use_mmap_threshold
        from trainables.loop import fit

        use_mmap_threshold(harness.get("mmap_threshold"))
        result = fit(cfg, progress=progress, adapter_dir=trial_dir / "adapter")
    result.harness = harness
    write_trial_file(trial_dir, trial_id, cfg, result, started)
    tune.report(flatten(trial_id, cfg, result) | {"train_loss": result.final_train_loss})
    if result.status is TrialStatus.FAILED:
        raise TrialFailed(result.error or "failed")


def stop_requested() -> bool:
    """Whether Tune has asked this trial to stop (a scheduler ended it, or the actor is being reset for the next
    trial). Tune sets its session's stop event and ends the function at its next report; a forked trial polls this
    while waiting for the child, so the worker is free again within a fraction of a second."""
    try:
        from ray.train._internal.session import get_session

        session = get_session()
        return bool(session is not None and session.stop_event.is_set())
    except Exception:  # noqa: BLE001 - another Ray layout: fall back to stopping at the next report
        return False


def storage_trial_dir(ctx: Any) -> Path:
    """The trial's folder in the experiment's storage. Tune's working directory (`get_trial_dir`) is a staging
    copy that is not synced back for reused actors, so results and adapters are written to storage directly
    whenever the storage is a local (or shared, mounted) file system."""
    try:
        import pyarrow.fs
        from ray.train._internal.session import get_storage

        storage = get_storage()
        if isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
            path = Path(storage.trial_fs_path)
            path.mkdir(parents=True, exist_ok=True)
            return path
    except Exception:  # noqa: BLE001 - fall back to the working directory (synced by Tune for remote storage)
        pass
    return Path(ctx.get_trial_dir() or ".")


def predicted_peak_mb(cfg: TrialConfig, device_type: str | None = None) -> float:
    from trainables.devices import pick_device
    from trainables.predict import predicted_peak_mb as predict

    device = device_type or pick_device(cfg.training.device).type
    return predict(cfg, device)
