"""Run a list of fixed trial configs (the grid) through Ray Tune, resumably, and write the results folder."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from search import results_io
from search.resources import detect_device, max_concurrency, plan_trial, resolve_harness
from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.harness import Harness


def predict_all(cells: list[TrialConfig], device_kind: str) -> list[float]:
    from trainables.predict import predicted_peak_mb

    return [predicted_peak_mb(c, device_kind) for c in cells]


def resource_cells(
    cells: list[TrialConfig],
    device: Any,
    use_memory: bool,
    requested_concurrency: int | None,
    harness: Harness | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """One Tune config per cell: {"trial", "threads", "memory_fraction", "forked", "harness",
    "predicted_peak_mb", "resources"}, and how many run at once."""
    peaks = predict_all(cells, device.kind)
    smallest = min(peaks)
    if smallest > device.memory_mb:
        raise ConfigError(
            f"memory budget {device.memory_mb:.0f} MB is below the smallest trial's predicted peak "
            f"({smallest:.0f} MB); raise --device-memory-gb or choose smaller configs"
        )
    concurrency = max_concurrency(device, peaks, requested_concurrency)
    out = []
    for cfg, peak in zip(cells, peaks):
        res = plan_trial(device, peak, concurrency, harness)
        out.append(
            {
                "trial": cfg.to_dict(),
                "threads": res.threads,
                "memory_fraction": res.memory_fraction,
                "forked": res.forked,
                "harness": harness.to_dict() if harness is not None else {},
                "predicted_peak_mb": round(peak, 1),
                "resources": res.ray_request(use_memory),
            }
        )
    return out, concurrency


class TimePrediction(NamedTuple):
    seconds: float | None
    """Predicted wall time of the trials run one after another (None: no earlier trial to time them by)."""
    timed: int
    """Trials with an earlier trial of the same model, task and device kind to time them by."""
    samples: int
    """Earlier completed trials read."""


def predict_time(results_dir: Path, cells: list[TrialConfig], device_kind: str) -> TimePrediction:
    """Seconds the `cells` take one after another, from the completed trials in `results_dir/*/all_results.json`
    of the same model, task and device kind: their training seconds per token of batch x sequence length (median)
    times this trial's steps x batch x sequence length, plus their load and evaluation time (median).
    Trials with no such earlier trial are left out of the sum (`timed` counts the others)."""
    import json
    import statistics

    rates: dict[tuple[str, str], list[float]] = {}
    overheads: dict[tuple[str, str], list[float]] = {}
    samples = 0
    for path in sorted(Path(results_dir).glob("*/all_results.json")):
        try:
            entries = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for e in entries if isinstance(entries, list) else []:
            try:
                cfg, r = e["config"], e["result"]
                if r["status"] != "completed" or r.get("device") != device_kind or not r["steps"]:
                    continue
                key = (cfg["model"]["name"], cfg["task"]["name"])
                work = r["steps"] * cfg["training"]["batch_size"] * cfg["training"]["seq_len"]
                rates.setdefault(key, []).append(r["train_time_s"] / work)
                overheads.setdefault(key, []).append(r.get("load_time_s", 0.0) + r.get("eval_time_s", 0.0))
                samples += 1
            except (KeyError, TypeError, ZeroDivisionError):
                continue
    total, timed = 0.0, 0
    for c in cells:
        key = (c.model.name, c.task.name)
        if key not in rates:
            continue
        steps = c.training.max_steps or 0
        total += statistics.median(rates[key]) * steps * c.training.batch_size * c.training.seq_len
        total += statistics.median(overheads[key])
        timed += 1
    return TimePrediction(total if timed else None, timed, samples)


def plan_text(todo: list[TrialConfig], concurrency: int, when: TimePrediction) -> str:
    """What will run, before it runs: per task the model, steps and batch, and the predicted time."""
    lines = []
    for task in dict.fromkeys(c.task.name for c in todo):
        mine = [c for c in todo if c.task.name == task]
        t = mine[0].training
        lines.append(
            f"  {task}: {len(mine)} trials of {mine[0].model.name}, {t.max_steps} steps x batch {t.batch_size} "
            f"x {t.seq_len} tokens"
        )
    if not todo:
        lines.append("  nothing left to run")
    elif when.seconds is None:
        lines.append(
            "  predicted time: unknown (no earlier completed trial of these models here to time them by); "
            "the progress lines follow every trial"
        )
    else:
        minutes = when.seconds / max(1, min(concurrency, len(todo))) / 60
        note = "" if when.timed == len(todo) else f", {len(todo) - when.timed} trials untimed"
        shown = "under 1" if minutes < 0.5 else f"~{minutes:.0f}"
        lines.append(
            f"  predicted time: {shown} min at up to {concurrency} at once (from {when.samples} earlier "
            f"trials{note})"
        )
    return "\n".join(lines)


def launch(
    args: argparse.Namespace, cells: list[TrialConfig], spec: dict[str, Any], order: list[str]
) -> list[dict[str, Any]]:
    from search.common import root_of
    from search.tuner import init_ray, quiet

    quiet()
    root = root_of(args)
    device = detect_device(args.device_memory_gb)
    harness = resolve_harness(
        device,
        getattr(args, "trial_process", None),
        getattr(args, "reuse_workers", None),
        getattr(args, "mmap_threshold", None),
    )
    spec = {**spec, "harness": harness.to_dict()}  # experiment.json says how peaks were measured
    # Without --overwrite the folder check only reads, so it runs before Ray starts: another experiment there is
    # refused at once. With --overwrite it moves the earlier folder aside, so it waits for the budget check.
    resuming = None if args.overwrite else results_io.prepare_folder(root, spec, args.resume, overwrite=False)
    # The predicted peaks (model classes imported, meta models built) are computed while Ray starts.
    use_memory = init_ray(device, args.ray_address, meanwhile=lambda: predict_all(cells, device.kind))
    resource_cells(cells, device, True, args.max_concurrent)  # budget check before touching the folder
    if resuming is None:
        resuming = results_io.prepare_folder(root, spec, args.resume, overwrite=True)
    root.mkdir(parents=True, exist_ok=True)
    if not resuming:
        results_io.write_spec(root, spec)
    run_cells(
        args,
        root,
        cells,
        CellRun(device, harness, use_memory, results_io.tune_dir(root), grid_key, order, resuming),
    )
    table = results_io.write_summary(root, order)
    print()
    print(results_io.table_text(table))
    print(f"\nsummary: {root / 'experiment_summary.csv'}  all results: {root / 'all_results.json'}")
    return table


class CellRun(NamedTuple):
    """Where and how `run_cells` runs its cells."""

    device: Any
    """`search.resources.DeviceInfo` of this machine."""
    harness: Harness
    use_memory: bool
    """Whether the Ray cluster offers the memory resource (`search.tuner.init_ray`)."""
    path: Path
    """The Tune experiment folder (root/tune for the grid)."""
    key_of: Callable[[TrialConfig], str]
    """A cell's identity: a trial in the folder with the same key is that cell (the grid: `grid_key`)."""
    order: list[str] | None
    """Summary row order (`results_io.cell_key` of each row; None: start order)."""
    resume: bool
    """Continue: cells already in the folder are not run again, and a saved experiment at `path` is restored."""


def run_cells(
    args: argparse.Namespace, root: Path, cells: list[TrialConfig], run: CellRun
) -> list[TrialConfig]:
    """Train the `cells` that have no kept trial in the results folder `root` yet, as one Tune experiment at
    `run.path` (restored when it was saved and `run.resume`); rewrites the summary files after every trial.
    Returns the cells it set out to run. Ctrl-C: KeyboardInterrupt after the summary is written
    (`search.tuner.fit_tuner`)."""
    from ray import tune

    from search.tuner import build_or_restore, clear_interrupted, fit_tuner, make_callbacks, plan_progress

    restorable = run.resume and run.path.exists() and tune.Tuner.can_restore(str(run.path.resolve()))
    # Not run again: completed and diverged cells (trained to the end; also those of a run that died before Tune
    # saved its state); a restored Tuner also keeps its failed and infeasible trials and reruns only the unfinished.
    kept = ("completed", "diverged", "failed", "infeasible") if restorable else ("completed", "diverged")
    status: dict[str, str] = {}
    for entry in results_io.collect(root) if run.resume else []:
        key = run.key_of(TrialConfig.from_dict(entry["config"]))
        if status.get(key) not in kept:  # a kept trial of the cell wins over a later rerun's leftovers
            status[key] = entry["result"]["status"]
    todo = [c for c in cells if status.get(run.key_of(c)) not in kept]
    prepared, concurrency = resource_cells(
        todo or cells, run.device, run.use_memory, args.max_concurrent, run.harness
    )
    print(
        f"rankbits: {len(cells)} trials ({len(todo)} to run) on {run.device.kind}, up to {concurrency} at once, "
        f"memory budget {run.device.memory_mb:.0f} MB -> {root}",
        flush=True,
    )
    print(plan_text(todo, concurrency, predict_time(root.parent, todo, run.device.kind)), flush=True)
    if todo:
        plan_progress(len(todo))
        if restorable:
            clear_interrupted(root)
        tune_config = tune.TuneConfig(
            num_samples=1,
            max_concurrent_trials=concurrency,
            trial_dirname_creator=_dirname,
            reuse_actors=bool(run.harness.reuse_workers),  # resolve_harness decides it for Ray
        )
        tuner = build_or_restore(
            root,
            {"cell": tune.grid_search(prepared)},
            tune_config,
            make_callbacks(root, run.order, len(todo)),
            resume=restorable,
            path=run.path,
        )
        fit_tuner(
            tuner, root, run.order
        )  # Ctrl-C: interrupted trials marked, summary written, KeyboardInterrupt
    return todo


def grid_key(cfg: TrialConfig) -> str:
    """A grid cell's identity: config id, task and seed (`results_io.cell_key`)."""
    return results_io.cell_key(cfg.config_id or "", cfg.task.name, cfg.training.seed)


def _dirname(trial: Any) -> str:
    from search.tuner import trial_dirname

    return trial_dirname(trial)
