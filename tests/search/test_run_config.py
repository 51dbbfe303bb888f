"""`rankbits run`'s config building (no training): steps and task defaults, bad steps refused before any load."""

import pytest

from search import cli
from search.run_cmd import build_config
from spaces.grid import TASK_TRAINING


def parsed(argv: list[str]):
    parser = cli.build_parser(argv)
    return parser.parse_args(argv)


def test_plain_run_trains_with_the_task_defaults_as_a_grid_cell_does():
    cfg = build_config(parsed(["run", "--task", "sst2", "--model", "tiny-bert", "--seed", "3"]))
    for key, value in TASK_TRAINING["sst2"].items():
        assert getattr(cfg.training, key) == value, key
    assert cfg.training.seed == 3


def test_max_steps_overrides_the_task_default():
    cfg = build_config(parsed(["run", "--task", "sst2", "--model", "tiny-bert", "--max-steps", "7"]))
    assert cfg.training.max_steps == 7


@pytest.mark.parametrize("steps", ["0", "-5"])
def test_non_positive_max_steps_is_refused_with_exit_2(steps, capsys):
    assert cli.main(["run", "--task", "sst2", "--model", "tiny-bert", "--max-steps", steps]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--max-steps {steps}: must be > 0" in err[0]


@pytest.mark.parametrize("command", ["run", "pareto", "sensitivity"])
@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_outside_numpys_range_is_refused_before_anything_runs(command, seed, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--model", "tiny-bert", "--seed", seed])
    assert exc.value.code == 2
    assert "a seed must be between 0 and 2**32 - 1" in capsys.readouterr().err


def test_a_seed_set_in_the_config_is_checked_too():
    from trainables.config import TrialConfig
    from trainables.errors import ConfigError

    with pytest.raises(ConfigError, match=r"training.seed: -3 must be between 0 and 2\*\*32 - 1"):
        TrialConfig.from_dict({"training": {"seed": -3}})


@pytest.mark.parametrize(
    "text,message", [("0,0", "seed 0 is given twice"), ("1,-1", "seed -1 must be between 0 and 2**32 - 1")]
)
def test_grid_seeds_are_distinct_and_in_range(text, message):
    from search.common import parse_seeds
    from trainables.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        parse_seeds(text)
    assert message in str(exc.value)
    assert parse_seeds("0,1,2") == [0, 1, 2]


def test_overwrite_moves_the_earlier_result_aside(tmp_path):
    from search.run_cmd import prepare_output
    from trainables.errors import ConfigError

    out = tmp_path / "run1"
    out.mkdir()
    (out / "trial_result.json").write_text('{"result": {"status": "completed"}}')
    (out / "adapter").mkdir()
    with pytest.raises(ConfigError, match="already holds a result"):
        prepare_output(out, overwrite=False)
    prepare_output(out, overwrite=True)
    assert out.is_dir() and not any(out.iterdir())
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("run1.old-")]
    assert (aside / "trial_result.json").read_text().startswith('{"result"') and (aside / "adapter").is_dir()


def test_a_grid_or_pareto_folder_is_not_a_run_output(tmp_path):
    from search.run_cmd import prepare_output
    from trainables.errors import ConfigError

    (tmp_path / "experiment.json").write_text("{}")
    with pytest.raises(ConfigError, match="is a grid / Pareto results folder"):
        prepare_output(tmp_path, overwrite=True)
    assert (tmp_path / "experiment.json").exists()
