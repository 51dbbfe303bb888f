"""Flags and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.config import TASKS, TrialConfig
from trainables.errors import ConfigError
from trainables.harness import ENV, parse_mmap_threshold, parse_reuse_workers, parse_trial_process
from trainables.results_folder import SPEC_FILE
from trainables.results_folder import (
    atomic_write_json as atomic_write_json,  # moved there; still importable here
)
from trainables.results_folder import atomic_write_text as atomic_write_text

SAMPLERS = ("tpe", "nsga2", "gp", "random")
"""Optuna samplers of `rankbits pareto --sampler` (built in search.searcher.make_sampler)."""


def add_data_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        default=None,
        help="local data root (sst2/*.tsv, wikitext-2/wiki.*.tokens); default $RANKBITS_DATA_DIR, else the hub",
    )


def add_set_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. training.lr=1e-4 or adapter.layer_ranks=0:4,5:12 (repeatable)",
    )


def add_harness_flags(p: argparse.ArgumentParser, ray: bool = True) -> None:
    """The harness switches that change what is measured (`trainables.harness`): recorded in experiment.json and
    in every trial's result. `ray=False` (`rankbits run`): no worker reuse flag."""
    p.add_argument(
        "--trial-process",
        default=None,
        metavar="fork|inline",
        help="train each trial in a fresh forked child (fork: a fresh process's CPU peak) or in the worker's own "
        f"process (inline); default ${ENV['trial_process']}, else "
        + ("fork on Linux CPU, inline elsewhere" if ray else "inline"),
    )
    if ray:
        p.add_argument(
            "--reuse-workers",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"let a finished trial's Ray worker run the next one; default ${ENV['reuse_workers']} (1/0), "
            "else yes unless CPU trials train inline",
        )
    p.add_argument(
        "--mmap-threshold",
        default=None,
        metavar="BYTES",
        help="glibc mmap threshold of the training process (e.g. 262144 or 256K: the resident set tracks live "
        f"tensors, ~2x slower; 0: glibc's own); default ${ENV['mmap_threshold']}, else 0",
    )


def check_harness_flags(args: argparse.Namespace) -> None:
    """Parse the typed harness flags in place (fork / inline, bytes); a bad value is a ConfigError naming it."""
    if hasattr(args, "trial_process"):
        args.trial_process = parse_trial_process(args.trial_process)
    if hasattr(args, "reuse_workers"):
        args.reuse_workers = parse_reuse_workers(args.reuse_workers)
    if hasattr(args, "mmap_threshold"):
        args.mmap_threshold = parse_mmap_threshold(args.mmap_threshold)


def parse_csv(text: str, what: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{what} is empty")
    if allowed is not None:
        for item in items:
            if item not in allowed:
                raise ConfigError(
                    f"unknown {what[2:].rstrip('s')} {item!r}; choose from {', '.join(allowed)}"
                )
    return items


def parse_tasks(text: str) -> list[str]:
    return parse_csv(text, "--tasks", TASKS)


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in parse_csv(text, "--seeds")]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give integers like 0,1,2") from None


def root_of(args: argparse.Namespace) -> Path:
    """The experiment's results folder: `--results-dir/--name`; a name with a path in it is a ConfigError."""
    if not args.name or "/" in args.name or args.name.startswith("."):
        raise ConfigError(f"--name {args.name!r}: give a plain folder name like grid-1")
    return Path(args.results_dir) / args.name


def apply_overrides(cfg: TrialConfig, overrides: list[str]) -> TrialConfig:
    return cfg.with_overrides(overrides) if overrides else cfg


@dataclass(frozen=True)
class SpecFlag:
    """One CLI flag recorded in `experiment.json`, so that `--resume` can restore it.

    `dest` is the argparse destination; `read(spec)` is the recorded value in spec form; `to_arg(value)` turns it
    back into what the flag holds; `to_spec(arg)` turns a typed flag into spec form (for comparing);
    `must_match=False`: a typed value may differ (pareto's --trials extends a search)."""

    dest: str
    read: Callable[[dict[str, Any]], Any]
    to_arg: Callable[[Any], Any] = lambda v: v  # noqa: E731
    to_spec: Callable[[Any], Any] = lambda v: v  # noqa: E731
    must_match: bool = True

    def __post_init__(self) -> None:
        if not self.dest.isidentifier():
            raise ValueError(f"SpecFlag.dest {self.dest!r}: give an argparse destination like max_steps")


HARNESS_FLAGS = [
    SpecFlag("trial_process", lambda s: s["harness"]["trial_process"], to_spec=parse_trial_process),
    SpecFlag("reuse_workers", lambda s: s["harness"]["reuse_workers"], to_spec=parse_reuse_workers),
    SpecFlag("mmap_threshold", lambda s: s["harness"]["mmap_threshold"], to_spec=parse_mmap_threshold),
]
"""What `grid / pareto --resume` reads back from experiment.json's `harness` (absent in older folders: then the
flags, the environment or the defaults decide)."""


def adopt_spec(args: argparse.Namespace, root: Path, flags: list[SpecFlag]) -> None:
    """On `--resume`, fill every flag the user did not type from `root/experiment.json`; the flags typed again
    must agree with it. `args.given` names the typed destinations (see `search.cli.given_flags`).

    Raises ConfigError naming every differing flag at once (old and new value). Does nothing without --resume or
    when the folder holds no readable experiment.json (the folder check then says what is wrong)."""
    if not getattr(args, "resume", False):
        return
    try:
        spec = json.loads((root / SPEC_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return
    given: set[str] = getattr(args, "given", set())
    diffs = []
    for flag in flags:
        try:
            recorded = flag.read(spec)
        except (KeyError, TypeError):
            continue
        if flag.dest not in given:
            setattr(args, flag.dest, flag.to_arg(recorded))
            continue
        typed = getattr(args, flag.dest)
        if flag.must_match and flag.to_spec(typed) != recorded:
            diffs.append(
                f"--{flag.dest.replace('_', '-')} {typed!r} (the run used {flag.to_arg(recorded)!r})"
            )
    if diffs:
        raise ConfigError(
            f"--resume: {str(root)!r} was started with other settings: {'; '.join(diffs)}; "
            "drop these flags to resume with the recorded settings, or use another --name"
        )
