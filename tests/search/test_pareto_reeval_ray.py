"""`pareto --trials 3 --reeval-seeds 2` through Ray Tune on tiny-bert (issue 15 item 5's done-when): every point
of the single-seed front is trained again on seeds 1 and 2, outside the Optuna study; the report gives mean ± std
for every front point and a front computed on means; a resume reruns nothing."""

import csv

import optuna
import pytest
from cli_helpers import TINY, rankbits

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SEARCH = [
    "pareto",
    "--task",
    "sst2",
    "--model",
    "tiny-bert",
    "--max-steps",
    "3",
    "--sampler",
    "random",
    *TINY,
]


def rows(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_reeval_seeds_reports_mean_and_std_on_a_front_of_means(tiny_data, tmp_path):
    args = [*SEARCH, "--trials", "3", "--reeval-seeds", "2", "--results-dir", str(tmp_path), "--name", "re"]
    proc = rankbits(args, data_dir=tiny_data, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    root = tmp_path / "re"
    table = rows(root / "experiment_summary.csv")
    search = [r for r in table if r["seed"] == "0"]
    reeval = [r for r in table if r["seed"] != "0"]
    assert len(search) == 3 and all(r["config_key"] for r in table)
    from analysis import load_results, pareto_front

    df = load_results(root)
    objectives = {"accuracy": "max", "peak_memory_mb": "min"}
    front_keys = set(pareto_front(df[df["seed"] == 0], objectives)["config_key"])
    assert front_keys and {r["config_key"] for r in reeval} == front_keys
    assert sorted((r["config_key"], r["seed"]) for r in reeval) == sorted(
        (k, s) for k in front_keys for s in ("1", "2")
    )
    assert all(r["status"] == "completed" for r in reeval), reeval
    assert (root / "tune-reeval").is_dir()
    study = optuna.load_study(study_name="re", storage=f"sqlite:///{root / 'study.db'}")
    assert len(study.trials) == 3  # re-evaluations are not proposals

    means = rows(root / "pareto_means.csv")
    assert means and {m["config_key"] for m in means} <= front_keys
    for m in means:
        assert m["n_seeds"] == "3" and m["seeds"] == "0,1,2"
        assert m["accuracy_std"] != "" and m["peak_memory_mb_std"] != ""
    assert "Pareto set on means over seeds" in proc.stdout and " ± " in proc.stdout

    again = rankbits([*args, "--resume"], data_dir=tiny_data, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:] + again.stdout[-3000:]
    assert "(0 to run)" in again.stdout
    assert sorted(r["trial_id"] for r in rows(root / "experiment_summary.csv")) == sorted(
        r["trial_id"] for r in table
    )
