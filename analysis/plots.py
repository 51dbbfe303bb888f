"""Plots of results frames: each one is a pure "compute the data" function and a "draw it" function.

The data functions return DataFrames or small NamedTuples (tests check these); the draw functions write a PNG
with matplotlib's Agg canvas (no pyplot, no display) and return its path.

- `pareto_scatter_data` / `draw_pareto_scatter`: task metric vs memory, the front as a staircase, grid configs
  (B-FP, B-Q4, B-Ada, Joint-1..3) labelled
- `front_layers_data` / `draw_front_layers`: per-layer bits and ranks of the front members, as two heatmaps
- `hypervolume.hypervolume_history` / `draw_hypervolume_history`: hypervolume vs trial number, one line a
  search
- `memory_prediction_data` / `draw_memory_prediction`: predicted vs measured peak memory per trial
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.objectives import default_objectives, validate_objectives
from analysis.pareto import pareto_front, pareto_mask
from analysis.results import GRID_CONFIG_IDS, per_layer
from trainables.columns import COLUMNS, LiveMap, is_memory
from trainables.errors import ConfigError

AXIS_LABELS: Mapping[str, str] = LiveMap(lambda: {c.name: c.axis_label for c in COLUMNS})
"""Axis label per result column (`trainables.columns.Column.label`), read live."""
STATUS_MARKERS = {
    "completed": "o",
    "stopped": "s",
    "failed": "x",
    "infeasible": "^",
    "diverged": "v",
    "interrupted": "D",
}


class ParetoScatterData(NamedTuple):
    points: pd.DataFrame
    """Every trial with both values: source, trial_id, config_id, status, x, y, on_front."""
    front: pd.DataFrame
    """The front members, sorted by x."""
    labels: pd.DataFrame
    """Grid configs to label: source, config_id, x, y (mean over the config's completed trials, i.e. over
    seeds), label (the config id, with the source when several searches hold grid configs)."""
    x: str
    y: str
    x_direction: str
    y_direction: str
    chance: float | None = None
    """The metric a guess reaches (accuracy on a balanced two-class task: 0.5), drawn as a dashed line; None
    for other metrics or when the tasks disagree."""


CHANCE_ACCURACY = {"sst2": 0.5}
"""Accuracy of a guess for results made before `num_classes` was recorded: SST-2 is binary and near balanced
(dev: 444 positive, 428 negative)."""


def chance_level(df: pd.DataFrame, metric: str) -> float | None:
    """The chance value of `metric` over the trials in `df`: 1 / the number of classes (`num_classes`; for older
    results CHANCE_ACCURACY by task), None for other metrics or when the trials disagree."""
    if metric != "accuracy" or "task" not in df.columns:
        return None
    classes = df["num_classes"] if "num_classes" in df.columns else pd.Series(pd.NA, index=df.index)
    levels = {
        1 / int(k) if pd.notna(k) and int(k) > 0 else CHANCE_ACCURACY.get(str(t))
        for t, k in zip(df["task"], classes)
        if pd.notna(t)
    }
    return levels.pop() if len(levels) == 1 else None


class FrontLayersData(NamedTuple):
    bits: pd.DataFrame
    """One row per front member (index: its label), one column per layer: bit width."""
    ranks: pd.DataFrame
    """Same rows: mean adapter rank per layer."""


class MemoryPredictionData(NamedTuple):
    points: pd.DataFrame
    """source, trial_id, config_id, status, predicted_peak_mb, peak_memory_mb, error_pct (of measured)."""
    n: int
    mean_abs_error_pct: float
    max_abs_error_pct: float


# --- compute ------------------------------------------------------------------------------------------------


def pareto_scatter_data(df: pd.DataFrame, objectives: Mapping[str, str] | None = None) -> ParetoScatterData:
    """Task metric (y) vs memory (x); `objectives`: exactly two columns, the metric first (None: defaults)."""
    objectives = validate_objectives(objectives or default_objectives(df), df, require_values=False)
    if len(objectives) != 2:
        raise ConfigError(
            f"pareto scatter: needs exactly 2 objectives (metric, memory), got {len(objectives)}: "
            f"{', '.join(objectives)}"
        )
    y, x = list(objectives)
    if is_memory(y) and not is_memory(x):  # memory always on the x axis
        x, y = y, x
    mask = pareto_mask(df, objectives)
    xs = pd.to_numeric(df[x], errors="coerce").astype("float64")
    ys = pd.to_numeric(df[y], errors="coerce").astype("float64")
    points = pd.DataFrame(
        {
            **_identity(df),
            "x": xs,
            "y": ys,
            "on_front": mask,
        },
        index=df.index,
    )
    points = points[points["x"].notna() & points["y"].notna()]
    front = points[points["on_front"]].sort_values(["x", "y"])
    grid = points[points["config_id"].isin(GRID_CONFIG_IDS) & (points["status"] == "completed")]
    labels = grid.groupby(["source", "config_id"], sort=False)[["x", "y"]].mean().reset_index()
    order = {c: i for i, c in enumerate(GRID_CONFIG_IDS)}
    labels = labels.sort_values(
        ["config_id", "source"], key=lambda s: s.map(order) if s.name == "config_id" else s
    )
    labels["label"] = labels["config_id"]
    if labels["source"].nunique() > 1:
        labels["label"] = labels["config_id"] + " (" + labels["source"] + ")"
    labels = labels.reset_index(drop=True)
    return ParetoScatterData(
        points, front, labels, x, y, objectives[x], objectives[y], chance_level(df.loc[points.index], y)
    )


def front_layers_data(df: pd.DataFrame, objectives: Mapping[str, str]) -> FrontLayersData:
    """Per-layer bits and ranks of the front members (rows in front order, labelled by config or trial)."""
    front = pareto_front(df, objectives)
    labels = pd.Index(_member_labels(front), name="trial")
    bits = (
        per_layer(front["bits_per_layer"])
        if "bits_per_layer" in front.columns
        else pd.DataFrame(index=front.index)
    )
    ranks = (
        per_layer(front["ranks_per_layer"])
        if "ranks_per_layer" in front.columns
        else pd.DataFrame(index=front.index)
    )
    bits.index = labels
    ranks.index = labels
    bits.columns.name = ranks.columns.name = "layer"
    return FrontLayersData(bits, ranks)


def memory_prediction_data(df: pd.DataFrame) -> MemoryPredictionData:
    """Trials with a predicted and a measured peak; error_pct = 100 * (measured - predicted) / predicted."""
    predicted = pd.to_numeric(df["predicted_peak_mb"], errors="coerce").astype("float64")
    measured = pd.to_numeric(df["peak_memory_mb"], errors="coerce").astype("float64")
    points = pd.DataFrame(
        {
            **_identity(df),
            "predicted_peak_mb": predicted,
            "peak_memory_mb": measured,
        },
        index=df.index,
    )
    points = points[predicted.notna() & measured.notna() & (predicted > 0)].copy()
    points["error_pct"] = (
        100.0 * (points["peak_memory_mb"] - points["predicted_peak_mb"]) / points["predicted_peak_mb"]
    )
    errors = points["error_pct"].abs()
    n = len(points)
    return MemoryPredictionData(
        points,
        n,
        float(errors.mean()) if n else math.nan,
        float(errors.max()) if n else math.nan,
    )


# --- draw ---------------------------------------------------------------------------------------------------


def draw_pareto_scatter(data: ParetoScatterData, path: str | Path, title: str | None = None) -> Path:
    fig, ax = _figure(7.0, 5.0)
    sources = list(dict.fromkeys(data.points["source"]))
    colors = _colors(len(sources))
    for source, color in zip(sources, colors):
        mine = data.points[data.points["source"] == source]
        for status, marker in STATUS_MARKERS.items():
            part = mine[mine["status"] == status]
            if len(part):
                label = f"{source} ({status})" if len(sources) > 1 else status
                filled = status == "completed"
                ax.scatter(
                    part["x"],
                    part["y"],
                    marker=marker,
                    s=28,
                    alpha=0.75 if filled else 0.5,
                    label=label,
                    color=color if filled or marker == "x" else "none",
                    edgecolors=color,
                    linewidths=1.0,
                )
    if len(data.front):
        ax.step(
            data.front["x"], data.front["y"], where="post", color="black", linewidth=1.2, label="Pareto front"
        )
        ax.scatter(
            data.front["x"], data.front["y"], s=70, facecolors="none", edgecolors="black", linewidths=1.2
        )
    if len(data.labels):
        ax.scatter(
            data.labels["x"],
            data.labels["y"],
            marker="D",
            s=22,
            facecolors="none",
            edgecolors="dimgray",
            label="grid config (mean over seeds)",
        )
    for row in data.labels.itertuples(index=False):
        ax.annotate(
            str(row.label),
            (float(row.x), float(row.y)),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=8,
        )
    if data.chance is not None and len(data.points):
        ax.axhline(
            data.chance, color="gray", linestyle="--", linewidth=1.0, label=f"chance ({data.chance:g})"
        )
    ax.set_xlabel(_axis_label(data.x, data.x_direction))
    ax.set_ylabel(_axis_label(data.y, data.y_direction))
    ax.set_title(title or f"{AXIS_LABELS.get(data.y, data.y)} vs {AXIS_LABELS.get(data.x, data.x)}")
    ax.grid(True, alpha=0.3)
    if len(data.points):
        ax.legend(fontsize=7, loc="best")
    else:
        _empty(ax, "no trials with both values")
    return _save(fig, path)


def draw_front_layers(data: FrontLayersData, path: str | Path, title: str | None = None) -> Path:
    rows = max(len(data.bits), 1)
    fig = Figure(figsize=(11.0, 1.6 + 0.35 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, frame, name, cmap in (
        (axes[0], data.bits, "bits", "viridis"),
        (axes[1], data.ranks, "rank", "magma"),
    ):
        if frame.empty or frame.shape[1] == 0:
            _empty(ax, "no front members with per-layer values")
            ax.set_title(name)
            continue
        values = frame.to_numpy(dtype="float64")
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=cmap)
        fig.colorbar(image, ax=ax, shrink=0.8, label=name)
        ax.set_xticks(range(frame.shape[1]), [str(c) for c in frame.columns])
        ax.set_yticks(range(frame.shape[0]), [str(i) for i in frame.index], fontsize=7)
        ax.set_xlabel("layer")
        ax.set_title(f"{name} per layer")
        for (i, j), value in np.ndenumerate(values):
            if not math.isnan(value):
                bright = float(image.norm(value)) > 0.6  # light end of both colormaps: dark text
                ax.text(
                    j,
                    i,
                    f"{value:g}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="black" if bright else "white",
                )
    fig.suptitle(title or "Pareto front: bits and ranks per layer")
    return _save(fig, path)


def draw_hypervolume_history(history: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    fig, ax = _figure(7.0, 4.5)
    sources = list(dict.fromkeys(history["source"])) if len(history) else []
    for source, color in zip(sources, _colors(len(sources))):
        mine = history[history["source"] == source].sort_values("trial")
        ax.step(mine["trial"], mine["hypervolume"], where="post", color=color, label=str(source) or "search")
    ax.set_xlabel("trials run")
    ax.set_ylabel("hypervolume")
    ax.set_title(title or "hypervolume vs trials")
    ax.grid(True, alpha=0.3)
    if sources:
        ax.legend(fontsize=8, loc="lower right")
    else:
        _empty(ax, "no trials")
    return _save(fig, path)


def draw_memory_prediction(data: MemoryPredictionData, path: str | Path, title: str | None = None) -> Path:
    fig, ax = _figure(5.5, 5.0)
    pts = data.points
    if len(pts):
        for status, marker in STATUS_MARKERS.items():
            part = pts[pts["status"] == status]
            if len(part):
                ax.scatter(
                    part["predicted_peak_mb"],
                    part["peak_memory_mb"],
                    marker=marker,
                    s=28,
                    alpha=0.8,
                    label=status,
                )
        low = float(min(pts["predicted_peak_mb"].min(), pts["peak_memory_mb"].min()))
        high = float(max(pts["predicted_peak_mb"].max(), pts["peak_memory_mb"].max()))
        pad = 0.05 * (high - low) if high > low else 1.0
        ax.plot(
            [low - pad, high + pad],
            [low - pad, high + pad],
            color="gray",
            linestyle="--",
            label="measured = predicted",
        )
        for row in (
            pts[pts["config_id"].isin(GRID_CONFIG_IDS)].drop_duplicates("config_id").itertuples(index=False)
        ):
            ax.annotate(
                str(row.config_id),
                (float(row.predicted_peak_mb), float(row.peak_memory_mb)),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
        ax.legend(fontsize=8, loc="upper left")
        subtitle = f"n={data.n}, mean |error| {data.mean_abs_error_pct:.1f}%"
    else:
        _empty(ax, "no trials with both a predicted and a measured peak")
        subtitle = "n=0"
    ax.set_xlabel("predicted peak memory (MB)")
    ax.set_ylabel("measured peak memory (MB)")
    ax.set_title(title or f"memory model: predicted vs measured ({subtitle})", fontsize=10)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


# --- helpers ------------------------------------------------------------------------------------------------


def _identity(df: pd.DataFrame) -> dict[str, object]:
    """The columns that name each point: source, trial_id, config_id, status (completed when absent)."""
    return {
        "source": _column(df, "source"),
        "trial_id": _column(df, "trial_id"),
        "config_id": _column(df, "config_id"),
        "status": df["status"].astype("string").fillna("") if "status" in df.columns else "completed",
    }


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=110)
    return out


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")


def _colors(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _axis_label(name: str, direction: str) -> str:
    return f"{AXIS_LABELS.get(name, name)} ({'higher' if direction == 'max' else 'lower'} is better)"


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    if name in df.columns:
        return df[name].astype("string").fillna("")
    return pd.Series([""] * len(df), index=df.index, dtype="string")


def _member_labels(front: pd.DataFrame) -> list[str]:
    """config_id (or trial_id) of each member; the source first when there are several; duplicates get the
    trial id."""
    base = [str(c) if c else str(t) for c, t in zip(_column(front, "config_id"), _column(front, "trial_id"))]
    sources = _column(front, "source")
    if sources.nunique() > 1:
        base = [f"{s}/{b}" for s, b in zip(sources, base)]
    counts = pd.Series(base).value_counts()
    trial_ids = list(_column(front, "trial_id"))
    return [f"{b} ({t})" if counts[b] > 1 and b != t else b for b, t in zip(base, trial_ids)]
