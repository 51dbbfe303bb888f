"""Memory accounting against the formulas: weight bytes, bits per weight, predicted vs measured peaks.

For every grid config (each fit() in a fresh Python process, so one trial's peaks cannot leak into the next):
- weights: fit()'s computed `weight_memory_mb` (bytes of the converted layers as stored) against the analytic
  formula (`estimate(arch_for(cfg), cfg).weights`: `formula_bytes` summed over the blocks' linear layers plus
  every other tensor at 4 bytes an element); per block, `layer_weight_bytes` against the formula, byte for byte;
  the int64 buffers the formula counts at 4 bytes (BERT's position_ids, token_type_ids) are shown beside the
  difference;
- bits per weight of the 4-bit and 8-bit layers (NF4 with double quantization: 4 + 8/64 + 32/(64*256) = 4.127;
  int8: 8 + 32 / in_features) against the formula's;
- the training peak: the memory model's prediction (`predicted_peak_mb`) against the measured `peak_memory_mb`;
- the loading peak (`peak_load_memory_mb`: load, quantize, attach adapters) against the float32 model's size
  (layers are converted one at a time, so loading should not need a second full-precision copy).

    python benchmarks/memory_exactness.py --quick   # B-FP, B-Q4, Joint-2 on minilm-l6, 4 steps, 1 thread
    python benchmarks/memory_exactness.py           # all six on minilm-l6 (300 steps) and smollm2-135m (30 steps)
    python benchmarks/memory_exactness.py --from-results results/ref-sst2 results/ref-wt2

`--from-results` takes the measured side from finished `rankbits grid` folders (each trial ran in a fresh Ray worker
on CPU, `search.tuner.reuse_workers`) instead of running the fits again: the reference grid already trains every
config on both models, and the formulas are computed here from each trial's stored config.

The quick form uses one torch thread (a shared 2-core machine; see throughput.py); the full form torch's default.
The CPU memory model was fitted to 300-step runs (the process RSS high-water mark, which grows while glibc keeps
freed tensor memory), so the quick form's 4-step runs measure well below the prediction.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Report, Row

NAME = "memory_exactness"
ALL_CONFIGS = "B-FP,B-Q4,B-Ada,Joint-1,Joint-2,Joint-3"
QUICK = {"runs": [("minilm-l6", "sst2", 4)], "configs": "B-FP,B-Q4,Joint-2", "threads": 1}
FULL = {
    "runs": [("minilm-l6", "sst2", 300), ("smollm2-135m", "wikitext2", 30)],
    "configs": ALL_CONFIGS,
    "threads": None,
}
EVAL = ["training.eval_examples=32", "training.eval_tokens=2048"]
MB = 1024 * 1024
NF4_DQ_LIMIT = 4 + 8 / 64 + 32 / (64 * 256)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = benchlib.parser(NAME, __doc__.splitlines()[0])
    p.add_argument("--configs", default=None, help="comma list of grid ids (default: per form)")
    p.add_argument("--runs", default=None, help="comma list of model:task:steps (default: per form)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: quick 1, full torch's)")
    p.add_argument(
        "--from-results",
        nargs="+",
        type=Path,
        default=None,
        metavar="DIR",
        help="measured side from these `rankbits grid` folders instead of new fits",
    )
    p.add_argument("--config-id", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    form = QUICK if args.quick else FULL
    args.configs = args.configs or form["configs"]
    args.runs = parse_runs(args.runs) if args.runs else form["runs"]
    args.threads = args.threads or form["threads"]
    return args


def parse_runs(text: str) -> list[tuple[str, str, int]]:
    return [(m, t, int(s)) for m, t, s in (item.split(":") for item in text.split(","))]


def trial_config(config_id: str, model: str, task: str, steps: int, threads: int | None) -> Any:
    from spaces.grid import grid_config
    from trainables.config import ModelConfig
    from trainables.models import count_layers

    cfg = grid_config(config_id, task, model, count_layers(ModelConfig(name=model)), max_steps=steps)
    return cfg.with_overrides(EVAL + ([f"training.threads={threads}"] if threads else []))


# --- measured: fit() in a fresh process ---------------------------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    from trainables.loop import fit

    model, task, steps = args.runs[0]
    result = fit(trial_config(args.config_id, model, task, steps, args.threads))
    benchlib.write_worker_output(args.worker_out, result.to_dict())


def measure(config_id: str, run: tuple[str, str, int], threads: int | None, tmp: Path) -> dict[str, Any]:
    model, task, steps = run
    worker_args = ["--config-id", config_id, "--runs", f"{model}:{task}:{steps}"]
    worker_args += ["--threads", str(threads)] if threads else []
    out = tmp / f"{model}-{config_id}.json"
    result, done = benchlib.run_worker(Path(__file__), worker_args, out, timeout=900 + 20 * steps)
    print(f"  {model} {config_id:<8} {result['status']:<9} {done.wall_s:6.1f} s", flush=True)
    return result


def from_results(args: argparse.Namespace) -> list[tuple[Any, dict[str, Any]]]:
    """(config, result) of every completed grid trial of `args.configs` in the given folders; `args.runs` is
    rewritten to what those trials ran (model, task, steps) for the header."""
    from search.results_io import collect
    from trainables.config import TrialConfig

    wanted = args.configs.split(",")
    found = []
    for root in args.from_results:
        if not (root / "tune").is_dir():
            raise SystemExit(f"--from-results {str(root)!r}: not a `rankbits grid` results folder (no tune/)")
        for entry in collect(root):
            cfg = TrialConfig.from_dict(entry["config"])
            if entry["result"]["status"] == "completed" and cfg.config_id in wanted:
                found.append((cfg, entry["result"]))
    found.sort(key=lambda pair: (pair[0].model.name != "minilm-l6", wanted.index(pair[0].config_id or "")))
    args.runs = sorted({(c.model.name, c.task.name, c.training.max_steps) for c, _ in found})
    return found


# --- analytic: the formulas ---------------------------------------------------------------------------------


def analytic(cfg: Any, device_type: str) -> dict[str, Any]:
    """Formula bytes per block, total weights, float32 size and bits per weight by bit width."""
    from trainables.devices import dtype_bytes, resolve_compute_dtype
    from trainables.memory import arch_for, estimate
    from trainables.quantize import formula_bytes

    arch = arch_for(cfg)
    e = dtype_bytes(resolve_compute_dtype(cfg.training.compute_dtype, device_type))
    q = cfg.quantization
    bits = q.bits_per_layer(arch.num_layers)
    blocks, n_weights = [], []
    scaling: dict[int, list[int]] = {}
    for b, linears in zip(bits, arch.block_linears):
        sizes = [formula_bytes(b, o, i, bias, q.double_quant, 2, e) for _, o, i, bias in linears]
        blocks.append(sum(total for total, _ in sizes))
        n_weights.append(sum(o * i for _, o, i, _ in linears))
        acc = scaling.setdefault(b, [0, 0])
        acc[0] += sum(s for _, s in sizes)
        acc[1] += n_weights[-1]
    wide = wide_buffer_bytes(cfg)
    predicted = estimate(arch, cfg, device_type)
    fp32 = arch.other_bytes(4) + sum(
        formula_bytes(32, o, i, bias)[0] for block in arch.block_linears for _, o, i, bias in block
    )
    return {
        "bits": bits,
        "block_bytes": blocks,
        "n_weights": n_weights,
        "weights": predicted.weights,
        "predicted_mb": predicted.total_mb,
        "wide_buffers": wide,
        "fp32": fp32,
        "bpw": {b: 8 * s / n for b, (s, n) in scaling.items()},
    }


def wide_buffer_bytes(cfg: Any) -> int:
    """Bytes the formula's 4-bytes-per-element count of tensors outside the blocks misses (int64 buffers such as
    BERT's position_ids and token_type_ids take 8 bytes an element)."""
    from trainables.models import meta_model

    model = meta_model(cfg.model, cfg.task.name)
    return sum(b.numel() * (b.element_size() - 4) for b in model.buffers() if b.element_size() > 4)


def measured_bpw(result: dict[str, Any], n_weights: list[int], bits: int) -> float | None:
    pairs = [
        (bpw, n)
        for b, bpw, n in zip(result["bits_per_layer"], result["bits_per_weight_per_layer"], n_weights)
        if b == bits
    ]
    return sum(bpw * n for bpw, n in pairs) / sum(n for _, n in pairs) if pairs else None


def row(cfg: Any, result: dict[str, Any]) -> Row:
    model, config_id, steps = cfg.model.name, cfg.config_id, cfg.training.max_steps
    f = analytic(cfg, result.get("device") or "cpu")
    computed = result["weight_memory_mb"]
    exact = sum(int(a == b) for a, b in zip(result["layer_weight_bytes"], f["block_bytes"]))
    # the memory model as it is now (a trial read back with --from-results recorded the model of its own day)
    peak, predicted, load = result["peak_memory_mb"], f["predicted_mb"], result["peak_load_memory_mb"]
    return {
        "model": model,
        "config": config_id,
        "status": result["status"],
        "bits": ",".join(str(b) for b in f["bits"]),
        "blocks_exact": f"{exact}/{len(f['block_bytes'])}",
        "weights_fit_MB": computed,
        "weights_formula_MB": f["weights"] / MB,
        "diff_KB": (computed * MB - f["weights"]) / 1024,
        "int64_KB": f["wide_buffers"] / 1024,
        "bpw4": measured_bpw(result, f["n_weights"], 4),
        "bpw4_formula": f["bpw"].get(4),
        "bpw8": measured_bpw(result, f["n_weights"], 8),
        "bpw8_formula": f["bpw"].get(8),
        "predicted_MB": predicted,
        "peak_MB": peak,
        "peak/predicted": benchlib.safe_ratio(peak, predicted),
        "load_peak_MB": load,
        "fp32_MB": f["fp32"] / MB,
        "load/fp32": benchlib.safe_ratio(load, f["fp32"] / MB),
        "steps": steps,
        "measure": result.get("memory_measure"),
        "error": result.get("error"),
    }


# --- report -------------------------------------------------------------------------------------------------

WEIGHT_COLUMNS = ["model", "config", "bits", "blocks_exact", "weights_fit_MB", "weights_formula_MB"]
WEIGHT_COLUMNS += ["diff_KB", "int64_KB", "bpw4", "bpw4_formula", "bpw8", "bpw8_formula"]
PEAK_COLUMNS = ["model", "config", "steps", "predicted_MB", "peak_MB", "peak/predicted", "load_peak_MB"]
PEAK_COLUMNS += ["fp32_MB", "load/fp32"]


def build_report(args: argparse.Namespace, rows: list[Row]) -> Report:
    peaks = [r["peak/predicted"] for r in rows]
    loads = [r["load/fp32"] for r in rows]
    worst_kb = max(abs(r["diff_KB"]) for r in rows)
    exact = sum(int(r["blocks_exact"].split("/")[0]) for r in rows)
    blocks = sum(int(r["blocks_exact"].split("/")[1]) for r in rows)
    header = [
        f"memory_exactness ({'quick' if args.quick else 'full'}): computed bytes and measured peaks vs the formulas",
        f"  {args.configs} on {', '.join(f'{m} {t} ({s} steps)' for m, t, s in args.runs)}; "
        + (
            f"measured side: the trials of {', '.join(str(d) for d in args.from_results)} (grid settings, each "
            "trial in a fresh Ray worker)"
            if args.from_results
            else f"eval 32 sentences / 2048 tokens; torch threads: {args.threads or 'torch default'}; each trial "
            "in a fresh process"
        ),
        f"  NF4 + double quant limit {NF4_DQ_LIMIT:.4f} bits/weight; weights_fit_MB is rounded to 0.001 MB (1 KB)",
        f"  machine: {benchlib.machine()}; peaks measured by {rows[0]['measure']}, above the trial's start",
    ]
    notes = [
        f"blocks byte-exact: {exact}/{blocks}; largest |computed - formula| weights: {worst_kb:.1f} KB",
        "diff_KB: computed - formula; int64_KB: the int64 buffers' share beyond 4 bytes an element (the formula "
        "counts buffers at their own dtype); the rest is the 1 KB rounding of weights_fit_MB",
        "bpw8 depends on in_features (8 + 32/in): a mean over the 8-bit layers, weighted by their weights",
        "fp32_MB: the float32 model as loaded (int64 buffers at 8 bytes)",
    ]
    ratio_line = (
        f"ratio measured/predicted training peak: median {benchlib.median(peaks):.2f} "
        f"(min {min(peaks):.2f}, max {max(peaks):.2f}) over {len(rows)} trials; "
        f"loading peak/float32 size: median {benchlib.median(loads):.2f}"
    )
    return Report(
        name=NAME,
        quick=args.quick,
        header=header,
        columns=WEIGHT_COLUMNS,
        rows=rows,
        sections={"peaks (MB)": (PEAK_COLUMNS, rows)},
        notes=notes,
        ratio_line=ratio_line,
        ratio={
            "name": "measured/predicted training peak (median)",
            "value": benchlib.median(peaks),
            "load_over_fp32_median": benchlib.median(loads),
            "blocks_exact": [exact, blocks],
            "max_weight_diff_kb": worst_kb,
        },
        settings={
            "configs": args.configs,
            "runs": args.runs,
            "threads": args.threads,
            "eval": EVAL,
            "from_results": [str(d) for d in args.from_results or []],
        },
        column_digits={
            "weights_fit_MB": 3,
            "weights_formula_MB": 3,
            "bpw4": 4,
            "bpw4_formula": 4,
            "bpw8": 4,
            "bpw8_formula": 4,
            "peak/predicted": 3,
            "load/fp32": 3,
            "fp32_MB": 1,
            "predicted_MB": 1,
            "peak_MB": 1,
            "load_peak_MB": 1,
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchlib.setup_environment()
    if args.worker_out is not None:
        worker(args)
        return 0
    if args.from_results:
        rows = [row(cfg, result) for cfg, result in from_results(args)]
    else:
        rows = []
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
            for run in args.runs:
                for config_id in args.configs.split(","):
                    cfg = trial_config(config_id, *run, args.threads)
                    rows.append(row(cfg, measure(config_id, run, args.threads, Path(tmp))))
    if not rows:
        raise SystemExit(f"memory_exactness: no trials of {args.configs} found")
    benchlib.finish(build_report(args, rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
