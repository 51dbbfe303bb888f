"""The Pareto search through Ray Tune on a tiny model: trials in the study, budget, resume, ASHA."""

import csv
import json

import optuna
import pytest
from cli_helpers import TINY, rankbits

from search.searcher import CONSTRAINT

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


def rows(root):
    with (root / "experiment_summary.csv").open() as fh:
        return list(csv.DictReader(fh))


def study(root, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root / 'study.db'}")


def test_search_completes_and_resumes_into_the_same_study(tiny_data, tmp_path):
    proc = rankbits(
        [*SEARCH, "--trials", "6", "--results-dir", str(tmp_path), "--name", "s6", "--enqueue-grid"],
        data_dir=tiny_data,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    root = tmp_path / "s6"
    first = study(root, "s6")
    assert len(first.trials) == 6
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in first.trials)
    table = rows(root)
    assert len(table) == 6 and [r["config_id"] for r in table] == [
        "B-FP",
        "B-Q4",
        "B-Ada",
        "Joint-1",
        "Joint-2",
        "Joint-3",
    ]
    assert (root / "pareto.csv").exists() and "Pareto set" in proc.stdout
    from analysis import load_results

    frame = load_results(root)  # analysis reads a real search folder
    assert len(frame) == 6 and set(frame["config_id"]) == {
        "B-FP",
        "B-Q4",
        "B-Ada",
        "Joint-1",
        "Joint-2",
        "Joint-3",
    }
    for r in table:
        assert r["predicted_peak_mb"] != "" and r["peak_memory_mb"] != ""

    more = rankbits(
        [*SEARCH, "--trials", "8", "--results-dir", str(tmp_path), "--name", "s6", "--enqueue-grid"],
        data_dir=tiny_data,
        timeout=900,
    )
    assert more.returncode == 0, more.stderr[-3000:]
    assert len(study(root, "s6").trials) == 8  # the same study grew; nothing counted twice
    table = rows(root)
    assert len(table) == 8 and len({r["trial_id"] for r in table}) == 8


def test_extending_a_search_proposes_new_trials_and_hands_off_to_tune_and_optuna(tiny_data, tmp_path):
    """--trials 2, then --trials 4 --resume with the same seed: trials 2-3 are new proposals, not replays of 0-1.
    Two steps leave AdaLoRA no room, so only LoRA is proposed and nothing fails."""
    from search import load_study, restore_tuner

    args = [*SEARCH[:5], "--max-steps", "2", "--sampler", "random", "--seed", "0", *TINY]
    args += ["--results-dir", str(tmp_path), "--name", "ext"]
    first = rankbits([*args, "--trials", "2"], data_dir=tiny_data, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:] + first.stdout[-2000:]
    assert "proposes LoRA only" in first.stdout
    more = rankbits([*args, "--trials", "4", "--resume"], data_dir=tiny_data, timeout=600)
    assert more.returncode == 0, more.stderr[-3000:] + more.stdout[-2000:]
    root = tmp_path / "ext"
    s = load_study(root)
    params = [t.params for t in s.trials]
    assert len(params) == 4 and params[2:] != params[:2]
    assert {p["method"] for p in params} == {"lora"}
    assert [r["status"] for r in rows(root)] == ["completed"] * 4
    assert s.metric_names == ["accuracy", "peak_memory_mb"]
    for t in s.trials:
        assert t.user_attrs["tune_trial_id"] in t.user_attrs["trial_dir"]
        assert (root / t.user_attrs["trial_dir"]).is_dir() and (root / t.user_attrs["adapter_dir"]).is_dir()
    grid = restore_tuner(root).get_results()  # the latest Tune experiment (tune-2/): the extension's trials
    assert len(grid) == 2 and not grid.errors


def grid_predictions(seq_len=32, batch=4):
    from spaces.grid import GRID_IDS, grid_config
    from trainables.memory import arch_for, estimate

    cfgs = {
        c: grid_config(c, "sst2", "tiny-bert", 2).with_overrides(
            [f"training.seq_len={seq_len}", f"training.batch_size={batch}"]
        )
        for c in GRID_IDS
    }
    arch = arch_for(cfgs["B-FP"])
    return {c: estimate(arch, cfg, "cpu").total_mb for c, cfg in cfgs.items()}


def test_budget_keeps_over_budget_proposals_from_training(tiny_data, tmp_path):
    preds = grid_predictions()
    budget = (min(preds.values()) + max(preds.values())) / 2  # the 16-bit grid configs are over it
    assert min(preds.values()) < budget < max(preds.values())
    proc = rankbits(
        [
            *SEARCH,
            "--trials",
            "6",
            "--results-dir",
            str(tmp_path),
            "--name",
            "budget",
            "--enqueue-grid",
            "--memory-budget-mb",
            f"{budget:.4f}",
        ],
        data_dir=tiny_data,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    root = tmp_path / "budget"
    table = rows(root)
    assert len(table) == 6
    for r in table:
        if preds[r["config_id"]] > budget:
            assert r["status"] == "infeasible" and r["accuracy"] == "" and r["steps"] == "0", r
            assert float(r["predicted_peak_mb"]) > budget
        else:
            assert r["status"] == "completed", r
    infeasible = [r for r in table if r["status"] == "infeasible"]
    assert infeasible and "infeasible" in proc.stdout
    s = study(root, "budget")
    marked = [t for t in s.trials if t.user_attrs.get("status") == "infeasible"]
    assert len(marked) == len(infeasible)
    assert all(t.constraints[CONSTRAINT] > 0 and t.state == optuna.trial.TrialState.COMPLETE for t in marked)
    assert not {t.number for t in s.best_trials} & {t.number for t in marked}


def test_asha_stops_weak_trials_and_keeps_them_off_the_front(tiny_data, tmp_path):
    proc = rankbits(
        [
            "pareto",
            "--task",
            "sst2",
            "--model",
            "tiny-bert",
            "--max-steps",
            "8",
            "--sampler",
            "random",
            "--trials",
            "6",
            "--asha",
            "--results-dir",
            str(tmp_path),
            "--name",
            "asha",
            *TINY,
        ],
        data_dir=tiny_data,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    root = tmp_path / "asha"
    table = rows(root)
    assert len(table) == 6
    stopped = {r["trial_id"] for r in table if r["status"] == "stopped"}
    front = {r["trial_id"] for r in csv.DictReader((root / "pareto.csv").open())}
    assert not stopped & front
    states = [t.state for t in study(root, "asha").trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(stopped)
    json.loads((root / "all_results.json").read_text())
