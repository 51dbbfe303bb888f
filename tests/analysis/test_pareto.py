from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from optuna.study._multi_objective import _is_pareto_front

from analysis import pareto_front
from analysis.pareto import eligible, is_pareto_optimal, losses, pareto_mask
from trainables.errors import ConfigError

OBJ = {"accuracy": "max", "peak_memory_mb": "min"}


def brute_force_front(loss: np.ndarray) -> np.ndarray:
    """Definition: i is optimal iff no j is <= in every objective and < in one (NaN rows never optimal)."""
    n = loss.shape[0]
    ok = ~np.isnan(loss).any(axis=1)
    out = np.zeros(n, dtype=bool)
    for i in range(n):
        if not ok[i]:
            continue
        others = loss[ok]
        dominated = np.any(np.all(others <= loss[i], axis=1) & np.any(others < loss[i], axis=1))
        out[i] = not dominated
    return out


def test_front_with_ties_duplicates_nan_and_statuses(front_frame: pd.DataFrame) -> None:
    front = pareto_front(front_frame, OBJ)
    assert list(front["trial_id"]) == ["d", "b", "b2", "a"]  # best accuracy first
    assert front.index.tolist() == [4, 1, 2, 0]  # original index kept
    assert list(front.columns) == list(front_frame.columns)


def test_mask_and_eligibility(front_frame: pd.DataFrame) -> None:
    mask = pareto_mask(front_frame, OBJ)
    assert mask.index.equals(front_frame.index)
    assert front_frame.loc[mask, "trial_id"].tolist() == ["a", "b", "b2", "d"]
    ok = eligible(front_frame, OBJ)
    assert front_frame.loc[~ok, "trial_id"].tolist() == ["e", "f", "g", "h"]


def test_direction_flip_changes_front(front_frame: pd.DataFrame) -> None:
    front = pareto_front(front_frame, {"accuracy": "min", "peak_memory_mb": "max"})
    assert set(front["trial_id"]) == {"a", "c", "i"}  # low accuracy and high memory now win


def test_losses_negate_max_columns(front_frame: pd.DataFrame) -> None:
    loss = losses(front_frame, OBJ)
    assert loss[0].tolist() == [-0.80, 100.0]
    assert np.isnan(loss[5, 0])


def test_tie_in_one_objective_is_broken_by_the_other() -> None:
    df = pd.DataFrame({"accuracy": [0.9, 0.9, 0.95], "peak_memory_mb": [100.0, 120.0, 100.0]})
    assert pareto_front(df, OBJ).index.tolist() == [2]


def test_duplicated_dominated_points_all_leave() -> None:
    df = pd.DataFrame({"accuracy": [0.8, 0.8, 0.9], "peak_memory_mb": [200.0, 200.0, 100.0]})
    assert pareto_front(df, OBJ).index.tolist() == [2]


def test_three_objectives_hand_built() -> None:
    df = pd.DataFrame(
        {
            "accuracy": [0.90, 0.90, 0.85, 0.95, 0.80],
            "peak_memory_mb": [500.0, 500.0, 400.0, 900.0, 450.0],
            "train_time_s": [10.0, 12.0, 30.0, 50.0, 40.0],
        }
    )
    objectives = {"accuracy": "max", "peak_memory_mb": "min", "train_time_s": "min"}
    # 1 is dominated by 0 (same accuracy and memory, slower); 4 by 2 (less accurate, more memory, slower).
    assert sorted(pareto_front(df, objectives).index) == [0, 2, 3]


def test_single_objective_keeps_every_tied_best() -> None:
    df = pd.DataFrame({"accuracy": [0.9, 0.95, 0.95, float("nan")]})
    assert sorted(pareto_front(df, {"accuracy": "max"}).index) == [1, 2]


def test_nullable_integer_objective() -> None:
    df = pd.DataFrame(
        {
            "accuracy": [0.9, 0.8, 0.95],
            "trainable_params": pd.array([100, 50, None], dtype="Int64"),
        }
    )
    assert sorted(pareto_front(df, {"accuracy": "max", "trainable_params": "min"}).index) == [0, 1]


def test_no_status_column_means_all_rows_count() -> None:
    df = pd.DataFrame({"accuracy": [0.9, 0.8], "peak_memory_mb": [100.0, 50.0]})
    assert len(pareto_front(df, OBJ)) == 2


def test_empty_and_all_excluded_frames() -> None:
    empty = pd.DataFrame({"accuracy": pd.Series(dtype=float), "peak_memory_mb": pd.Series(dtype=float)})
    assert pareto_front(empty, OBJ).empty
    failed = pd.DataFrame({"status": ["failed"], "accuracy": [0.9], "peak_memory_mb": [1.0]})
    assert pareto_front(failed, OBJ).empty


def test_bad_objectives_raise_config_error(front_frame: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="'perplexity' is not in these results"):
        pareto_front(front_frame, {"perplexity": "min"})
    with pytest.raises(ConfigError, match="unknown column 'memory'"):
        pareto_front(front_frame, {"memory": "min"})
    with pytest.raises(ConfigError, match="direction 'smallest'"):
        pareto_front(front_frame, {"accuracy": "smallest"})


@pytest.mark.parametrize("n_objectives", [1, 2, 3, 4])
def test_matches_definition_and_optuna_on_random_sets(n_objectives: int) -> None:
    rng = np.random.default_rng(n_objectives)
    for trial in range(30):
        n = int(rng.integers(1, 60))
        # Small integer grids make ties and duplicates common.
        loss = (
            rng.integers(0, 5, size=(n, n_objectives)).astype(float)
            if trial % 2
            else rng.random((n, n_objectives))
        )
        if trial % 3 == 0:
            loss[rng.random(n) < 0.2, 0] = np.nan
        expected = brute_force_front(loss)
        np.testing.assert_array_equal(is_pareto_optimal(loss), expected)
        finite = ~np.isnan(loss).any(axis=1)
        if finite.any():
            np.testing.assert_array_equal(
                is_pareto_optimal(loss[finite]), _is_pareto_front(loss[finite], assume_unique_lexsorted=False)
            )
