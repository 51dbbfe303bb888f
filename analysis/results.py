"""Results folder(s) -> one tidy DataFrame, one row per trial, with explicit dtypes.

A results folder (`results/<name>/`, written by the grid and Pareto searches) holds:

- `experiment.json`: `{"kind": "grid" | "pareto", "name": ..., ...}`
- `experiment_summary.csv`: one row per trial, columns `trainables.records.SUMMARY_COLUMNS`
- `all_results.json`: `[{"trial_id", "config": TrialConfig.to_dict(), "result": TrialResult.to_dict()}, ...]`
- `tune/<trial_dir>/result.json` (JSON lines, one per `tune.report`) and `params.json` (`{"trial": {...}}`)

Trials are merged by `trial_id` from all three, the summary first, then `all_results.json`, then Tune's
folder; so a folder whose summary was written before the run ended (or never) still yields every trial Tune
knows about. If the summary's ids and Tune's ids share nothing, the source with more trials is used alone
(with a warning).

A trial read from Tune's folder gets its status from its last reported row:

- `failed` / `infeasible` / `stopped` / `diverged` as reported;
- `completed` only if that row is a final one: it has a task metric (accuracy or perplexity) and, when the
  trial's `params.json` fixes the number of steps (`training.max_steps`, no `epochs`), `steps` reached it;
- otherwise the trial reported intermediate rows only (stopped early by ASHA, or interrupted): `stopped`, or
  `failed` with the first line of Tune's `error.txt` when the trial dir has one.

Trial order (`trial_number`, 0-based within each source) follows Tune's trial counter (the `_00007` suffix of
Tune trial ids) when every trial id has one, else the summary's row order followed by Tune-only trials by
first report.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.records import SUMMARY_COLUMNS, flatten, lora_strategy, quantization_label
from trainables.result import TrialResult, TrialStatus

STATUSES = tuple(s.value for s in TrialStatus)
STATUS_DTYPE = pd.CategoricalDtype(list(STATUSES))
"""Unordered categorical; `df.status == "completed"` keeps the trials that count on a front."""

GRID_CONFIG_IDS = ("B-FP", "B-Q4", "B-Ada", "Joint-1", "Joint-2", "Joint-3")

SUMMARY_FILE = "experiment_summary.csv"
ALL_RESULTS_FILE = "all_results.json"
EXPERIMENT_FILE = "experiment.json"
TUNE_DIR = "tune"

STRING_COLUMNS = (
    "source",
    "kind",
    "origin",
    "trial_id",
    "config_id",
    "task",
    "model",
    "method",
    "quantization",
    "lora_strategy",
    "error",
    "bits_per_layer",
    "ranks_per_layer",
    "device",
    "memory_measure",
    "data_note",
    "perplexity_convention",
    "compute_dtype",
    "gradient_checkpointing",
)
"""pandas `string` dtype; missing values are empty strings."""
INT_COLUMNS = (
    "trial_number",
    "seed",
    "trainable_params",
    "total_params",
    "steps",
    "total_rank",
    "initial_total_rank",
    "batch_size",
    "seq_len",
    "n_layers",
    "tune_iterations",
    "num_classes",
)
"""Nullable `Int64`."""
FLOAT_COLUMNS = (
    "accuracy",
    "perplexity",
    "macro_f1",
    "eval_loss",
    "trainable_pct",
    "peak_memory_mb",
    "peak_load_memory_mb",
    "weight_memory_mb",
    "adapter_memory_mb",
    "predicted_peak_mb",
    "train_time_s",
    "tokens_per_s",
    "mean_bits",
    "lr",
)
"""`float64`, NaN when missing."""

LEADING_COLUMNS = ["source", "kind", "trial_number"]
TRAILING_COLUMNS = ["n_layers", "origin", "tune_iterations"]
COLUMNS = LEADING_COLUMNS + [c for c in SUMMARY_COLUMNS if c not in LEADING_COLUMNS] + TRAILING_COLUMNS
"""Column order of `load_results` frames: source, kind, trial_number, the summary columns, then extras."""

_TUNE_ID = re.compile(r"(?:^|_)([0-9a-f]{5}_\d{5}|[0-9a-f]{8})(?:_|$)")
"""Tune trial ids: `3c5e2_00007` (grid: Tune's variant generator) or `24927d09` (searches: `Trial.generate_id`)."""
_COUNTER = re.compile(r"_(\d+)$")
_METRICS = ("accuracy", "perplexity")


def load_results(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """One tidy frame for one results folder or several (stacked, told apart by the `source` column).

    Columns (see `COLUMNS`): `source` (folder name), `kind` (grid / pareto from experiment.json, else
    unknown), `trial_number`, every summary column (`status` is a categorical of completed / failed / stopped
    / infeasible / diverged; `bits_per_layer` like "8,4,4,4,4,8", `ranks_per_layer` like "4,4,8,8" or "3.5,4.25",
    `mean_bits` bits per weight, `total_rank`), `n_layers`, `origin` (summary / all_results / tune: where the
    row came from) and `tune_iterations` (reports Tune logged for the trial). Raises `ConfigError` for a
    missing or empty folder.
    """
    paths = [Path(path)] if isinstance(path, str | os.PathLike) else [Path(p) for p in path]
    if not paths:
        raise ConfigError("results: no folder given; give one or more results/<name> folders")
    names = _source_names(paths)
    frames = [_load_folder(p, name) for p, name in zip(paths, names)]
    return apply_dtypes(pd.concat(frames, ignore_index=True))


def read_experiment(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The folder's `experiment.json` as a dict ({} when absent)."""
    file = Path(folder) / EXPERIMENT_FILE
    if not file.exists():
        return {}
    data = _read_json(file)
    if not isinstance(data, dict):
        raise ConfigError(f'{file}: expected a JSON object like {{"kind": "grid", "name": ...}}')
    return data


def apply_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """Cast raw records to the explicit dtypes above, in `COLUMNS` order (missing columns added)."""
    out = pd.DataFrame(index=df.index)
    for name in COLUMNS + [c for c in df.columns if c not in COLUMNS]:
        raw = df[name] if name in df.columns else pd.Series([None] * len(df), index=df.index, dtype=object)
        out[name] = _cast(name, raw)
    return out.reset_index(drop=True)


def per_layer(values: pd.Series) -> pd.DataFrame:
    """Comma-joined per-layer strings ("8,4,4,8") -> a float frame with one column per layer (0, 1, ...).

    Rows with fewer layers (or none) are padded with NaN; the index is kept.
    """
    rows = [_parse_layers(v) for v in values]
    width = max((len(r) for r in rows), default=0)
    data = [r + [math.nan] * (width - len(r)) for r in rows]
    return pd.DataFrame(data, index=values.index, columns=list(range(width)), dtype="float64")


# --- one folder ---------------------------------------------------------------------------------------------


def _load_folder(folder: Path, source: str) -> pd.DataFrame:
    if not folder.is_dir():
        raise ConfigError(
            f"results folder {str(folder)!r} does not exist; give a results/<name> folder holding "
            f"{SUMMARY_FILE} or {TUNE_DIR}/"
        )
    meta = read_experiment(folder)
    summary = _read_summary(folder / SUMMARY_FILE)
    all_results = _read_all_results(folder / ALL_RESULTS_FILE)
    tune = _read_tune(folder / TUNE_DIR)
    if summary is None and all_results is None and tune is None:
        raise ConfigError(
            f"results folder {str(folder)!r} holds no results; expected {SUMMARY_FILE}, "
            f"{ALL_RESULTS_FILE} or {TUNE_DIR}/<trial>/result.json"
        )
    records = _merge(folder, summary or [], all_results or [], tune or [])
    kind = str(meta.get("kind") or "unknown")
    for rec in records:
        rec["source"] = source
        rec["kind"] = kind
    _order(records)
    frame = pd.DataFrame.from_records(records, columns=COLUMNS) if records else pd.DataFrame(columns=COLUMNS)
    return _derive(apply_dtypes(frame))


def _merge(
    folder: Path, summary: list[dict[str, Any]], all_results: list[dict[str, Any]], tune: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Union by trial_id, earlier sources first; disjoint summary and Tune ids: the larger source alone."""
    summary_ids = {r["trial_id"] for r in summary + all_results if r.get("trial_id")}
    tune_ids = {r["trial_id"] for r in tune if r.get("trial_id")}
    if summary_ids and tune_ids and not summary_ids & tune_ids:
        use_tune = len(tune_ids) > len(summary_ids)
        warnings.warn(
            f"{folder}: trial ids in the summary files and in {TUNE_DIR}/ do not match; using "
            f"{'Tune' if use_tune else 'the summary'} ({max(len(tune_ids), len(summary_ids))} trials)",
            stacklevel=3,
        )
        layers = [tune] if use_tune else [summary, all_results]
    else:
        layers = [summary, all_results, tune]
    iterations = {r["trial_id"]: r.get("tune_iterations") for r in tune if r.get("trial_id")}
    for rec in summary + all_results:
        rec.setdefault("tune_iterations", iterations.get(rec.get("trial_id") or ""))
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for layer in layers:
        for rec in layer:
            tid = rec.get("trial_id") or ""
            if tid and tid in seen:
                continue
            seen.add(tid)
            out.append(rec)
    return out


def _order(records: list[dict[str, Any]]) -> None:
    """Sort in place by Tune's trial counter when every id has one, else keep summary order, then Tune's."""
    counters = [_COUNTER.search(str(r.get("trial_id") or "")) for r in records]
    if records and all(counters):
        keyed = sorted(zip(records, counters), key=lambda rc: int(rc[1].group(1)) if rc[1] else 0)
        records[:] = [r for r, _ in keyed]
    for number, rec in enumerate(records):
        rec["trial_number"] = number
        rec.pop("_start", None)


# --- the summary files --------------------------------------------------------------------------------------


def _read_summary(file: Path) -> list[dict[str, Any]] | None:
    if not file.exists():
        return None
    with file.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            return []
        if "trial_id" not in reader.fieldnames:
            raise ConfigError(
                f"{file}: no trial_id column; expected the columns of trainables.records.SUMMARY_COLUMNS"
            )
        rows = [{k: (v if v != "" else None) for k, v in row.items() if k is not None} for row in reader]
    for row in rows:
        row["origin"] = "summary"
        row["status"] = _summary_status(row)
    return rows


def _read_all_results(file: Path) -> list[dict[str, Any]] | None:
    if not file.exists():
        return None
    data = _read_json(file)
    if not isinstance(data, list):
        raise ConfigError(f"{file}: expected a JSON list of {{trial_id, config, result}} objects")
    rows = []
    for entry in data:
        if not isinstance(entry, dict):
            continue
        row = _flatten_entry(
            str(entry.get("trial_id") or ""), entry.get("config") or {}, entry.get("result") or {}
        )
        row["origin"] = "all_results"
        row["status"] = _summary_status(row)
        rows.append(row)
    return rows


def _flatten_entry(trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """`records.flatten` of a stored entry; a config this version cannot rebuild: the result's own fields."""
    try:
        return flatten(trial_id, TrialConfig.from_dict(config), TrialResult.from_dict(result))
    except (ConfigError, TypeError, ValueError, KeyError, AttributeError):
        row = {c: result.get(c) for c in SUMMARY_COLUMNS if c in result}
        row["trial_id"] = trial_id
        return row


def _summary_status(row: dict[str, Any]) -> str:
    status = str(row.get("status") or "").strip().lower()
    if status in STATUSES:
        return status
    return _tune_status(row, None, None)


# --- Tune's folder ------------------------------------------------------------------------------------------


def _read_tune(tune_dir: Path) -> list[dict[str, Any]] | None:
    if not tune_dir.is_dir():
        return None
    patterns = ("*/result.json", "*/params.json", "*/*/result.json", "*/*/params.json")
    trial_dirs = sorted({p.parent for pattern in patterns for p in tune_dir.glob(pattern)})
    rows = [_read_tune_trial(d) for d in trial_dirs]
    rows.sort(key=lambda r: (r["_start"], r["trial_id"] or ""))
    return rows


def _read_tune_trial(trial_dir: Path) -> dict[str, Any]:
    reports = _json_lines(trial_dir / "result.json")
    params = _read_params(trial_dir / "params.json")
    cfg = _trial_config(params.get("trial"))
    last = reports[-1] if reports else {}
    row: dict[str, Any] = {c: last.get(c) for c in SUMMARY_COLUMNS}
    row["trial_id"] = trial_id_of(trial_dir)
    if cfg is not None:
        _fill_from_config(row, cfg)
    error_text = _error_line(trial_dir / "error.txt")
    planned = cfg.training.max_steps if cfg is not None and cfg.training.epochs is None else None
    row["status"] = _tune_status(row, planned, error_text)
    if row["status"] == "failed" and not row.get("error") and error_text:
        row["error"] = error_text
    row["origin"] = "tune"
    row["tune_iterations"] = last.get("training_iteration", len(reports) if reports else None)
    start = reports[0].get("timestamp") if reports else None
    row["_start"] = float(start) if isinstance(start, int | float) else math.inf
    return row


def _tune_status(row: dict[str, Any], planned_steps: int | None, error_text: str | None) -> str:
    status = str(row.get("status") or "").strip().lower()
    if status in STATUSES and status != "completed":
        return status
    has_metric = any(_number(row.get(m)) is not None for m in _METRICS)
    steps = _number(row.get("steps"))
    reached = planned_steps is None or steps is None or steps >= planned_steps
    if status == "completed" and has_metric and reached:
        return "completed"
    return "failed" if error_text else "stopped"


def _fill_from_config(row: dict[str, Any], cfg: TrialConfig) -> None:
    """Config fields for trials whose reports lack them (no report at all, or intermediate rows only)."""
    q = cfg.quantization
    planned = {
        "config_id": cfg.config_id or "",
        "task": cfg.task.name,
        "model": cfg.model.name,
        "seed": cfg.training.seed,
        "method": cfg.adapter.method,
        "quantization": quantization_label(sorted({q.default_bits, *q.layer_bits.values()}, reverse=True)),
        "lora_strategy": lora_strategy(cfg),
        "lr": cfg.training.lr,
        "batch_size": cfg.training.batch_size,
        "seq_len": cfg.training.seq_len,
    }
    for key, value in planned.items():
        if row.get(key) is None or (key != "config_id" and row.get(key) == ""):
            row[key] = value


def _trial_config(data: Any) -> TrialConfig | None:
    if not isinstance(data, dict):
        return None
    try:
        return TrialConfig.from_dict(data)
    except (ConfigError, TypeError, ValueError):
        return None


def _read_params(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _json_lines(file: Path) -> list[dict[str, Any]]:
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


def trial_id_of(trial_dir: str | os.PathLike[str]) -> str:
    """The Tune trial id of a Tune trial folder: the `trial_id` its reports carry (Tune's `result.json`), else
    the id in the folder's name: `3c5e2_00007` from `B-FP-sst2-s0_3c5e2_00007` (rankbits' grid names),
    `24927d09` from `trial-sst2-s3_24927d09` (search trials) or `fit_trial_3c5e2_00007_7_lr=0.001,...` (Tune's
    default); the whole name when it holds none. The one
    derivation `load_results` and `search.results_io` share, so a trial that died before its first report is
    one trial to both."""
    folder = Path(trial_dir)
    for report in _json_lines(folder / "result.json"):
        if report.get("trial_id"):
            return str(report["trial_id"])
    match = _TUNE_ID.search(folder.name)
    return match.group(1) if match else folder.name


def _error_line(file: Path) -> str | None:
    try:
        lines = [line.strip() for line in file.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return None
    text = next((line for line in reversed(lines) if line), None)  # a traceback's last line names the error
    return text[:300] if text else None


# --- dtypes -------------------------------------------------------------------------------------------------


def _cast(name: str, raw: pd.Series) -> pd.Series:
    if name == "status":
        text = raw.map(lambda v: str(v).strip().lower() if _present(v) else None)
        return text.where(text.isin(STATUSES), None).astype(STATUS_DTYPE)
    if name in ("bits_per_layer", "ranks_per_layer"):
        return raw.map(_format_layers).astype("string")
    if name in STRING_COLUMNS:
        return raw.map(lambda v: str(v) if _present(v) else "").astype("string")
    if name in INT_COLUMNS:
        return pd.to_numeric(raw.map(_number), errors="coerce").round().astype("Int64")
    if name in FLOAT_COLUMNS:
        return pd.to_numeric(raw.map(_number), errors="coerce").astype("float64")
    numbers = raw.map(_number)
    if numbers.notna().sum() == raw.map(_present).sum():
        return pd.to_numeric(numbers, errors="coerce").astype("float64")
    return raw.map(lambda v: str(v) if _present(v) else "").astype("string")


def _present(value: Any) -> bool:
    if value is None or value is pd.NA:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (isinstance(value, str) and value.strip() == "")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not _present(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _parse_layers(value: Any) -> list[float]:
    if isinstance(value, list | tuple):
        parts: Iterable[Any] = value
    elif _present(value):
        parts = str(value).strip("[]() ").split(",")
    else:
        return []
    out = []
    for part in parts:
        number = _number(part.strip() if isinstance(part, str) else part)
        out.append(math.nan if number is None else number)
    return out


def _format_layers(value: Any) -> str:
    """Lists or strings -> "8,4,4,8" / "3.5,4.25" (the `records` format); unparsable text is kept as is."""
    numbers = _parse_layers(value)
    if any(math.isnan(n) for n in numbers):
        return str(value).strip()
    return ",".join(f"{n:g}" for n in numbers)


def _derive(df: pd.DataFrame) -> pd.DataFrame:
    """Derived per-layer columns: `n_layers`, and `mean_bits` where missing.

    The fallback is the plain mean of the nominal bits, which leaves out 4-bit layers' quantization constants;
    the summary's weight-weighted value is kept when present.
    """
    out = df.copy()
    bits = per_layer(out["bits_per_layer"])
    counts = bits.notna().sum(axis=1).astype("Int64")
    ranks = per_layer(out["ranks_per_layer"]).notna().sum(axis=1).astype("Int64")
    out["n_layers"] = counts.where(counts > 0, ranks).where(lambda s: s > 0, pd.NA).astype("Int64")
    if len(bits.columns):
        out["mean_bits"] = out["mean_bits"].fillna(bits.mean(axis=1))
    return out


def _source_names(paths: list[Path]) -> list[str]:
    names = [p.resolve().name or str(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{file}: not valid JSON ({exc})") from None
