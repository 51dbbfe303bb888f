"""`--resume` reads the experiment's settings from experiment.json; flags typed again must agree (no Ray)."""

import json

import pytest

from search import cli, grid_cmd, pareto_cmd
from search.common import adopt_spec
from trainables.errors import ConfigError

ORIGINAL = ["--configs", "B-FP,B-Q4", "--tasks", "sst2", "--seeds", "0,1", "--model-sst2", "tiny-bert"]
ORIGINAL += ["--max-steps", "3", "--set", "training.seq_len=32"]


def parsed(argv):
    args = cli.build_parser(argv).parse_args(argv)
    args.given = cli.given_flags(argv)
    return args


def started_grid(tmp_path):
    args = parsed(["grid", "--results-dir", str(tmp_path), "--name", "g", *ORIGINAL])
    spec = grid_cmd.spec_of(args)
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "experiment.json").write_text(json.dumps({**spec, "created": "2026-01-01T00:00:00"}))
    return spec


def test_given_flags_are_the_typed_ones_only():
    assert cli.given_flags(["grid", "--name", "g", "--resume", "--seeds", "1"]) == {"name", "resume", "seeds"}


def test_grid_resume_with_only_the_name_takes_every_setting_from_the_experiment(tmp_path):
    spec = started_grid(tmp_path)
    args = parsed(["grid", "--results-dir", str(tmp_path), "--name", "g", "--resume"])
    adopt_spec(args, grid_cmd.root_of(args), grid_cmd.GRID_FLAGS)
    assert grid_cmd.spec_of(args) == spec
    assert args.overrides == ["training.seq_len=32"] and args.max_steps == 3


def test_grid_resume_accepts_the_same_flags_typed_again_in_another_spelling(tmp_path):
    spec = started_grid(tmp_path)
    args = parsed(
        ["grid", "--results-dir", str(tmp_path), "--name", "g", "--resume", "--configs", "B-FP, B-Q4"]
    )
    adopt_spec(args, grid_cmd.root_of(args), grid_cmd.GRID_FLAGS)
    assert grid_cmd.spec_of(args) == spec


def test_grid_resume_names_every_differing_flag_at_once(tmp_path, capsys):
    started_grid(tmp_path)
    argv = [
        "grid",
        "--results-dir",
        str(tmp_path),
        "--name",
        "g",
        "--resume",
        "--seeds",
        "1",
        "--tasks",
        "wikitext2",
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--seeds '1'" in err and "'0,1'" in err and "--tasks 'wikitext2'" in err and "'sst2'" in err


def test_pareto_resume_with_only_the_name_takes_every_setting_from_the_experiment(tmp_path):
    spec = {
        "kind": "pareto",
        "task": "wikitext2",
        "model": "tiny-llama",
        "objectives": {"perplexity": "min", "peak_memory_mb": "min"},
        "sampler": "random",
        "seed": 3,
        "memory_budget_mb": 900.0,
        "asha": True,
        "max_steps": 4,
        "overrides": ["training.seq_len=32"],
        "enqueue_grid": True,
        "storage": None,
        "trials": 6,
    }
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "experiment.json").write_text(json.dumps(spec))
    args = parsed(["pareto", "--results-dir", str(tmp_path), "--name", "p", "--resume", "--seed", "3"])
    adopt_spec(args, grid_cmd.root_of(args), pareto_cmd.PARETO_FLAGS)
    assert (args.task, args.model, args.sampler, args.seed, args.max_steps) == (
        "wikitext2",
        "tiny-llama",
        "random",
        3,
        4,
    )
    assert args.asha and args.enqueue_grid and args.memory_budget_mb == 900.0 and args.trials == 6
    assert pareto_cmd.parse_task_objectives(args.objectives, args.task) == spec["objectives"]
    bad = parsed(
        ["pareto", "--results-dir", str(tmp_path), "--name", "p", "--resume", "--task", "sst2", "--seed", "1"]
    )
    with pytest.raises(ConfigError, match=r"--task 'sst2'.*--seed 1"):
        adopt_spec(bad, grid_cmd.root_of(bad), pareto_cmd.PARETO_FLAGS)


def test_pareto_resume_may_extend_the_trial_count(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "experiment.json").write_text(
        json.dumps({"kind": "pareto", "task": "sst2", "trials": 6})
    )
    args = parsed(["pareto", "--results-dir", str(tmp_path), "--name", "p", "--resume", "--trials", "10"])
    adopt_spec(args, grid_cmd.root_of(args), pareto_cmd.PARETO_FLAGS)
    assert args.trials == 10 and args.task == "sst2"


def test_a_grid_folder_recording_models_of_tasks_it_does_not_run_still_resumes(tmp_path):
    # folders written before textcls / lm were registered recorded every task's model then; a task registered
    # since must not make them "a different experiment"
    from search import results_io

    old = {
        "kind": "grid",
        "tasks": ["wikitext2"],
        "models": {"sst2": "minilm-l6", "wikitext2": "smollm2-135m"},
    }
    results_io.write_spec(tmp_path, old)
    new = {"kind": "grid", "tasks": ["wikitext2"], "models": {"wikitext2": "smollm2-135m"}}
    assert results_io.prepare_folder(tmp_path, new, resume=True, overwrite=False)
    other = {"kind": "grid", "tasks": ["wikitext2"], "models": {"wikitext2": "smollm2-360m"}}
    with pytest.raises(ConfigError, match="models"):
        results_io.prepare_folder(tmp_path, other, resume=True, overwrite=False)


def test_grid_resume_reads_the_data_dir_the_first_trials_read(tmp_path, monkeypatch, tiny_data):
    monkeypatch.delenv("RANKBITS_DATA_DIR", raising=False)
    monkeypatch.chdir(tiny_data.parent)
    args = parsed(
        ["grid", "--results-dir", str(tmp_path), "--name", "g", *ORIGINAL, "--data-dir", tiny_data.name]
    )
    spec = grid_cmd.spec_of(args)
    assert spec["data_dir"] == str(tiny_data)  # absolute: Ray workers run in other folders
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "experiment.json").write_text(json.dumps(spec))
    resumed = parsed(["grid", "--results-dir", str(tmp_path), "--name", "g", "--resume"])
    adopt_spec(resumed, grid_cmd.root_of(resumed), grid_cmd.GRID_FLAGS)
    assert grid_cmd.spec_of(resumed) == spec
    assert all(c.task.data_dir == str(tiny_data) for c in grid_cmd.build_cells(resumed))
    other = parsed(
        ["grid", "--results-dir", str(tmp_path), "--name", "g", "--resume", "--data-dir", "elsewhere"]
    )
    with pytest.raises(ConfigError, match="--data-dir 'elsewhere'"):
        adopt_spec(other, grid_cmd.root_of(other), grid_cmd.GRID_FLAGS)


def test_a_resume_reading_other_data_through_the_environment_is_refused(tmp_path, monkeypatch):
    from search import results_io

    monkeypatch.delenv("RANKBITS_DATA_DIR", raising=False)
    spec = started_grid(tmp_path)  # started on the hub's data
    assert spec["data_dir"] is None
    monkeypatch.setenv("RANKBITS_DATA_DIR", str(tmp_path))
    args = parsed(["grid", "--results-dir", str(tmp_path), "--name", "g", "--resume"])
    adopt_spec(args, grid_cmd.root_of(args), grid_cmd.GRID_FLAGS)
    with pytest.raises(ConfigError, match="data_dir: was None"):
        results_io.prepare_folder(
            grid_cmd.root_of(args), grid_cmd.spec_of(args), resume=True, overwrite=False
        )


def test_folders_written_before_data_dir_was_recorded_still_resume(tmp_path, monkeypatch):
    from search import results_io

    monkeypatch.setenv("RANKBITS_DATA_DIR", str(tmp_path))
    spec = started_grid(tmp_path)
    old = {k: v for k, v in spec.items() if k != "data_dir"}
    (tmp_path / "g" / "experiment.json").write_text(json.dumps(old))
    assert results_io.prepare_folder(tmp_path / "g", spec, resume=True, overwrite=False)


def test_pareto_records_its_data_dir_for_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKBITS_DATA_DIR", str(tmp_path / "d"))
    args = parsed(["pareto", "--results-dir", str(tmp_path), "--name", "p", "--model", "tiny-bert"])
    assert pareto_cmd.base_config(args).task.data_dir == str(tmp_path / "d")
    assert any(flag.dest == "data_dir" for flag in pareto_cmd.PARETO_FLAGS)


def test_grid_refuses_another_experiment_before_ray_starts_and_overwrite_moves_it_only_later(
    tmp_path, tiny_data, monkeypatch, capsys
):
    from search import tuner

    started = []

    def no_ray(*args, **kwargs):
        started.append(True)
        raise ConfigError("Ray would start here")

    monkeypatch.setattr(tuner, "init_ray", no_ray)
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "experiment.json").write_text(json.dumps({"kind": "grid", "configs": ["B-Q4"]}))
    argv = ["grid", "--results-dir", str(tmp_path), "--name", "g", "--configs", "B-FP", "--tasks", "sst2",
            "--model-sst2", "tiny-bert", "--max-steps", "2", "--data-dir", str(tiny_data)]  # fmt: skip
    assert cli.main(argv) == 2
    assert "already holds a different experiment" in capsys.readouterr().err and not started
    assert cli.main([*argv, "--overwrite"]) == 2
    assert "Ray would start here" in capsys.readouterr().err and started
    assert (tmp_path / "g" / "experiment.json").is_file()  # not moved aside before Ray and the budget check
