"""`rankbits grid`: the fixed six-config research grid (config id x task x seed) as Ray Tune trials."""

from __future__ import annotations

import argparse
import functools
import os
from typing import Any

from search.common import (
    HARNESS_FLAGS,
    SpecFlag,
    add_data_flag,
    add_harness_flags,
    add_set_flag,
    adopt_spec,
    apply_overrides,
    check_harness_flags,
    parse_seeds,
    parse_tasks,
    root_of,
)
from search.sensitivity_cmd import place_critical
from spaces.grid import GRID_IDS, TASK_MODELS, grid_config, parse_config_ids
from trainables.config import CRITICAL, ModelConfig, TrialConfig
from trainables.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grid", help="run the fixed six-config grid on Ray Tune and write the summary table")
    p.add_argument("--configs", default=",".join(GRID_IDS), help=f"comma list of {', '.join(GRID_IDS)}")
    p.add_argument("--tasks", default="sst2,wikitext2", help="comma list of sst2, wikitext2")
    p.add_argument("--model-sst2", default=TASK_MODELS["sst2"], help="model for SST-2")
    p.add_argument("--model-wikitext2", default=TASK_MODELS["wikitext2"], help="model for WikiText-2")
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
        help="memory budget shared by concurrent trials (default: usable device memory)",
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

    configs = parse_config_ids(args.configs)
    tasks = parse_tasks(args.tasks)
    seeds = parse_seeds(args.seeds)
    if args.max_steps is not None and args.max_steps <= 0:
        raise ConfigError(f"--max-steps {args.max_steps}: must be > 0")
    data_dir = args.data_dir or os.environ.get("RANKBITS_DATA_DIR")
    models = {"sst2": args.model_sst2, "wikitext2": args.model_wikitext2}
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


GRID_FLAGS = [
    SpecFlag("configs", lambda s: s["configs"], _csv, parse_config_ids),
    SpecFlag("tasks", lambda s: s["tasks"], _csv, parse_tasks),
    SpecFlag("model_sst2", lambda s: s["models"]["sst2"]),
    SpecFlag("model_wikitext2", lambda s: s["models"]["wikitext2"]),
    SpecFlag("seeds", lambda s: s["seeds"], _csv, parse_seeds),
    SpecFlag("max_steps", lambda s: s["max_steps"]),
    SpecFlag("overrides", lambda s: s["overrides"], list, list),
    *HARNESS_FLAGS,
    SpecFlag("critical", lambda s: s["critical"]),
]
"""What `grid --resume` reads back from experiment.json."""


def spec_of(args: argparse.Namespace) -> dict[str, Any]:
    """The experiment.json of a grid: what a rerun or --resume must match."""
    return {
        "kind": "grid",
        "configs": parse_config_ids(args.configs),
        "tasks": parse_tasks(args.tasks),
        "models": {"sst2": args.model_sst2, "wikitext2": args.model_wikitext2},
        "seeds": parse_seeds(args.seeds),
        "max_steps": args.max_steps,
        "overrides": list(args.overrides),
        # only when given: experiments started before the flag existed still resume
        **({"critical": args.critical} if getattr(args, "critical", None) else {}),
    }


def handle(args: argparse.Namespace) -> int:
    from search import results_io
    from search.launch import launch
    from search.lock import folder_lock

    adopt_spec(args, root_of(args), GRID_FLAGS)
    check_harness_flags(args)
    cells = build_cells(args)  # bad input is refused before anything is written, the lock file included
    spec = spec_of(args)
    order = [results_io.cell_key(c.config_id or "", c.task.name, c.training.seed) for c in cells]
    with folder_lock(root_of(args)):  # a second run on this folder is refused while this one lives
        table = launch(args, cells, spec, order)
    return 0 if any(r["status"] == "completed" for r in table) or not table else 1
