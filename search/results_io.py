"""The results folder of a grid or search: check it against the experiment, write the summary files.

The folder's layout, its trial files and how a trial is read back from Tune's folder belong to
`trainables.results_folder` (shared with `analysis.results`); this module writes what a run produces:
experiment.json (`write_spec`), experiment_summary.csv and all_results.json (`write_summary`).

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

from trainables.columns import COLUMNS, summary_columns
from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.records import flatten
from trainables.result import TrialResult
from trainables.results_folder import (  # the folder's format: one owner, shared with analysis
    ALL_RESULTS_FILE,
    INTERRUPTED_FILE,
    SPEC_FILE,
    SUMMARY_FILE,
    TUNE_DIR,
    atomic_write_json,
    atomic_write_text,
    collect,
    next_tune_dir,
    tune_dir,
    tune_dirs,
)

__all__ = [
    "INTERRUPTED_FILE",
    "SPEC_FILE",
    "TUNE_DIR",
    "collect",
    "next_tune_dir",
    "tune_dir",
    "tune_dirs",
]


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
    if old is not None:  # settings recorded only since a later version are compared only where recorded
        spec = {k: v for k, v in spec.items() if k not in ADDED_LATER or k in old}
    same = old is not None and _comparable(old) == _comparable(spec)
    if same and not overwrite:
        return True
    if not overwrite:
        diff = _first_difference(old or {}, spec)
        raise ConfigError(
            f"results folder {str(root)!r} already holds a different experiment ({diff}); use another --name, "
            "--resume with the same settings, or --overwrite to move the old one aside"
        )
    aside = move_aside(root)
    print(f"moved the earlier experiment aside to {aside}")
    return False


def move_aside(folder: Path) -> Path:
    """Rename `folder` to `<folder>.old-<time>` beside it (what `--overwrite` does: nothing is deleted); returns
    the new path."""
    aside = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(str(folder), str(aside))
    return aside


NOT_COMPARED = ("created", "resumed", "ray_address", "trials", "reeval_seeds")
"""experiment.json keys a rerun may change (`trials`: a Pareto search may be extended; `reeval_seeds`: its front
re-evaluated on more seeds)."""


ADDED_LATER = ("harness", "reeval_seeds", "guided", "data_dir")
"""experiment.json keys that older folders lack: a rerun of such a folder is not refused for them."""


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    """The settings two runs must share. A grid's `models` is compared for its own `tasks` only: a folder written
    before a task was registered (or one recording every registered task's model) still resumes."""
    out = {k: v for k, v in spec.items() if k not in NOT_COMPARED}
    if isinstance(out.get("models"), dict) and isinstance(out.get("tasks"), list):
        out["models"] = {t: m for t, m in out["models"].items() if t in out["tasks"]}
    return out


def _first_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    old, new = _comparable(old), _comparable(new)
    for key in sorted(set(old) | set(new)):
        if key in NOT_COMPARED:
            continue
        if old.get(key) != new.get(key):
            return f"{key}: was {old.get(key)!r}, now {new.get(key)!r}"
    return "unreadable experiment.json"


def write_spec(root: Path, spec: dict[str, Any]) -> None:
    atomic_write_json(root / SPEC_FILE, {**spec, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})


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
    atomic_write_text(root / SUMMARY_FILE, csv_text(table))
    atomic_write_json(root / ALL_RESULTS_FILE, entries)
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
