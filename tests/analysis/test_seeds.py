"""Seeds apart from configurations (issue 15 item 5): per-config mean and std over seeds, the front on means,
the pairs of front points whose order is within noise. Hand-built frames with ties and mixed min / max."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import load_results
from analysis.report import key_table_text, means_table, write_frame_report
from analysis.seeds import SeedFront, front_on_means, noise_pairs, seed_front, seed_stats
from trainables.errors import ConfigError

OBJ = {"accuracy": "max", "peak_memory_mb": "min"}


@pytest.fixture
def runs() -> pd.DataFrame:
    rows = [  # (trial_id, config_key, seed, status, accuracy, peak MB)
        ("a2", "A", 2, "completed", 0.84, 100.0),
        ("a0", "A", 0, "completed", 0.80, 100.0),
        ("b0", "B", 0, "completed", 0.83, 90.0),
        ("a1", "A", 1, "completed", 0.82, 100.0),
        ("b1", "B", 1, "completed", 0.81, 92.0),
        ("c0", "C", 0, "completed", 0.90, 150.0),
        ("c1", "C", 1, "completed", 0.92, 150.0),
        ("d0", "D", 0, "completed", 0.99, 50.0),  # best of all, but one seed only
        ("e0", "E", 0, "completed", 0.95, 60.0),
        ("e1", "E", 1, "failed", None, None),  # a failed seed counts as a run, not in the mean
        ("f0", "F", 0, "infeasible", None, 10.0),
        ("x", "", 0, "completed", 0.50, 10.0),  # no config_key (old summary-only folder): its own config
        ("c0b", "C", 0, "completed", 0.10, 150.0),  # a repeat on seed 0 (duplicate proposal): adds no seed
    ]
    df = pd.DataFrame(
        rows, columns=["trial_id", "config_key", "seed", "status", "accuracy", "peak_memory_mb"]
    )
    df["bits_per_layer"] = df["config_key"].map({"A": "4,4", "B": "4,8"}).fillna("8,8")
    return df


def test_seed_stats_one_row_per_config_with_mean_std_and_counts(runs: pd.DataFrame) -> None:
    stats = seed_stats(runs, OBJ).set_index("config_key")
    assert list(stats.index) == ["A", "B", "C", "D", "E", "trial x"]  # order of first runs; F never completed
    assert stats.loc["A", "n_seeds"] == 3 and stats.loc["A", "seeds"] == "0,1,2"
    assert stats.loc["A", "trial_id"] == "a0"  # descriptive columns from the lowest seed
    assert stats.loc["A", "accuracy_mean"] == pytest.approx(0.82)
    assert stats.loc["A", "accuracy_std"] == pytest.approx(0.02)  # ddof=1
    assert stats.loc["A", "peak_memory_mb_std"] == 0.0
    assert stats.loc["B", "peak_memory_mb_std"] == pytest.approx(math.sqrt(2))
    assert (stats.loc["E", "n_seeds"], stats.loc["E", "n_runs"]) == (1, 2)
    assert math.isnan(stats.loc["D", "accuracy_std"]) and math.isnan(stats.loc["trial x", "accuracy_std"])
    assert stats.loc["B", "bits_per_layer"] == "4,8"
    assert (stats.loc["C", "n_seeds"], stats.loc["C", "n_runs"]) == (2, 3)
    assert stats.loc["C", "accuracy_mean"] == pytest.approx(0.91)
    assert "accuracy" not in stats.columns


def test_front_on_means_needs_two_seeds_and_breaks_ties_by_the_other_objective(runs: pd.DataFrame) -> None:
    stats = seed_stats(runs, OBJ)
    front = front_on_means(stats, OBJ)
    # A and B tie on mean accuracy (0.82); B uses less memory, so A leaves. D and E have one seed: not candidates.
    assert list(front["config_key"]) == ["C", "B"]
    assert list(front_on_means(stats, OBJ, min_seeds=1)["config_key"]) == ["D", "trial x"]  # D dominates E


def test_front_on_means_with_mixed_directions(runs: pd.DataFrame) -> None:
    flipped = {"accuracy": "min", "peak_memory_mb": "max"}
    front = front_on_means(seed_stats(runs, flipped), flipped)
    assert list(front["config_key"]) == ["A", "C"]  # A beats B at equal accuracy by more memory now


def _stats(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(
        rows,
        columns=[
            "config_key",
            "n_seeds",
            "accuracy_mean",
            "accuracy_std",
            "peak_memory_mb_mean",
            "peak_memory_mb_std",
        ],
    )


def test_noise_pairs_use_one_combined_standard_error() -> None:
    front = _stats(
        [
            ("P", 4, 0.80, 0.02, 100.0, 0.0),
            ("Q", 4, 0.81, 0.02, 100.0, 0.0),  # 0.01 apart, combined se sqrt(0.01^2 + 0.01^2) = 0.0141: noise
            ("R", 4, 0.85, 0.02, 80.0, 5.0),
            ("T", 4, 0.90, 0.02, 83.0, 4.0),  # 3 MB from R, combined se sqrt(2.5^2 + 2^2) = 3.2: noise
            ("S", 1, 0.805, np.nan, 100.0, np.nan),  # one seed: no spread, never in a pair
        ]
    )
    pairs = noise_pairs(front, OBJ)
    got = {(r.config_a, r.config_b, r.objective) for r in pairs.itertuples()}
    assert got == {
        ("P", "Q", "accuracy"),
        ("R", "T", "peak_memory_mb"),
    }  # P-Q memory: an exact tie, not noise
    pq = pairs[pairs["config_a"] == "P"].iloc[0]
    assert pq["difference"] == pytest.approx(-0.01) and pq["combined_se"] == pytest.approx(
        math.sqrt(2) * 0.01
    )
    assert pq["z"] == pytest.approx(-1 / math.sqrt(2))
    assert noise_pairs(front, OBJ, z=0.5).empty  # |z| = 0.71 and 0.94: both beyond half a standard error


def test_seed_front_is_none_while_every_config_has_one_seed(runs: pd.DataFrame) -> None:
    single = runs[runs["seed"] == 0]
    assert seed_front(single, OBJ) is None
    result = seed_front(runs, OBJ)
    assert result is not None and result.candidates == 3 and list(result.front["config_key"]) == ["C", "B"]
    assert result.pairs.empty  # C and B are far apart on both objectives


def test_bad_objective_is_a_config_error(runs: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="not in these results"):
        seed_stats(runs, {"perplexity": "min"})


def test_report_shows_the_front_on_means_when_a_folder_holds_several_seeds(
    grid_dir: Path, pareto_dir: Path, tmp_path: Path
) -> None:
    """The grid fixture: six configs x seeds 0 and 1 (Joint-3's seed 1 failed); `config_key` pools the seeds."""
    df = load_results(grid_dir)
    assert df.groupby("config_key")["seed"].nunique().tolist() == [2] * 6
    paths = write_frame_report(df, OBJ, tmp_path / "out")
    means = pd.read_csv(paths.pareto_means_csv)
    expected = seed_front(df, OBJ)
    assert expected is not None and expected.candidates == 5  # Joint-3 has one completed seed
    assert means["config_key"].tolist() == expected.front["config_key"].tolist()
    assert {"accuracy_mean", "accuracy_std", "peak_memory_mb_mean", "n_seeds"} <= set(means.columns)
    text = paths.report.read_text()
    assert "## Pareto set on means over seeds" in text and "within noise" in text
    b_fp = df[(df["config_id"] == "B-FP") & (df["status"] == "completed")]
    if "B-FP" in set(means["config_id"]):
        mean, std = b_fp["accuracy"].mean(), b_fp["accuracy"].std()
        assert f"{mean:.3f} ± {std:.3f}" in text
    table = means_table(expected, OBJ)
    assert table["#"].tolist() == [f"#{i + 1}" for i in range(len(expected.front))]
    assert all(" ± " in v for v in table["accuracy"])
    searched = df.assign(config_id="")  # without grid ids the key table is the Pareto set: then on means too
    assert "Pareto set on means over seeds" in key_table_text(searched, OBJ)
    single = write_frame_report(load_results(pareto_dir), OBJ, tmp_path / "single")  # a duplicate, one seed
    assert single.pareto_means_csv is None and "on means" not in single.report.read_text()


def test_means_table_marks_pairs_within_noise() -> None:
    front = _stats([("P", 4, 0.80, 0.02, 100.0, 1.0), ("Q", 4, 0.81, 0.02, 90.0, 1.0)])
    front["config_id"] = pd.array([pd.NA, "B-Q4"], dtype="string")  # a searched config has no grid id
    front["trial_id"] = ["p0", "q0"]
    seeds = SeedFront(front, front, noise_pairs(front, OBJ), 2)
    table = means_table(seeds, OBJ).set_index("#")
    assert table.loc["#1", "within noise of"] == "#2 accuracy"
    assert table.loc["#2", "within noise of"] == "#1 accuracy"
    assert (
        table.loc["#1", "accuracy"] == "0.800 ± 0.020" and table.loc["#2", "peak_memory_mb"] == "90.0 ± 1.0"
    )
