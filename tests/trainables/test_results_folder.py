"""The results folder's one owner: search (summary files) and analysis (load_results) see the same trials."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from trainables import results_folder as rf
from trainables.config import TrialConfig
from trainables.result import TrialResult, TrialStatus


def _cfg(seed: int = 0) -> TrialConfig:
    return TrialConfig.from_dict(
        {
            "task": {"name": "sst2"},
            "model": {"name": "tiny-bert"},
            "training": {"seed": seed, "max_steps": 10},
            "config_id": "B-Q4",
        }
    )


def _done(folder: Path, trial_id: str, accuracy: float, started: float) -> None:
    folder.mkdir(parents=True)
    cfg = _cfg()
    result = TrialResult.of(cfg, accuracy=accuracy, steps=10, trainable_params=1234, bits_per_layer=[4, 4])
    (folder / rf.PARAMS_FILE).write_text(json.dumps({"cell": {"trial": cfg.to_dict()}}))
    rf.write_trial_file(folder, trial_id, cfg, result, started)


def _mixed_folder(root: Path) -> Path:
    """tune/ with a finished grid trial, one that died before its first report and one cut short by Ctrl-C;
    tune-2/ (an extension) with one finished search trial."""
    _done(root / "tune" / "B-Q4-sst2-s0_3c5e2_00000", "3c5e2_00000", 0.8, 100.0)
    died = root / "tune" / "B-Q4-sst2-s0_3c5e2_00001"
    died.mkdir()
    (died / rf.PARAMS_FILE).write_text(json.dumps({"cell": {"trial": _cfg(1).to_dict()}}))
    (died / rf.ERROR_FILE).write_text("Traceback (most recent call last):\nRuntimeError: worker died\n")
    cut = root / "tune" / "B-Q4-sst2-s0_3c5e2_00002"
    cut.mkdir()
    (cut / rf.PARAMS_FILE).write_text(json.dumps({"cell": {"trial": _cfg(2).to_dict()}}))
    report = {"trial_id": "3c5e2_00002", "status": "running", "steps": 3, "timestamp": 300.0}
    (cut / rf.REPORTS_FILE).write_text(json.dumps(report) + "\n")
    (cut / rf.INTERRUPTED_FILE).write_text("interrupted\n")
    _done(root / "tune-2" / "trial-sst2-s0_24927d09", "24927d09", 0.9, 400.0)
    (root / rf.SPEC_FILE).write_text(json.dumps({"kind": "grid"}))
    return root


def test_search_and_analysis_read_the_same_trials_with_the_same_ids_and_statuses(tmp_path: Path) -> None:
    """Before one owner: analysis read tune/ only (missed tune-2's trial), read the interrupted trial as
    stopped, and missed a grid cell's config in params.json ({"cell": {"trial": ...}})."""
    from analysis import load_results
    from search.results_io import write_summary

    root = _mixed_folder(tmp_path / "r")
    expected = {
        "3c5e2_00000": "completed",
        "3c5e2_00001": "failed",
        "3c5e2_00002": "interrupted",
        "24927d09": "completed",
    }
    table = write_summary(root)
    assert {r["trial_id"]: r["status"] for r in table} == expected
    (root / rf.SUMMARY_FILE).unlink()  # analysis from Tune's folders alone
    (root / rf.ALL_RESULTS_FILE).unlink()
    df = load_results(root)
    assert len(df) == 4
    assert dict(zip(df["trial_id"], df["status"].astype(str))) == expected
    by_id = df.set_index("trial_id")
    assert by_id.loc["3c5e2_00001", "method"] == "lora"  # from the grid cell's params.json
    assert by_id.loc["3c5e2_00001", "error"] == "RuntimeError: worker died"
    assert by_id.loc["24927d09", "accuracy"] == pytest.approx(0.9)


def test_trials_are_in_start_order_and_a_rerun_keeps_its_latest_folder(tmp_path: Path) -> None:
    root = tmp_path / "r"
    _done(root / "tune.incomplete-1" / "B-Q4-sst2-s0_3c5e2_00000", "3c5e2_00000", 0.5, 50.0)
    _done(root / "tune" / "B-Q4-sst2-s0_3c5e2_00000", "3c5e2_00000", 0.8, 200.0)
    _done(root / "tune" / "B-Q4-sst2-s0_3c5e2_00001", "3c5e2_00001", 0.7, 100.0)
    found = rf.trials(root)
    assert [t.trial_id for t in found] == ["3c5e2_00001", "3c5e2_00000"]
    assert found[1].row["accuracy"] == pytest.approx(0.8) and found[1].from_trial_file
    assert rf.next_tune_dir(root) == root / "tune-2"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("B-FP-sst2-s0_3c5e2_00007", "3c5e2_00007"),
        ("trial-sst2-s3_24927d09", "24927d09"),
        ("fit_trial_3c5e2_00007_7_lr=0.001,r=4_2025-01-01_00-00-00", "3c5e2_00007"),
        ("whatever", "whatever"),
    ],
)
def test_trial_id_from_the_folder_name(tmp_path: Path, name: str, expected: str) -> None:
    (tmp_path / name).mkdir()
    assert rf.trial_id_of(tmp_path / name) == expected


def test_trial_id_from_the_reports_first(tmp_path: Path) -> None:
    folder = tmp_path / "trial-sst2-s0_24927d09"
    folder.mkdir()
    (folder / rf.REPORTS_FILE).write_text("broken line\n" + json.dumps({"trial_id": "abcdef12"}) + "\n")
    assert rf.trial_id_of(folder) == "abcdef12"


@pytest.mark.parametrize(
    "last, planned, error, interrupted, expected",
    [
        ({"status": "completed", "accuracy": 0.8, "steps": 10}, 10, None, False, "completed"),
        ({"status": "completed", "accuracy": 0.8, "steps": 5}, 10, None, False, "stopped"),  # partial
        ({"status": "completed", "steps": 10}, 10, None, False, "stopped"),  # no metric: not final
        ({"status": "running", "steps": 5}, 10, None, False, "stopped"),
        ({"status": "running", "steps": 5}, 10, None, True, "interrupted"),
        ({"status": "running", "steps": 5}, 10, "RuntimeError", True, "failed"),
        ({}, None, "RuntimeError", False, "failed"),
        ({"status": "infeasible"}, 10, None, False, "infeasible"),
        ({"status": "diverged", "accuracy": 0.5}, 10, None, False, "diverged"),
    ],
)
def test_one_status_rule_for_trials_without_their_result_file(last, planned, error, interrupted, expected):
    assert rf.tune_status(last, planned, error, interrupted) == expected


def test_a_folder_that_never_started_is_no_trial_and_a_stopped_one_is_rebuilt(tmp_path: Path) -> None:
    empty = tmp_path / "trial-sst2-s0_00000000"
    empty.mkdir()
    (empty / rf.PARAMS_FILE).write_text(json.dumps({"trial": _cfg().to_dict()}))
    assert rf.read_trial(empty) is None
    stopped = tmp_path / "trial-sst2-s0_11111111"
    stopped.mkdir()
    harness = {"trial_process": "fork", "reuse_workers": True, "mmap_threshold": 0}
    (stopped / rf.PARAMS_FILE).write_text(json.dumps({"trial": _cfg().to_dict(), "harness": harness}))
    report = {"status": "running", "steps": 4, "accuracy": 0.6, "bits_per_layer": "8,4", "train_loss": 0.5}
    (stopped / rf.REPORTS_FILE).write_text(json.dumps(report) + "\n")
    trial = rf.read_trial(stopped)
    assert trial is not None and trial.status == "stopped" and trial.entry is not None
    result = TrialResult.from_dict(trial.entry["result"])
    assert result.status is TrialStatus.STOPPED and result.steps == 4 and result.accuracy == 0.6
    assert result.bits_per_layer == [8, 4] and result.final_train_loss == 0.5
    assert result.error == "stopped early at step 4"
    assert result.harness == harness  # how it ran, from its Tune config


def test_config_of_reads_both_tune_config_layouts() -> None:
    cfg = _cfg()
    assert rf.config_of({"cell": {"trial": cfg.to_dict()}}) == cfg
    assert rf.config_of({"trial": cfg.to_dict(), "memory_budget_mb": None}) == cfg
    assert rf.config_of({"lr": 0.1}) is None
    assert rf.config_of({"trial": {"task": {"name": "no-such-task"}}}) is None


def test_result_files_are_written_atomically_with_secrets_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secretvalue")
    rf.atomic_write_json(tmp_path / "x.json", {"note": "token hf_secretvalue"})
    assert json.loads((tmp_path / "x.json").read_text()) == {"note": "token ***"}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left behind
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
