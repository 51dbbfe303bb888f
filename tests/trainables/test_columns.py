"""The result-column table: a made-up column defined only here shows up in the summary CSV, the analysis frame,
the objective choices, the plot label, table digits, the terminal table and Optuna's worst values; and every
objective column has a worst value by construction (bug 2 of issue 14: infeasible trials were told 0 s)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from analysis import load_results, parse_objectives
from analysis.objectives import OBJECTIVE_COLUMNS
from analysis.plots import AXIS_LABELS, _axis_label
from analysis.report import _digits
from search import results_io
from search.cli import build_parser
from search.searcher import KNOWN_RESULT_FIELDS, infeasible_values, worst_value
from trainables import columns
from trainables.columns import Column, register, unregister
from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.records import SUMMARY_COLUMNS, flatten
from trainables.result import TrialResult, TrialStatus

LOSS = Column(
    "final_train_loss",
    direction="min",
    label="final train loss",
    digits=4,
    short="loss",
)
"""A measured value the summary does not carry today (`TrialResult.final_train_loss`)."""


@pytest.fixture
def loss_column() -> Iterator[Column]:
    register(LOSS)
    yield LOSS  # pytest runs the rest after a failing test too
    unregister(LOSS.name)


def _row(trial_id: str = "abcde_00001") -> dict:
    cfg = TrialConfig.from_dict({"task": {"name": "sst2"}, "model": {"name": "tiny-bert"}})
    result = TrialResult.of(cfg, accuracy=0.81, final_train_loss=0.4321, bits_per_layer=[4, 8])
    return flatten(trial_id, cfg, result)


def test_made_up_column_reaches_the_summary_csv_and_the_analysis_frame(
    loss_column: Column, tmp_path: Path
) -> None:
    row = _row()
    assert row["final_train_loss"] == 0.4321
    text = results_io.csv_text([row])
    header, line = text.splitlines()
    assert header.split(",")[-1] == "final_train_loss" and line.endswith(",0.4321")
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "experiment_summary.csv").write_text(text)
    df = load_results(folder)
    assert df["final_train_loss"].dtype == "float64" and df["final_train_loss"].iloc[0] == 0.4321
    assert list(df.columns)[-3:] == ["n_layers", "origin", "tune_iterations"]  # analysis extras stay last


def test_made_up_column_is_an_objective_with_a_label_digits_and_a_worst_value(loss_column: Column) -> None:
    assert parse_objectives("accuracy,final_train_loss") == {"accuracy": "max", "final_train_loss": "min"}
    assert OBJECTIVE_COLUMNS["final_train_loss"] == "min"
    pareto_help = build_parser(["pareto"])._subparsers._group_actions[0].choices["pareto"].format_help()
    assert "final_train_loss" in " ".join(pareto_help.split())
    assert AXIS_LABELS["final_train_loss"] == "final train loss"
    assert _axis_label("final_train_loss", "min") == "final train loss (lower is better)"
    assert _digits("final_train_loss") == 4
    assert infeasible_values({"accuracy": "max", "final_train_loss": "min"}, {}) == [0.0, math.inf]
    assert columns.worst_values()["final_train_loss"] == math.inf
    table = results_io.table_text([_row()])
    assert "loss" in table.splitlines()[0].split() and "0.4321" in table


def test_without_the_column_nothing_lists_it() -> None:
    assert "final_train_loss" not in _row() and "final_train_loss" not in SUMMARY_COLUMNS
    with pytest.raises(ConfigError, match="unknown column 'final_train_loss'"):
        parse_objectives("final_train_loss")
    with pytest.raises(ConfigError, match="not an objective column"):
        infeasible_values({"final_train_loss": "min"}, {})


def test_every_objective_has_a_worst_value_never_better_than_a_measured_one() -> None:
    """Bug 2: an infeasible trial reached Optuna with the row's zeros (train_time_s = 0, the best possible time)."""
    objectives = dict(OBJECTIVE_COLUMNS)
    assert {"accuracy", "perplexity", "train_time_s", "tokens_per_s", "trainable_params"} <= set(objectives)
    values = dict(zip(objectives, infeasible_values(objectives, {})))
    for name, direction in objectives.items():
        if direction == "min":
            assert values[name] == math.inf, name
        else:
            assert values[name] == columns.column(name).low == 0.0, name
    assert values["train_time_s"] == math.inf and worst_value("train_time_s") == math.inf
    assert worst_value("accuracy") == 0.0 and worst_value("accuracy", "min") == 1.0
    # what the config fixes is told as such; everything else is the worst
    assert infeasible_values({"trainable_params": "min", "train_time_s": "min"}, {"trainable_params": 7}) == [
        7.0,
        math.inf,
    ]
    assert set(KNOWN_RESULT_FIELDS) == {
        "weight_memory_mb",
        "trainable_params",
        "total_rank",
        "initial_total_rank",
    }


def test_table_matches_the_result_type_and_keeps_the_summary_order() -> None:
    result_fields = set(TrialResult.__dataclass_fields__)
    for col in columns.COLUMNS:
        if col.summary and col.source is None:
            assert col.name in result_fields, col.name
    assert SUMMARY_COLUMNS[:4] == ["trial_id", "config_id", "task", "model"]
    assert columns.frame_columns()[:3] == ["source", "kind", "trial_number"]
    stopped = TrialResult.of(TrialConfig(), status=TrialStatus.STOPPED)
    row = flatten("t", TrialConfig(), stopped)
    assert row["train_time_s"] is None and row["error"] == "" and row["status"] == "stopped"
    with pytest.raises(ConfigError, match="already in the result table"):
        register(Column("accuracy"))
