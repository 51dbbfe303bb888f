"""A trial cut short by Ctrl-C reads as interrupted, with blanks for what it never measured (no Ray)."""

import csv
import json

from search import results_io
from search.tuner import clear_interrupted
from spaces.grid import grid_config


def trial_folder(root, name="B-Q4-sst2-s0_abcde_00001", interrupted=True):
    cfg = grid_config("B-Q4", "sst2", "tiny-bert", 2)
    folder = root / "tune" / name
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({"cell": {"trial": cfg.to_dict()}}))
    row = {"trial_id": "abcde_00001", "status": "running", "steps": 7, "train_loss": 0.69}
    (folder / "result.json").write_text(json.dumps(row) + "\n")
    if interrupted:
        (folder / results_io.INTERRUPTED_FILE).write_text("interrupted\n")
    return folder


def test_an_interrupted_trial_has_its_own_status_and_blanks(tmp_path):
    trial_folder(tmp_path)
    table = results_io.write_summary(tmp_path)
    assert [r["status"] for r in table] == ["interrupted"]
    row = table[0]
    assert row["steps"] == 7 and "--resume" in row["error"]
    for column in ("trainable_params", "weight_memory_mb", "train_time_s", "tokens_per_s", "total_rank"):
        assert row[column] is None, column
    with (tmp_path / "experiment_summary.csv").open() as fh:
        (csv_row,) = list(csv.DictReader(fh))
    assert csv_row["status"] == "interrupted" and csv_row["trainable_params"] == csv_row["train_time_s"] == ""


def test_without_the_mark_it_is_stopped_early_and_a_resume_clears_the_mark(tmp_path):
    folder = trial_folder(tmp_path)
    assert clear_interrupted(tmp_path) == 1 and not (folder / results_io.INTERRUPTED_FILE).exists()
    assert [r["status"] for r in results_io.write_summary(tmp_path)] == ["stopped"]
