"""`pareto --reeval-seeds N` without Ray: the cells built from the single-seed front (new seeds, nothing else
changed), the folder's re-evaluation Tune experiments kept apart from the search's own, and the flag's
experiment.json round trip (recorded, restored by --resume, extendable, absent from older folders)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from search import results_io
from search.cli import build_parser
from search.common import adopt_spec
from search.pareto_cmd import PARETO_FLAGS
from search.reeval import front_configs, reeval_cells, reeval_key, reeval_seeds
from trainables.config import TrialConfig, config_key
from trainables.result import TrialResult, TrialStatus
from trainables.results_folder import next_reeval_dir, next_tune_dir, reeval_dirs, tune_dirs


def cfg(bits: int, r: int, seed: int = 0, **training: object) -> TrialConfig:
    return TrialConfig.from_dict(
        {
            "task": {"name": "sst2"},
            "model": {"name": "tiny-bert"},
            "quantization": {"default_bits": bits},
            "adapter": {"r": r},
            "training": {"seed": seed, "max_steps": 3, **training},
        }
    )


def entry(trial_id: str, c: TrialConfig, acc: float | None, peak: float | None, status: str = "completed"):
    result = TrialResult.of(c, status=TrialStatus(status), accuracy=acc, peak_memory_mb=peak)
    return {"trial_id": trial_id, "config": c.to_dict(), "result": result.to_dict()}


OBJ = {"accuracy": "max", "peak_memory_mb": "min"}


def test_cells_change_the_seed_and_nothing_else() -> None:
    a = cfg(4, 8, seed=3, threads=2, memory_fraction=0.5)  # as the trainable recorded it: threads filled in
    b = TrialConfig.from_dict({**cfg(8, 4).to_dict(), "config_id": "B-Q4"})
    cells = reeval_cells([a, b, a], 2)  # a front point listed twice is re-run once per seed
    assert [(c.config_id, c.training.seed) for c in cells] == [(None, 4), (None, 5), ("B-Q4", 1), ("B-Q4", 2)]
    for cell, origin in zip(cells, [a, a, b, b]):
        assert config_key(cell) == config_key(origin)
        assert cell.training.threads is None and cell.training.memory_fraction is None
        same = {**cell.to_dict(), "training": {**cell.to_dict()["training"], "seed": 0}}
        plain = {**origin.to_dict(), "training": {**origin.to_dict()["training"], "seed": 0}}
        plain["training"].update(threads=None, memory_fraction=None)
        assert same == plain
    assert len({reeval_key(c) for c in cells}) == 4
    assert reeval_cells([a], 0) == []


def test_front_configs_take_the_single_seed_front_only() -> None:
    entries = [
        entry("t0", cfg(4, 2), 0.80, 100.0),  # front
        entry("t1", cfg(8, 8), 0.90, 200.0),  # front, best accuracy first
        entry("t2", cfg(8, 2), 0.79, 150.0),  # dominated by t0
        entry("t3", cfg(4, 4), None, 50.0, status="infeasible"),
        entry("t4", cfg(4, 8), None, None, status="failed"),
    ]
    front = front_configs(entries, OBJ)
    assert [(c.quantization.default_bits, c.adapter.r) for c in front] == [(8, 8), (4, 2)]
    assert front_configs([], OBJ) == []


def test_reeval_experiments_are_kept_apart_from_the_search(tmp_path: Path) -> None:
    for name in (
        "tune",
        "tune-2",
        "tune.incomplete-1",
        "tune-reeval",
        "tune-reeval-2",
        "tune-reeval.incomplete-9",
    ):
        (tmp_path / name).mkdir()
    names = [p.name for p in tune_dirs(tmp_path, reeval=False)]
    assert names == ["tune.incomplete-1", "tune", "tune-2"]
    assert [p.name for p in reeval_dirs(tmp_path)] == [
        "tune-reeval.incomplete-9",
        "tune-reeval",
        "tune-reeval-2",
    ]
    assert [p.name for p in tune_dirs(tmp_path)] == names + [
        "tune-reeval.incomplete-9",
        "tune-reeval",
        "tune-reeval-2",
    ]
    assert next_tune_dir(tmp_path).name == "tune-3" and next_reeval_dir(tmp_path).name == "tune-reeval-3"
    assert next_reeval_dir(tmp_path / "none").name == "tune-reeval"


def _trial(base: Path, name: str, e: dict) -> None:
    folder = base / name
    folder.mkdir(parents=True)
    (folder / "trial_result.json").write_text(json.dumps({**e, "started": 1.0}))


def test_the_search_counts_its_own_trials_only(tmp_path: Path) -> None:
    _trial(tmp_path / "tune", "trial-sst2-s0_aaaaaaaa", entry("aaaaaaaa", cfg(4, 2), 0.8, 100.0))
    _trial(
        tmp_path / "tune-reeval", "trial-sst2-s1_00000_00000", entry("00000_00000", cfg(4, 2, 1), 0.78, 101.0)
    )
    assert len(results_io.collect(tmp_path)) == 2
    assert [e["trial_id"] for e in results_io.collect(tmp_path, reeval=False)] == ["aaaaaaaa"]


def test_flag_is_checked_recorded_and_restored(tmp_path: Path) -> None:
    parser = build_parser(["pareto"])
    assert parser.parse_args(["pareto", "--reeval-seeds", "2"]).reeval_seeds == 2
    assert parser.parse_args(["pareto"]).reeval_seeds == 0
    for bad in ("-1", "two"):
        with pytest.raises(SystemExit):
            parser.parse_args(["pareto", "--reeval-seeds", bad])
    with pytest.raises(argparse.ArgumentTypeError, match="number of further seeds"):
        reeval_seeds("-3")
    (tmp_path / "experiment.json").write_text(json.dumps({"kind": "pareto", "trials": 3, "reeval_seeds": 2}))
    args = argparse.Namespace(resume=True, given=set(), reeval_seeds=0, trials=24)
    adopt_spec(args, tmp_path, PARETO_FLAGS)
    assert args.reeval_seeds == 2  # a bare --resume re-evaluates as the run did
    more = argparse.Namespace(resume=True, given={"reeval_seeds"}, reeval_seeds=3, trials=24)
    adopt_spec(more, tmp_path, PARETO_FLAGS)  # a larger N extends: not refused
    assert more.reeval_seeds == 3


def test_older_folders_and_a_changed_n_still_resume(tmp_path: Path) -> None:
    spec = {"kind": "pareto", "task": "sst2", "trials": 3}
    (tmp_path / "experiment.json").write_text(json.dumps(spec))  # written before --reeval-seeds existed
    assert results_io.prepare_folder(tmp_path, {**spec, "reeval_seeds": 2}, True, False)
    (tmp_path / "experiment.json").write_text(json.dumps({**spec, "reeval_seeds": 1}))
    assert results_io.prepare_folder(tmp_path, {**spec, "reeval_seeds": 2}, True, False)


def test_pareto_csv_is_the_search_seeds_front_not_a_lucky_reeval_run(tmp_path, monkeypatch) -> None:
    import pandas as pd

    from search import pareto_cmd

    rows = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c"],
            "status": ["completed"] * 3,
            "seed": [0, 0, 1],
            "accuracy": [0.80, 0.70, 0.95],  # c: a re-evaluation of b on seed 1 that happened to score high
            "peak_memory_mb": [500.0, 400.0, 400.0],
        }
    )
    monkeypatch.setattr("search.results_io.write_summary", lambda root: rows.to_dict("records"))
    monkeypatch.setattr("search.results_io.table_text", lambda table: "")
    monkeypatch.setattr("analysis.load_results", lambda root: rows)
    monkeypatch.setattr("analysis.report.pareto_table", lambda front, objectives: front)
    monkeypatch.setattr("analysis.report.text_table", lambda table: "")
    assert pareto_cmd.finish(tmp_path, {"accuracy": "max", "peak_memory_mb": "min"}, seed=0) == 0
    front = pd.read_csv(tmp_path / "pareto.csv")
    assert sorted(front["trial_id"]) == ["a", "b"]
