"""Pareto fronts of results frames, vectorized and direction-aware (after Optuna's
`study/_multi_objective.py`).

Every objective is first turned into a loss (a `max` column is negated), then the front is computed on the
loss matrix. A trial is on the front when no other eligible trial is at least as good in every objective and
strictly better in one: exact duplicates of a front point are all on the front, a tie in one objective is
broken by the others. Eligible trials are those with status `completed` and a value (not NaN) for every
objective; failed, stopped (partial metrics) and infeasible trials never enter a front.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis.objectives import validate_objectives


def losses(df: pd.DataFrame, objectives: Mapping[str, str]) -> np.ndarray:
    """An (n_rows, n_objectives) float array, smaller is better in every column; NaN for missing values."""
    objectives = validate_objectives(objectives, df, require_values=False)
    columns = [
        pd.to_numeric(df[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        for name in objectives
    ]
    signs = np.array([-1.0 if d == "max" else 1.0 for d in objectives.values()])
    if not columns:
        return np.empty((len(df), 0))
    return np.column_stack(columns) * signs


def eligible(df: pd.DataFrame, objectives: Mapping[str, str]) -> pd.Series:
    """Boolean mask of the rows that may be on a front: completed (when there is a status column), no NaN."""
    ok = ~np.isnan(losses(df, objectives)).any(axis=1)
    if "status" in df.columns:
        ok &= (df["status"].astype("string") == "completed").fillna(False).to_numpy(dtype=bool)
    return pd.Series(ok, index=df.index, dtype=bool)


def is_pareto_optimal(loss_values: np.ndarray) -> np.ndarray:
    """Mask of the non-dominated rows of a loss matrix (minimization); rows with NaN are never optimal.

    Works on the lexicographically sorted unique rows (so duplicates share one verdict): in 2-D a running
    minimum of the second loss, in n-D one pass per front member that drops every row it weakly dominates.
    """
    values = np.asarray(loss_values, dtype="float64")
    if values.ndim != 2:
        raise ValueError(f"loss values must be a 2-D array (rows, objectives), got shape {values.shape}")
    out = np.zeros(values.shape[0], dtype=bool)
    valid = ~np.isnan(values).any(axis=1)
    if not valid.any() or values.shape[1] == 0:
        return out
    unique, inverse = np.unique(values[valid], axis=0, return_inverse=True)
    out[valid] = _front_of_unique_sorted(unique)[inverse.reshape(-1)]
    return out


def pareto_mask(df: pd.DataFrame, objectives: Mapping[str, str]) -> pd.Series:
    """Boolean mask (aligned with `df.index`) of the eligible rows on the Pareto front."""
    loss = losses(df, objectives)
    ok = eligible(df, objectives).to_numpy()
    mask = np.zeros(len(df), dtype=bool)
    mask[ok] = is_pareto_optimal(loss[ok])
    return pd.Series(mask, index=df.index, dtype=bool)


def pareto_front(df: pd.DataFrame, objectives: Mapping[str, str]) -> pd.DataFrame:
    """The rows of `df` on the Pareto front of `objectives` (e.g. `{"accuracy": "max", "peak_memory_mb":
    "min"}`).

    Rows keep their index and all columns; they are sorted best-first by the first objective, then the next
    ones. Unknown objective columns or directions raise `ConfigError`.
    """
    mask = pareto_mask(df, objectives).to_numpy()
    front = df.loc[mask]
    loss = losses(front, objectives)
    if len(front) == 0:
        return front
    order = np.lexsort(loss.T[::-1])  # lexsort's last key is the primary one
    return front.iloc[order]


def _front_of_unique_sorted(unique: np.ndarray) -> np.ndarray:
    n, k = unique.shape
    on_front = np.zeros(n, dtype=bool)
    if k == 1:
        on_front[0] = True
        return on_front
    if k == 2:
        running_min = np.minimum.accumulate(unique[:, 1])
        on_front[0] = True
        on_front[1:] = unique[1:, 1] < running_min[:-1]
        return on_front
    rest = unique[:, 1:]
    remaining = np.arange(n)
    while remaining.size:
        best = remaining[0]  # nothing before it in lexicographic order dominates it, nothing after can
        on_front[best] = True
        remaining = remaining[np.any(rest[remaining] < rest[best], axis=1)]
    return on_front
