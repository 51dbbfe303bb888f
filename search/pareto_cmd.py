"""`rankbits pareto`: multi-objective Optuna search (in Ray Tune) over rank budgets and per-layer bit widths."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from search.common import add_data_flag, add_set_flag, apply_overrides
from search.grid_cmd import add_experiment_flags, root_of
from search.searcher import SAMPLERS
from spaces.grid import TASK_MODELS, TASK_TRAINING
from trainables.config import TASKS, TrialConfig
from trainables.errors import ConfigError

TASK_METRIC = {"sst2": "accuracy", "wikitext2": "perplexity"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pareto", help="Optuna multi-objective search over ranks and per-layer bits (Ray Tune)"
    )
    p.add_argument("--task", default="sst2", help=f"task: {', '.join(TASKS)}")
    p.add_argument(
        "--model", default=None, help="preset, hub id or local folder (default: the task's preset)"
    )
    p.add_argument("--trials", type=int, default=24, help="total trials in the study")
    p.add_argument("--sampler", default="tpe", help=f"one of {', '.join(SAMPLERS)}")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (and training seed)")
    p.add_argument(
        "--objectives",
        default=None,
        help="comma list of column:direction (default: the task metric and peak_memory_mb:min)",
    )
    p.add_argument(
        "--memory-budget-mb",
        type=float,
        default=None,
        help="proposals predicted above this peak never train (told to the sampler as infeasible)",
    )
    p.add_argument(
        "--storage", default=None, help="Optuna storage URL (default: sqlite file in the results folder)"
    )
    p.add_argument("--enqueue-grid", action="store_true", help="evaluate the six fixed grid configs first")
    p.add_argument("--asha", action="store_true", help="stop weak trials early on the task metric (ASHA)")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps per trial")
    add_data_flag(p)
    add_set_flag(p)
    add_experiment_flags(p, default_name="pareto")
    p.set_defaults(handler=handle)


def parse_task_objectives(text: str | None, task: str) -> dict[str, str]:
    from analysis.objectives import parse_objectives

    objectives = parse_objectives(
        text or f"{TASK_METRIC[task]}:{'max' if task == 'sst2' else 'min'},peak_memory_mb:min"
    )
    wrong = {"sst2": "perplexity", "wikitext2": "accuracy"}[task]
    if wrong in objectives:
        raise ConfigError(f"--objectives: {wrong} is not measured on {task}; use {TASK_METRIC[task]}")
    return objectives


def base_config(args: argparse.Namespace) -> TrialConfig:
    if args.task not in TASKS:
        raise ConfigError(f"unknown task {args.task!r}; choose one of {', '.join(TASKS)}")
    training = dict(TASK_TRAINING[args.task], seed=args.seed)
    if args.max_steps is not None:
        if args.max_steps <= 0:
            raise ConfigError(f"--max-steps {args.max_steps}: must be > 0")
        training["max_steps"] = args.max_steps
    cfg = TrialConfig.from_dict(
        {
            "task": {"name": args.task, "data_dir": args.data_dir or os.environ.get("RANKBITS_DATA_DIR")},
            "model": {"name": args.model or TASK_MODELS[args.task]},
            "training": training,
        }
    )
    cfg = apply_overrides(cfg, args.overrides)
    if args.asha and cfg.training.eval_every is None:
        cfg = cfg.with_overrides({"training.eval_every": max(1, cfg.training.max_steps // 4)})
    return cfg


def smallest_peak_mb(arch: Any, base: TrialConfig, num_layers: int, device_kind: str) -> float:
    """Predicted peak of the cheapest point of the space (all 4-bit, the smallest LoRA budget)."""
    from spaces.pareto import build_config
    from trainables.predict import predicted_peak_mb

    cheapest = build_config(
        {"method": "lora", "bits": [4] * num_layers, "ranks": [1] * num_layers}, base, num_layers
    )
    return predicted_peak_mb(cheapest, device_kind, arch)


def handle(args: argparse.Namespace) -> int:
    import optuna
    from ray import tune

    from search import results_io
    from search.resources import detect_device, max_concurrency
    from search.searcher import RankbitsOptunaSearch, make_sampler, make_space, make_storage
    from search.tuner import init_ray, make_callbacks, new_tuner, quiet, restore, reuse_workers, trial_dirname
    from spaces.pareto import grid_points
    from trainables.checks import preflight
    from trainables.memory import arch_for

    quiet()
    if args.trials <= 0:
        raise ConfigError(f"--trials {args.trials}: must be >= 1")
    if args.sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {args.sampler!r}: choose one of {', '.join(SAMPLERS)}")
    objectives = parse_task_objectives(args.objectives, args.task)
    base = base_config(args)
    num_layers = preflight(base)
    arch = arch_for(base)
    device = detect_device(args.device_memory_gb)
    smallest = smallest_peak_mb(arch, base, num_layers, device.kind)
    budget = args.memory_budget_mb
    if budget is not None and budget < smallest:
        raise ConfigError(
            f"--memory-budget-mb {budget:g} is below the smallest feasible configuration "
            f"(all 4-bit, rank 1: predicted {smallest:.0f} MB); raise it to at least {smallest:.0f}"
        )
    root = root_of(args)
    storage_url = args.storage or f"sqlite:///{(root / 'study.db').resolve()}"
    spec = {
        "kind": "pareto",
        "task": base.task.name,
        "model": base.model.name,
        "objectives": objectives,
        "sampler": args.sampler,
        "seed": args.seed,
        "memory_budget_mb": budget,
        "asha": args.asha,
        "max_steps": base.training.max_steps,
        "overrides": list(args.overrides),
        "enqueue_grid": args.enqueue_grid,
        "storage": args.storage,
    }
    if args.storage:
        make_storage(args.storage)  # a bad URL fails before anything is written
    resuming = results_io.prepare_folder(root, spec, args.resume, args.overwrite)
    root.mkdir(parents=True, exist_ok=True)
    if not resuming:
        results_io.write_spec(root, spec)
    storage = make_storage(storage_url)
    init_ray(device, args.ray_address)
    # as many trials at once as copies of the smallest predicted trial fit (a search has args.trials of them)
    concurrency = max_concurrency(device, [smallest] * max(1, args.trials), args.max_concurrent)
    metric, mode = list(objectives), list(objectives.values())
    latest = [d for d in results_io.tune_dirs(root) if ".incomplete-" not in d.name]
    if resuming and latest and tune.Tuner.can_restore(str(latest[-1])):
        print(f"rankbits: continuing {latest[-1]}", flush=True)
        restore(latest[-1]).fit()
    done = len(results_io.collect(root))
    remaining = args.trials - done
    print(
        f"rankbits: pareto search on {base.task.name} with {base.model.name}: {done} trials done, {max(0, remaining)} "
        f"to run, sampler {args.sampler}, objectives {objectives}, budget {budget or 'none'} -> {root}",
        flush=True,
    )
    if remaining > 0:
        study_has_trials = (
            bool(optuna.load_study(study_name=args.name, storage=storage).trials)
            if _study_exists(storage, args.name)
            else False
        )
        points = grid_points(num_layers) if args.enqueue_grid and not study_has_trials else None
        searcher = RankbitsOptunaSearch(
            space=make_space(
                base=base.to_dict(),
                num_layers=num_layers,
                budget_mb=budget,
                device=device,
                concurrency=concurrency,
                arch=arch,
            ),
            metric=metric,
            mode=mode,
            sampler=make_sampler(args.sampler, args.seed, len(metric)),
            storage=storage,
            study_name=args.name,
            points_to_evaluate=points,
        )
        scheduler = None
        if args.asha:
            from ray.tune.schedulers import ASHAScheduler

            task_metric = TASK_METRIC[base.task.name]
            scheduler = ASHAScheduler(
                metric=task_metric,
                mode="max" if task_metric == "accuracy" else "min",
                time_attr="steps",
                max_t=base.training.max_steps,
                grace_period=max(1, base.training.eval_every or 1),
                reduction_factor=2,
            )
        target = results_io.next_tune_dir(root)
        tune_config = tune.TuneConfig(
            num_samples=remaining,
            search_alg=searcher,
            scheduler=scheduler,
            max_concurrent_trials=concurrency,
            trial_dirname_creator=trial_dirname,
            reuse_actors=reuse_workers(device),
        )
        tuner = new_tuner(target, None, tune_config, make_callbacks(root, None, remaining))
        tuner.fit()
    return finish(root, objectives)


def _study_exists(storage: Any, name: str) -> bool:
    import optuna

    return any(s.study_name == name for s in optuna.get_all_study_summaries(storage))


def finish(root: Path, objectives: dict[str, str]) -> int:
    """Summary files, the Pareto set (pareto.csv) and the terminal tables."""
    from analysis import load_results, pareto_front
    from search import results_io
    from search.common import atomic_write_text

    table = results_io.write_summary(root)
    print()
    print(results_io.table_text(table))
    counts: dict[str, int] = {}
    for row in table:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    print(f"\ntrials: {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}")
    if not any(r["status"] == "completed" for r in table):
        print("no completed trial: no Pareto set")
        return 1
    front = pareto_front(load_results(root), objectives)
    atomic_write_text(root / "pareto.csv", front.to_csv(index=False))
    cols = [
        c
        for c in [
            "trial_id",
            "config_id",
            "method",
            *objectives,
            "bits_per_layer",
            "ranks_per_layer",
            "trainable_params",
        ]
        if c in front.columns
    ]
    print(f"\nPareto set ({len(front)} of {counts.get('completed', 0)} completed):")
    print(front[cols].to_string(index=False))
    print(f"\nsummary: {root / 'experiment_summary.csv'}  pareto: {root / 'pareto.csv'}")
    return 0
