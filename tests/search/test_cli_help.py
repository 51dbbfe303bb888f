"""`rankbits --help` imports no heavy library; subcommand help shows the defaults."""

import subprocess
import sys

from cli_helpers import env

PROBE = """
import sys
from search import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
print("HEAVY", sorted(m for m in ("ray", "optuna", "pandas", "transformers", "torch") if m in sys.modules))
"""


def help_of(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_top_level_help_lists_every_command_without_importing_ray_optuna_or_pandas():
    out = help_of("--help")
    assert "HEAVY []" in out
    for command in ("run", "grid", "pareto", "analyze"):
        assert f"    {command} " in out


def test_subcommand_help_shows_defaults_and_imports_only_that_command():
    grid = help_of("grid", "--help")
    assert "HEAVY []" in grid
    flat = " ".join(grid.split())
    assert "(default: sst2,wikitext2)" in flat and "(default: results)" in flat and "(default: 0)" in flat
    pareto = " ".join(help_of("pareto", "--help").split())
    assert "(default: 24)" in pareto and "(default: tpe)" in pareto


def test_argparse_errors_are_one_line_with_exit_2(capsys):
    import pytest

    from search import cli

    for argv in (
        ["pareto", "--space", "bogus"],
        ["pareto", "--reeval-seeds", "-2"],
        ["grid", "--max-steps", "x"],
    ):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err and "--help" in err, err


def test_a_mistyped_flag_is_told_by_its_subcommand(capsys):
    import pytest

    from search import cli

    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--cofnig", "B-FP"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == "rankbits run: error: unrecognized arguments: --cofnig B-FP (see rankbits run --help)\n"


def test_plan_takes_configs_as_grid_does():
    from search import cli

    for flag in ("--configs", "--config"):
        args = cli.build_parser(["plan"]).parse_args(["plan", "--model", "tiny-bert", flag, "B-Q4,B-FP"])
        assert args.configs == "B-Q4,B-FP"


CHECK = """
import sys
from search import cli
rc = cli.main(sys.argv[1:])
print("RC", rc, "RAY", "ray" in sys.modules)
"""


def test_search_flags_are_refused_before_ray_is_imported(tmp_path):
    cases = {
        ("pareto", "--trials", "0"): "--trials 0: must be >= 1",
        ("pareto", "--sampler", "cmaes"): "--sampler 'cmaes': choose one of",
        ("pareto", "--max-concurrent", "0"): "--max-concurrent 0: must be >= 1",
        ("grid", "--device-memory-gb", "-1"): "--device-memory-gb -1.0: must be > 0",
        ("grid", "--max-concurrent", "0"): "--max-concurrent 0: must be >= 1",
    }
    for argv, message in cases.items():
        proc = subprocess.run(
            [sys.executable, "-c", CHECK, *argv, "--results-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            env=env(),
            timeout=120,
        )
        assert "RC 2 RAY False" in proc.stdout, (argv, proc.stdout, proc.stderr[-2000:])
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (argv, proc.stderr)
    assert not any(tmp_path.iterdir())
