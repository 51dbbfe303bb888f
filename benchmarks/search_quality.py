"""Search quality: hypervolume after N trials of the Optuna samplers against random search and the fixed grid.

Every method runs through the real CLI at the same trial budget and step budget: `rankbits pareto --sampler S
--seed s --trials N` for each sampler and seed, and `rankbits grid --seeds ...` for the fixed grid (its configs in
grid order; a grid has at most six points, so at a larger budget it is scored on all it has). Objectives are
accuracy:max and peak_memory_mb:min. One reference point serves every run: `default_reference_point` over the
trials of all runs together, passed explicitly to `hypervolume_history`; each run is scored by its hypervolume
after N trials (`hypervolume_at_budget`), and methods by the mean and standard deviation over seeds.

    python benchmarks/search_quality.py --quick   # tiny-bert, 4 steps, 2 trials, seed 0, tpe + random + 2 grid configs
    python benchmarks/search_quality.py           # minilm-l6, 60 steps, 8 trials, seeds 0-2, tpe/nsga2/gp/random + grid

The quick form is a plumbing check: a 2-layer random model trained 4 steps predicts one class (accuracy is the
same for every trial), so its hypervolumes rank memory alone, and at 2 trials TPE is still in its random start-up
trials (`n_startup_trials=5`). Conclusions about samplers need the full form: 60 steps is where SST-2 training
on minilm-l6 leaves chance accuracy (at 30 steps every trial still predicted one class); two trials run at once
with one thread each (on 2 cores that finishes the 114 trials sooner than one 2-thread trial at a time). At 8
trials TPE and GP have 3 guided trials after 5 random ones and NSGA-II (population 8) none: a small-budget test. It also sets OMP_WAIT_POLICY=PASSIVE
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
OBJECTIVES = {"accuracy": "max", "peak_memory_mb": "min"}
QUICK = {
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
    "model": "minilm-l6",
    "steps": 60,
    "trials": 8,
    "seeds": "0,1,2",
    "samplers": "tpe,nsga2,gp,random",
    "grid": "B-FP,B-Q4,B-Ada,Joint-1,Joint-2,Joint-3",
    "eval_examples": 256,
    "max_concurrent": 2,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = benchlib.parser(NAME, __doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="SST-2 model preset (default: per form)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per trial")
    p.add_argument("--trials", type=int, default=None, help="trial budget per run")
    p.add_argument("--seeds", default=None, help="comma list of seeds (sampler and training seed)")
    p.add_argument("--samplers", default=None, help="comma list of tpe, nsga2, gp, random")
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
    form = QUICK if args.quick else FULL
    for key, value in form.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    args.samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    return args


# --- running the searches -----------------------------------------------------------------------------------


def common_flags(args: argparse.Namespace, results: Path, name: str) -> list[str]:
    flags = ["--max-steps", str(args.steps), "--results-dir", str(results), "--name", name]
    flags += ["--max-concurrent", str(args.max_concurrent)]
    return flags + (["--set", f"training.eval_examples={args.eval_examples}"] if args.eval_examples else [])


def run_cli(cmd: list[str], label: str, args: argparse.Namespace) -> None:
    limit = 600 + args.trials * len(args.seeds) * (120 + 10 * args.steps)
    done = benchlib.check(benchlib.run([sys.executable, "-m", "search.cli", *cmd], timeout=limit), label)
    print(f"  {label}: {done.wall_s:.1f} s", flush=True)


def run_pareto(args: argparse.Namespace, sampler: str, seed: int, results: Path) -> Path:
    name = f"{sampler}-s{seed}"
    cmd = ["pareto", "--task", "sst2", "--model", args.model, "--trials", str(args.trials)]
    cmd += ["--sampler", sampler, "--seed", str(seed), *common_flags(args, results, name)]
    run_cli(cmd, f"pareto {sampler} seed {seed}", args)
    return results / name


def run_grid(args: argparse.Namespace, results: Path) -> Path:
    cmd = ["grid", "--configs", args.grid, "--tasks", "sst2", "--model-sst2", args.model]
    cmd += ["--seeds", ",".join(str(s) for s in args.seeds), *common_flags(args, results, "grid")]
    run_cli(cmd, f"grid {args.grid} seeds {args.seeds}", args)
    return results / "grid"


def collect(args: argparse.Namespace, results: Path) -> Any:
    """One frame of every trial with `search` (method) and `run` (method/seed) columns."""
    import pandas as pd

    from analysis import load_results

    frames = []
    for seed in args.seeds:
        for sampler in args.samplers:
            df = load_results(run_pareto(args, sampler, seed, results))
            frames.append(df.assign(search=sampler, run=f"{sampler}/s{seed}", run_seed=seed))
    grid = load_results(run_grid(args, results))
    for seed, part in grid.groupby("seed"):
        frames.append(part.assign(search="grid", run=f"grid/s{seed}", run_seed=int(seed)))
    return pd.concat(frames, ignore_index=True)


# --- scoring ------------------------------------------------------------------------------------------------


def score(df: Any, budget: int) -> tuple[dict[str, float], Any]:
    """The shared reference point and each run's hypervolume after `budget` trials."""
    from analysis import default_reference_point, hypervolume_history
    from analysis.hypervolume import hypervolume_at_budget

    reference = default_reference_point(df, OBJECTIVES)
    history = hypervolume_history(df, OBJECTIVES, reference, by="run")
    return reference, hypervolume_at_budget(history, budget)


def method_rows(args: argparse.Namespace, df: Any, at_budget: Any) -> list[Row]:
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
                "best_accuracy": float(completed["accuracy"].max()) if len(completed) else None,
                "min_peak_MB": float(completed["peak_memory_mb"].min()) if len(completed) else None,
            }
        )
    return rows


def build_report(
    args: argparse.Namespace, rows: list[Row], reference: dict[str, float], seconds: float, omp: str
) -> Report:
    by = {r["method"]: r for r in rows}
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
        f"accuracy:max x peak_memory_mb:min",
        f"  {args.model}{model_note} SST-2, {args.steps} steps per trial, eval examples {args.eval_examples or 'all'}, "
        f"seeds {args.seeds}; grid = {args.grid}",
        f"  shared reference point: accuracy {reference['accuracy']:.4f}, peak_memory_mb "
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
        "best_accuracy",
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
            )
        }
        | {"reference_point": reference},
        column_digits={"hv_mean": 4, "hv_std": 4, "best_accuracy": 4, "min_peak_MB": 1, "trials/run": 0},
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchlib.setup_environment()
    omp = benchlib.passive_omp(args.quick)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        results = args.keep or Path(tmp)
        df = collect(args, results)
        reference, at_budget = score(df, args.trials)
    rows = method_rows(args, df, at_budget)
    benchlib.finish(build_report(args, rows, reference, time.perf_counter() - start, omp), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
