"""`rankbits pareto`: multi-objective Optuna search (in Ray Tune) over rank budgets and per-layer bit widths."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from search.common import (
    DATA_DIR_FLAG,
    HARNESS_FLAGS,
    SAMPLERS,
    SpecFlag,
    add_data_flag,
    add_set_flag,
    add_task_flag,
    adopt_spec,
    apply_overrides,
    atomic_write_json,
    check_launch_flags,
    check_max_steps,
    data_dir_of,
    fold_task_data_flags,
    seed_arg,
    task_spec,
    task_training,
)
from search.grid_cmd import add_experiment_flags, root_of
from search.guided import GUIDED_FLAGS
from search.guided import add_flags as add_guided_flags
from search.reeval import REEVAL_FLAG, add_reeval_flag
from trainables.columns import objective_columns
from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.tasks import TASKS, get_task, metric_directions

TASK_METRIC = {name: spec.metric for name, spec in TASKS.items()}
"""The task metric of each task registered at import (the old name; read `get_task(name).metric`)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pareto", help="Optuna multi-objective search over ranks and per-layer bits (Ray Tune)"
    )
    add_task_flag(p)
    p.add_argument(
        "--model", default=None, help="preset, hub id or local folder (default: the task's preset)"
    )
    p.add_argument("--trials", type=int, default=24, help="total trials in the study")
    p.add_argument("--sampler", default="tpe", help=f"one of {', '.join(SAMPLERS)}")
    p.add_argument("--seed", type=seed_arg, default=0, help="sampler seed (and training seed)")
    p.add_argument(
        "--objectives",
        default=None,
        help="comma list of column:direction (default: the task metric and peak_memory_mb:min); columns: "
        + ", ".join(objective_columns()),
    )
    p.add_argument(
        "--memory-budget-mb",
        type=float,
        default=None,
        help="MB (2^20 bytes): proposals predicted above this peak never train (told to the sampler as infeasible)",
    )
    p.add_argument(
        "--storage", default=None, help="Optuna storage URL (default: sqlite file in the results folder)"
    )
    p.add_argument("--enqueue-grid", action="store_true", help="evaluate the six fixed grid configs first")
    p.add_argument("--asha", action="store_true", help="stop weak trials early on the task metric (ASHA)")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps per trial")
    add_reeval_flag(p)  # --reeval-seeds N (search/reeval.py)
    add_guided_flags(p)  # --warm-start, --space, --screen, --screen-examples (search/guided.py)
    add_data_flag(p)
    add_set_flag(p)
    add_experiment_flags(p, default_name="pareto")
    p.set_defaults(handler=handle)


def parse_task_objectives(text: str | None, task: str) -> dict[str, str]:
    from analysis.objectives import parse_objectives

    spec = task_spec(task)
    objectives = parse_objectives(text or f"{spec.metric}:{spec.direction},peak_memory_mb:min")
    for name in objectives:
        if name in metric_directions() and name not in spec.metrics:
            raise ConfigError(
                f"--objectives: {name} is not measured on {task}; use {' or '.join(spec.metrics)}"
            )
    return objectives


def base_config(args: argparse.Namespace) -> TrialConfig:
    spec = task_spec(args.task)
    fold_task_data_flags(args)
    check_max_steps(args)
    training = task_training(spec, args)
    cfg = TrialConfig.from_dict(
        {
            "task": {"name": args.task, "data_dir": data_dir_of(args)},
            "model": {"name": args.model or spec.model},
            "training": training,
        }
    )
    cfg = apply_overrides(cfg, args.overrides)
    if args.asha and cfg.training.eval_every is None:
        cfg = cfg.with_overrides({"training.eval_every": max(1, cfg.training.max_steps // 4)})
    return cfg


def smallest_peak_mb(arch: Any, base: TrialConfig, num_layers: int, device_kind: str) -> float:
    """Predicted peak of the cheapest point of the space (all at the narrowest searchable width, 4-bit, and the
    smallest LoRA budget)."""
    from spaces.pareto import build_config
    from trainables.precisions import search_bits
    from trainables.predict import predicted_peak_mb

    cheapest = build_config(
        {"method": "lora", "bits": [min(search_bits())] * num_layers, "ranks": [1] * num_layers},
        base,
        num_layers,
    )
    return predicted_peak_mb(cheapest, device_kind, arch)


def _objectives_spec(text: str | None) -> dict[str, str] | None:
    from analysis.objectives import parse_objectives

    return None if text is None else parse_objectives(text)


PARETO_FLAGS = [
    SpecFlag("task", lambda s: s["task"]),
    SpecFlag("model", lambda s: s["model"]),
    SpecFlag(
        "objectives",
        lambda s: s["objectives"],
        lambda o: ",".join(f"{k}:{v}" for k, v in o.items()),
        _objectives_spec,
    ),
    SpecFlag("sampler", lambda s: s["sampler"]),
    SpecFlag("seed", lambda s: s["seed"]),
    SpecFlag("memory_budget_mb", lambda s: s["memory_budget_mb"]),
    SpecFlag("asha", lambda s: s["asha"]),
    SpecFlag("max_steps", lambda s: s["max_steps"]),
    SpecFlag("overrides", lambda s: s["overrides"], list, list),
    SpecFlag("enqueue_grid", lambda s: s["enqueue_grid"]),
    SpecFlag("storage", lambda s: s["storage"]),
    SpecFlag("trials", lambda s: s["trials"], must_match=False),
    REEVAL_FLAG,
    DATA_DIR_FLAG,
    *HARNESS_FLAGS,
    *GUIDED_FLAGS,
]
"""What `pareto --resume` reads back from experiment.json (--trials given again may differ: it extends)."""


def handle(args: argparse.Namespace) -> int:
    from search.lock import folder_lock

    fold_task_data_flags(args)
    adopt_spec(args, root_of(args), PARETO_FLAGS)
    objectives = check_flags(args)  # before Ray and the libraries are imported: bad input fails in a second
    with folder_lock(root_of(args)):  # a second run on this folder is refused while this one lives
        return _search(args, objectives)


def check_flags(args: argparse.Namespace) -> dict[str, str]:
    """The flags checked without Ray, torch or the model; returns the objectives (column -> min / max).
    Raises ConfigError naming the value."""
    check_launch_flags(args)
    if args.trials <= 0:
        raise ConfigError(f"--trials {args.trials}: must be >= 1")
    if args.sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {args.sampler!r}: choose one of {', '.join(SAMPLERS)}")
    return parse_task_objectives(args.objectives, args.task)


def _search(args: argparse.Namespace, objectives: dict[str, str]) -> int:
    from ray import tune

    from search import guided, results_io
    from search.resources import detect_device, max_concurrency, resolve_harness
    from search.searcher import build_searcher, make_sampler, make_space, make_storage, study_size
    from search.tuner import (
        clear_interrupted,
        fit_tuner,
        init_ray,
        make_callbacks,
        new_tuner,
        plan_progress,
        quiet,
        restore,
        trial_dirname,
    )
    from spaces.pareto import grid_points, runnable_methods
    from trainables.checks import preflight
    from trainables.memory import arch_for

    quiet()
    guide_options = guided.options_of(args)
    guided.check(guide_options, args.task, args.enqueue_grid)
    make_sampler(args.sampler, args.seed, len(objectives))  # gp without scipy fails before any write
    base = base_config(args)
    num_layers = preflight(base)
    arch = arch_for(base)
    device = detect_device(args.device_memory_gb)
    harness = resolve_harness(device, args.trial_process, args.reuse_workers, args.mmap_threshold)
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
        "data_dir": base.task.data_dir,
        "enqueue_grid": args.enqueue_grid,
        "storage": args.storage,
        "trials": args.trials,
        "reeval_seeds": args.reeval_seeds,
        "harness": harness.to_dict(),
        "guided": guide_options.to_dict(),
    }
    if args.storage:
        make_storage(args.storage)  # a bad URL fails before anything is written
    resuming = results_io.prepare_folder(root, spec, args.resume, args.overwrite)
    root.mkdir(parents=True, exist_ok=True)
    if not resuming:
        results_io.write_spec(root, spec)
    else:  # the target may have been extended: a later bare --resume continues to this one
        recorded = json.loads((root / results_io.SPEC_FILE).read_text())
        extended = {"trials": args.trials, "reeval_seeds": args.reeval_seeds}
        atomic_write_json(root / results_io.SPEC_FILE, {**recorded, **extended})
    storage = make_storage(storage_url)
    init_ray(device, args.ray_address)
    # as many trials at once as copies of the smallest predicted trial fit (a search has args.trials of them)
    concurrency = max_concurrency(device, [smallest] * max(1, args.trials), args.max_concurrent)
    latest = [d for d in results_io.tune_dirs(root, reeval=False) if ".incomplete-" not in d.name]
    if resuming and latest and tune.Tuner.can_restore(str(latest[-1].resolve())):
        print(f"rankbits: continuing {latest[-1]}", flush=True)
        plan_progress(clear_interrupted(root))
        fit_tuner(restore(latest[-1]), root, None)
    done = len(results_io.collect(root, reeval=False))  # the search's own trials: not its re-evaluations
    remaining = args.trials - done
    print(
        f"rankbits: pareto search on {base.task.name} with {base.model.name}: {done} trials done, {max(0, remaining)} "
        f"to run, sampler {args.sampler}, objectives {objectives}, budget {budget or 'none'} -> {root}",
        flush=True,
    )
    if remaining > 0:
        methods = runnable_methods(base)
        if "adalora" not in methods:
            print(
                f"rankbits: {base.training.max_steps} steps leave AdaLoRA no steps to prune in (tinit + tfinal "
                "must be below the steps): the search proposes LoRA only",
                flush=True,
            )
        fresh_study = study_size(storage, args.name) == 0
        points = grid_points(num_layers, methods) if args.enqueue_grid and fresh_study else []
        guide = guided.plan(  # the block order for the space; warm-start and screened points after the grid's
            guide_options,
            base=base,
            num_layers=num_layers,
            arch=arch,
            device_kind=device.kind,
            budget_mb=budget,
            objectives=objectives,
            methods=methods,
            root=root,
            fresh=fresh_study,
            seed=args.seed,
            before=points,
        )
        points = [*points, *guide.points]
        target = results_io.next_tune_dir(root)
        searcher = build_searcher(
            space=make_space(
                base=base.to_dict(),
                num_layers=num_layers,
                budget_mb=budget,
                device=device,
                concurrency=concurrency,
                arch=arch,
                objectives=list(objectives),
                harness=harness,
                search_space=guide_options.space,
                order=guide.order,
            ),
            objectives=objectives,
            sampler=args.sampler,
            seed=args.seed,
            storage=storage,
            study_name=args.name,
            points_to_evaluate=points or None,
            experiment_dir=target,
        )
        scheduler = None
        if args.asha:
            from ray.tune.schedulers import ASHAScheduler

            asha_task = get_task(base.task.name)
            scheduler = ASHAScheduler(
                metric=asha_task.metric,
                mode=asha_task.direction,
                time_attr="steps",
                max_t=base.training.max_steps,
                grace_period=max(1, base.training.eval_every or 1),
                reduction_factor=2,
            )
        tune_config = tune.TuneConfig(
            num_samples=remaining,
            search_alg=searcher,
            scheduler=scheduler,
            max_concurrent_trials=concurrency,
            trial_dirname_creator=trial_dirname,
            reuse_actors=bool(harness.reuse_workers),  # resolve_harness decides it for Ray
        )
        tuner = new_tuner(target, None, tune_config, make_callbacks(root, None, remaining))
        plan_progress(remaining)
        fit_tuner(tuner, root, None)
    if args.reeval_seeds:  # the front again on further seeds, then reported on means (search/reeval.py)
        from search.reeval import report_means, run_reeval

        run_reeval(args, root, objectives)
        code = finish(root, objectives, args.seed)
        if code == 0:
            report_means(root, objectives)
        return code
    return finish(root, objectives, args.seed)


def finish(root: Path, objectives: dict[str, str], seed: int | None = None) -> int:
    """Summary files, the Pareto set (pareto.csv) and the terminal tables. `seed`: the search's own seed; the
    Pareto set is drawn from its trials only (re-evaluations on further seeds are reported on means, in
    pareto_means.csv), so no single lucky re-run of a seed lands on it."""
    from analysis import load_results, pareto_front
    from analysis.report import pareto_table, text_table
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
    df = load_results(root)
    if seed is not None and "seed" in df:
        df = df[df["seed"] == seed]
    front = pareto_front(df, objectives)
    atomic_write_text(root / "pareto.csv", front.to_csv(index=False))
    print(f"\nPareto set ({len(front)} of {counts.get('completed', 0)} completed):")
    print(text_table(pareto_table(front, objectives)))  # the report's table: digits from trainables.columns
    print(f"\nsummary: {root / 'experiment_summary.csv'}  pareto: {root / 'pareto.csv'}")
    return 0
