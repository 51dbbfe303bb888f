"""What Ray Tune costs: the same grid trials through `rankbits grid` and as plain fit() calls, wall time side by side.

Both sides start a fresh Python process, so both pay interpreter start and imports:
- Ray side: `python -m search.cli grid --configs ... --max-concurrent 1` (Ray start, Tune, the trial workers, the
  summary files). Trial start and end times come from each trial's `trial_result.json` (`started`, file time), the
  worker's process id from Tune's `result.json` (so the notes can say whether a worker was reused).
- Plain side: `python benchmarks/harness_overhead.py --worker-out ...`, which imports the trial code and calls
  `fit()` for each config in turn (saving the adapter, as the Ray trainable does), timing each call.

Both sides run one trial at a time with the same torch thread count (the one the grid plans for a lone trial:
every core). Per trial, "wall" is the time from the previous trial's end (for the first: from process launch) to
this trial's end, so the walls plus the tail add up to the process's wall time; "setup" is the part of a trial
outside fit()'s timed load / train / eval phases (tokenizer, data, writing the adapter; in the grid's first trial
also the start of the template process that imports torch, transformers, peft and bitsandbytes, from which every
CPU trial is forked: see `trainables/forked.py`).

    python benchmarks/harness_overhead.py --quick   # B-FP, B-Q4 on minilm-l6 SST-2, 3 steps
    python benchmarks/harness_overhead.py           # 16-bit, 4-bit, mixed: 200 steps (over a minute each here)

The quick form sets OMP_WAIT_POLICY=PASSIVE on both sides (see `benchlib.passive_omp`): the grid gives a lone trial
every core, and on a shared 2-core machine spinning OpenMP threads turned a few training steps into minutes of noise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Report, Row

NAME = "harness_overhead"
QUICK = {"configs": "B-FP,B-Q4", "steps": 3, "eval_examples": 16}
FULL = {"configs": "B-FP,B-Q4,Joint-2", "steps": 200, "eval_examples": None}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = benchlib.parser(NAME, __doc__.splitlines()[0])
    p.add_argument("--configs", default=None, help="comma list of grid ids (default: per form)")
    p.add_argument("--model", default="minilm-l6", help="SST-2 model preset")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per trial (default: per form)")
    p.add_argument("--eval-examples", type=int, default=None, help="SST-2 dev sentences (default: per form)")
    p.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    form = QUICK if args.quick else FULL
    args.configs = args.configs or form["configs"]
    args.steps = args.steps or form["steps"]
    if args.eval_examples is None:
        args.eval_examples = form["eval_examples"]
    return args


def overrides(args: argparse.Namespace) -> list[str]:
    return [f"training.eval_examples={args.eval_examples}"] if args.eval_examples else []


def trial_configs(args: argparse.Namespace) -> list[Any]:
    """The grid cells exactly as `rankbits grid` builds them (seed 0, SST-2)."""
    from spaces.grid import grid_config
    from trainables.config import ModelConfig
    from trainables.models import count_layers

    layers = count_layers(ModelConfig(name=args.model))
    data_dir = os.environ.get("RANKBITS_DATA_DIR")
    cells = []
    for config_id in args.configs.split(","):
        cfg = grid_config(config_id, "sst2", args.model, layers, data_dir=data_dir, max_steps=args.steps)
        cells.append(cfg.with_overrides(overrides(args)) if overrides(args) else cfg)
    return cells


def planned_threads(cells: list[Any]) -> int:
    """The torch threads the grid gives a trial when trials run one at a time (search.resources)."""
    from search.grid_cmd import predicted_mb
    from search.resources import detect_device, plan_trial

    device = detect_device()
    peak = max(predicted_mb(c, device.kind) for c in cells)
    return plan_trial(device, peak, 1).threads


# --- plain side ---------------------------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    """Runs in the fresh process: import the trial code, then fit() each config, timing everything."""
    entered = time.time()
    from trainables.loop import fit

    imported = time.time()
    fits = []
    with tempfile.TemporaryDirectory(prefix="bench-plain-") as tmp:
        for cfg in trial_configs(args):
            cfg = cfg.with_overrides({"training.threads": args.threads})
            started = time.time()
            result = fit(cfg, adapter_dir=Path(tmp) / (cfg.config_id or "trial"))
            fits.append({"started": started, "ended": time.time(), "result": result.to_dict()})
    benchlib.write_worker_output(
        args.worker_out,
        {"launched": benchlib.launch_time(), "entered": entered, "imported": imported, "trials": fits},
    )


def run_plain(args: argparse.Namespace, threads: int, tmp: Path) -> dict[str, Any]:
    worker_args = ["--configs", args.configs, "--model", args.model, "--steps", str(args.steps)]
    worker_args += ["--threads", str(threads)]
    if args.eval_examples:
        worker_args += ["--eval-examples", str(args.eval_examples)]
    data, done = benchlib.run_worker(Path(__file__), worker_args, tmp / "plain.json", timeout=timeout(args))
    data["launched"] = done.launched
    data["exited"] = done.launched + done.wall_s
    return data


# --- Ray side -----------------------------------------------------------------------------------------------


def run_ray(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "search.cli", "grid", "--configs", args.configs, "--tasks", "sst2"]
    cmd += ["--model-sst2", args.model, "--max-steps", str(args.steps), "--seeds", "0"]
    cmd += ["--max-concurrent", "1"]
    for item in overrides(args):
        cmd += ["--set", item]
    cmd += ["--results-dir", str(tmp), "--name", "harness"]
    done = benchlib.check(benchlib.run(cmd, timeout=timeout(args)), "rankbits grid")
    return {
        "launched": done.launched,
        "exited": done.launched + done.wall_s,
        "trials": ray_trials(tmp / "harness"),
    }


def ray_trials(root: Path) -> list[dict[str, Any]]:
    """Each Tune trial's start (recorded by the trainable), end (its result file's time), worker process id (from
    Tune's result.json) and TrialResult."""
    from trainables.trainable import RESULT_FILE, read_trial_file

    trials = []
    for path in sorted((root / "tune").glob(f"*/{RESULT_FILE}")):
        entry = read_trial_file(path.parent)
        if entry is not None:
            trials.append(
                {
                    "started": entry["started"],
                    "ended": path.stat().st_mtime,
                    "pid": worker_pid(path.parent),
                    "result": entry["result"],
                }
            )
    if not trials:
        raise SystemExit(f"rankbits grid wrote no {RESULT_FILE} under {root / 'tune'}")
    return sorted(trials, key=lambda t: t["started"])


def worker_pid(trial_dir: Path) -> int | None:
    """The process that ran the trial: the `pid` of its last line in Tune's result.json."""
    import json

    lines = [line for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]
    return json.loads(lines[-1]).get("pid") if lines else None


def timeout(args: argparse.Namespace) -> float:
    return 600.0 + 30.0 * args.steps * len(args.configs.split(","))


# --- the tables ---------------------------------------------------------------------------------------------


def trial_parts(side: dict[str, Any]) -> list[dict[str, float]]:
    """Per trial: wall (since the previous trial ended, or launch), gap before it, setup, load, train, eval."""
    parts = []
    previous = side["launched"]
    for t in side["trials"]:
        r = t["result"]
        inside = t["ended"] - t["started"]
        phases = r["load_time_s"] + r["train_time_s"] + r["eval_time_s"]
        parts.append(
            {
                "config_id": r["config_id"],
                "status": r["status"],
                "wall": t["ended"] - previous,
                "before": t["started"] - previous,
                "setup": inside - phases,
                "load": r["load_time_s"],
                "train": r["train_time_s"],
                "eval": r["eval_time_s"],
                "tokens_per_s": r["tokens_per_s"],
            }
        )
        previous = t["ended"]
    return parts


def per_trial_rows(plain: list[dict[str, float]], ray: list[dict[str, float]]) -> list[Row]:
    rows = []
    for p, r in zip(plain, ray):
        rows.append(
            {
                "config": p["config_id"],
                "plain_s": p["wall"],
                "ray_s": r["wall"],
                "overhead_s": r["wall"] - p["wall"],
                "setup_plain": p["setup"],
                "setup_ray": r["setup"],
                "load_plain": p["load"],
                "load_ray": r["load"],
                "train_plain": p["train"],
                "train_ray": r["train"],
                "tok/s_plain": p["tokens_per_s"],
                "tok/s_ray": r["tokens_per_s"],
            }
        )
    return rows


def breakdown_rows(plain: dict[str, Any], ray: dict[str, Any]) -> list[Row]:
    """Where the wall time goes on each side (the parts add up to the total)."""
    pp, rp = trial_parts(plain), trial_parts(ray)

    def part(name: str, p: float, r: float) -> Row:
        return {"part": name, "plain_s": p, "ray_s": r, "ray-plain_s": r - p}

    def total(parts: list[dict[str, float]], key: str) -> float:
        return sum(x[key] for x in parts)

    return [
        part("start: launch -> first trial starts (Ray: ray start)", pp[0]["before"], rp[0]["before"]),
        part("  of which interpreter + imports (plain worker)", plain["imported"] - plain["launched"], 0.0),
        part(
            "in-trial setup (Ray: worker imports, tokenizer, data, save)",
            total(pp, "setup"),
            total(rp, "setup"),
        ),
        part("  of which the first trial's setup", pp[0]["setup"], rp[0]["setup"]),
        part("model load + quantize + adapters (load_time_s)", total(pp, "load"), total(rp, "load")),
        part("training (train_time_s)", total(pp, "train"), total(rp, "train")),
        part("evaluation (eval_time_s)", total(pp, "eval"), total(rp, "eval")),
        part(
            "between trials (Tune scheduling, next worker start)",
            total(pp[1:], "before"),
            total(rp[1:], "before"),
        ),
        part("after the last trial (summary files, shutdown)", tail(plain), tail(ray)),
        part("total wall", plain["exited"] - plain["launched"], ray["exited"] - ray["launched"]),
    ]


def fixed_cost(plain: dict[str, Any], ray: dict[str, Any]) -> float:
    """Ray's cost paid once per run: the longer start, the first trial's extra set-up (the fresh worker's
    imports) and the longer tail (summary files, Ray shutdown)."""
    pp, rp = trial_parts(plain), trial_parts(ray)
    return (rp[0]["before"] - pp[0]["before"]) + (rp[0]["setup"] - pp[0]["setup"]) + (tail(ray) - tail(plain))


def harness_cost(plain: dict[str, Any], ray: dict[str, Any]) -> float:
    """Ray's extra time outside the trials' load / train / eval phases: start, set-up, gaps, tail."""
    pp, rp = trial_parts(plain), trial_parts(ray)
    parts = sum(r["before"] + r["setup"] - p["before"] - p["setup"] for p, r in zip(pp, rp))
    return parts + tail(ray) - tail(plain)


def tail(side: dict[str, Any]) -> float:
    return side["exited"] - side["trials"][-1]["ended"]


def build_report(
    args: argparse.Namespace, threads: int, omp: str, plain: dict[str, Any], ray: dict[str, Any]
) -> Report:
    n = len(plain["trials"])
    plain_total = plain["exited"] - plain["launched"]
    ray_total = ray["exited"] - ray["launched"]
    ratio = benchlib.safe_ratio(ray_total, plain_total)
    per_trial = (ray_total - plain_total) / n
    fixed = fixed_cost(plain, ray)
    # the harness's own parts (start, in-trial set-up, gaps, tail); load / train / eval run the same code on both
    # sides, and their difference is the machine's noise, so it is shown apart and left out of the per-trial cost
    harness = harness_cost(plain, ray)
    noise = (ray_total - plain_total) - harness
    marginal = (harness - fixed) / (n - 1) if n > 1 else 0.0
    statuses = {t["result"]["status"] for side in (plain, ray) for t in side["trials"]}
    header = [
        f"harness_overhead ({'quick' if args.quick else 'full'}): rankbits grid (Ray Tune) vs plain fit() calls",
        f"  {args.configs} on {args.model} SST-2, {args.steps} steps, eval examples {args.eval_examples or 'all'}, "
        f"{threads} torch threads ({omp}), one trial at a time, seed 0",
        f"  both sides are fresh processes (interpreter + imports paid on both); machine: {benchlib.machine()}",
        f"  trial statuses: {', '.join(sorted(statuses))}",
    ]
    pids = {t.get("pid") for t in ray["trials"]}
    notes = [
        f"Ray worker processes: {len(pids)} for {n} trials"
        + (
            " (each trial ran in a new worker process, which imports torch, transformers, peft and "
            "bitsandbytes again)"
            if len(pids) == n and n > 1
            else ""
        ),
        "plain side: one process for all trials (imports once); per-trial 'setup' = trial time outside "
        "load_time_s + train_time_s + eval_time_s; the plain side runs first, then the grid",
        f"harness parts (start, set-up, gaps, tail): {harness:.1f} s = {fixed:.1f} s once per run (Ray start, the "
        f"first trial's set-up, shutdown) + {marginal:.2f} s for each further trial; a grid of N trials pays "
        f"{fixed:.1f}/N + {marginal:.2f} x (N-1)/N s per trial",
        f"load + train + eval: Ray - plain = {noise:+.1f} s (the same code on both sides: noise of the machine)",
    ]
    ratio_line = (
        f"ratio ray/plain wall time: {ratio:.2f}x ({ray_total:.1f} s vs {plain_total:.1f} s for {n} trials; "
        f"overhead {per_trial:.1f} s per trial; harness parts {harness / n:.1f} s per trial: {fixed:.1f} s once per "
        f"run + {marginal:.2f} s per further trial)"
    )
    rows = per_trial_rows(trial_parts(plain), trial_parts(ray))
    return Report(
        name=NAME,
        quick=args.quick,
        header=header,
        columns=list(rows[0]),
        rows=rows,
        sections={
            "where the time goes (seconds)": (
                ["part", "plain_s", "ray_s", "ray-plain_s"],
                breakdown_rows(plain, ray),
            )
        },
        notes=notes,
        ratio_line=ratio_line,
        ratio={
            "name": "ray/plain wall time",
            "value": ratio,
            "overhead_s_per_trial": per_trial,
            "overhead_s_per_run": fixed,
            "overhead_s_marginal_per_trial": marginal,
            "harness_s_per_trial": harness / n,
            "phases_noise_s": noise,
        },
        settings={
            "configs": args.configs,
            "model": args.model,
            "steps": args.steps,
            "eval_examples": args.eval_examples,
            "threads": threads,
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchlib.setup_environment()
    if args.worker_out is not None:
        worker(args)
        return 0
    omp = benchlib.passive_omp(args.quick)
    threads = planned_threads(trial_configs(args))
    with tempfile.TemporaryDirectory(prefix="bench-harness-") as tmp:
        plain = run_plain(args, threads, Path(tmp))
        ray = run_ray(args, Path(tmp))
    benchlib.finish(build_report(args, threads, omp, plain, ray), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
