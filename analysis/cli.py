"""The `analyze` subcommand: `rankbits analyze RESULTS_DIR [RESULTS_DIR ...] [--objectives ...] [--out DIR]`.

`search/cli.py` calls `register(subparsers)`; the parsed arguments carry `handler=run`, so the main CLI
dispatches with `args.handler(args)` and turns a `ConfigError` into one line on stderr and exit code 2.
`main()` does the same on its own (`python -m analysis.cli RESULTS_DIR ...`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from analysis.objectives import OBJECTIVE_COLUMNS
from trainables.errors import ConfigError

HELP = "tables, Pareto set, hypervolume and plots for one or more results folders"
DESCRIPTION = "Tables, Pareto set, hypervolume and plots for one or more results folders."


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `analyze` to an argparse subparsers object (from `parser.add_subparsers()`); returns its parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser("analyze", help=HELP, description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results_dirs",
        nargs="+",
        type=Path,
        metavar="RESULTS_DIR",
        help="results/<name> folder(s) written by the grid or Pareto search; several are compared",
    )
    parser.add_argument(
        "--objectives",
        default=None,
        metavar="COL:DIR,...",
        help="e.g. accuracy:max,peak_memory_mb:min (default: accuracy:max if the results have accuracy "
        f"values, else perplexity:min; plus peak_memory_mb:min). Columns: {', '.join(OBJECTIVE_COLUMNS)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where report.md, pareto.csv and the plots go (default: RESULTS_DIR/analysis for one folder, "
        "analysis/ beside the folders for several)",
    )


def default_out_dir(results_dirs: list[Path]) -> Path:
    if len(results_dirs) == 1:
        return results_dirs[0] / "analysis"
    parents = {p.resolve().parent for p in results_dirs}
    return (parents.pop() if len(parents) == 1 else Path.cwd()) / "analysis"


def run(args: argparse.Namespace) -> int:
    """Write the report and print the key table; returns 0. Bad input raises `ConfigError`."""
    dirs = list(args.results_dirs)
    seen: set[Path] = set()
    for folder in dirs:
        if not Path(folder).is_dir():
            raise ConfigError(f"results folder {str(folder)!r} does not exist; give results/<name> folders")
        resolved = Path(folder).resolve()
        if resolved in seen:  # its trials would count twice (every config n=2)
            raise ConfigError(f"results folder {str(folder)!r} is given twice; give each folder once")
        seen.add(resolved)
    out = args.out if args.out is not None else default_out_dir(dirs)
    # pandas and matplotlib are imported here, not when `rankbits grid` builds its parser (0.4 s of its start).
    from analysis.report import key_table_text, write_frame_report
    from analysis.results import load_results

    df = load_results(dirs)
    from analysis.report import mixed_settings

    for line in mixed_settings(df):
        print(f"analyze: warning: {line}", file=sys.stderr)
    tasks = sorted(str(t) for t in df["task"].dropna().unique()) if "task" in df.columns else []
    parts = [(t, df[df["task"] == t], out / t) for t in tasks] if len(tasks) > 1 else [(None, df, out)]
    if len(parts) > 1:  # one front per task: an accuracy and a perplexity are not one objective
        print(f"analyze: {len(tasks)} tasks ({', '.join(tasks)}): one report per task in {out}/<task>")
    written = []
    for task, part, where in parts:
        if task is not None:
            print(f"\n== {task} ==")
        paths = write_frame_report(part, args.objectives, where, [Path(d).name for d in dirs])
        written.append((task, paths))
        print(key_table_text(part, args.objectives))
        print()
        print(f"report: {paths.report}")
        print(f"pareto set: {paths.pareto_csv}")
        if paths.pareto_means_csv is not None:
            print(f"pareto set on means over seeds: {paths.pareto_means_csv}")
    if len(written) > 1:
        index = write_task_index(out, written)
        print(f"\nreport index: {index}")
    return 0


def write_task_index(out: Path, written: list[tuple[Any, Any]]) -> Path:
    """OUT/report.md linking each task's report, and OUT/pareto.csv holding every task's Pareto set (its `task`
    column tells them apart); returns the index's path."""
    import pandas as pd

    lines = ["# rankbits analysis: one report per task", ""]
    lines += [
        f"- [{task}]({task}/{paths.report.name}): Pareto set in `{task}/{paths.pareto_csv.name}`"
        for task, paths in written
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    fronts = [pd.read_csv(paths.pareto_csv) for _, paths in written]
    pd.concat([f for f in fronts if len(f)], ignore_index=True).to_csv(out / "pareto.csv", index=False)
    return out / "report.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.cli", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
