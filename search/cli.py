"""`rankbits`: one console script with subcommands (run, grid, pareto, analyze).

Bad input anywhere becomes one line on stderr and exit code 2, before any training starts.
"""

from __future__ import annotations

import argparse
import sys

from trainables.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    from search import export_cmd, grid_cmd, pareto_cmd, plan_cmd, run_cmd

    parser = argparse.ArgumentParser(
        prog="rankbits",
        description="Which LoRA rank allocation and per-layer weight precision fit your memory best?",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_cmd.register(sub)
    grid_cmd.register(sub)
    pareto_cmd.register(sub)
    plan_cmd.register(sub)
    export_cmd.register(sub)
    from analysis import cli as analysis_cli

    analysis_cli.register(sub)
    return parser


def _use_cluster_token() -> None:
    import os
    from pathlib import Path

    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"  # `ray start` clusters use token auth; Ray reads this at import


def main(argv: list[str] | None = None) -> int:
    from trainables.quiet import quiet_libraries

    if "--ray-address" in (sys.argv[1:] if argv is None else argv):
        from search.envfile import load_env

        load_env()
        _use_cluster_token()
    quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
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
