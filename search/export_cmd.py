"""`rankbits export RESULTS_DIR (--trial ID | --best-under-mb M [--objective accuracy:max]) --out DIR [--merge]`.

Writes a self-contained folder (see `trainables.export`): the trial's PEFT adapter, the per-layer precision map and
everything that rebuilds the quantized base as it was trained, the trial's config, metrics and versions, and a
README with the lines that load it. Then checks it: the folder is loaded back with `load_exported` and scored on
the trial's own evaluation sample; a metric that differs from the trial's beyond numerical noise fails the export
(exit 1, the folder is kept with the check recorded). `--merge` also writes a merged 16-bit model and states how far
its metric is from the trial's.

RESULTS_DIR is a grid / pareto results folder (trials under `tune/`, read with `search.results_io`) or a
`rankbits run --output` folder (`trial_result.json`, or `result.json` before that name, + `adapter/`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.common import add_data_flag
from trainables.config import DEVICES
from trainables.errors import ConfigError
from trainables.tasks import TASKS, get_task

TASK_OBJECTIVE = {name: f"{spec.metric}:{spec.direction}" for name, spec in TASKS.items()}
"""Each registered task's default `--objective` (the old name; read from `get_task(name)`)."""
RELATIVE_NOISE = 1e-4
"""Re-evaluating the exported (unmerged) model must give the trial's metric to 4 significant digits."""
MERGE_TOLERANCE = 0.01
"""Relative difference allowed for the merged 16-bit model (rounding the weights to 16 bits moves the metric)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a trial's adapter and base-model recipe to a loadable folder")
    p.add_argument(
        "results_dir", metavar="RESULTS_DIR", help="grid / pareto results folder or a run --output folder"
    )
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--trial", default=None, help="trial id (the summary table's trial_id)")
    pick.add_argument(
        "--best-under-mb",
        type=float,
        default=None,
        metavar="M",
        help="the best completed trial whose measured peak is at most M MB (2^20 bytes)",
    )
    p.add_argument(
        "--objective",
        default=None,
        help="what 'best' means, column:direction (default: the task's metric, e.g. accuracy:max for SST-2, "
        "perplexity:min for WikiText-2)",
    )
    p.add_argument("--out", required=True, help="new folder to write (must not exist or be empty)")
    p.add_argument("--merge", action="store_true", help="also write a merged 16-bit model to OUT/merged")
    p.add_argument(
        "--device",
        default=None,
        choices=DEVICES,
        help="where the check runs: auto, cpu, cuda or mps (default: the trial's, if here)",
    )
    p.add_argument("--skip-check", action="store_true", help="do not re-evaluate the exported model")
    add_data_flag(p)
    p.set_defaults(handler=handle)


@dataclass(frozen=True)
class Found:
    trial_id: str | None
    config: dict[str, Any]
    result: dict[str, Any]
    adapter_dir: Path


RUN_FILES = ("trial_result.json", "result.json")
"""What a `rankbits run --output` folder calls its result (the second: run folders made before the rename)."""


def _run_file(root: Path) -> Path | None:
    if (root / "tune").is_dir():
        return None
    return next((root / n for n in RUN_FILES if (root / n).is_file()), None)


def _run_folder(root: Path, file: Path) -> list[Found]:
    data = json.loads(file.read_text())
    return [Found(None, data["config"], data["result"], root / "adapter")]


def _grid_folder(root: Path) -> list[Found]:
    from trainables.results_folder import trials

    return [
        Found(t.trial_id, t.entry["config"], t.entry["result"], t.path / "adapter")
        for t in trials(root)
        if t.from_trial_file and t.entry is not None
    ]


def find_trials(root: str | Path) -> list[Found]:
    """Every trial of a results folder that wrote its result file, with its adapter folder.

    Raises ConfigError when `root` is neither a grid / pareto results folder nor a `rankbits run` folder."""
    root = Path(root)
    run_file = _run_file(root)
    if run_file is not None:
        return _run_folder(root, run_file)
    from search import results_io

    if not root.is_dir() or not results_io.tune_dirs(root):
        raise ConfigError(
            f"RESULTS_DIR {str(root)!r}: not a results folder (no tune/ trials, no trial_result.json); give a "
            "rankbits grid / pareto folder or a rankbits run --output folder"
        )
    return _grid_folder(root)


def _objective(text: str | None, task: str) -> tuple[str, str]:
    from analysis.objectives import parse_objectives

    spec = get_task(task)
    parsed = parse_objectives(text or f"{spec.metric}:{spec.direction}")
    if len(parsed) != 1:
        raise ConfigError(f"--objective {text!r}: give one column:direction, e.g. accuracy:max")
    return next(iter(parsed.items()))


def choose(
    trials: list[Found], trial: str | None, best_under_mb: float | None, objective: str | None
) -> Found:
    """The trial `--trial` names, or the best completed one under `--best-under-mb` by `--objective`.

    A `run` folder holds one trial, chosen without either flag. Raises ConfigError naming what is available."""
    from trainables.config import TrialConfig
    from trainables.records import flatten
    from trainables.result import TrialResult

    if trial is not None:
        for t in trials:
            if t.trial_id == trial:
                return t
        ids = ", ".join(str(t.trial_id) for t in trials[:8]) or "none"
        raise ConfigError(f"--trial {trial!r}: no such trial here; trials: {ids}")
    if best_under_mb is None:
        if len(trials) == 1 and trials[0].trial_id is None:
            return trials[0]
        raise ConfigError("give --trial ID or --best-under-mb M (which trial to export)")
    rows = [
        (t, flatten(t.trial_id or "", TrialConfig.from_dict(t.config), TrialResult.from_dict(t.result)))
        for t in trials
    ]
    completed = [
        (t, r) for t, r in rows if r["status"] == "completed" and r.get("peak_memory_mb") is not None
    ]
    if not completed:
        raise ConfigError("no completed trial with a measured peak in this folder; nothing to export")
    column, direction = _objective(objective, completed[0][1]["task"])
    if not any(r.get(column) is not None for _, r in completed):
        tasks = ", ".join(sorted({str(r["task"]) for _, r in completed}))
        raise ConfigError(
            f"--objective {objective}: no completed trial here measured {column} (task {tasks}); give a column "
            "these trials have, e.g. the task's own metric"
        )
    under = [
        (t, r) for t, r in completed if r["peak_memory_mb"] <= best_under_mb and r.get(column) is not None
    ]
    if not under:
        lowest = min(r["peak_memory_mb"] for _, r in completed)
        raise ConfigError(
            f"--best-under-mb {best_under_mb:g}: no completed trial peaked at or under it; the lowest peak is "
            f"{lowest:.1f} MB"
        )
    sign = 1.0 if direction == "max" else -1.0
    return max(under, key=lambda tr: sign * float(tr[1][column]))[0]


def matches(value: float, trial_value: float, relative: float) -> bool:
    """|value - trial_value| <= relative x max(1, |trial_value|): equal to that many significant digits."""
    return abs(value - trial_value) <= relative * max(1.0, abs(trial_value))


def _check(name: str, value: float, loss: float, trial_value: float, tolerance: float) -> dict[str, Any]:
    return {
        "model": name,
        "metric": value,
        "eval_loss": loss,
        "trial_metric": trial_value,
        "difference": value - trial_value,
        "tolerance_relative": tolerance,
        "ok": matches(value, trial_value, tolerance),
    }


def _trial_device(result: dict[str, Any]) -> str:
    """The device the trial ran on when this machine has it (the same kernels: the metric reproduces to the last
    digits), else auto."""
    from trainables.loop import pick_device

    device = str(result.get("device") or "auto")
    try:
        pick_device(device)
    except ConfigError:
        return "auto"
    return device


def check_device(device: str) -> None:
    """ConfigError (one line, exit 2) naming `--device` when `device` is not available on this machine."""
    from trainables.loop import pick_device

    try:
        pick_device(device)
    except ConfigError:
        raise ConfigError(f"--device {device}: not available on this machine; use auto or cpu") from None


def handle(args: argparse.Namespace) -> int:
    import dataclasses

    from trainables import export

    chosen = choose(find_trials(args.results_dir), args.trial, args.best_under_mb, args.objective)
    record = export.make_record(chosen.config, chosen.result, chosen.trial_id, str(Path(args.results_dir)))
    needs_model = not args.skip_check or args.merge
    if needs_model and args.device:  # before OUT is written: a refused device must not block a retry
        check_device(args.device)  # (_trial_device below falls back to auto when the trial's is not here)
    device = args.device or _trial_device(record.result)
    out = export.write_export(args.out, record, chosen.adapter_dir)
    print(
        f"rankbits export: {record.config.get('config_id') or 'custom'} (trial {record.trial_id or '-'}) -> {out}",
        file=sys.stderr,
    )
    failed = []
    if needs_model:
        model, tokenizer = export.load_exported(out, device=device)
        checks = {}
        trial_value = record.metric
        if trial_value is not None and not args.skip_check:
            value, loss = export.evaluate_model(model, tokenizer, record, args.data_dir)
            checks["adapter"] = _check("adapter", value, loss, float(trial_value), RELATIVE_NOISE)
        if args.merge:
            target, merged = export.write_merged(out, model, tokenizer)
            print(f"rankbits export: merged 16-bit model -> {target}", file=sys.stderr)
            if trial_value is not None and not args.skip_check:
                value, loss = export.evaluate_model(merged, tokenizer, record, args.data_dir)
                checks["merged"] = _check("merged", value, loss, float(trial_value), MERGE_TOLERANCE)
        record = dataclasses.replace(record, checks=checks)
        export.save_record(out, record)
        for check in checks.values():
            print(
                f"  check {check['model']}: {record.metric_name} {check['metric']:.6g} vs trial "
                f"{check['trial_metric']:.6g} (difference {check['difference']:+.3g}) "
                f"{'ok' if check['ok'] else 'DIFFERS'}"
            )
            if not check["ok"]:
                failed.append(check)
    print(f"  load it: from trainables import load_exported; model, tokenizer = load_exported({str(out)!r})")
    for check in failed:
        print(
            f"rankbits export: error: the {check['model']} model's {record.metric_name} {check['metric']:.6g} differs "
            f"from the trial's {check['trial_metric']:.6g} beyond {check['tolerance_relative']:g} (relative); "
            f"the folder {str(out)!r} is kept with the check recorded in {export.EXPORT_FILE}",
            file=sys.stderr,
        )
    return 1 if failed else 0
