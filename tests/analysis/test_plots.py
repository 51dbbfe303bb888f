from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis import hypervolume_history, load_results, plots
from analysis.results import GRID_CONFIG_IDS

OBJ = {"accuracy": "max", "peak_memory_mb": "min"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.exists()
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 2000


@pytest.fixture
def both(grid_dir: Path, pareto_dir: Path) -> pd.DataFrame:
    return load_results([grid_dir, pareto_dir])


def test_pareto_scatter_data_labels_the_six_grid_configs(grid_dir: Path) -> None:
    df = load_results(grid_dir)
    data = plots.pareto_scatter_data(df)
    assert (data.x, data.y, data.x_direction, data.y_direction) == (
        "peak_memory_mb",
        "accuracy",
        "min",
        "max",
    )
    assert len(data.points) == 11  # the failed trial has no values
    assert data.labels["config_id"].tolist() == list(GRID_CONFIG_IDS)
    fp = data.labels.set_index("config_id").loc["B-FP"]
    assert fp["y"] == pytest.approx((0.910 + 0.900) / 2)  # mean over seeds
    assert fp["x"] == pytest.approx(1405.0)
    assert data.front["x"].is_monotonic_increasing
    assert data.front["on_front"].all()
    # In memory order; Joint-1 (4-bit AdaLoRA) is dominated by B-Q4, each config's other seed by its first.
    assert data.front["trial_id"].tolist() == ["grid10", "grid03", "grid08", "grid00", "grid04"]


def test_pareto_scatter_needs_two_objectives(grid_dir: Path) -> None:
    from trainables.errors import ConfigError

    df = load_results(grid_dir)
    with pytest.raises(ConfigError, match="exactly 2 objectives"):
        plots.pareto_scatter_data(df, {"accuracy": "max"})


def test_front_layers_data(pareto_dir: Path) -> None:
    df = load_results(pareto_dir)
    data = plots.front_layers_data(df, OBJ)
    assert data.bits.shape == (5, 6)
    assert data.ranks.shape == (5, 6)
    assert data.bits.index.is_unique
    first = data.bits.iloc[0].tolist()  # best accuracy first: the all-8-bit trial
    assert first == [8.0] * 6
    assert data.ranks.iloc[0].tolist() == [8.0] * 6


def test_memory_prediction_data(pareto_dir: Path) -> None:
    df = load_results(pareto_dir)
    data = plots.memory_prediction_data(df)
    # Completed trials have both; infeasible/failed/stopped lack a measured peak.
    assert data.n == 6
    assert set(data.points["status"]) == {"completed"}
    np.testing.assert_allclose(data.points["error_pct"], 100 * (1 / 1.05 - 1))
    assert data.mean_abs_error_pct == pytest.approx(100 * (1 - 1 / 1.05))


def test_every_plot_writes_a_png(both: pd.DataFrame, tmp_path: Path) -> None:
    assert_png(plots.draw_pareto_scatter(plots.pareto_scatter_data(both), tmp_path / "a" / "scatter.png"))
    assert_png(plots.draw_front_layers(plots.front_layers_data(both, OBJ), tmp_path / "layers.png"))
    history = hypervolume_history(both, OBJ)
    assert set(history["source"]) == {"grid-sst2", "pareto-sst2"}
    assert_png(plots.draw_hypervolume_history(history, tmp_path / "hv.png"))
    assert_png(plots.draw_memory_prediction(plots.memory_prediction_data(both), tmp_path / "memory.png"))


def test_plots_of_empty_data_still_write(tmp_path: Path) -> None:
    empty = pd.DataFrame(
        {
            "status": pd.Series(dtype="string"),
            "accuracy": pd.Series(dtype=float),
            "peak_memory_mb": pd.Series(dtype=float),
            "predicted_peak_mb": pd.Series(dtype=float),
            "bits_per_layer": pd.Series(dtype="string"),
            "ranks_per_layer": pd.Series(dtype="string"),
        }
    )
    assert_png(plots.draw_pareto_scatter(plots.pareto_scatter_data(empty, OBJ), tmp_path / "s.png"))
    assert_png(plots.draw_front_layers(plots.front_layers_data(empty, OBJ), tmp_path / "l.png"))
    assert_png(plots.draw_hypervolume_history(hypervolume_history(empty, OBJ), tmp_path / "h.png"))
    assert_png(plots.draw_memory_prediction(plots.memory_prediction_data(empty), tmp_path / "m.png"))


def test_memory_goes_on_the_x_axis_whatever_the_order(grid_dir: Path) -> None:
    df = load_results(grid_dir)
    data = plots.pareto_scatter_data(df, {"peak_memory_mb": "min", "accuracy": "max"})
    assert (data.x, data.y) == ("peak_memory_mb", "accuracy")


def test_labels_name_the_source_when_several_searches_hold_grid_configs(
    tmp_path: Path, make_results: Callable[..., Path], grid_trials: list[Any]
) -> None:
    a = make_results(tmp_path, "grid-a", "grid", grid_trials)
    b = make_results(tmp_path, "grid-b", "grid", grid_trials[:4])
    data = plots.pareto_scatter_data(load_results([a, b]))
    assert len(data.labels) == 6 + 2
    assert data.labels["label"].tolist()[:2] == ["B-FP (grid-a)", "B-FP (grid-b)"]


def test_accuracy_plots_carry_the_chance_level(grid_dir: Path, tmp_path: Path) -> None:
    df = load_results(grid_dir)
    data = plots.pareto_scatter_data(df)
    assert data.chance == 0.5  # SST-2: two near-balanced classes
    assert_png(plots.draw_pareto_scatter(data, tmp_path / "scatter.png"))
    assert plots.chance_level(df, "perplexity") is None
    assert plots.chance_level(df.assign(task="wikitext2"), "accuracy") is None
