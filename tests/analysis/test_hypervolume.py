from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from optuna._hypervolume import compute_hypervolume

from analysis import default_reference_point, hypervolume, hypervolume_history
from analysis.hypervolume import hypervolume_at_budget, hypervolume_of_losses
from trainables.errors import ConfigError

OBJ = {"accuracy": "max", "peak_memory_mb": "min"}


def test_2d_known_staircase() -> None:
    df = pd.DataFrame({"accuracy": [0.9, 0.8, 0.7], "peak_memory_mb": [300.0, 200.0, 100.0]})
    # Boxes 0.1 wide and 100, 200, 300 MB tall beyond the reference (0.6, 400).
    assert hypervolume(df, OBJ, {"accuracy": 0.6, "peak_memory_mb": 400.0}) == pytest.approx(60.0)
    assert hypervolume(df, OBJ, [0.6, 400.0]) == pytest.approx(60.0)


def test_3d_known_union_of_boxes() -> None:
    loss = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    # 2*2*1 + 1*1*2 - overlap 1*1*1
    assert hypervolume_of_losses(loss, np.array([2.0, 2.0, 2.0])) == pytest.approx(5.0)
    assert hypervolume_of_losses(np.zeros((1, 3)), np.array([1.0, 2.0, 3.0])) == pytest.approx(6.0)


def test_single_objective_is_distance_to_reference() -> None:
    df = pd.DataFrame({"accuracy": [0.7, 0.9]})
    assert hypervolume(df, {"accuracy": "max"}, {"accuracy": 0.5}) == pytest.approx(0.4)


def test_excluded_rows_and_points_beyond_reference(front_frame: pd.DataFrame) -> None:
    ref = {"accuracy": 0.5, "peak_memory_mb": 500.0}
    only_completed = front_frame[front_frame["status"] == "completed"].dropna()
    assert hypervolume(front_frame, OBJ, ref) == pytest.approx(hypervolume(only_completed, OBJ, ref))
    worse = pd.DataFrame({"accuracy": [0.4, 0.9], "peak_memory_mb": [100.0, 600.0]})
    assert hypervolume(worse, OBJ, ref) == 0.0
    assert hypervolume(front_frame.iloc[0:0], OBJ) == 0.0


def test_duplicates_do_not_add_volume() -> None:
    df = pd.DataFrame({"accuracy": [0.9, 0.9], "peak_memory_mb": [100.0, 100.0]})
    ref = {"accuracy": 0.8, "peak_memory_mb": 200.0}
    assert (
        hypervolume(df, OBJ, ref) == pytest.approx(hypervolume(df.iloc[:1], OBJ, ref)) == pytest.approx(10.0)
    )


@pytest.mark.parametrize("n_objectives", [2, 3, 4])
def test_agrees_with_optuna_on_random_fronts(n_objectives: int) -> None:
    rng = np.random.default_rng(10 + n_objectives)
    for trial in range(25):
        n = int(rng.integers(1, 50))
        loss = (
            rng.integers(0, 6, size=(n, n_objectives)).astype(float)
            if trial % 2
            else rng.random((n, n_objectives))
        )
        ref = loss.max(axis=0) + rng.random(n_objectives)
        assert hypervolume_of_losses(loss, ref) == pytest.approx(compute_hypervolume(loss, ref), rel=1e-9)


def test_agrees_with_optuna_through_frames_with_mixed_directions() -> None:
    rng = np.random.default_rng(7)
    df = pd.DataFrame(
        {
            "accuracy": rng.random(40),
            "peak_memory_mb": 500 + 1000 * rng.random(40),
            "train_time_s": 10 + 100 * rng.random(40),
        }
    )
    objectives = {"accuracy": "max", "peak_memory_mb": "min", "train_time_s": "min"}
    ref = default_reference_point(df, objectives)
    loss = np.column_stack([-df["accuracy"], df["peak_memory_mb"], df["train_time_s"]])
    ref_loss = np.array([-ref["accuracy"], ref["peak_memory_mb"], ref["train_time_s"]])
    assert hypervolume(df, objectives) == pytest.approx(compute_hypervolume(loss, ref_loss), rel=1e-9)


def test_default_reference_point_rule(front_frame: pd.DataFrame) -> None:
    ref = default_reference_point(front_frame, OBJ)
    # Completed rows with values: accuracy 0.80..0.95, memory 100..450.
    assert ref["accuracy"] == pytest.approx(0.80 - 0.1 * 0.15)
    assert ref["peak_memory_mb"] == pytest.approx(450.0 + 0.1 * 350.0)
    shuffled = front_frame.sample(frac=1.0, random_state=3)
    assert default_reference_point(shuffled, OBJ) == ref
    assert hypervolume(shuffled, OBJ) == hypervolume(front_frame, OBJ)


def test_default_reference_point_zero_range() -> None:
    df = pd.DataFrame({"accuracy": [0.5, 0.5], "peak_memory_mb": [0.0, 0.0]})
    # The range is taken as |value| (0.5 -> 0.05 margin), or 1 when the value is 0 (0.1 margin).
    assert default_reference_point(df, OBJ) == {
        "accuracy": pytest.approx(0.45),
        "peak_memory_mb": pytest.approx(0.1),
    }
    assert hypervolume(df, OBJ) == pytest.approx(0.05 * 0.1)


def test_default_reference_point_without_eligible_rows() -> None:
    df = pd.DataFrame({"status": ["failed"], "accuracy": [0.9], "peak_memory_mb": [1.0]})
    assert all(np.isnan(v) for v in default_reference_point(df, OBJ).values())
    assert hypervolume(df, OBJ) == 0.0


def test_bad_reference_points(front_frame: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="must be exactly the objectives"):
        hypervolume(front_frame, OBJ, {"accuracy": 0.5})
    with pytest.raises(ConfigError, match="1 values given for 2 objectives"):
        hypervolume(front_frame, OBJ, [0.5])
    with pytest.raises(ConfigError, match="finite"):
        hypervolume(front_frame, OBJ, [0.5, float("inf")])


def _search(source: str, values: list[tuple[str, float, float]]) -> pd.DataFrame:
    df = pd.DataFrame(values, columns=["status", "accuracy", "peak_memory_mb"])
    df.insert(0, "source", source)
    df.insert(1, "trial_number", range(len(df)))
    df.insert(2, "trial_id", [f"{source}-{i}" for i in range(len(df))])
    return df


def test_history_grows_with_each_trial_and_ends_at_the_total() -> None:
    df = _search(
        "s",
        [
            ("completed", 0.80, 300.0),
            ("failed", float("nan"), float("nan")),
            ("completed", 0.70, 400.0),  # dominated: no change
            ("stopped", 0.99, 10.0),  # partial metrics: no change
            ("completed", 0.90, 200.0),
            ("completed", 0.95, 350.0),
        ],
    )
    ref = {"accuracy": 0.5, "peak_memory_mb": 500.0}
    history = hypervolume_history(df, OBJ, ref)
    assert list(history.columns) == ["source", "trial", "trial_number", "trial_id", "status", "hypervolume"]
    hv = history["hypervolume"].tolist()
    assert hv[0] == pytest.approx(0.3 * 200.0)
    assert hv[1] == hv[2] == hv[0]
    assert hv[3] == hv[2]
    assert hv[4] > hv[3]
    assert np.all(np.diff(hv) >= 0)
    assert hv[-1] == pytest.approx(hypervolume(df, OBJ, ref))
    for k in range(1, len(df) + 1):
        assert hv[k - 1] == pytest.approx(hypervolume(df.iloc[:k], OBJ, ref))
    assert history["trial"].tolist() == [1, 2, 3, 4, 5, 6]
    assert history["status"].tolist()[1] == "failed"


def test_history_follows_trial_number_not_row_order() -> None:
    df = _search("s", [("completed", 0.80, 300.0), ("completed", 0.90, 200.0)])
    reordered = df.iloc[::-1]
    ref = {"accuracy": 0.5, "peak_memory_mb": 500.0}
    assert hypervolume_history(reordered, OBJ, ref)["trial_id"].tolist() == ["s-0", "s-1"]


def test_histories_of_several_searches_share_the_reference() -> None:
    a = _search("a", [("completed", 0.80, 300.0), ("completed", 0.90, 250.0), ("completed", 0.91, 240.0)])
    b = _search("b", [("completed", 0.85, 200.0), ("failed", float("nan"), float("nan"))])
    both = pd.concat([a, b], ignore_index=True)
    history = hypervolume_history(both, OBJ)
    ref = default_reference_point(both, OBJ)
    assert history.groupby("source")["trial"].max().to_dict() == {"a": 3, "b": 2}
    final = history.groupby("source")["hypervolume"].last()
    assert final["a"] == pytest.approx(hypervolume(a, OBJ, ref))
    assert final["b"] == pytest.approx(hypervolume(b, OBJ, ref))

    at = hypervolume_at_budget(history).set_index("source")
    assert at.loc["a", "budget"] == 2  # the smaller search's budget
    assert at.loc["a", "hypervolume"] == pytest.approx(hypervolume(a.iloc[:2], OBJ, ref))
    assert at.loc["b", "hypervolume"] == pytest.approx(final["b"])
    assert at.loc["a", "final_hypervolume"] == pytest.approx(final["a"])


def test_history_of_frame_without_source_column(front_frame: pd.DataFrame) -> None:
    history = hypervolume_history(front_frame, OBJ)
    assert len(history) == len(front_frame)
    assert history["hypervolume"].iloc[-1] == pytest.approx(hypervolume(front_frame, OBJ))
