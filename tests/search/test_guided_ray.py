"""The guided Pareto search end to end through Ray Tune on tiny-llama WikiText-2 (generated data): warm starts,
the reduced space, the zero-training screen, and a resume that neither screens nor warm-starts again."""

import csv
import json

import optuna
import pytest
from cli_helpers import TINY, rankbits

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SEARCH = ["pareto", "--task", "wikitext2", "--model", "tiny-llama", "--max-steps", "3", "--sampler", "random"]
GUIDED = ["--warm-start", "2", "--space", "reduced", "--screen", "4", "--screen-examples", "2"]


def test_guided_search_warm_starts_screens_and_resumes(tiny_data, tmp_path):
    args = [*SEARCH, *TINY, *GUIDED, "--results-dir", str(tmp_path), "--name", "g"]
    proc = rankbits([*args, "--trials", "4"], data_dir=tiny_data, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    root = tmp_path / "g"
    assert "sensitivity order" in proc.stdout and "screen keeps" in proc.stdout
    spec = json.loads((root / "experiment.json").read_text())
    assert spec["guided"] == {"warm_start": 2, "space": "reduced", "screen": 4, "screen_examples": 2}

    with (root / "screen.csv").open() as fh:
        screened = list(csv.DictReader(fh))
    assert len(screened) == 4 and {r["fidelity"] for r in screened} == {"zero_training"}
    kept = [json.loads(r["params"]) for r in screened if r["non_dominated"] == "True"]
    assert kept

    study = optuna.load_study(study_name="g", storage=f"sqlite:///{root / 'study.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4  # screened candidates are not trials
    # the warm starts first: all 4-bit (the grid's B-Q4) and all 8-bit, then the screen's survivors
    assert [t.params["n_high"] for t in study.trials[:2]] == [0, 2]
    assert study.trials[2].params == kept[0]
    for t in study.trials:  # the reduced space: no placement, no low / high width, no per-layer ranks
        assert not {"placement", "low_bits", "high_bits"} & set(t.params)
    with (root / "experiment_summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)

    mtime = (root / "screen.csv").stat().st_mtime
    more = rankbits(
        ["pareto", "--results-dir", str(tmp_path), "--name", "g", "--resume", "--trials", "5"],
        data_dir=tiny_data,
        timeout=1200,
    )
    assert more.returncode == 0, more.stderr[-3000:] + more.stdout[-2000:]
    assert "screen keeps" not in more.stdout and "warm start" not in more.stdout
    assert (root / "screen.csv").stat().st_mtime == mtime
    study = optuna.load_study(study_name="g", storage=f"sqlite:///{root / 'study.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 5
    assert all(not {"placement", "low_bits"} & set(t.params) for t in study.trials)
