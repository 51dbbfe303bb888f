"""`rankbits grid`: the fixed six-config research grid (config id x task x seed) as Ray Tune trials."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from search.common import (
    DATA_DIR_FLAG,
    HARNESS_FLAGS,
    SpecFlag,
    add_data_flag,
    add_harness_flags,
    add_set_flag,
    add_task_data_flags,
    adopt_spec,
    apply_overrides,
    check_launch_flags,
    check_max_steps,
    data_dir_of,
    fold_task_data_flags,
    parse_seeds,
    parse_tasks,
    root_of,
)
from search.sensitivity_cmd import place_critical
from spaces.grid import GRID_IDS, grid_config, parse_config_ids
from trainables.config import CRITICAL, ModelConfig, TrialConfig
from trainables.tasks import TASKS


def model_dest(task: str) -> str:
    """The argparse destination of `--model-<task>`."""
    return f"model_{task}"


def default_tasks() -> str:
    """`--tasks` default: the registered tasks that run without your data (`TaskSpec.in_default_grid`)."""
    return ",".join(name for name, spec in TASKS.items() if spec.in_default_grid)


def task_models(args: argparse.Namespace) -> dict[str, str]:
    """{task: model} from the `--model-<task>` flags (every registered task)."""
    return {name: getattr(args, model_dest(name), spec.model) for name, spec in TASKS.items()}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grid", help="run the fixed six-config grid on Ray Tune and write the summary table")
    p.add_argument("--configs", default=",".join(GRID_IDS), help=f"comma list of {', '.join(GRID_IDS)}")
    p.add_argument("--tasks", default=default_tasks(), help=f"comma list of {', '.join(TASKS)}")
    for name, spec in TASKS.items():
        p.add_argument(
            f"--model-{name}", dest=model_dest(name), default=spec.model, help=f"model for {spec.title}"
        )
    add_task_data_flags(p)
    p.add_argument("--seeds", default="0", help="comma list of seeds, e.g. 0,1,2")
    p.add_argument(
        "--max-steps", type=int, default=None, help="optimizer steps per trial (default: per task)"
    )
    p.add_argument(
        "--critical",
        choices=CRITICAL,
        default=None,
        help="where Joint-2 / Joint-3 put their 8-bit blocks: the fixed rule or the most sensitive blocks "
        "(measured once per model and task, then cached; same as --set quantization.critical=...)",
    )
    add_data_flag(p)
    add_set_flag(p)
    add_experiment_flags(p, default_name="grid")
    p.set_defaults(handler=handle)


def add_experiment_flags(p: argparse.ArgumentParser, default_name: str) -> None:
    p.add_argument("--results-dir", default="results", help="parent folder of experiments")
    p.add_argument("--name", default=default_name, help="experiment name (folder under --results-dir)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment of this name")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh even if the folder holds another experiment (the old one is moved aside)",
    )
    p.add_argument("--ray-address", default=None, help="run on an existing Ray cluster (host:port)")
    p.add_argument(
        "--device-memory-gb",
        type=float,
        default=None,
        help="memory budget shared by concurrent trials, GB = 2^30 bytes (default: usable device memory)",
    )
    p.add_argument("--max-concurrent", type=int, default=None, help="at most this many trials at once")
    add_harness_flags(p)


@functools.cache
def _layers(model: str) -> int:
    from trainables.models import count_layers

    return count_layers(ModelConfig(name=model))


def predicted_mb(cfg: TrialConfig, device_kind: str) -> float:
    from trainables.predict import predicted_peak_mb

    return predicted_peak_mb(cfg, device_kind)


def build_cells(args: argparse.Namespace) -> list[TrialConfig]:
    from trainables.checks import preflight

    fold_task_data_flags(args)
    configs = parse_config_ids(args.configs)
    tasks = parse_tasks(args.tasks)
    seeds = parse_seeds(args.seeds)
    check_max_steps(args)
    data_dir = data_dir_of(args)
    models = task_models(args)
    critical = getattr(args, "critical", None)
    overrides = list(args.overrides) + ([f"quantization.critical={critical}"] if critical else [])
    cells = []
    for config_id in configs:
        for task in tasks:
            for seed in seeds:
                cell = functools.partial(
                    grid_config,
                    config_id,
                    task,
                    models[task],
                    _layers(models[task]),
                    seed=seed,
                    data_dir=data_dir,
                    max_steps=args.max_steps,
                )
                cfg = place_critical(apply_overrides(cell(), overrides), cell, overrides)
                preflight(cfg)
                cells.append(cfg)
    return cells


def _csv(values: list[Any]) -> str:
    return ",".join(map(str, values))


def _model_of(task: str) -> Callable[[dict[str, Any]], Any]:
    """The recorded model of `task` in an experiment.json spec."""
    return lambda spec: spec["models"][task]


def grid_flags() -> list[SpecFlag]:
    """What `grid --resume` reads back from experiment.json (one `--model-<task>` per registered task)."""
    return [
        SpecFlag("configs", lambda s: s["configs"], _csv, parse_config_ids),
        SpecFlag("tasks", lambda s: s["tasks"], _csv, parse_tasks),
        *[SpecFlag(model_dest(name), _model_of(name)) for name in TASKS],
        SpecFlag("seeds", lambda s: s["seeds"], _csv, parse_seeds),
        SpecFlag("max_steps", lambda s: s["max_steps"]),
        SpecFlag("overrides", lambda s: s["overrides"], list, list),
        *HARNESS_FLAGS,
        SpecFlag("critical", lambda s: s["critical"]),
        DATA_DIR_FLAG,
    ]


GRID_FLAGS = grid_flags()
"""`grid_flags()` for the tasks registered at import (the old name)."""


def spec_of(args: argparse.Namespace) -> dict[str, Any]:
    """The experiment.json of a grid: what a rerun or --resume must match."""
    return {
        "kind": "grid",
        "configs": parse_config_ids(args.configs),
        "tasks": parse_tasks(args.tasks),
        "models": {t: m for t, m in task_models(args).items() if t in parse_tasks(args.tasks)},
        "seeds": parse_seeds(args.seeds),
        "max_steps": args.max_steps,
        "overrides": list(args.overrides),
        "data_dir": data_dir_of(args),
        # only when given: experiments started before the flag existed still resume
        **({"critical": args.critical} if getattr(args, "critical", None) else {}),
    }


def handle(args: argparse.Namespace) -> int:
    from search import results_io
    from search.launch import launch
    from search.lock import folder_lock

    fold_task_data_flags(args)
    adopt_spec(args, root_of(args), grid_flags())
    check_launch_flags(args)
    cells = build_cells(args)  # bad input is refused before anything is written, the lock file included
    spec = spec_of(args)
    order = [results_io.cell_key(c.config_id or "", c.task.name, c.training.seed) for c in cells]
    with folder_lock(root_of(args)):  # a second run on this folder is refused while this one lives
        table = launch(args, cells, spec, order)
    return 0 if any(r["status"] == "completed" for r in table) or not table else 1
