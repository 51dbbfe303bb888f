"""`rankbits export`: choose a trial in a results folder, write the folder, check it, load it in a fresh process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import env

from search.cli import main

pytestmark = pytest.mark.ray  # runs grid / pareto (Ray) in some tests

REPO = Path(__file__).resolve().parents[2]
TINY = ["--set", "training.eval_examples=16", "--set", "training.eval_tokens=512", "--set", "training.seq_len=32",
        "--set", "training.batch_size=4", "--set", "training.log_every=2"]  # fmt: skip


def _run(tmp: Path, data: Path, config: str, task: str = "sst2", model: str = "tiny-bert") -> Path:
    out = tmp / f"run-{config}-{task}"
    code = main(
        ["run", "--config", config, "--task", task, "--model", model, "--max-steps", "4", "--data-dir", str(data),
         "--output", str(out), *TINY]
    )  # fmt: skip
    assert code == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data):
    tmp = tmp_path_factory.mktemp("runs")
    return {"B-FP": _run(tmp, tiny_data, "B-FP"), "B-Q4": _run(tmp, tiny_data, "B-Q4")}


@pytest.fixture
def grid_folder(runs, tmp_path):
    """A grid results folder holding the two runs as Tune trials (trial_result.json + adapter/ per trial folder),
    their measured peaks and accuracies set so that the choice is known."""
    root = tmp_path / "grid"
    values = {"B-FP": ("aaaaa_00000", 900.0, 0.80), "B-Q4": ("aaaaa_00001", 700.0, 0.75)}
    for config_id, run in runs.items():
        trial_id, peak, accuracy = values[config_id]
        trial_dir = root / "tune" / f"train_{trial_id}"
        shutil.copytree(run / "adapter", trial_dir / "adapter")
        saved = json.loads((run / "trial_result.json").read_text())
        saved["result"].update(peak_memory_mb=peak, accuracy=accuracy)
        entry = {"trial_id": trial_id, "config": saved["config"], "result": saved["result"]}
        (trial_dir / "trial_result.json").write_text(json.dumps(entry))
    return root


@pytest.mark.parametrize(
    "limit, expected", [("1000", "B-FP"), ("800", "B-Q4")]
)  # the best accuracy among trials that peaked under the limit
def test_best_under_mb_picks_the_best_trial_that_fits(grid_folder, tmp_path, limit, expected, capsys):
    out = tmp_path / "export"
    assert (
        main(["export", str(grid_folder), "--best-under-mb", limit, "--out", str(out), "--skip-check"]) == 0
    )
    record = json.loads((out / "rankbits_export.json").read_text())
    assert record["config"]["config_id"] == expected and record["source"] == str(grid_folder)
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert "load_exported(" in (out / "README.md").read_text()


def test_export_by_trial_id_of_a_grid_folder_checks_the_metric(grid_folder, runs, tmp_path):
    trial_file = grid_folder / "tune" / "train_aaaaa_00001" / "trial_result.json"
    entry = json.loads(trial_file.read_text())
    original = json.loads((runs["B-Q4"] / "trial_result.json").read_text())["result"]["accuracy"]
    entry["result"]["accuracy"] = original  # the fixture's made-up 0.75 would (rightly) fail the check
    trial_file.write_text(json.dumps(entry))
    out = tmp_path / "export"
    assert main(["export", str(grid_folder), "--trial", "aaaaa_00001", "--out", str(out)]) == 0
    record = json.loads((out / "rankbits_export.json").read_text())
    assert record["trial_id"] == "aaaaa_00001" and record["bits_per_layer"] == [4, 4]
    check = record["checks"]["adapter"]
    assert check["ok"] and check["trial_metric"] == original and abs(check["difference"]) < 1e-4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--best-under-mb", "100"], "no completed trial peaked at or under it; the lowest peak is 700.0 MB"),
        (["--trial", "nope"], "--trial 'nope': no such trial here"),
        ([], "give --trial ID or --best-under-mb M"),
        (["--best-under-mb", "1000", "--objective", "bogus:max"], "bogus"),
        (
            ["--best-under-mb", "1000", "--objective", "perplexity:min"],
            "no completed trial here measured perplexity (task sst2)",
        ),
    ],
)
def test_bad_choice_is_one_line_and_exit_2(grid_folder, tmp_path, capsys, args, message):
    assert main(["export", str(grid_folder), *args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "x").exists()


def test_a_device_not_here_is_refused_before_the_folder_is_written(
    grid_folder, tmp_path, capsys, monkeypatch
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["export", str(grid_folder), "--trial", "aaaaa_00001", "--out", str(tmp_path / "x")]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rankbits export: error: --device cuda: not available on this machine; use auto or cpu"]
    # a retry with another device is not blocked by a half-written folder
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit) as info:
        main([*argv, "--device", "tpu"])
    assert info.value.code == 2 and "invalid choice: 'tpu'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_not_a_results_folder_and_a_taken_out_are_refused(runs, tmp_path, capsys):
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not a results folder" in capsys.readouterr().err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "old.txt").write_text("keep")
    assert main(["export", str(runs["B-Q4"]), "--out", str(taken)]) == 2
    assert "not empty" in capsys.readouterr().err and (taken / "old.txt").read_text() == "keep"


def test_a_metric_that_does_not_reproduce_fails_loudly(runs, tmp_path, capsys):
    run = tmp_path / "tampered"
    shutil.copytree(runs["B-Q4"], run)
    saved = json.loads((run / "trial_result.json").read_text())
    saved["result"]["accuracy"] += 0.25  # what the trial claims is not what its adapter gives
    (run / "trial_result.json").write_text(json.dumps(saved))
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "differs from the trial's" in err and "kept" in err
    record = json.loads((out / "rankbits_export.json").read_text())
    assert record["checks"]["adapter"]["ok"] is False


@pytest.mark.slow
def test_exported_run_reproduces_in_a_fresh_process_and_merge_is_measured(tiny_data, tmp_path, capsys):
    run = _run(tmp_path, tiny_data, "Joint-3", task="wikitext2", model="tiny-llama")
    trial = json.loads((run / "trial_result.json").read_text())["result"]
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out), "--merge"]) == 0
    printed = capsys.readouterr().out
    load_line = (
        next(line for line in printed.splitlines() if "load it:" in line).split("load it:", 1)[1].strip()
    )
    code = (
        f"{load_line}\n"
        "from trainables.export import evaluate_model, read_record\n"
        f"print('METRIC', *evaluate_model(model, tokenizer, read_record({str(out)!r})))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env(), cwd=REPO, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    perplexity, loss = map(float, proc.stdout.split("METRIC", 1)[1].split())
    assert f"{perplexity:.4g}" == f"{trial['perplexity']:.4g}" and loss == pytest.approx(
        trial["eval_loss"], rel=1e-5
    )
    checks = json.loads((out / "rankbits_export.json").read_text())["checks"]
    assert checks["adapter"]["ok"] and checks["merged"]["difference"] != checks["adapter"]["difference"]
    assert (out / "merged" / "config.json").is_file()
