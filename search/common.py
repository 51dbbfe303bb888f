"""Flags and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.config import MAX_SEED, TrialConfig
from trainables.errors import ConfigError
from trainables.harness import ENV, parse_mmap_threshold, parse_reuse_workers, parse_trial_process
from trainables.results_folder import SPEC_FILE
from trainables.results_folder import (
    atomic_write_json as atomic_write_json,  # moved there; still importable here
)
from trainables.results_folder import atomic_write_text as atomic_write_text

SAMPLERS = ("tpe", "nsga2", "gp", "random")
"""Optuna samplers of `rankbits pareto --sampler` (built in search.searcher.make_sampler)."""


def data_dir_of(args: argparse.Namespace) -> str | None:
    """The local data root a grid / pareto experiment reads: `--data-dir`, else $RANKBITS_DATA_DIR, as an
    absolute path (Ray workers run in other folders); None: the hub. Recorded in experiment.json as `data_dir`."""
    given = args.data_dir or os.environ.get("RANKBITS_DATA_DIR")
    return absolute_dir(given)


def absolute_dir(path: str | None) -> str | None:
    """`path` with `~` expanded and made absolute (not resolved: a symlinked data root stays as named); None stays."""
    return str(Path(path).expanduser().absolute()) if path else None


def add_data_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        default=None,
        help="local data root (sst2/*.tsv, wikitext-2/wiki.*.tokens); default $RANKBITS_DATA_DIR, else the hub",
    )


TASK_DATA_FLAGS = {
    "data": "training data: a .csv / .tsv / .jsonl file (textcls), a text file (lm) or a hub dataset id",
    "eval_data": "evaluation data file, in the format of --data",
    "eval_fraction": "hold this share of --data out for evaluation instead of --eval-data (e.g. 0.1)",
    "text_column": "column holding the text (default: text)",
    "label_column": "column holding the label, textcls (default: label)",
}
"""Own-data flags (tasks textcls and lm): each `--flag value` is a shortcut for `--set task.flag=value`."""


def add_task_flag(p: argparse.ArgumentParser, default: str = "sst2") -> None:
    """`--task`, its help listing the registered tasks, and the own-data shortcut flags."""
    from trainables.tasks import TASKS

    p.add_argument(
        "--task",
        default=default,
        help="task: " + "; ".join(spec.describe() for spec in TASKS.values()),
    )
    add_task_data_flags(p)


def add_task_data_flags(p: argparse.ArgumentParser) -> None:
    for name, text in TASK_DATA_FLAGS.items():
        p.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"task_{name}",
            default=None,
            type=float if name == "eval_fraction" else str,
            metavar="F" if name == "eval_fraction" else "NAME" if name.endswith("column") else "FILE",
            help=text,
        )


def fold_task_data_flags(args: argparse.Namespace) -> None:
    """Turn the own-data flags given into `task.<field>=value` assignments at the front of `args.overrides`
    (files made absolute: trials run in other folders); once. A typed flag counts as a typed `--set`, so that
    `--resume` compares it with the recorded run."""
    if getattr(args, "_task_flags_folded", False):
        return
    args._task_flags_folded = True
    folded = []
    for name in TASK_DATA_FLAGS:
        value = getattr(args, f"task_{name}", None)
        if value is None:
            continue
        if name in ("data", "eval_data"):
            from trainables.data import local_path

            path = local_path(value)
            value = str(path.resolve()) if path is not None else value
        folded.append(f"task.{name}={value}")
    if folded:
        args.overrides = folded + list(getattr(args, "overrides", None) or [])
        given = getattr(args, "given", None)
        if isinstance(given, set):
            given.add("overrides")


def task_spec(name: str) -> Any:
    """The registered spec of `--task name`; ConfigError naming the registered tasks."""
    from trainables.tasks import TASKS, get_task

    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return get_task(name)


def check_max_steps(args: argparse.Namespace) -> None:
    """ConfigError for a `--max-steps` that is not > 0 (None: the task's default)."""
    if args.max_steps is not None and args.max_steps <= 0:
        raise ConfigError(f"--max-steps {args.max_steps}: must be > 0")


def task_training(spec: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The task's default `training.*` settings (`spec.training`) with `--seed` and `--max-steps` (checked by the
    caller, `check_max_steps`): what a search's base config and a plain `rankbits run` train with."""
    training = dict(spec.training, seed=args.seed)
    if args.max_steps is not None:
        training["max_steps"] = args.max_steps
    return training


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


def check_launch_flags(args: argparse.Namespace) -> None:
    """The harness flags (`check_harness_flags`) and grid / pareto's --max-concurrent and --device-memory-gb,
    checked before Ray is imported or started. Raises ConfigError naming the value."""
    check_harness_flags(args)
    if args.max_concurrent is not None and args.max_concurrent <= 0:
        raise ConfigError(f"--max-concurrent {args.max_concurrent}: must be >= 1")
    if args.device_memory_gb is not None and args.device_memory_gb <= 0:
        raise ConfigError(f"--device-memory-gb {args.device_memory_gb}: must be > 0")


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
    from trainables.tasks import task_names

    return parse_csv(text, "--tasks", task_names())


def seed_arg(text: str) -> int:
    """argparse `type` of a single seed: an integer in 0 .. `MAX_SEED` (argparse turns the error into exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number like 0") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value}: a seed must be between 0 and 2**32 - 1")
    return value


def parse_seeds(text: str) -> list[int]:
    """The seeds of a comma list: integers in 0 .. 2**32 - 1, each once (a repeated seed would train the same trial
    twice and count it as two repeats). Raises ConfigError naming the value."""
    try:
        seeds = [int(s) for s in parse_csv(text, "--seeds")]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give integers like 0,1,2") from None
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"--seeds {text!r}: seed {seed} must be between 0 and 2**32 - 1")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(
            f"--seeds {text!r}: seed {repeated[0]} is given twice; list each seed once (seeds are the repeats)"
        )
    return seeds


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

DATA_DIR_FLAG = SpecFlag("data_dir", lambda s: s["data_dir"], to_spec=absolute_dir)
"""`--data-dir` read back by `--resume`: the remaining trials read the data the first ones read (a resume with
$RANKBITS_DATA_DIR set or unset differently is refused by the folder check, naming data_dir)."""


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
