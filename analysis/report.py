"""The analysis report: `report.md` (grid table, Pareto set, hypervolume, plots), `pareto.csv`, and
`pareto_means.csv` with the front on means when a configuration was run on several seeds (`analysis.seeds`).

`write_report(dirs, objectives, out_dir)` loads the results folders, computes every table and plot and writes
them; `key_table_text(df, objectives)` is the same key table as plain text for the terminal.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from analysis import plots
from analysis.hypervolume import default_reference_point, hypervolume_at_budget, hypervolume_history
from analysis.objectives import default_objectives, format_objectives, validate_objectives
from analysis.pareto import pareto_front
from analysis.results import GRID_CONFIG_IDS, STATUSES, load_results
from analysis.seeds import SeedFront, mean_column, seed_front, std_column
from trainables.columns import COLUMNS, LiveMap, digits_of
from trainables.results_folder import PARETO_FILE, PARETO_MEANS_FILE

METHOD_NAMES = {"lora": "LoRA", "adalora": "AdaLoRA"}
PLOT_FILES = {
    "pareto_scatter": "pareto_scatter.png",
    "front_layers": "front_layers.png",
    "hypervolume": "hypervolume.png",
    "memory_prediction": "memory_prediction.png",
}
PLOT_TITLES = {
    "pareto_scatter": "Task metric vs memory, Pareto front",
    "front_layers": "Bits and ranks per layer of the front members",
    "hypervolume": "Hypervolume vs trials",
    "memory_prediction": "Predicted vs measured peak memory",
}


class ReportPaths(NamedTuple):
    report: Path
    """report.md"""
    pareto_csv: Path
    """pareto.csv: the front members, every column of the results frame."""
    plots: dict[str, Path]
    """PNG per plot name (pareto_scatter, front_layers, hypervolume, memory_prediction)."""
    pareto_means_csv: Path | None = None
    """pareto_means.csv: the front on means over seeds (`analysis.seeds`); None when every config has one seed."""


def write_report(
    dirs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    objectives: Mapping[str, str] | str | None,
    out_dir: str | os.PathLike[str],
) -> ReportPaths:
    """Load `dirs`; write `report.md`, `pareto.csv` (and `pareto_means.csv` when some configuration has several
    seeds) and the plots into `out_dir` (created); return the paths.

    `objectives` is a mapping, its text form ("accuracy:max,peak_memory_mb:min") or None for the default
    (accuracy:max when there are accuracy values, else perplexity:min; plus peak_memory_mb:min). Bad folders
    or objectives raise `ConfigError`.
    """
    return write_frame_report(load_results(dirs), objectives, out_dir, _folder_names(dirs))


def write_frame_report(
    df: pd.DataFrame,
    objectives: Mapping[str, str] | str | None,
    out_dir: str | os.PathLike[str],
    folders: Sequence[str] = (),
) -> ReportPaths:
    """`write_report` for a frame already loaded with `load_results` (`folders`: names for the title)."""
    objectives = resolve_objectives(df, objectives)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    front = pareto_front(df, objectives)
    pareto_csv = out / PARETO_FILE
    front.to_csv(pareto_csv, index=False)
    seeds = seed_front(df, objectives)  # None while every configuration has one seed
    means_csv = None
    if seeds is not None:
        means_csv = out / PARETO_MEANS_FILE
        seeds.front.to_csv(means_csv, index=False)

    reference = default_reference_point(df, objectives)
    history = hypervolume_history(df, objectives, reference if _finite(reference) else None)
    scatter_objectives = objectives if len(objectives) == 2 else default_objectives(df)
    drawn = {
        "pareto_scatter": plots.draw_pareto_scatter(
            plots.pareto_scatter_data(df, scatter_objectives), out / PLOT_FILES["pareto_scatter"]
        ),
        "front_layers": plots.draw_front_layers(
            plots.front_layers_data(df, objectives), out / PLOT_FILES["front_layers"]
        ),
        "hypervolume": plots.draw_hypervolume_history(history, out / PLOT_FILES["hypervolume"]),
        "memory_prediction": plots.draw_memory_prediction(
            plots.memory_prediction_data(df), out / PLOT_FILES["memory_prediction"]
        ),
    }
    text = render_markdown(df, objectives, front, history, reference, drawn, out, folders, seeds)
    report = out / "report.md"
    report.write_text(text, encoding="utf-8")
    return ReportPaths(report, pareto_csv, drawn, means_csv)


SETTING_COLUMNS = ("model", "steps", "seq_len", "batch_size", "lr", "compute_dtype", "gradient_checkpointing")
"""Settings that must agree between folders before their metrics are compared (per task, completed trials)."""


def mixed_settings(df: pd.DataFrame) -> list[str]:
    """One warning line per task and setting whose values differ between the folders (`source`) merged in `df`:
    e.g. `sst2: steps differ between folders (grid-a: 300; grid-b: 24)`. Empty for one folder."""
    if "source" not in df.columns or df["source"].nunique() < 2:
        return []
    done = df[df["status"] == "completed"] if "status" in df.columns else df
    warnings = []
    for task, rows in done.groupby("task", sort=True, observed=True):
        for column in (c for c in SETTING_COLUMNS if c in rows.columns):
            per_source = {
                str(src): sorted({_cell(v) for v in part[column].dropna()})
                for src, part in rows.groupby("source", sort=False, observed=True)
            }
            if len({tuple(v) for v in per_source.values()}) > 1:
                listed = "; ".join(f"{src}: {', '.join(v) or '-'}" for src, v in per_source.items())
                warnings.append(f"{task}: {column} differs between folders ({listed}); compare with care")
    return warnings


def resolve_objectives(df: pd.DataFrame, objectives: Mapping[str, str] | str | None) -> dict[str, str]:
    """Given objectives must name columns with values; the defaults only need the columns to exist."""
    if objectives is None or (isinstance(objectives, str) and not objectives.strip()):
        return validate_objectives(default_objectives(df), df, require_values=False)
    return validate_objectives(objectives, df)


# --- tables -------------------------------------------------------------------------------------------------


def grid_table(df: pd.DataFrame) -> pd.DataFrame:
    """The experiment-summary table: one row per grid config (and task / model when several), formatted text.

    Columns: config, method, quantization, LoRA strategy, regime (compute dtype, "+ckpt" with gradient
    checkpointing), accuracy or perplexity (mean ± std over the completed seeds where several), trainable %, peak
    memory MB, predicted MB (the memory model), weight memory MB, train time s, completed (n of runs).
    """
    grid = (
        df[df["config_id"].astype("string").fillna("") != ""] if "config_id" in df.columns else df.iloc[0:0]
    )
    columns = ["config", "method", "quantization", "LoRA strategy"]
    if grid.empty:
        return pd.DataFrame(columns=columns)
    keys = ["config_id"] + [k for k in ("source", "task", "model") if k in grid and grid[k].nunique() > 1]
    rows = []
    for key, group in grid.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        done = group[group["status"] == "completed"]
        row: dict[str, Any] = {"config": str(key[0])}
        for name, value in zip(keys[1:], key[1:]):
            row[name] = str(value)
        row["method"] = method_label(_first(group["method"]), _first(group["quantization"]))
        row["quantization"] = _first(group["quantization"])
        row["LoRA strategy"] = _first(group["lora_strategy"])
        row["regime"] = regime_label(group)
        for metric in ("accuracy", "perplexity"):
            if grid[metric].notna().any():
                row[metric] = _mean_std(done[metric], _digits(metric))
        row["trainable %"] = _mean(done["trainable_pct"], _digits("trainable_pct"))
        row["peak memory MB"] = _mean(done["peak_memory_mb"], _digits("peak_memory_mb"))
        row["predicted MB"] = _mean(group["predicted_peak_mb"], _digits("predicted_peak_mb"))
        weights = group["weight_memory_mb"]
        row["weight memory MB"] = _mean(weights.where(weights > 0), _digits("weight_memory_mb"))
        row["train time s"] = _mean(done["train_time_s"], _digits("train_time_s"))
        row["completed"] = f"{len(done)}/{len(group)}"
        rows.append(row)
    table = pd.DataFrame(rows)
    order = {c: i for i, c in enumerate(GRID_CONFIG_IDS)}
    rank = table["config"].map(lambda c: order.get(c, len(order)))
    return (
        table.assign(_rank=rank)
        .sort_values(["_rank", "config"], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def regime_label(group: pd.DataFrame) -> str:
    """`bfloat16+ckpt`-style label of the trials' compute dtype and gradient checkpointing ("-" for results made
    before either was recorded: those ran in float32 without checkpointing)."""
    dtype = _first(group["compute_dtype"]) if "compute_dtype" in group else ""
    ckpt = _first(group["gradient_checkpointing"]) if "gradient_checkpointing" in group else ""
    if not dtype:
        return "-"
    return dtype + ("+ckpt" if str(ckpt).lower() in ("true", "1") else "")


def method_label(method: str, quantization: str) -> str:
    """LoRA / AdaLoRA, and QLoRA for LoRA on uniformly 4-bit (NF4) weights, as in the research plan's grid."""
    if method == "lora" and quantization == "nf4":
        return "QLoRA"
    return METHOD_NAMES.get(method, method)


def pareto_table(front: pd.DataFrame, objectives: Mapping[str, str]) -> pd.DataFrame:
    """The front members for reading: ids, objectives, per-layer bits and ranks."""
    columns = [
        "source",
        "trial_id",
        "config_id",
        *objectives,
        "mean_bits",
        "bits_per_layer",
        "ranks_per_layer",
        "total_rank",
        "trainable_pct",
    ]
    if "source" in front.columns and front["source"].nunique() <= 1:
        columns.remove("source")
    seen: list[str] = []
    for c in columns:
        if c in front.columns and c not in seen:
            seen.append(c)
    table = front[seen].copy()
    return pd.DataFrame({c: table[c].map(lambda v, c=c: _cell(v, _digits(c))) for c in seen})


def means_table(seeds: SeedFront, objectives: Mapping[str, str]) -> pd.DataFrame:
    """The front on means for reading (`analysis.seeds.seed_front`): `#` (front order), config (grid id or the
    first run's trial id), `config_key`, each objective as `mean ± std` (the mean alone for one seed), `n` (seeds
    averaged), bits and ranks per layer, and `within noise of`: the other front points (by `#`) whose order with
    this one on an objective is within one combined standard error (`analysis.seeds.noise_pairs`)."""
    front = seeds.front.reset_index(drop=True)
    number = {key: f"#{i + 1}" for i, key in enumerate(front["config_key"].astype(str))}
    close: dict[str, list[str]] = {key: [] for key in number}
    for pair in seeds.pairs.itertuples(index=False):
        close[str(pair.config_a)].append(f"{number[str(pair.config_b)]} {pair.objective}")
        close[str(pair.config_b)].append(f"{number[str(pair.config_a)]} {pair.objective}")
    rows = []
    for i, r in front.iterrows():
        label = next((v for v in (r.get("config_id"), r.get("trial_id")) if isinstance(v, str) and v), "")
        row: dict[str, Any] = {"#": f"#{i + 1}", "config": label, "config_key": r["config_key"]}
        for name in objectives:
            row[name] = _pm(r[mean_column(name)], r[std_column(name)], _digits(name))
        row["n"] = int(r["n_seeds"])
        for column in ("bits_per_layer", "ranks_per_layer"):
            if column in front.columns:
                row[column] = _cell(r[column])
        row["within noise of"] = ", ".join(close[str(r["config_key"])]) or "-"
        rows.append(row)
    return pd.DataFrame(rows)


NOISE_RULE = (
    "within noise: |mean_a - mean_b| < sqrt(se_a^2 + se_b^2), se = std / sqrt(n) (two-sample z below 1); "
    "front on means among the configurations measured on at least 2 seeds"
)
"""The one-line legend printed under `means_table`."""


def means_text(seeds: SeedFront, objectives: Mapping[str, str]) -> str:
    """`means_table` as text for the terminal, with a title and the noise rule."""
    title = (
        f"Pareto set on means over seeds ({len(seeds.front)} of {seeds.candidates} configurations with 2+ seeds; "
        f"{len(seeds.pairs)} pairs within noise):"
    )
    return f"{title}\n{text_table(means_table(seeds, objectives))}\n{NOISE_RULE}"


def status_table(df: pd.DataFrame) -> pd.DataFrame:
    """Trials per source and status."""
    rows = []
    for source, group in df.groupby("source", sort=False):
        counts = group["status"].value_counts()
        row: dict[str, Any] = {"source": source, "kind": _first(group["kind"]), "trials": len(group)}
        row.update({s: int(counts.get(s, 0)) for s in STATUSES})
        rows.append(row)
    return pd.DataFrame(rows, columns=["source", "kind", "trials", *STATUSES])


def key_table_text(df: pd.DataFrame, objectives: Mapping[str, str] | str | None = None) -> str:
    """The key table as plain text for the terminal: the grid table when the frame has grid configs, else the
    Pareto set."""
    objectives = resolve_objectives(df, objectives)
    grid = grid_table(df)
    if not grid.empty:
        return "Grid configurations\n" + text_table(grid)
    front = pareto_table(pareto_front(df, objectives), objectives)
    title = f"Pareto set ({format_objectives(objectives)}): {len(front)} of {len(df)} trials"
    text = title + "\n" + (text_table(front) if len(front) else "(no completed trial with every objective)")
    seeds = seed_front(df, objectives)
    return text if seeds is None else f"{text}\n\n{means_text(seeds, objectives)}"


def markdown_table(table: pd.DataFrame) -> str:
    if table.empty:
        return "_(none)_"
    header = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
    return "\n".join(lines)


def text_table(table: pd.DataFrame) -> str:
    header = [str(c) for c in table.columns]
    body = [[_cell(v) for v in row] for row in table.itertuples(index=False)]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    return "\n".join(lines)


# --- report.md ----------------------------------------------------------------------------------------------


def render_markdown(
    df: pd.DataFrame,
    objectives: Mapping[str, str],
    front: pd.DataFrame,
    history: pd.DataFrame,
    reference: Mapping[str, float],
    drawn: Mapping[str, Path],
    out_dir: Path,
    folders: Sequence[str] = (),
    seeds: SeedFront | None = None,
) -> str:
    """The text of report.md; plots are linked relative to `out_dir`. `seeds`: the front on means over seeds
    (`analysis.seeds.seed_front`), shown before the per-run front when some configuration has several seeds."""
    sources = list(dict.fromkeys(df["source"]))
    parts = [f"# Results: {', '.join(sources or folders)}", ""]
    parts += [markdown_table(status_table(df)), ""]
    parts += [f"> **Warning:** {line}" for line in mixed_settings(df)] + ([""] if mixed_settings(df) else [])
    parts += [f"Objectives: `{format_objectives(objectives)}`", ""]

    parts += ["## Grid configurations", ""]
    grid = grid_table(df)
    parts += [
        markdown_table(grid) if not grid.empty else "_No grid configurations (config_id) in these results._",
        "",
        "Metric: mean ± std over the completed seeds where there are several; memory and time: means.",
        "",
    ]

    if seeds is not None:
        parts += [
            f"## Pareto set on means over seeds ({len(seeds.front)} of {seeds.candidates} configurations)",
            "",
            markdown_table(means_table(seeds, objectives)),
            "",
            f"Mean ± std (ddof=1) over each configuration's completed seeds (`config_key`: its settings without "
            f"the seed); {NOISE_RULE}. All columns: `{PARETO_MEANS_FILE}`.",
            "",
        ]
    parts += [f"## Pareto set ({len(front)} of {len(df)} trials)", ""]
    parts += [
        markdown_table(pareto_table(front, objectives))
        if len(front)
        else "_No completed trial with every objective._",
        "",
        "Completed trials only (failed, stopped and infeasible trials are left out). "
        "All columns: `pareto.csv`.",
        "",
    ]

    parts += ["## Hypervolume", ""]
    if _finite(reference):
        ref_text = ", ".join(f"{k} = {v:.6g}" for k, v in reference.items())
        budget = hypervolume_at_budget(history)
        budget_table = budget.rename(
            columns={"hypervolume": "hypervolume at budget", "final_hypervolume": "final hypervolume"}
        )
        parts += [
            f"Reference point: {ref_text} (each objective's worst completed value pushed 10% of its range "
            "further; shared by all searches).",
            "",
            markdown_table(budget_table),
            "",
        ]
    else:
        parts += ["_No completed trial with every objective: no hypervolume._", ""]

    parts += ["## Plots", ""]
    for name, path in drawn.items():
        rel = os.path.relpath(path, out_dir).replace(os.sep, "/")
        parts += [f"### {PLOT_TITLES.get(name, name)}", "", f"![{PLOT_TITLES.get(name, name)}]({rel})", ""]

    memory = plots.memory_prediction_data(df)
    if memory.n:
        parts += [
            f"Memory model: {memory.n} trials, mean |measured - predicted| / predicted = "
            f"{memory.mean_abs_error_pct:.1f}%, worst {memory.max_abs_error_pct:.1f}%.",
            "",
        ]

    failed = df[df["status"].isin(["failed", "infeasible", "diverged"])]
    if len(failed):
        parts += ["## Failed, infeasible and diverged trials", ""]
        cols = [c for c in ("source", "trial_id", "config_id", "status", "error") if c in failed.columns]
        if len(sources) <= 1:
            cols.remove("source")
        table = failed[cols].copy()
        table["error"] = table["error"].astype("string").fillna("").str.slice(0, 160)
        parts += [markdown_table(table), ""]
    return "\n".join(parts).rstrip() + "\n"


def _folder_names(dirs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    paths = [dirs] if isinstance(dirs, str | os.PathLike) else list(dirs)
    return [Path(p).name for p in paths]


# --- formatting ---------------------------------------------------------------------------------------------


def _first(values: pd.Series) -> str:
    present = [str(v) for v in values if isinstance(v, str) and v]
    return present[0] if present else ""


def _mean_std(values: pd.Series, digits: int | None) -> str:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if numbers.empty:
        return "–"
    if len(numbers) == 1:
        return _cell(float(numbers.iloc[0]), digits)
    mean, std = _cell(float(numbers.mean()), digits), _cell(float(numbers.std(ddof=1)), digits)
    return f"{mean} ± {std} (n={len(numbers)})"


def _pm(mean: Any, std: Any, digits: int | None) -> str:
    """`mean ± std`; the mean alone when the std is missing (one seed)."""
    text = _cell(float(mean), digits)
    return text if std is None or pd.isna(std) else f"{text} ± {_cell(float(std), digits)}"


def _mean(values: pd.Series, digits: int | None) -> str:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return _cell(float(numbers.mean()), digits) if len(numbers) else "–"


DIGITS: Mapping[str, int | None] = LiveMap(lambda: {c.name: c.digits for c in COLUMNS})
"""Decimals per column in tables (`trainables.columns.Column.digits`; None: 4 significant digits), read live."""


def _digits(column: str) -> int | None:
    return digits_of(column)


def _cell(value: Any, digits: int | None = None) -> str:
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if digits is not None:
            return f"{value:.{digits}f}"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def _md_cell(value: Any) -> str:
    return _cell(value).replace("|", "\\|").replace("\n", " ")


def _finite(point: Mapping[str, float]) -> bool:
    return bool(point) and all(math.isfinite(v) for v in point.values())
