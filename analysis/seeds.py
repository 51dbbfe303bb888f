"""Seeds kept apart from configurations: per-configuration mean and spread over seeds, the Pareto front on means,
and the pairs of front points whose order is within noise (`rankbits pareto --reeval-seeds`, `rankbits analyze`).

A configuration is its settings without the seed: the `config_key` column (`trainables.config.config_key`; rows
that lack one, from a summary-only folder of an old version, count as configurations of their own). Only runs
that may enter a front count (`analysis.pareto.eligible`: completed, a value for every objective).

Noise rule: two configurations' order on an objective is *within noise* when their means differ by less than one
combined standard error, |mean_a - mean_b| < z * sqrt(se_a^2 + se_b^2) with se = std / sqrt(n) and z = 1: the
usual two-sample z statistic for a difference of independent means (Welch's, with the normal in place of the t
quantile) below 1. It needs a spread on both sides, so a configuration measured on one seed is never in a pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis.objectives import validate_objectives
from analysis.pareto import eligible, pareto_front

DESCRIPTIVE = (
    "source",
    "trial_id",
    "config_id",
    "task",
    "model",
    "method",
    "quantization",
    "lora_strategy",
    "mean_bits",
    "bits_per_layer",
    "ranks_per_layer",
    "total_rank",
    "trainable_pct",
)
"""Columns `seed_stats` copies from a configuration's first run (lowest seed) when they are not objectives."""

PAIR_COLUMNS = ["config_a", "config_b", "objective", "mean_a", "mean_b", "difference", "combined_se", "z"]


def mean_column(objective: str) -> str:
    return f"{objective}_mean"


def std_column(objective: str) -> str:
    return f"{objective}_std"


def config_keys(df: pd.DataFrame) -> pd.Series:
    """Each row's configuration: its `config_key`, or `trial <trial_id>` where it has none."""
    keys = (
        df["config_key"].astype("string").fillna("") if "config_key" in df else pd.Series("", index=df.index)
    )
    ids = df["trial_id"].astype("string").fillna("") if "trial_id" in df else pd.Series("", index=df.index)
    return keys.where(keys != "", "trial " + ids.astype(str)).astype("string")


def seed_stats(df: pd.DataFrame, objectives: Mapping[str, str]) -> pd.DataFrame:
    """One row per configuration with an eligible run, in the order of their first runs.

    Columns: `config_key`; `n_seeds` (seeds with an eligible run; of several eligible runs on one seed, e.g. a
    duplicate proposal, the first counts); `n_runs` (every run of the configuration, failed and stopped ones and
    same-seed repeats included); `seeds` ("0,1,2"); per objective `<name>_mean` and
    `<name>_std` (sample standard deviation, ddof=1; NaN for one run); and the `DESCRIPTIVE` columns of the
    configuration's first run (lowest seed). Objectives are validated as `analysis.objectives.validate_objectives`
    does (ConfigError for an unknown column)."""
    objectives = validate_objectives(objectives, df, require_values=False)
    columns = ["config_key", "n_seeds", "n_runs", "seeds"]
    columns += [c for name in objectives for c in (mean_column(name), std_column(name))]
    columns += [c for c in DESCRIPTIVE if c in df.columns and c not in objectives and c != "config_key"]
    keyed = df.assign(_key=config_keys(df), _row=np.arange(len(df)))
    done = keyed[eligible(df, objectives).to_numpy()]
    if done.empty:
        return pd.DataFrame(columns=columns)
    sort_by = ["_key", "seed", "_row"] if "seed" in done else ["_key", "_row"]
    done = done.sort_values(sort_by, kind="stable")
    if (
        "seed" in done
    ):  # a repeat on a seed already counted (a duplicate proposal) adds no seed: first run kept
        done = done.drop_duplicates(["_key", "seed"])
    groups = done.groupby("_key", sort=False)
    first = done.drop_duplicates("_key").set_index("_key")
    out = pd.DataFrame(index=first.index)
    out["config_key"] = first.index.astype(str)
    out["n_seeds"] = groups.size()
    out["n_runs"] = keyed.groupby("_key").size().reindex(out.index)
    seeds = done["seed"] if "seed" in done else pd.Series(pd.NA, index=done.index)
    out["seeds"] = seeds.groupby(done["_key"], sort=False).agg(
        lambda s: ",".join(str(int(v)) for v in s.dropna())
    )
    for name in objectives:
        values = (
            pd.to_numeric(done[name], errors="coerce").astype("float64").groupby(done["_key"], sort=False)
        )
        out[mean_column(name)] = values.mean()
        out[std_column(name)] = values.std(ddof=1)
    for column in columns[4 + 2 * len(objectives) :]:
        out[column] = first[column]
    order = done.groupby("_key", sort=False)["_row"].min().sort_values(kind="stable").index
    out = out.loc[order, columns].reset_index(drop=True)
    return out.astype({"n_seeds": "int64", "n_runs": "int64"})


def front_on_means(stats: pd.DataFrame, objectives: Mapping[str, str], min_seeds: int = 2) -> pd.DataFrame:
    """The rows of `stats` (`seed_stats`) on the Pareto front of their means, among the configurations measured on
    at least `min_seeds` seeds (default 2: a one-seed mean has no spread to judge it by). Same front rule and
    best-first order as `analysis.pareto.pareto_front`, applied to the `<name>_mean` columns."""
    objectives = validate_objectives(objectives)
    candidates = stats[stats["n_seeds"] >= min_seeds]
    means = pd.DataFrame({name: candidates[mean_column(name)] for name in objectives}, index=candidates.index)
    return candidates.loc[pareto_front(means, objectives).index]


def noise_pairs(front: pd.DataFrame, objectives: Mapping[str, str], z: float = 1.0) -> pd.DataFrame:
    """Pairs of rows of `front` (`seed_stats` rows, e.g. `front_on_means`) whose order on an objective is within
    noise: |mean_a - mean_b| < z * sqrt(se_a^2 + se_b^2), se = std / sqrt(n_seeds) (module docstring).

    One row per pair and objective, a before b in `front`'s order: `PAIR_COLUMNS` (`difference` = mean_a - mean_b,
    `combined_se`, and `z` = difference / combined_se). Pairs where either side has fewer than two seeds are
    never listed; an exact tie with no spread on either side is a tie, not noise, and is not listed."""
    objectives = validate_objectives(objectives)
    rows = []
    n = front["n_seeds"].to_numpy(dtype="float64")
    keys = front["config_key"].astype(str).to_numpy()
    upper = np.triu(np.ones((len(front), len(front)), dtype=bool), k=1)
    for name in objectives:
        mean = front[mean_column(name)].to_numpy(dtype="float64")
        se = front[std_column(name)].to_numpy(dtype="float64") / np.sqrt(n)
        diff = mean[:, None] - mean[None, :]
        combined = np.sqrt(se[:, None] ** 2 + se[None, :] ** 2)
        with np.errstate(invalid="ignore"):
            close = upper & np.isfinite(combined) & (np.abs(diff) < z * combined)
        for a, b in zip(*np.nonzero(close)):
            rows.append(
                [
                    keys[a],
                    keys[b],
                    name,
                    mean[a],
                    mean[b],
                    diff[a, b],
                    combined[a, b],
                    diff[a, b] / combined[a, b],
                ]
            )
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


class SeedFront(NamedTuple):
    stats: pd.DataFrame
    """`seed_stats` of every configuration."""
    front: pd.DataFrame
    """`front_on_means` (configurations with at least `min_seeds` seeds)."""
    pairs: pd.DataFrame
    """`noise_pairs` of the front."""
    candidates: int
    """Configurations measured on at least `min_seeds` seeds (the front's candidates)."""


def seed_front(
    df: pd.DataFrame, objectives: Mapping[str, str], min_seeds: int = 2, z: float = 1.0
) -> SeedFront | None:
    """`seed_stats`, `front_on_means` and `noise_pairs` of a results frame; None when no configuration has
    `min_seeds` eligible runs (every front still rests on one seed)."""
    stats = seed_stats(df, objectives)
    candidates = int((stats["n_seeds"] >= min_seeds).sum()) if len(stats) else 0
    if not candidates:
        return None
    front = front_on_means(stats, objectives, min_seeds)
    return SeedFront(stats, front, noise_pairs(front, objectives, z), candidates)
