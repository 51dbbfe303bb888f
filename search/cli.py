"""`rankbits`: one console script with subcommands (run, grid, pareto, analyze).

Bad input anywhere becomes one line on stderr and exit code 2, before any training starts. Ctrl-C ends with the
resume hint and exit code 130.

Only the chosen subcommand's module is imported (the others are listed by name and one-line help): `rankbits
--help` needs neither Ray nor Optuna nor pandas.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from trainables.errors import ConfigError

COMMANDS = {
    "run": ("search.run_cmd", "run one trial (a grid config or your own settings) without Ray"),
    "grid": ("search.grid_cmd", "run the fixed six-config grid on Ray Tune and write the summary table"),
    "pareto": ("search.pareto_cmd", "Optuna multi-objective search over ranks and per-layer bits (Ray Tune)"),
    "plan": (
        "search.plan_cmd",
        "predicted training peak by part before any download: fits, largest batch / length",
    ),
    "sensitivity": ("search.sensitivity_cmd", "per-block damage of 4 / 8-bit weights and rank importance"),
    "allocate": ("search.allocate_cmd", "bits / ranks per block under a budget, from measured sensitivity"),
    "export": ("search.export_cmd", "write a trial's adapter and quantized-base recipe as a loadable folder"),
    "analyze": ("analysis.cli", "tables, Pareto set, hypervolume and plots for one or more results folders"),
}
"""Subcommand name -> (module with `register(subparsers)`, one-line help for `rankbits --help`)."""


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """argparse's help with each option's default appended, unless the default is None, False or empty."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        # `is False` by identity: 0 == False, and a default of 0 (e.g. --screen: off) is worth showing
        if (
            "%(default)" in text
            or not action.option_strings
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or default == []
            or "default" in text
        ):
            return text
        return f"{text} (default: %(default)s)"


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse with its errors on one line (the message and where to read more), exit 2, like every other bad
    input; argparse's own prints the whole usage block first. Subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _chosen(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; the subcommand named in `argv` gets its full options (every one when argv is None)."""
    parser = OneLineErrorParser(
        prog="rankbits",
        description="Which LoRA rank allocation and per-layer weight precision fit your memory best?",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen(argv) if argv is not None else None
    for name, (module, help_text) in COMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(module).register(sub)
            sub.choices[name].formatter_class = DefaultsHelpFormatter
        else:
            sub.add_parser(name, help=help_text)
    return parser


def subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The subcommands action of a `build_parser` parser (its `.choices` maps each name to its parser)."""
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def given_flags(argv: list[str]) -> set[str]:
    """The option destinations the user typed in `argv` (not filled from defaults): a resume takes every other
    setting from the experiment it continues."""
    parser = build_parser(argv)
    for subparser in subparsers(parser).choices.values():
        for action in subparser._actions:
            action.default = argparse.SUPPRESS
    try:
        typed = vars(parser.parse_args(argv))
    except SystemExit:  # pragma: no cover - the first parse already succeeded
        return set()
    return {k for k, v in typed.items() if v != argparse.SUPPRESS and k not in ("command", "handler")}


def _use_cluster_token() -> None:
    import os
    from pathlib import Path

    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"  # `ray start` clusters use token auth; Ray reads this at import


def main(argv: list[str] | None = None) -> int:
    from trainables.quiet import quiet_libraries

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--ray-address" in argv:
        from search.envfile import load_env

        load_env()
        _use_cluster_token()
    parser = build_parser(argv)
    # --help exits here, before the libraries below are imported
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # told by the subcommand's parser: its prog names the command, its --help lists the flags
        subparsers(parser).choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    args.given = given_flags(argv)
    quiet_libraries()
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"rankbits {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"rankbits {args.command}: interrupted; completed trials are kept, rerun with --resume to finish",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
