"""Hypervolume of a results frame's front, and its growth trial by trial (to compare searches at equal
budgets).

The hypervolume is the volume of objective space that the eligible trials (completed, no NaN; see
`analysis.pareto`) dominate, bounded by a reference point. It is exact for any number of objectives: a sweep
in 2-D (O(n log n)) and slicing along the last objective above that (O(n^2 log n) in 3-D).

Default reference point (`default_reference_point`): per objective, over the eligible trials with finite
values of every objective, the worst value pushed 10% of the observed range further out: min objective max +
0.1 * (max - min), max objective min - 0.1 * (max - min). When all values are equal the range is taken as
|value|, or 1 when the value is 0. It depends only on the frame's values, not on row order, so it is
deterministic; to compare searches, compute it once over all of them (as `hypervolume_history` does for a
frame holding several sources) or pass the same point explicitly. Points no better than the reference point in
some objective add nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.objectives import validate_objectives
from analysis.pareto import eligible, is_pareto_optimal, losses
from trainables.errors import ConfigError

REFERENCE_MARGIN = 0.1
"""Share of each objective's observed range between the default reference point and the worst value."""

ReferencePoint = Mapping[str, float] | Sequence[float]


def default_reference_point(df: pd.DataFrame, objectives: Mapping[str, str]) -> dict[str, float]:
    """The default reference point (see the module docstring), in the objectives' units; NaN if none."""
    objectives = validate_objectives(objectives, df, require_values=False)
    loss = _finite_eligible_losses(df, objectives)
    point = {}
    for j, (name, direction) in enumerate(objectives.items()):
        if loss.shape[0] == 0:
            point[name] = math.nan
            continue
        worst, best = float(loss[:, j].max()), float(loss[:, j].min())
        span = worst - best
        margin = REFERENCE_MARGIN * (span if span > 0 else (abs(worst) if worst != 0 else 1.0))
        value = worst + margin
        point[name] = -value if direction == "max" else value
    return point


def hypervolume(
    df: pd.DataFrame, objectives: Mapping[str, str], reference_point: ReferencePoint | None = None
) -> float:
    """Exact hypervolume of the eligible trials of `df` for `objectives`, bounded by `reference_point`.

    `reference_point` maps each objective to a value in its own units (or lists them in objectives order);
    None uses `default_reference_point(df, objectives)`. No eligible trial: 0.0.
    """
    objectives = validate_objectives(objectives, df, require_values=False)
    ref = _reference_losses(df, objectives, reference_point)
    points = losses(df, objectives)[eligible(df, objectives).to_numpy()]
    return hypervolume_of_losses(points, ref)


def hypervolume_history(
    df: pd.DataFrame,
    objectives: Mapping[str, str],
    reference_point: ReferencePoint | None = None,
    *,
    by: str | None = "source",
) -> pd.DataFrame:
    """The hypervolume after each trial, in trial order, per search (one group per value of column `by`).

    One reference point serves every group (the default one is computed over the whole frame), so the curves
    are comparable. Trials are taken in `trial_number` order when the frame has that column, else in row
    order; failed, stopped and infeasible trials count towards the budget but add no volume. Columns:
    `source`, `trial` (1-based: trials run so far), `trial_number`, `trial_id`, `status`, `hypervolume`.
    """
    objectives = validate_objectives(objectives, df, require_values=False)
    ref = _reference_losses(df, objectives, reference_point)
    groups = (
        [("", df)] if by is None or by not in df.columns else list(df.groupby(by, sort=False, observed=True))
    )
    parts = [_history_of(str(name), group, objectives, ref) for name, group in groups]
    columns = ["source", "trial", "trial_number", "trial_id", "status", "hypervolume"]
    if not parts:
        return pd.DataFrame(
            {c: pd.Series(dtype="float64" if c == "hypervolume" else "object") for c in columns}
        )
    return pd.concat(parts, ignore_index=True)[columns]


def hypervolume_at_budget(history: pd.DataFrame, budget: int | None = None) -> pd.DataFrame:
    """Each source's hypervolume after `budget` trials (None: the smallest number of trials any source ran).

    A source with fewer trials than `budget` reports its last value. Columns: `source`, `trials`, `budget`,
    `hypervolume`, `final_hypervolume`.
    """
    rows = []
    groups = list(history.groupby("source", sort=False))
    if budget is None:
        budget = min((len(g) for _, g in groups), default=0)
    for source, group in groups:
        ordered = group.sort_values("trial")
        upto = ordered[ordered["trial"] <= budget]
        rows.append(
            {
                "source": source,
                "trials": len(ordered),
                "budget": budget,
                "hypervolume": float(upto["hypervolume"].iloc[-1]) if len(upto) else 0.0,
                "final_hypervolume": float(ordered["hypervolume"].iloc[-1]) if len(ordered) else 0.0,
            }
        )
    return pd.DataFrame(rows, columns=["source", "trials", "budget", "hypervolume", "final_hypervolume"])


def hypervolume_of_losses(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact hypervolume of loss vectors (minimization) bounded by `reference`.

    Points not strictly better than the reference in every objective (and rows with NaN) add nothing.
    """
    pts = np.asarray(points, dtype="float64")
    ref = np.asarray(reference, dtype="float64")
    if pts.ndim != 2 or pts.shape[1] != ref.shape[0]:
        raise ValueError(
            f"points of shape {pts.shape} do not match a reference point of {ref.shape[0]} values"
        )
    if pts.shape[0] == 0 or np.isnan(ref).any():
        return 0.0
    pts = pts[~np.isnan(pts).any(axis=1)]
    pts = pts[(pts < ref).all(axis=1)]
    if pts.shape[0] == 0:
        return 0.0
    pts = pts[is_pareto_optimal(pts)]
    return float(_hv(np.unique(pts, axis=0), ref))


def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    n, k = points.shape
    if n == 0:
        return 0.0
    if k == 1:
        return float(ref[0] - points[:, 0].min())
    if k == 2:
        return _hv_2d(points, ref)
    order = np.argsort(points[:, -1], kind="stable")
    pts = points[order]
    heights = np.diff(np.append(pts[:, -1], ref[-1]))
    total = 0.0
    for i in np.flatnonzero(heights > 0):
        total += float(heights[i]) * _hv(pts[: i + 1, :-1], ref[:-1])
    return total


def _hv_2d(points: np.ndarray, ref: np.ndarray) -> float:
    order = np.lexsort((points[:, 1], points[:, 0]))
    x, y = points[order, 0], points[order, 1]
    running_min = np.minimum.accumulate(y)
    keep = np.ones(len(y), dtype=bool)
    keep[1:] = y[1:] < running_min[:-1]
    x, y = x[keep], y[keep]
    widths = np.append(x[1:], ref[0]) - x
    return float(widths @ (ref[1] - y))


def _finite_eligible_losses(df: pd.DataFrame, objectives: Mapping[str, str]) -> np.ndarray:
    loss = losses(df, objectives)[eligible(df, objectives).to_numpy()]
    return loss[np.isfinite(loss).all(axis=1)]


def _reference_losses(
    df: pd.DataFrame, objectives: Mapping[str, str], reference_point: ReferencePoint | None
) -> np.ndarray:
    names = list(objectives)
    if reference_point is None:
        point = default_reference_point(df, objectives)
        values = [point[n] for n in names]
    elif isinstance(reference_point, Mapping):
        missing = [n for n in names if n not in reference_point]
        extra = [n for n in reference_point if n not in objectives]
        if missing or extra:
            raise ConfigError(
                f"reference_point: keys {sorted(reference_point)} must be exactly the objectives {names}"
            )
        values = [float(reference_point[n]) for n in names]
    else:
        values = [float(v) for v in reference_point]
        if len(values) != len(names):
            raise ConfigError(
                f"reference_point: {len(values)} values given for {len(names)} objectives "
                f"({', '.join(names)})"
            )
    if reference_point is not None and not all(math.isfinite(v) for v in values):
        raise ConfigError(f"reference_point: {values} must be finite numbers")
    signs = np.array([-1.0 if objectives[n] == "max" else 1.0 for n in names])
    return np.array(values, dtype="float64") * signs


def _history_of(
    source: str, group: pd.DataFrame, objectives: Mapping[str, str], ref: np.ndarray
) -> pd.DataFrame:
    if "trial_number" in group.columns:
        group = group.sort_values("trial_number", kind="stable", na_position="last")
    loss = losses(group, objectives)
    ok = (
        eligible(group, objectives).to_numpy() & (loss < ref).all(axis=1) if not np.isnan(ref).any() else None
    )
    front = np.empty((0, len(objectives)))
    current = 0.0
    values = []
    for i in range(len(group)):
        if ok is not None and ok[i]:
            point = loss[i]
            weakly_dominated = bool(front.shape[0]) and bool(np.any(np.all(front <= point, axis=1)))
            if not weakly_dominated:
                front = np.vstack([front[~np.all(point <= front, axis=1)], point])
                current = float(_hv(front, ref))
        values.append(current)
    n = len(group)
    return pd.DataFrame(
        {
            "source": [source] * n,
            "trial": np.arange(1, n + 1),
            "trial_number": group["trial_number"].to_numpy()
            if "trial_number" in group.columns
            else np.arange(n),
            "trial_id": group["trial_id"].to_numpy() if "trial_id" in group.columns else [""] * n,
            "status": group["status"].astype("string").to_numpy()
            if "status" in group.columns
            else ["completed"] * n,
            "hypervolume": np.array(values, dtype="float64"),
        }
    )
