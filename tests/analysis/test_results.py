from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis import load_results, pareto_front
from analysis.results import (
    COLUMNS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    STATUSES,
    STRING_COLUMNS,
    apply_dtypes,
    per_layer,
    read_experiment,
)
from trainables.errors import ConfigError
from trainables.records import SUMMARY_COLUMNS

OBJ = {"accuracy": "max", "peak_memory_mb": "min"}


def check_dtypes(df: pd.DataFrame) -> None:
    assert list(df.columns) == COLUMNS
    for name in STRING_COLUMNS:
        assert df[name].dtype == "string", name
    for name in INT_COLUMNS:
        assert df[name].dtype == "Int64", name
    for name in FLOAT_COLUMNS:
        assert df[name].dtype == "float64", name
    assert isinstance(df["status"].dtype, pd.CategoricalDtype)
    assert list(df["status"].cat.categories) == list(STATUSES)
    assert df["status"].notna().all()


def test_every_summary_column_has_an_explicit_dtype() -> None:
    typed = set(STRING_COLUMNS) | set(INT_COLUMNS) | set(FLOAT_COLUMNS) | {"status"}
    assert set(SUMMARY_COLUMNS) <= typed, sorted(set(SUMMARY_COLUMNS) - typed)


def test_grid_folder_from_summary(grid_dir: Path) -> None:
    df = load_results(grid_dir)
    check_dtypes(df)
    assert len(df) == 12
    assert set(df["source"]) == {"grid-sst2"}
    assert set(df["kind"]) == {"grid"}
    assert set(df["origin"]) == {"summary"}
    assert df["trial_number"].tolist() == list(range(12))
    assert df["config_id"].unique().tolist() == ["B-FP", "B-Q4", "B-Ada", "Joint-1", "Joint-2", "Joint-3"]
    assert df["status"].value_counts().to_dict() == {
        "completed": 11,
        "failed": 1,
        "stopped": 0,
        "infeasible": 0,
        "diverged": 0,
        "interrupted": 0,
    }
    joint3 = df[df["config_id"] == "Joint-3"].iloc[0]
    assert joint3["bits_per_layer"] == "8,4,4,4,4,8"
    assert joint3["ranks_per_layer"] == "4,4,8,8,12,12"
    assert joint3["total_rank"] == 4 * 48
    assert joint3["n_layers"] == 6
    assert joint3["quantization"] == "mixed 8/4"
    assert joint3["lora_strategy"] == "per-layer ranks"
    assert 4.0 < joint3["mean_bits"] < 8.0  # weight-weighted bits per weight, from the summary
    ada = df[df["config_id"] == "B-Ada"].iloc[0]
    assert ada["ranks_per_layer"] == "2.5,3,4,4.5,5,5"
    assert ada["method"] == "adalora"
    failed = df[df["status"] == "failed"].iloc[0]
    assert failed["config_id"] == "Joint-3"
    assert failed["error"].startswith("out of memory")
    assert pd.isna(failed["accuracy"])
    assert df.loc[df["status"] == "completed", "error"].eq("").all()


def test_summary_csv_and_all_results_agree(grid_dir: Path, tmp_path: Path) -> None:
    csv_only = shutil.copytree(grid_dir, tmp_path / "csv-only" / "grid-sst2")
    (csv_only / "all_results.json").unlink()
    json_only = shutil.copytree(grid_dir, tmp_path / "json-only" / "grid-sst2")
    (json_only / "experiment_summary.csv").unlink()
    a, b = load_results(csv_only), load_results(json_only)
    assert set(a["origin"]) == {"summary"} and set(b["origin"]) == {"all_results"}
    pd.testing.assert_frame_equal(a.drop(columns="origin"), b.drop(columns="origin"))


def test_pareto_folder_takes_the_extra_trials_from_tune(pareto_dir: Path, experiment_id: str) -> None:
    eid = experiment_id
    df = load_results(pareto_dir)
    check_dtypes(df)
    assert len(df) == 11  # 8 in the summary, 3 more in tune/
    assert set(df["kind"]) == {"pareto"}
    assert df["trial_id"].tolist() == [f"{eid}_{i:05d}" for i in range(11)]
    status = dict(zip(df["trial_id"], df["status"]))
    assert status[f"{eid}_00005"] == "infeasible"
    assert status[f"{eid}_00006"] == "failed"
    assert status[f"{eid}_00008"] == "stopped"  # intermediate rows only ("running")
    assert status[f"{eid}_00009"] == "stopped"  # intermediate "completed" row short of max_steps
    assert status[f"{eid}_00010"] == "failed"  # raised: Tune's error.txt
    by_id = df.set_index("trial_id")
    assert by_id.loc[f"{eid}_00010", "error"] == "RuntimeError: worker died"
    assert by_id.loc[f"{eid}_00008", "bits_per_layer"] == "4,4,4,4,4,4"
    assert by_id.loc[f"{eid}_00008", "config_id"] == ""
    assert by_id.loc[f"{eid}_00010", "method"] == "lora"  # from params.json
    assert by_id.loc[f"{eid}_00008", "tune_iterations"] == 2
    assert by_id.loc[f"{eid}_00000", "tune_iterations"] == 3  # 2 intermediate + final
    assert df["origin"].tolist() == ["summary"] * 8 + ["tune"] * 3
    # The stopped trials report high partial accuracy at tiny memory but stay off the front.
    assert set(pareto_front(df, OBJ)["trial_id"]) == {f"{eid}_{i:05d}" for i in (0, 1, 2, 4, 7)}


def test_tune_folder_alone(pareto_dir: Path, make_trial: Callable[..., Any]) -> None:
    (pareto_dir / "experiment_summary.csv").unlink()
    (pareto_dir / "all_results.json").unlink()
    from_tune = load_results(pareto_dir)
    check_dtypes(from_tune)
    assert set(from_tune["origin"]) == {"tune"}
    assert len(from_tune) == 11
    counts = from_tune["status"].value_counts().to_dict()
    assert counts == {
        "completed": 6,
        "failed": 2,
        "stopped": 2,
        "infeasible": 1,
        "diverged": 0,
        "interrupted": 0,
    }
    summary = make_trial("x").record()
    completed = from_tune[from_tune["status"] == "completed"].iloc[0]
    assert completed["accuracy"] == pytest.approx(0.86)
    assert completed["bits_per_layer"] == "4,4,4,4,4,4"
    assert completed["mean_bits"] == pytest.approx(4.127)
    assert completed["device"] == summary["device"]


def test_broken_and_blank_result_lines_are_skipped(pareto_dir: Path, experiment_id: str) -> None:
    result = next((pareto_dir / "tune").glob(f"*{experiment_id}_00000*/result.json"))
    with result.open("a") as fh:
        fh.write('\n{"trial_id": "cut sh')
    df = load_results(pareto_dir)
    assert len(df) == 11


def test_tune_ids_unlike_summary_ids_use_the_larger_source(
    tmp_path: Path,
    make_results: Callable[..., Path],
    make_trial: Callable[..., Any],
    tune_trial: Callable[..., Any],
    pareto_trials: list[Any],
) -> None:
    trials = pareto_trials[:3]
    other = [tune_trial(make_trial(f"zzzzz_{i:05d}")) for i in range(5)]
    folder = make_results(tmp_path, "odd", "pareto", trials, tune=other)
    with pytest.warns(UserWarning, match="do not match"):
        df = load_results(folder)
    assert len(df) == 5 and set(df["origin"]) == {"tune"}


def test_several_folders_stack_with_a_source_column(grid_dir: Path, pareto_dir: Path) -> None:
    df = load_results([grid_dir, pareto_dir])
    check_dtypes(df)
    assert df["source"].value_counts().to_dict() == {"grid-sst2": 12, "pareto-sst2": 11}
    assert df.groupby("source")["trial_number"].min().tolist() == [0, 0]
    assert dict(zip(df["source"], df["kind"])) == {"grid-sst2": "grid", "pareto-sst2": "pareto"}


def test_same_folder_names_are_told_apart(
    tmp_path: Path, make_results: Callable[..., Path], grid_trials: list[Any]
) -> None:
    a = make_results(tmp_path / "a", "run", "grid", grid_trials[:2])
    b = make_results(tmp_path / "b", "run", "grid", grid_trials[:3])
    df = load_results([a, b])
    assert df["source"].nunique() == 2


def test_missing_and_empty_folders_raise(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_results(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no results"):
        load_results(tmp_path / "empty")
    with pytest.raises(ConfigError, match="no folder given"):
        load_results([])


def test_bad_files_raise(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "all_results.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_results(folder)
    (folder / "all_results.json").unlink()
    (folder / "experiment_summary.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="no trial_id column"):
        load_results(folder)


def test_read_experiment(grid_dir: Path, tmp_path: Path) -> None:
    assert read_experiment(grid_dir)["kind"] == "grid"
    assert read_experiment(tmp_path) == {}
    (tmp_path / "experiment.json").write_text(json.dumps([1]))
    with pytest.raises(ConfigError, match="expected a JSON object"):
        read_experiment(tmp_path)


def test_apply_dtypes_is_idempotent(grid_dir: Path) -> None:
    df = load_results(grid_dir)
    pd.testing.assert_frame_equal(apply_dtypes(df), df)


def test_per_layer_pads_ragged_rows() -> None:
    values = pd.Series(["8,4,4,8", "3.5,4.25", "", None], index=[10, 11, 12, 13])
    wide = per_layer(values)
    assert wide.index.tolist() == [10, 11, 12, 13]
    assert wide.shape == (4, 4)
    assert wide.loc[11].tolist()[:2] == [3.5, 4.25]
    assert wide.loc[12].isna().all()


def test_layer_strings_are_normalized() -> None:
    raw = pd.DataFrame(
        {"bits_per_layer": [[8, 4], "8, 4", "8.0,4.0"], "ranks_per_layer": [[3.5, 4.0], "", None]}
    )
    out = apply_dtypes(raw)
    assert out["bits_per_layer"].tolist() == ["8,4", "8,4", "8,4"]
    assert out["ranks_per_layer"].tolist() == ["3.5,4", "", ""]


@pytest.mark.parametrize(
    "done_id, died_id",
    [("3c5e2_00006", "3c5e2_00007"), ("24927d09", "4680008f")],  # grid ids, search ids (Ray 2.60)
)
def test_a_trial_that_died_before_its_first_report_is_one_trial(
    tmp_path: Path, make_trial: Callable[..., Any], done_id: str, died_id: str
) -> None:
    """Its folder has params.json and error.txt, no result.json: search.results_io (the summary) and
    load_results (Tune's folder) read it through one owner (trainables.results_folder), so it is counted once,
    in load_results and in the report's status table."""
    from search.results_io import write_summary
    from trainables.trainable import write_trial_file

    root = tmp_path / "p"
    tune = root / "tune"
    done = make_trial(done_id)
    done_dir = tune / f"trial-sst2-s0_{done_id}"
    done_dir.mkdir(parents=True)
    (done_dir / "params.json").write_text(json.dumps({"trial": done.cfg.to_dict()}))
    (done_dir / "result.json").write_text(json.dumps({**done.record(), "timestamp": 1.0}) + "\n")
    write_trial_file(done_dir, done.trial_id, done.cfg, done.result, 1.0)
    died = tune / f"trial-sst2-s0_{died_id}"
    died.mkdir()
    (died / "params.json").write_text(json.dumps({"trial": make_trial("x").cfg.to_dict()}))
    (died / "error.txt").write_text("Traceback (most recent call last):\nRuntimeError: worker died\n")
    (root / "experiment.json").write_text(json.dumps({"kind": "pareto", "name": "p"}))
    table = write_summary(root)
    assert sorted(r["trial_id"] for r in table) == sorted([done_id, died_id])
    df = load_results(root)
    assert sorted(df["trial_id"].tolist()) == sorted([done_id, died_id])
    from analysis.report import status_table

    (status_row,) = status_table(df).to_dict("records")  # the report's status table counts it once
    assert (status_row["trials"], status_row["completed"], status_row["failed"]) == (2, 1, 1)
    assert df["status"].value_counts().to_dict() == {
        "completed": 1,
        "failed": 1,
        "stopped": 0,
        "infeasible": 0,
        "diverged": 0,
        "interrupted": 0,
    }
