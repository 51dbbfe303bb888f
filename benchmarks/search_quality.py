"""Search quality: hypervolume after N trials of the Optuna samplers against random search and the fixed grid.

Every method runs through the real CLI at the same trial budget and step budget: `rankbits pareto --sampler S
--seed s --trials N` for each sampler and seed, the guided method as `--sampler tpe` plus the form's guided flags
(`--warm-start 3 --space reduced`, and `--screen 6` on WikiText-2, whose metric means something untrained;
screened candidates are not trials), and `rankbits grid --seeds s` per seed for the fixed grid (its configs in grid order;
a grid has at most six points, so at a larger budget it is scored on all it has). Objectives are the task metric in
its direction (accuracy:max, perplexity:min) and peak_memory_mb:min. One reference point serves every run: `default_reference_point` over the
trials of all runs together, passed explicitly to `hypervolume_history`; each run is scored by its hypervolume
after N trials (`hypervolume_at_budget`), and methods by the mean and standard deviation over seeds.

    python benchmarks/search_quality.py --quick   # tiny-bert, 4 steps, 2 trials, seed 0, tpe + random + 2 grid configs
    python benchmarks/search_quality.py           # minilm-l6 SST-2, 60 steps, 12 trials, seeds 0-2, guided/tpe/random + grid
    python benchmarks/search_quality.py --task wikitext2   # smollm2-135m, 8 steps of 2 x 128 tokens, 4,096 eval
                                                           # tokens, 12 trials, seeds 0-2, guided/tpe/random + grid

The quick form is a plumbing check: a 2-layer random model trained 4 steps predicts one class (accuracy is the
same for every trial), so its hypervolumes rank memory alone, and at 2 trials TPE is still in its random start-up
trials (`n_startup_trials=5`). Conclusions about samplers need the full form: 60 steps is where SST-2 training
on minilm-l6 leaves chance accuracy (at 30 steps every trial still predicted one class); two trials run at once
with one thread each (on 2 cores that finishes the trials sooner than one 2-thread trial at a time). At 12
trials TPE has 7 model-guided trials after 5 random ones. Both full forms have been run with the guided method on
seeds 0-2 (2026-11-30; guided/grid 1.199 on SST-2 and 1.155 on WikiText-2, guided/random 1.040 and 1.058: see
benchmarks/README.md). It also sets OMP_WAIT_POLICY=PASSIVE
(see `benchlib.passive_omp`) so that busy neighbours on a small machine do not stretch it to many minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Report, Row

NAME = "search_quality"
GUIDED = "guided"
"""The guided method: `pareto --sampler tpe` with the form's `guided_flags` (warm starts from the measured
allocations, the reduced space, and on a language-model task the zero-training screen)."""
QUICK = {
    "task": "sst2",
    "guided_flags": "",
    "sets": "",
    "model": "tiny-bert",
    "steps": 4,
    "trials": 2,
    "seeds": "0",
    "samplers": "tpe,random",
    "grid": "B-Q4,Joint-1",
    "eval_examples": 64,
    "max_concurrent": 1,
}
FULL = {
    "task": "sst2",
    "guided_flags": "--warm-start 3 --space reduced",
    "sets": "",
    "model": "minilm-l6",
    "steps": 60,
    "trials": 12,
    "seeds": "0,1,2",
    "samplers": "guided,tpe,random",
    "grid": "B-FP,B-Q4,B-Ada,Joint-1,Joint-2,Joint-3",
    "eval_examples": 256,
    "max_concurrent": 2,
}
FULL_WIKITEXT2 = {
    **FULL,
    "task": "wikitext2",
    "guided_flags": "--warm-start 3 --space reduced --screen 6 --screen-examples 16",
    "sets": "training.batch_size=2,training.seq_len=128,training.eval_tokens=4096",
    "model": "smollm2-135m",
    "steps": 8,
    "eval_examples": None,
}
"""The task where bits matter (issue 15): 8 steps of 2 x 128 tokens and 4,096 eval tokens per trial, sized so that
126 trials (3 methods x 3 seeds x 12 + the grid's 6 x 3) fit in about 90 minutes on 2 cores; SmolLM2's weights come
from a Q4_1 GGUF file, so NF4 re-quantizes weights that were already 4-bit."""
FULL_FORMS = {form["task"]: form for form in (FULL, FULL_WIKITEXT2)}
"""The full form of each task the benchmark knows, keyed by task name."""


def objectives_of(task: str) -> dict[str, str]:
    """The task metric in its direction (the task registry's) and peak_memory_mb:min."""
    from trainables.tasks import get_task

    spec = get_task(task)
    return {spec.metric: spec.direction, "peak_memory_mb": "min"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = benchlib.parser(NAME, __doc__.splitlines()[0])
    p.add_argument(
        "--task", default=None, help=f"one of {', '.join(FULL_FORMS)} (default: sst2; the full form per task)"
    )
    p.add_argument("--model", default=None, help="model preset (default: per form and task)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per trial")
    p.add_argument("--trials", type=int, default=None, help="trial budget per run")
    p.add_argument("--seeds", default=None, help="comma list of seeds (sampler and training seed)")
    p.add_argument(
        "--samplers",
        default=None,
        help=f"comma list of tpe, nsga2, gp, random and {GUIDED} (tpe + guided flags)",
    )
    p.add_argument(
        "--guided-flags", default=None, help=f"pareto flags of the {GUIDED} method (default: per form)"
    )
    p.add_argument("--sets", default=None, help="comma list of KEY=VALUE settings for every trial")
    p.add_argument("--grid", default=None, help="comma list of grid ids, run in this order")
    p.add_argument(
        "--eval-examples", type=int, default=None, help="SST-2 dev sentences per trial (default: all)"
    )
    p.add_argument(
        "--keep", type=Path, default=None, help="keep the results folders here (default: a temp dir)"
    )
    p.add_argument(
        "--max-concurrent", type=int, default=None, help="trials at once in every run (default: per form)"
    )
    args = p.parse_args(argv)
    if args.task is not None and args.task not in FULL_FORMS:
        p.error(f"--task {args.task!r} has no full form here; use one of {', '.join(FULL_FORMS)}")
    form = QUICK if args.quick else FULL_FORMS[args.task or FULL["task"]]
    for key, value in form.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    args.samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    args.objectives = objectives_of(args.task)
    return args


# --- running the searches -----------------------------------------------------------------------------------


def common_flags(args: argparse.Namespace, results: Path, name: str) -> list[str]:
    flags = ["--max-steps", str(args.steps), "--results-dir", str(results), "--name", name]
    flags += ["--max-concurrent", str(args.max_concurrent)]
    for setting in [x for x in str(args.sets or "").split(",") if x]:
        flags += ["--set", setting]
    return flags + (["--set", f"training.eval_examples={args.eval_examples}"] if args.eval_examples else [])


def run_cli(cmd: list[str], label: str, args: argparse.Namespace) -> None:
    limit = 600 + args.trials * len(args.seeds) * (120 + 10 * args.steps)
    done = benchlib.check(benchlib.run([sys.executable, "-m", "search.cli", *cmd], timeout=limit), label)
    print(f"  {label}: {done.wall_s:.1f} s", flush=True)


def finished(folder: Path, trials: int) -> bool:
    """Whether `folder` holds a finished run of `trials` trials (`--keep` of an interrupted benchmark: the runs that
    finished are read again, not rerun; an unfinished one is refused by the CLI, as a user's would be)."""
    import csv

    summary = folder / "experiment_summary.csv"
    if not summary.is_file():
        return False
    with summary.open(newline="") as f:
        return sum(1 for _ in csv.DictReader(f)) >= trials


def run_pareto(args: argparse.Namespace, sampler: str, seed: int, results: Path) -> Path:
    name = f"{sampler}-s{seed}"
    if finished(results / name, args.trials):
        print(f"  pareto {sampler} seed {seed}: kept from {results / name}", flush=True)
        return results / name
    objectives = ",".join(f"{k}:{v}" for k, v in args.objectives.items())
    cmd = ["pareto", "--task", args.task, "--model", args.model, "--trials", str(args.trials)]
    cmd += ["--objectives", objectives, "--seed", str(seed), *common_flags(args, results, name)]
    cmd += (
        ["--sampler", "tpe", *str(args.guided_flags).split()] if sampler == GUIDED else ["--sampler", sampler]
    )
    run_cli(cmd, f"pareto {sampler} seed {seed}", args)
    return results / name


def run_grid(args: argparse.Namespace, seed: int, results: Path) -> Path:
    """The grid's configs at one seed, in their own folder (`grid-s{seed}`), so `--keep` can add seeds later."""
    name = f"grid-s{seed}"
    if finished(results / name, len(args.grid.split(","))):
        print(f"  grid seed {seed}: kept from {results / name}", flush=True)
        return results / name
    cmd = ["grid", "--configs", args.grid, "--tasks", args.task, f"--model-{args.task}", args.model]
    cmd += ["--seeds", str(seed), *common_flags(args, results, name)]
    run_cli(cmd, f"grid {args.grid} seed {seed}", args)
    return results / name


def collect(args: argparse.Namespace, results: Path) -> Any:
    """One frame of every trial with `search` (method) and `run` (method/seed) columns."""
    import pandas as pd

    from analysis import load_results

    frames = []
    for seed in args.seeds:
        for sampler in args.samplers:
            df = load_results(run_pareto(args, sampler, seed, results))
            frames.append(df.assign(search=sampler, run=f"{sampler}/s{seed}", run_seed=seed))
    for seed in args.seeds:
        grid = load_results(run_grid(args, seed, results))
        frames.append(grid.assign(search="grid", run=f"grid/s{seed}", run_seed=seed))
    return pd.concat(frames, ignore_index=True)


# --- scoring ------------------------------------------------------------------------------------------------


def score(df: Any, budget: int, objectives: dict[str, str]) -> tuple[dict[str, float], Any]:
    """The shared reference point and each run's hypervolume after `budget` trials."""
    from analysis import default_reference_point, hypervolume_history
    from analysis.hypervolume import hypervolume_at_budget

    reference = default_reference_point(df, objectives)
    history = hypervolume_history(df, objectives, reference, by="run")
    return reference, hypervolume_at_budget(history, budget)


def _best(values: Any, direction: str) -> float:
    return float(values.max() if direction == "max" else values.min())


def method_rows(args: argparse.Namespace, df: Any, at_budget: Any) -> list[Row]:
    metric = next(iter(args.objectives))
    rows = []
    for method in [*args.samplers, "grid"]:
        runs = [f"{method}/s{seed}" for seed in args.seeds]
        hv = at_budget.set_index("source").reindex(runs)
        trials = df[df["search"] == method]
        completed = trials[trials["status"] == "completed"]
        mean, std = benchlib.mean_std(list(hv["hypervolume"]))
        rows.append(
            {
                "method": method,
                "seeds": len(args.seeds),
                "trials/run": benchlib.median(list(hv["trials"].astype(float))),
                "completed": f"{len(completed)}/{len(trials)}",
                "hv_mean": mean,
                "hv_std": std,
                "hv_per_seed": [round(float(v), 6) for v in hv["hypervolume"]],
                f"best_{metric}": _best(completed[metric], args.objectives[metric])
                if len(completed)
                else None,
                "min_peak_MB": float(completed["peak_memory_mb"].min()) if len(completed) else None,
            }
        )
    return rows


def build_report(
    args: argparse.Namespace, rows: list[Row], reference: dict[str, float], seconds: float, omp: str
) -> Report:
    by = {r["method"]: r for r in rows}
    metric = next(iter(args.objectives))
    default = args.samplers[0]
    vs_random = benchlib.safe_ratio(by[default]["hv_mean"], by.get("random", {}).get("hv_mean"))
    vs_grid = benchlib.safe_ratio(by[default]["hv_mean"], by["grid"]["hv_mean"])
    model_note = (
        " (a 2-layer random model: a plumbing check, see the docstring)"
        if args.model.startswith("tiny")
        else ""
    )
    header = [
        f"search_quality ({'quick' if args.quick else 'full'}): hypervolume after {args.trials} trials, "
        + " x ".join(f"{k}:{v}" for k, v in args.objectives.items()),
        f"  {args.model}{model_note} {args.task}, {args.steps} steps per trial, eval examples "
        f"{args.eval_examples or 'all'}, settings {args.sets or 'task defaults'}, guided = tpe {args.guided_flags}, "
        f"seeds {args.seeds}; grid = {args.grid}",
        f"  shared reference point: {metric} {reference[metric]:.4f}, peak_memory_mb "
        f"{reference['peak_memory_mb']:.1f} (default_reference_point over all {len(args.seeds)} seed(s) x "
        f"{len(rows)} methods)",
        f"  machine: {benchlib.machine()}; {omp}; all runs took {seconds:.0f} s",
    ]
    columns = [
        "method",
        "seeds",
        "trials/run",
        "completed",
        "hv_mean",
        "hv_std",
        f"best_{metric}",
        "min_peak_MB",
    ]
    ratio_line = (
        f"ratio {default}/random hypervolume: {vs_random:.3f} (means {by[default]['hv_mean']:.4f} vs "
        f"{by.get('random', {}).get('hv_mean', float('nan')):.4f}); {default}/grid: {vs_grid:.3f}"
    )
    return Report(
        name=NAME,
        quick=args.quick,
        header=header,
        columns=columns,
        rows=rows,
        ratio_line=ratio_line,
        ratio={
            f"{default}/random": vs_random,
            f"{default}/grid": vs_grid,
            "name": f"{default}/random hypervolume",
            "value": vs_random,
        },
        settings={
            k: getattr(args, k)
            for k in (
                "model",
                "steps",
                "trials",
                "seeds",
                "samplers",
                "grid",
                "eval_examples",
                "max_concurrent",
                "task",
                "guided_flags",
                "sets",
            )
        }
        | {"reference_point": reference},
        column_digits={"hv_mean": 4, "hv_std": 4, f"best_{metric}": 4, "min_peak_MB": 1, "trials/run": 0},
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchlib.setup_environment()
    omp = benchlib.passive_omp(args.quick)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        results = args.keep or Path(tmp)
        df = collect(args, results)
        reference, at_budget = score(df, args.trials, args.objectives)
    rows = method_rows(args, df, at_budget)
    benchlib.finish(build_report(args, rows, reference, time.perf_counter() - start, omp), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
