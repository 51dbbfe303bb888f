"""The results folder of a grid or search: collect every trial from Tune's folder, write the summary files.

results/<name>/
  experiment.json          what was asked for (kind, configs, tasks, seeds, steps, ...): a rerun must match it
  experiment_summary.csv   one row per trial (the summary columns of trainables.columns)
  all_results.json         every trial's full config and result
  tune/                    Ray Tune's experiment folder (Tuner.restore, ExperimentAnalysis); one folder per trial
                           holding trial_result.json and the PEFT adapter

Summary files are rewritten atomically after every finished trial, so a kill never leaves a half-written file and
never loses a finished trial (each trial's own trial_result.json is the source of truth).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

from search.common import atomic_write_json, atomic_write_text
from trainables.columns import COLUMNS, summary_columns
from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.records import flatten
from trainables.result import TrialResult, TrialStatus
from trainables.trainable import read_trial_file

TUNE_DIR = "tune"
SPEC_FILE = "experiment.json"
INTERRUPTED_FILE = "interrupted"
"""Left in a trial folder by the driver when Ctrl-C cut the trial short (search.tuner.fit_tuner)."""


def tune_dir(root: Path) -> Path:
    return root / TUNE_DIR


def prepare_folder(root: Path, spec: dict[str, Any], resume: bool, overwrite: bool) -> bool:
    """Check the results folder against this experiment's spec. Returns True when an earlier run is continued.

    A folder holding a different experiment is refused unless --overwrite (which moves it aside, nothing is
    deleted); the same experiment is continued (also without --resume)."""
    spec_path = root / SPEC_FILE
    if not spec_path.exists():
        if resume:
            raise ConfigError(
                f"--resume: {str(root)!r} holds no experiment to resume; drop --resume to start one"
            )
        return False
    try:
        old = json.loads(spec_path.read_text())
    except (OSError, json.JSONDecodeError):
        old = None
    same = old is not None and _comparable(old) == _comparable(spec)
    if same and not overwrite:
        return True
    if not overwrite:
        diff = _first_difference(old or {}, spec)
        raise ConfigError(
            f"results folder {str(root)!r} already holds a different experiment ({diff}); use another --name, "
            "--resume with the same settings, or --overwrite to move the old one aside"
        )
    aside = root.with_name(f"{root.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(str(root), str(aside))
    print(f"moved the earlier experiment aside to {aside}")
    return False


NOT_COMPARED = ("created", "resumed", "ray_address", "trials")
"""experiment.json keys a rerun may change (`trials`: a Pareto search may be extended)."""


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in NOT_COMPARED}


def _first_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    for key in sorted(set(old) | set(new)):
        if key in NOT_COMPARED:
            continue
        if old.get(key) != new.get(key):
            return f"{key}: was {old.get(key)!r}, now {new.get(key)!r}"
    return "unreadable experiment.json"


def write_spec(root: Path, spec: dict[str, Any]) -> None:
    atomic_write_json(root / SPEC_FILE, {**spec, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})


def _trial_number(name: str) -> int:
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _started(trial_dir: Path) -> float:
    """When the trial started: recorded by the trainable, else Tune's first report, else the folder's time."""
    entry = read_trial_file(trial_dir)
    if entry is not None and entry.get("started"):
        return float(entry["started"])
    path = trial_dir / "result.json"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                first = json.loads(line)
                return float(first["timestamp"]) - float(first.get("time_total_s") or 0.0)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                break
    return trial_dir.stat().st_mtime


def _start_order(trial_dir: Path) -> tuple[float, int, str]:
    """Trials in the order they started."""
    return (_started(trial_dir), _trial_number(trial_dir.name), trial_dir.name)


def tune_dirs(root: Path) -> list[Path]:
    """Tune experiment folders in the order they were run: `tune.incomplete-*` (runs that died before Tune saved
    their state; their finished trials still count), `tune`, then `tune-2`, `tune-3`, ... (later extensions)."""
    incomplete = sorted(root.glob(f"{TUNE_DIR}.incomplete-*"))
    extra = sorted(
        root.glob(f"{TUNE_DIR}-*"),
        key=lambda p: int(p.name.rsplit("-", 1)[-1]) if p.name.rsplit("-", 1)[-1].isdigit() else 0,
    )
    return [p for p in incomplete + [tune_dir(root)] + extra if p.is_dir()]


def next_tune_dir(root: Path) -> Path:
    dirs = [p for p in tune_dirs(root) if ".incomplete-" not in p.name]
    if not dirs:
        return tune_dir(root)
    return root / f"{TUNE_DIR}-{len(dirs) + 1}"


def collect(root: Path) -> list[dict[str, Any]]:
    """Every trial of the experiment as {"trial_id", "config", "result"}, one entry per trial id.

    Trials that crashed without writing their result file (killed process, Ray error) are taken from Tune's
    params.json and error file, with status failed."""
    found: dict[str, dict[str, Any]] = {}
    for base in tune_dirs(root):
        for trial_dir in sorted((p for p in base.iterdir() if p.is_dir()), key=_start_order):
            entry = read_trial_file(trial_dir)
            if entry is None:
                entry = _from_tune_files(trial_dir)
            if entry is None:
                continue
            found[entry["trial_id"]] = entry
    return list(found.values())


def _from_tune_files(trial_dir: Path) -> dict[str, Any] | None:
    """An entry for a trial without trial_result.json: failed (Tune's error file says why), or stopped early
    (its last report was an intermediate one: a scheduler such as ASHA ended it)."""
    error_file = trial_dir / "error.txt"
    params = trial_dir / "params.json"
    if not params.is_file():
        return None
    last = _last_report(trial_dir)
    if not error_file.is_file():
        if (trial_dir / INTERRUPTED_FILE).is_file():
            return _stopped_entry(trial_dir, params, last or {}, TrialStatus.INTERRUPTED)
        if last is None or last.get("status") != "running":
            return None
        return _stopped_entry(trial_dir, params, last)
    try:
        config = json.loads(params.read_text())
        from trainables.trainable import trial_config

        cfg = trial_config(config.get("cell") or config)
    except Exception:  # noqa: BLE001 - an unreadable trial is skipped, not fatal
        return None
    lines = [ln.strip() for ln in error_file.read_text(errors="replace").splitlines() if ln.strip()]
    reason = lines[-1][:300] if lines else "errored"
    trial_id = _trial_id_from_dir(trial_dir)
    result = TrialResult(
        status=TrialStatus.FAILED,
        error=reason,
        task=cfg.task.name,
        model=cfg.model.name,
        config_id=cfg.config_id,
    )
    return {"trial_id": trial_id, "config": cfg.to_dict(), "result": result.to_dict()}


def _last_report(trial_dir: Path) -> dict[str, Any] | None:
    path = trial_dir / "result.json"
    if not path.is_file():
        return None
    last = None
    for line in path.read_text().splitlines():
        try:
            last = json.loads(line)
        except json.JSONDecodeError:
            continue
    return last


def _stopped_entry(
    trial_dir: Path, params: Path, last: dict[str, Any], status: TrialStatus = TrialStatus.STOPPED
) -> dict[str, Any] | None:
    try:
        from trainables.trainable import trial_config

        cfg = trial_config(json.loads(params.read_text()).get("cell") or json.loads(params.read_text()))
    except Exception:  # noqa: BLE001 - an unreadable trial is skipped, not fatal
        return None
    result = TrialResult.of(
        cfg,
        status=status,
        error=(
            f"stopped early at step {last.get('steps')}"
            if status is TrialStatus.STOPPED
            else f"interrupted at step {last.get('steps') or 0}; rerun with --resume"
        ),
        accuracy=last.get("accuracy"),
        perplexity=last.get("perplexity"),
        steps=int(last.get("steps") or 0),
        final_train_loss=last.get("train_loss"),
    )
    return {
        "trial_id": str(last.get("trial_id") or _trial_id_from_dir(trial_dir)),
        "config": cfg.to_dict(),
        "result": result.to_dict(),
    }


def _trial_id_from_dir(trial_dir: Path) -> str:
    from analysis.results import trial_id_of  # the one derivation, shared with load_results

    return trial_id_of(trial_dir)


def rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        flatten(e["trial_id"], TrialConfig.from_dict(e["config"]), TrialResult.from_dict(e["result"]))
        for e in entries
    ]


def csv_text(table: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns or summary_columns(), extrasaction="ignore")
    writer.writeheader()
    for row in table:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def write_summary(root: Path, order: list[str] | None = None) -> list[dict[str, Any]]:
    """Regenerate experiment_summary.csv and all_results.json from the trial folders (atomically)."""
    entries = collect(root)
    table = rows(entries)
    if order:
        rank = {key: i for i, key in enumerate(order)}
        paired = sorted(zip(table, entries), key=lambda te: rank.get(_cell_key(te[0]), len(rank)))
        table = [t for t, _ in paired]
        entries = [e for _, e in paired]
    atomic_write_text(root / "experiment_summary.csv", csv_text(table))
    atomic_write_json(root / "all_results.json", entries)
    return table


def _cell_key(row: dict[str, Any]) -> str:
    return f"{row['config_id']}|{row['task']}|{row['seed']}"


def cell_key(config_id: str, task: str, seed: int) -> str:
    return f"{config_id}|{task}|{seed}"


def table_text(table: list[dict[str, Any]]) -> str:
    """The summary as an aligned text table for the terminal."""
    shown = [c for c in COLUMNS if c.short is not None]  # `Column.short`: the terminal heading
    heads = [str(c.short) for c in shown]

    def fmt(v: Any, digits: int | None) -> str:
        if v is None or v == "":
            return "-"
        if isinstance(v, float):
            if digits is not None:  # `Column.digits`
                return f"{v:.{digits}f}"
            return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    cells = [[fmt(r.get(c.name), c.digits) for c in shown] for r in table]
    widths = [max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
