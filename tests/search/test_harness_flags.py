"""The harness switches are flags of run / grid / pareto, recorded in experiment.json and in every result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import TINY, rankbits

from search import cli, grid_cmd, pareto_cmd, results_io
from search.common import adopt_spec
from search.launch import resource_cells
from search.resources import DeviceInfo, resolve_harness
from spaces.grid import grid_config
from trainables.errors import ConfigError
from trainables.harness import ENV, Harness

pytestmark = pytest.mark.ray  # runs grid / pareto (Ray) in some tests

CPU = DeviceInfo("cpu", 16000.0, 2)
CUDA = DeviceInfo("cuda", 16000.0, 2)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)


def test_flags_over_environment_over_the_devices_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainables.harness import use_mmap_threshold

    use_mmap_threshold(4096)  # what an earlier in-process trial set: not the next experiment's default
    assert resolve_harness(CPU) == Harness("fork", True, 0)  # Linux CPU: forked children, reused workers
    assert resolve_harness(CUDA) == Harness("inline", True, 0)
    assert resolve_harness(CPU, "inline") == Harness("inline", False, 0)  # inline CPU: a fresh worker each
    monkeypatch.setenv("RANKBITS_TRIAL_PROCESS", "inline")
    monkeypatch.setenv("RANKBITS_REUSE_WORKERS", "1")
    monkeypatch.setenv("RANKBITS_MMAP_THRESHOLD", "262144")
    assert resolve_harness(CPU) == Harness("inline", True, 262144)
    assert resolve_harness(CPU, "fork", False, "0") == Harness("fork", False, 0)
    use_mmap_threshold(None)


def test_fork_where_there_is_no_forkserver_names_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trainables.forked.available", lambda: False)
    with pytest.raises(ConfigError, match=r"--trial-process fork: no forkserver"):
        resolve_harness(CPU, "fork")
    assert resolve_harness(CPU) == Harness("inline", False, 0)


def test_every_grid_cell_carries_the_harness_it_runs_under(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("search.launch.predict_all", lambda cells, kind: [100.0] * len(cells))
    cells = [grid_config("B-FP", "sst2", "tiny-bert", 2, seed=s) for s in (0, 1)]
    harness = Harness("inline", False, 262144)
    prepared, _ = resource_cells(cells, CPU, True, None, harness)
    assert [c["harness"] for c in prepared] == [harness.to_dict()] * 2
    assert [c["forked"] for c in prepared] == [False, False]  # the harness decides, not the environment


def _parsed(argv: list[str]):
    args = cli.build_parser(argv).parse_args(argv)
    args.given = cli.given_flags(argv)
    return args


def test_grid_resume_takes_the_recorded_harness_and_refuses_another(tmp_path: Path) -> None:
    root = tmp_path / "g"
    root.mkdir()
    base = ["grid", "--results-dir", str(tmp_path), "--name", "g", "--tasks", "sst2"]
    spec = grid_cmd.spec_of(_parsed(base)) | {"harness": Harness("inline", False, 262144).to_dict()}
    (root / "experiment.json").write_text(json.dumps(spec))
    args = _parsed([*base, "--resume"])
    adopt_spec(args, root, grid_cmd.GRID_FLAGS)
    assert (args.trial_process, args.reuse_workers, args.mmap_threshold) == ("inline", False, 262144)
    again = _parsed([*base, "--resume", "--mmap-threshold", "256K"])  # the same value in another spelling
    adopt_spec(again, root, grid_cmd.GRID_FLAGS)
    other = _parsed([*base, "--resume", "--trial-process", "fork"])
    with pytest.raises(ConfigError, match=r"--trial-process 'fork' \(the run used 'inline'\)"):
        adopt_spec(other, root, grid_cmd.GRID_FLAGS)
    assert "trial_process" in {f.dest for f in pareto_cmd.PARETO_FLAGS}


def test_a_folder_from_before_the_harness_was_recorded_is_not_refused(tmp_path: Path) -> None:
    old = {"kind": "grid", "configs": ["B-FP"], "seeds": [0]}
    (tmp_path / "experiment.json").write_text(json.dumps(old))
    assert results_io.prepare_folder(tmp_path, old | {"harness": Harness().to_dict()}, False, False) is True
    (tmp_path / "experiment.json").write_text(json.dumps(old | {"harness": Harness("fork").to_dict()}))
    with pytest.raises(ConfigError, match="harness: was"):
        results_io.prepare_folder(tmp_path, old | {"harness": Harness("inline").to_dict()}, False, False)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["grid", "--mmap-threshold", "lots"], "--mmap-threshold 'lots': give bytes"),
        (["grid", "--trial-process", "spawn"], "--trial-process 'spawn': use fork or inline"),
        (["pareto", "--mmap-threshold", "-1"], "--mmap-threshold '-1': give bytes"),
        (["run", "--model", "tiny-bert", "--trial-process", "thread"], "--trial-process 'thread': use fork"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(argv, message, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    where = ["--results-dir", str(tmp_path), "--name", "x"] if argv[0] != "run" else []
    assert cli.main([*argv, *where]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x" / "experiment.json").exists()


@pytest.mark.slow
def test_grid_and_run_record_the_harness_in_experiment_json_and_every_result(tiny_data, tmp_path):
    flags = ["--trial-process", "inline", "--no-reuse-workers", "--mmap-threshold", "256K"]
    grid = rankbits(
        ["grid", "--results-dir", str(tmp_path), "--name", "h", "--configs", "B-FP", "--tasks", "sst2"]
        + ["--seeds", "0,1", "--model-sst2", "tiny-bert", "--max-steps", "2", *flags, *TINY],
        data_dir=tiny_data,
        timeout=600,
    )
    assert grid.returncode == 0, grid.stderr[-3000:] + grid.stdout[-3000:]
    recorded = {"trial_process": "inline", "reuse_workers": False, "mmap_threshold": 262144}
    assert json.loads((tmp_path / "h" / "experiment.json").read_text())["harness"] == recorded
    entries = json.loads((tmp_path / "h" / "all_results.json").read_text())
    assert len(entries) == 2 and all(e["result"]["harness"] == recorded for e in entries)
    out = tmp_path / "run"
    run = rankbits(
        ["run", "--model", "tiny-bert", "--max-steps", "2", "--output", str(out), "--trial-process", "fork"]
        + [*TINY],
        data_dir=tiny_data,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    saved = json.loads((out / "trial_result.json").read_text())["result"]
    assert saved["status"] == "completed"
    assert saved["harness"] == {"trial_process": "fork", "reuse_workers": None, "mmap_threshold": 0}
