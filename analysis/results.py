"""Results folder(s) -> one tidy DataFrame, one row per trial, with explicit dtypes.

A results folder (`results/<name>/`, written by the grid and Pareto searches) holds:

- `experiment.json`: `{"kind": "grid" | "pareto", "name": ..., ...}`
- `experiment_summary.csv`: one row per trial, the summary columns of `trainables.columns`
- `all_results.json`: `[{"trial_id", "config": TrialConfig.to_dict(), "result": TrialResult.to_dict()}, ...]`
- `tune/`, `tune-2/`, ... (`trainables.results_folder.tune_dirs`): Ray Tune's trial folders

Trials are merged by `trial_id` from all three, the summary first, then `all_results.json`, then Tune's
folders; so a folder whose summary was written before the run ended (or never) still yields every trial Tune
knows about. If the summary's ids and Tune's ids share nothing, the source with more trials is used alone
(with a warning).

Tune's folders are read by `trainables.results_folder.trials`, the reader the searches use for their summary
files: the same trial ids (`trial_id_of`) and, for a trial without `trial_result.json`, the same status rule
(`tune_status`: completed only from a final report; failed with Tune's error.txt; interrupted when Ctrl-C
marked it; else stopped).

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

from trainables import results_folder
from trainables.columns import LiveMap, dtypes, frame_columns, names_of, summary_columns
from trainables.errors import ConfigError
from trainables.result import TrialStatus
from trainables.results_folder import ALL_RESULTS_FILE, SPEC_FILE, SUMMARY_FILE, TUNE_DIR

STATUSES = tuple(s.value for s in TrialStatus)
STATUS_DTYPE = pd.CategoricalDtype(list(STATUSES))
"""Unordered categorical; `df.status == "completed"` keeps the trials that count on a front."""

GRID_CONFIG_IDS = ("B-FP", "B-Q4", "B-Ada", "Joint-1", "Joint-2", "Joint-3")

EXPERIMENT_FILE = SPEC_FILE

# Column names and dtypes come from the result-column table (`trainables.columns`), read at import; a column
# registered later is typed through `_cast`, which reads the table itself.
STRING_COLUMNS = names_of("string") + names_of("layers")
"""pandas `string` dtype; missing values are empty strings (`layers`: "8,4,4,8")."""
INT_COLUMNS = names_of("Int64")
"""Nullable `Int64`."""
FLOAT_COLUMNS = names_of("float64")
"""`float64`, NaN when missing."""
SUMMARY_COLUMNS = summary_columns()
COLUMNS = frame_columns()
"""Column order of `load_results` frames: source, kind, trial_number, the summary columns, then extras."""
DTYPE_OF = LiveMap(dtypes)
"""{column: `trainables.columns.DTYPES` kind}, read live."""

_COUNTER = re.compile(r"_(\d+)$")


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
    columns = frame_columns()
    for name in columns + [c for c in df.columns if c not in columns]:
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
    tune = _read_tune(folder)
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
    columns = frame_columns()
    frame = pd.DataFrame.from_records(records, columns=columns) if records else pd.DataFrame(columns=columns)
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
    _fill_newer_columns(out, [r for layer in layers[1:] for r in layer])
    return out


def _fill_newer_columns(records: list[dict[str, Any]], later: list[dict[str, Any]]) -> None:
    """A summary written before a column existed (its header lacks it, e.g. `config_key`) gets that column from
    the same trial's all_results.json or Tune record, which are rebuilt from the trial's config by this version.
    Values the summary does hold are never replaced."""
    by_id: dict[str, dict[str, Any]] = {}
    for rec in later:
        by_id.setdefault(str(rec.get("trial_id") or ""), rec)
    for rec in records:
        if rec.get("origin") != "summary":
            continue
        other = by_id.get(str(rec.get("trial_id") or ""))
        if other is None:
            continue
        for name in summary_columns():
            if name not in rec and other.get(name) is not None:
                rec[name] = other[name]


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
                f"{file}: no trial_id column; expected the summary columns of trainables.columns"
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
        row = results_folder.entry_row(entry)
        row["origin"] = "all_results"
        row["status"] = _summary_status(row)
        rows.append(row)
    return rows


def _summary_status(row: dict[str, Any]) -> str:
    status = str(row.get("status") or "").strip().lower()
    if status in STATUSES:
        return status
    return results_folder.tune_status(row, None, None)


# --- Tune's folder ------------------------------------------------------------------------------------------


def _read_tune(folder: Path) -> list[dict[str, Any]] | None:
    """One row per trial of the folder's Tune experiments (`trainables.results_folder.trials`: the same trials,
    ids and statuses as the summary files the searches write)."""
    if not results_folder.tune_dirs(folder):
        return None
    rows = []
    for trial in results_folder.trials(folder):
        row = dict(trial.row)
        row["origin"] = "tune"
        row["tune_iterations"] = trial.iterations
        rows.append(row)
    return rows


def trial_id_of(trial_dir: str | os.PathLike[str]) -> str:
    """The Tune trial id of a trial folder (`trainables.results_folder.trial_id_of`)."""
    return results_folder.trial_id_of(trial_dir)


# --- dtypes -------------------------------------------------------------------------------------------------


def _cast(name: str, raw: pd.Series) -> pd.Series:
    if name == "status":
        text = raw.map(lambda v: str(v).strip().lower() if _present(v) else None)
        return text.where(text.isin(STATUSES), None).astype(STATUS_DTYPE)
    kind = DTYPE_OF.get(name)
    if kind == "layers":
        return raw.map(_format_layers).astype("string")
    if kind == "string":
        return raw.map(lambda v: str(v) if _present(v) else "").astype("string")
    if kind == "Int64":
        return pd.to_numeric(raw.map(_number), errors="coerce").round().astype("Int64")
    if kind == "float64":
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
