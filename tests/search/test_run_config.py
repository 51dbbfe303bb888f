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
