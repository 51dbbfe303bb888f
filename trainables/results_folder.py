"""The results folder's format, in one place: its file names, atomic writes, the trial files and how a trial folder
of Ray Tune is read back (its trial id, its status, its config). Writers (`search`) and readers (`search`, `analysis`)
both go through this module, so every part of rankbits sees the same trials with the same ids.

results/<name>/
  experiment.json          what was asked for (kind, configs, tasks, seeds, steps, harness, ...): a rerun must match
  experiment_summary.csv   one row per trial (the summary columns of trainables.columns)
  all_results.json         [{"trial_id", "config": TrialConfig.to_dict(), "result": TrialResult.to_dict()}, ...]
  tune/, tune-2/, ...      Ray Tune's experiment folders (`tune_dirs`): later extensions of a Pareto search get
                           their own; `tune.incomplete-*` holds a run that died before Tune saved its state
    <trial folder>/        one per trial (Tune names it; rankbits' are `<config>-<task>-s<seed>_<trial id>`):
      params.json          Tune's config of the trial: {"cell": {"trial": ...}} (grid) or {"trial": ...} (searches)
      result.json          Tune's reports, one JSON object a line (progress rows, then the final flat record)
      error.txt            Tune's traceback of a trial that raised
      trial_result.json    rankbits' own record of a finished trial: {"trial_id", "started", "config", "result"}
      interrupted          left by the driver when Ctrl-C cut the trial short
      adapter/             the trained PEFT adapter
  tune-reeval/, ...        `pareto --reeval-seeds N`: the front's configs again on seeds seed+1..seed+N
  pareto.csv               Pareto search: the front of its runs (the search's own seed)
  pareto_means.csv         `--reeval-seeds`: the front on means over seeds, mean / std / n per objective
  screen.csv               `pareto --screen`: the zero-training evaluation of the screened candidates

`trial_result.json` is the source of truth for a trial that has one. A trial without it (killed, raised, stopped
early by a scheduler, interrupted) is rebuilt from Tune's files with one status rule (`tune_status`) and one id rule
(`trial_id_of`). All files are written atomically (`atomic_write_text`): a kill never leaves a half-written file.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from trainables.columns import planned_columns, summary_columns
from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.records import flatten
from trainables.result import TrialResult, TrialStatus

SPEC_FILE = "experiment.json"
SUMMARY_FILE = "experiment_summary.csv"
ALL_RESULTS_FILE = "all_results.json"
TUNE_DIR = "tune"
REEVAL_DIR = "tune-reeval"
"""`pareto --reeval-seeds`: the Tune experiment of the front's re-runs on further seeds (`tune-reeval-2`, ... when
a later run re-evaluates new front points); kept apart from the search's own `tune*/` folders."""
PARETO_FILE = "pareto.csv"
PARETO_MEANS_FILE = "pareto_means.csv"
"""`pareto --reeval-seeds`: the front on means over seeds, one row per configuration (`analysis.seeds`)."""
RESULT_FILE = "trial_result.json"
"""rankbits' record of a finished trial, in its Tune trial folder (and in a `rankbits run` output folder)."""
REPORTS_FILE = "result.json"
PARAMS_FILE = "params.json"
ERROR_FILE = "error.txt"
SCREEN_FILE = "screen.csv"
"""`rankbits pareto --screen`'s candidates, one row each: their zero-training scores (`trainables.screen`)."""
INTERRUPTED_FILE = "interrupted"
"""Left in a trial folder by the driver when Ctrl-C cut the trial short (search.tuner.fit_tuner)."""

SECRET_KEYS = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
"""Environment variables whose values never reach a results file (replaced by `***`)."""

_TUNE_ID = re.compile(r"(?:^|_)([0-9a-f]{5}_\d{5}|[0-9a-f]{8})(?:_|$)")
"""Tune trial ids: `3c5e2_00007` (grid: Tune's variant generator) or `24927d09` (searches: `Trial.generate_id`)."""
_METRICS = ("accuracy", "perplexity")
STATUSES = tuple(s.value for s in TrialStatus)


# --- writing ------------------------------------------------------------------------------------------------


def secret_values() -> list[str]:
    return [v for k in SECRET_KEYS if (v := os.environ.get(k)) and len(v) >= 4]


def redact(text: str) -> str:
    """`text` with the values of `SECRET_KEYS` set in the environment replaced by `***`."""
    for value in secret_values():
        text = text.replace(value, "***")
    return text


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename: a kill never leaves a half-written file.
    Secret values from the environment (.env tokens) are redacted. The file gets the mode a plain `open` would
    give it (0666 less the umask), not the temporary file's 0600."""
    text = redact(text)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str, allow_nan=True) + "\n")


def write_trial_file(
    trial_dir: str | Path, trial_id: str, cfg: TrialConfig, result: TrialResult, started: float
) -> None:
    """`trial_dir/trial_result.json`: the trial's id, start time (seconds since the epoch), config and result."""
    atomic_write_json(
        Path(trial_dir) / RESULT_FILE,
        {"trial_id": trial_id, "started": started, "config": cfg.to_dict(), "result": result.to_dict()},
    )


# --- reading one trial folder -------------------------------------------------------------------------------


def read_trial_file(trial_dir: str | Path) -> dict[str, Any] | None:
    """The trial's `trial_result.json` as a dict; None when it is missing or unreadable (a trial still running,
    or one that never finished)."""
    path = Path(trial_dir) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def json_lines(file: Path) -> list[dict[str, Any]]:
    """Tune's result.json: one JSON object a line; blank and broken lines (a write cut short) are skipped."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            rows.append(value)
    return rows


def trial_id_of(trial_dir: str | os.PathLike[str], reports: list[dict[str, Any]] | None = None) -> str:
    """The Tune trial id of a trial folder: the `trial_id` its reports carry (Tune's `result.json`), else the id in
    the folder's name: `3c5e2_00007` from `B-FP-sst2-s0_3c5e2_00007` (rankbits' grid names), `24927d09` from
    `trial-sst2-s3_24927d09` (search trials) or `fit_trial_3c5e2_00007_7_lr=0.001,...` (Tune's default); the whole
    name when it holds none. A trial that died before its first report gets the same id as it would with one."""
    folder = Path(trial_dir)
    for report in json_lines(folder / REPORTS_FILE) if reports is None else reports:
        if report.get("trial_id"):
            return str(report["trial_id"])
    match = _TUNE_ID.search(folder.name)
    return match.group(1) if match else folder.name


def read_params(trial_dir: str | Path) -> dict[str, Any]:
    """Tune's params.json of a trial folder ({} when missing or unreadable)."""
    try:
        params = json.loads((Path(trial_dir) / PARAMS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return params if isinstance(params, dict) else {}


def params_config(trial_dir: str | Path) -> TrialConfig | None:
    """The TrialConfig in Tune's params.json (`{"cell": {"trial": ...}}` or `{"trial": ...}`); None when the file
    is missing or holds no config this version can rebuild."""
    return config_of(read_params(trial_dir))


def config_of(tune_config: Any) -> TrialConfig | None:
    """The TrialConfig of a Tune config (`{"cell": {"trial": ...}}` or `{"trial": ...}`), None when it holds none
    this version can rebuild."""
    if not isinstance(tune_config, dict):
        return None
    cell = tune_config.get("cell") or tune_config
    data = cell.get("trial") if isinstance(cell, dict) else None
    if not isinstance(data, dict):
        return None
    try:
        return TrialConfig.from_dict(data)
    except (ConfigError, TypeError, ValueError, KeyError, AttributeError):
        return None


def error_line(trial_dir: str | Path) -> str | None:
    """The last line of Tune's error.txt (a traceback's last line names the error), at most 300 characters."""
    try:
        text = (Path(trial_dir) / ERROR_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    line = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), None)
    return line[:300] if line else "errored"


def tune_status(
    last: dict[str, Any], planned_steps: int | None, error: str | None, interrupted: bool = False
) -> str:
    """The status of a trial read from Tune's files alone (no trial_result.json), from its last report:

    - failed / infeasible / stopped / diverged / interrupted as reported;
    - completed only if that report is a final one: it has a task metric (accuracy or perplexity) and, when the
      config fixes the steps (`planned_steps`), `steps` reached them;
    - otherwise (intermediate reports only, or none): failed when Tune's error.txt exists, interrupted when the
      driver marked it, else stopped (a scheduler such as ASHA ended it)."""
    status = str(last.get("status") or "").strip().lower()
    if status in STATUSES and status != "completed":
        return status
    has_metric = any(_number(last.get(m)) is not None for m in _METRICS)
    steps = _number(last.get("steps"))
    reached = planned_steps is None or steps is None or steps >= planned_steps
    if status == "completed" and has_metric and reached:
        return "completed"
    if error:
        return "failed"
    return "interrupted" if interrupted else "stopped"


@dataclass
class TrialFolder:
    """One trial as its folder holds it.

    `entry`: {"trial_id", "config", "result"} as in all_results.json: `trial_result.json`, else rebuilt from Tune's
    files (None when params.json holds no readable config). `row`: the trial's flat record (`trainables.columns.summary_columns()`):
    `records.flatten` of `trial_result.json`, else Tune's last report with the config's fields filled in."""

    trial_id: str
    path: Path
    status: str
    started: float
    """Seconds since the epoch: recorded by the trainable, else Tune's first report, else the folder's mtime."""
    row: dict[str, Any]
    entry: dict[str, Any] | None
    from_trial_file: bool
    iterations: int | None
    """Reports Tune logged for the trial (`training_iteration` of the last one)."""
    reports: list[dict[str, Any]] = field(default_factory=list, repr=False)


def read_trial(trial_dir: str | Path) -> TrialFolder | None:
    """Read one Tune trial folder; None for a folder that holds no trial (no result file, no Tune report, no
    error and no interrupted mark: a trial that never started)."""
    folder = Path(trial_dir)
    reports = json_lines(folder / REPORTS_FILE)
    last = reports[-1] if reports else {}
    iterations = last.get("training_iteration", len(reports)) if reports else None
    done = read_trial_file(folder)
    if done is not None and isinstance(done.get("config"), dict) and isinstance(done.get("result"), dict):
        cfg = TrialConfig.from_dict(done["config"])
        result = TrialResult.from_dict(done["result"])
        trial_id = str(done.get("trial_id") or trial_id_of(folder, reports))
        entry = {"trial_id": trial_id, "config": done["config"], "result": done["result"]}
        started = float(done["started"]) if done.get("started") else _first_report_time(reports, folder)
        return TrialFolder(
            trial_id,
            folder,
            result.status.value,
            started,
            flatten(trial_id, cfg, result),
            entry,
            True,
            iterations,
            reports,
        )
    error = error_line(folder)
    interrupted = (folder / INTERRUPTED_FILE).is_file()
    if not reports and error is None and not interrupted:
        return None
    params = read_params(folder)
    cfg = config_of(params)
    cell = params.get("cell") if isinstance(params.get("cell"), dict) else params
    harness = cell.get("harness") or {}  # trainables.harness, as the trial ran
    trial_id = trial_id_of(folder, reports)
    planned = cfg.training.max_steps if cfg is not None and cfg.training.epochs is None else None
    status = tune_status(last, planned, error, interrupted)
    reason = _reason(status, last, error)
    row: dict[str, Any] = {c: last.get(c) for c in summary_columns()}
    row["trial_id"] = trial_id
    row["status"] = status
    if not row.get("error") and reason:
        row["error"] = reason
    entry = None
    if cfg is not None:
        result = _result_from_report(cfg, last, TrialStatus(status), reason)
        result.harness = dict(harness) if isinstance(harness, dict) else {}
        entry = {"trial_id": trial_id, "config": cfg.to_dict(), "result": result.to_dict()}
        planned_row = flatten(trial_id, cfg, result)
        for key in planned_columns():  # the columns the config alone fixes (`Column.planned`)
            if row.get(key) is None or (key != "config_id" and row.get(key) == ""):
                row[key] = planned_row[key]
    return TrialFolder(
        trial_id, folder, status, _first_report_time(reports, folder), row, entry, False, iterations, reports
    )


def _reason(status: str, last: dict[str, Any], error: str | None) -> str | None:
    if status == "failed":
        return error or last.get("error") or "failed"
    if status == "stopped":
        return f"stopped early at step {last.get('steps') or 0}"
    if status == "interrupted":
        return f"interrupted at step {last.get('steps') or 0}; rerun with --resume"
    return last.get("error") or None


_LIST_FIELDS = {
    f.name for f in fields(TrialResult) if str(f.type).startswith(("list", "dict")) or f.name == "versions"
}
_RESULT_FIELDS = (
    {f.name for f in fields(TrialResult)}
    - _LIST_FIELDS
    - {
        "status",
        "error",
        "task",
        "model",
        "config_id",
        "metric_name",
        "perplexity_convention",
    }
)
"""Scalar TrialResult fields read back from a report (`TrialResult.of` sets the trial's names itself)."""


def _result_from_report(
    cfg: TrialConfig, last: dict[str, Any], status: TrialStatus, reason: str | None
) -> TrialResult:
    """A TrialResult from Tune's last report: its scalar result fields, the per-layer lists parsed from the
    comma-joined columns; what the report lacks keeps the TrialResult default."""
    known = {k: last[k] for k in _RESULT_FIELDS if last.get(k) is not None}
    if last.get("train_loss") is not None:
        known.setdefault("final_train_loss", last["train_loss"])
    bits = _parse_ints(last.get("bits_per_layer"))
    ranks = _parse_floats(last.get("ranks_per_layer"))
    return TrialResult.of(
        cfg,
        status=status,
        error=reason,
        **known,
        **({"bits_per_layer": bits} if bits else {}),
        **({"ranks_per_layer": ranks} if ranks else {}),
    )


def _parse_floats(value: Any) -> list[float]:
    if not isinstance(value, str) or not value.strip():
        return list(value) if isinstance(value, list) else []
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        return []


def _parse_ints(value: Any) -> list[int]:
    numbers = _parse_floats(value)
    return [int(v) for v in numbers] if all(float(v).is_integer() for v in numbers) else []


def _first_report_time(reports: list[dict[str, Any]], folder: Path) -> float:
    for first in reports[:1]:
        try:
            return float(first["timestamp"]) - float(first.get("time_total_s") or 0.0)
        except (KeyError, TypeError, ValueError):
            break
    try:
        return folder.stat().st_mtime
    except OSError:
        return math.inf


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def entry_row(entry: dict[str, Any]) -> dict[str, Any]:
    """The flat record (`trainables.columns.summary_columns()`) of an all_results.json entry: `records.flatten`; for a config this
    version cannot rebuild, the result's own fields."""
    trial_id = str(entry.get("trial_id") or "")
    config, result = entry.get("config") or {}, entry.get("result") or {}
    try:
        return flatten(trial_id, TrialConfig.from_dict(config), TrialResult.from_dict(result))
    except (ConfigError, TypeError, ValueError, KeyError, AttributeError):
        row = {c: result.get(c) for c in summary_columns() if c in result}
        row["trial_id"] = trial_id
        return row


# --- the whole folder ---------------------------------------------------------------------------------------


def tune_dir(root: Path) -> Path:
    return Path(root) / TUNE_DIR


def tune_dirs(root: Path, reeval: bool = True) -> list[Path]:
    """Tune experiment folders in the order they were run: `tune.incomplete-*` (runs that died before Tune saved
    their state; their finished trials still count), `tune`, then `tune-2`, `tune-3`, ... (later extensions), then
    the re-evaluation runs of `pareto --reeval-seeds` (`reeval_dirs`; `reeval=False` leaves them out: the search's
    own trials only)."""
    root = Path(root)
    incomplete = sorted(root.glob(f"{TUNE_DIR}.incomplete-*"))
    extra = sorted(
        (p for p in root.glob(f"{TUNE_DIR}-*") if not is_reeval_dir(p)),
        key=lambda p: int(p.name.rsplit("-", 1)[-1]) if p.name.rsplit("-", 1)[-1].isdigit() else 0,
    )
    found = incomplete + [tune_dir(root)] + extra + (reeval_dirs(root) if reeval else [])
    return [p for p in found if p.is_dir()]


def next_tune_dir(root: Path) -> Path:
    """Where the next extension of a search writes its Tune experiment: `tune`, else `tune-<n+1>`."""
    dirs = [p for p in tune_dirs(root, reeval=False) if ".incomplete-" not in p.name]
    if not dirs:
        return tune_dir(root)
    return Path(root) / f"{TUNE_DIR}-{len(dirs) + 1}"


def is_reeval_dir(path: str | Path) -> bool:
    """Whether a folder holds re-evaluation trials (`REEVAL_DIR`, `tune-reeval-2`, `tune-reeval.incomplete-*`)."""
    name = Path(path).name
    return name == REEVAL_DIR or name.startswith((f"{REEVAL_DIR}-", f"{REEVAL_DIR}."))


def reeval_dirs(root: Path) -> list[Path]:
    """The re-evaluation Tune experiments in the order they were run: `tune-reeval.incomplete-*`, `tune-reeval`,
    `tune-reeval-2`, ..."""
    root = Path(root)
    incomplete = sorted(root.glob(f"{REEVAL_DIR}.incomplete-*"))
    runs = sorted(
        (
            p
            for p in root.glob(f"{REEVAL_DIR}*")
            if p.name == REEVAL_DIR or p.name[len(REEVAL_DIR) :][1:].isdigit()
        ),
        key=lambda p: int(p.name.rsplit("-", 1)[-1]) if p.name != REEVAL_DIR else 1,
    )
    return [p for p in incomplete + runs if p.is_dir()]


def next_reeval_dir(root: Path) -> Path:
    """Where the next re-evaluation run writes its Tune experiment: `tune-reeval`, else `tune-reeval-<n+1>`."""
    dirs = [p for p in reeval_dirs(root) if ".incomplete-" not in p.name]
    return Path(root) / (REEVAL_DIR if not dirs else f"{REEVAL_DIR}-{len(dirs) + 1}")


_MARKERS = (RESULT_FILE, REPORTS_FILE, PARAMS_FILE, ERROR_FILE)


def _trial_folders(base: Path) -> Iterator[Path]:
    """Folders of a Tune experiment folder that hold a trial (one of `_MARKERS`), one or two levels down."""
    for pattern in ("*", "*/*"):
        for path in sorted(base.glob(pattern)):
            if path.is_dir() and any((path / m).is_file() for m in _MARKERS):
                yield path


def trials(root: str | Path, reeval: bool = True) -> list[TrialFolder]:
    """Every trial of a results folder, one per trial id, in the order they started (seconds since the epoch;
    ties by folder name). A trial id seen in several Tune folders (a rerun after a crash) keeps its latest folder.
    `reeval=False`: without the re-evaluation runs (`reeval_dirs`)."""
    found: dict[str, TrialFolder] = {}
    for base in tune_dirs(Path(root), reeval):
        read = [t for t in map(read_trial, _trial_folders(base)) if t is not None]
        for trial in sorted(read, key=lambda t: (t.started, t.path.name)):
            found.pop(trial.trial_id, None)
            found[trial.trial_id] = trial
    return sorted(found.values(), key=lambda t: (t.started, t.path.name))


def collect(root: str | Path, reeval: bool = True) -> list[dict[str, Any]]:
    """Every trial of the experiment as {"trial_id", "config", "result"} (the all_results.json entries), one per
    trial id, in start order. Trials without trial_result.json are rebuilt from Tune's files (failed, stopped,
    interrupted: see `tune_status`); those whose params.json holds no readable config are left out.
    `reeval=False`: the search's own trials, without its re-evaluation runs (`reeval_dirs`)."""
    return [t.entry for t in trials(root, reeval) if t.entry is not None]
