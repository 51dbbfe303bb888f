"""fit() against the standard transformers + PEFT + bitsandbytes path on the same work: peak memory and tokens/s.

The standard path is what QLoRA recipes write: `AutoModelForCausalLM.from_pretrained(folder, dtype=compute,
quantization_config=BitsAndBytesConfig(load_in_4bit, nf4, double quant, compute dtype))` (16-bit rows: plain
`dtype=compute`), `peft.get_peft_model(LoraConfig(r=8, alpha 16, dropout 0.05, every linear of the blocks))`,
`gradient_checkpointing_enable(use_reentrant=False)` + `enable_input_require_grads()` when checkpointing, AdamW
(lr 2e-4), gradient clipping at 1.0, and a bare loop. rankbits' side is `loop.prepare` + `loop.train` of B-Q4 /
B-FP with the same compute dtype, checkpointing, steps, batch and tokens (the project's WikiText-2 blocks in the
same seeded order on both sides). Each side of each row runs in a fresh Python process; the peak is measured the
same way on both (`trainables.memory.PeakMeter`: the training phase above the process's state before loading;
on CPU the resident-set high-water mark, on CUDA `max_memory_allocated`), so weights are included on both sides.

Rows: (4-bit, 16-bit) x (bfloat16, float32 compute; 16-bit rows bfloat16 only) x (checkpointing off, on).
Ratio lines: rankbits / standard peak (goal <= 1.05) and tokens/s (goal >= 0.95) per row; and the issue-12 check
on rankbits' own side: B-Q4 with the defaults (compute dtype `auto`, checkpointing on) against B-Q4 in the old
regime (float32 compute, no checkpointing), peak ratio (goal <= 0.40) and perplexity ratio (goal within 3%), both
evaluated on the same test tokens.

    python benchmarks/standard_path.py --quick    # tiny-llama, 3 steps of 4 x 64 tokens, 1 torch thread, 3 of the rows
    python benchmarks/standard_path.py            # smollm2-135m, 6 steps of 4 x 256 tokens (note: its weights
                                                  # come from a Q4_1 GGUF, so NF4 re-quantizes 4-bit weights)
    python benchmarks/standard_path.py --model /path/to/model-folder --steps 20 --device cuda

On this machine's CPU `auto` is float32 when the CPU lacks native bfloat16 (`trainables/devices.py`), and emulated
bfloat16 matmuls run several times slower than float32: the bfloat16 rows measure memory there, not speed.
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

NAME = "standard_path"
VARIANTS = [
    (4, "bfloat16", False),
    (4, "bfloat16", True),
    (16, "bfloat16", False),
    (16, "bfloat16", True),
    (4, "float32", False),
    (4, "float32", True),
]
QUICK_VARIANTS = [(4, "bfloat16", True), (16, "bfloat16", False), (4, "float32", False)]
"""The quick form's rows (a plumbing check): both bit widths, both computes, checkpointing off and on; each row is
two fresh processes, the cost of the quick form."""
QUICK = {
    "model": "tiny-llama",
    "steps": 3,
    "batch": 4,
    "seq_len": 64,
    "threads": 1,
    "eval_tokens": 512,
    "variants": QUICK_VARIANTS,
}
FULL = {
    "model": "smollm2-135m",
    "steps": 6,
    "batch": 4,
    "seq_len": 256,
    "threads": None,
    "eval_tokens": 2048,
    "variants": VARIANTS,
}
COLUMNS = ["bits", "compute", "ckpt", "std_peak_MB", "rb_peak_MB", "rb_predicted_MB", "peak_ratio"]
SPEED_COLUMNS = ["bits", "compute", "ckpt", "std_tok_s", "rb_tok_s", "speed_ratio"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = benchlib.parser(NAME, __doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="preset or model folder (default: per form)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default: per form)")
    p.add_argument("--batch", type=int, default=None, help="rows per batch (default 4)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per row (default: per form)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: quick 1, full torch's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument(
        "--computes",
        default="bfloat16,float32",
        help="compute dtypes of the rows (a CPU without native bf16 runs bfloat16 rows several times slower)",
    )
    p.add_argument(
        "--check-compute",
        default="auto",
        help="compute dtype of the issue-12 check's new-regime side (default auto: what a user gets here)",
    )
    p.add_argument(
        "--check-only",
        action="store_true",
        help="run only the issue-12 check (rankbits B-Q4, old regime vs new), not the standard-path rows",
    )
    # worker-only arguments
    p.add_argument("--side", choices=("standard", "rankbits"), help="worker: which side to run")
    p.add_argument("--variant", default=None, help="worker: bits,compute,ckpt")
    p.add_argument("--folder", default=None, help="worker: the model folder")
    p.add_argument("--eval", action="store_true", help="worker (rankbits): also evaluate perplexity")
    args = p.parse_args(argv)
    form = QUICK if args.quick else FULL
    args.model = args.model or form["model"]
    args.steps = args.steps or form["steps"]
    args.batch = args.batch or form["batch"]
    args.seq_len = args.seq_len or form["seq_len"]
    args.threads = args.threads or form["threads"]
    args.eval_tokens = form["eval_tokens"]
    args.variants = form["variants"]
    args.computes = [c.strip() for c in args.computes.split(",") if c.strip()]
    return args


def trial_config(args: argparse.Namespace, bits: int, compute: str, ckpt: bool) -> Any:
    """The rankbits config of a row (B-Q4 or B-FP on WikiText-2 with the row's regime)."""
    from spaces.grid import grid_config
    from trainables.config import ModelConfig
    from trainables.models import count_layers

    model = args.folder or args.model
    cfg = grid_config(
        "B-Q4" if bits == 4 else "B-FP",
        "wikitext2",
        model,
        count_layers(ModelConfig(name=model)),
        max_steps=args.steps,
    )
    sets = {
        "training.batch_size": args.batch,
        "training.seq_len": args.seq_len,
        "training.lr": 2e-4,
        "training.compute_dtype": compute,
        "training.gradient_checkpointing": ckpt,
        "training.eval_tokens": args.eval_tokens,
        "training.device": args.device,
        "training.log_every": max(1, args.steps),
    }
    if args.threads:
        sets["training.threads"] = args.threads
    return cfg.with_overrides(sets)


# --- workers: one side of one row in a fresh process ----------------------------------------------------------


def rankbits_side(args: argparse.Namespace, bits: int, compute: str, ckpt: bool) -> dict[str, Any]:
    from trainables import loop

    prepared = loop.prepare(trial_config(args, bits, compute, ckpt))
    loop.train(prepared)
    if args.eval:
        loop.evaluate(prepared)
    r = prepared.result
    return {
        "peak_mb": r.peak_memory_mb,
        "predicted_mb": r.predicted_peak_mb,
        "tokens_per_s": r.tokens_per_s,
        "tokens": r.train_tokens,
        "perplexity": r.perplexity,
        "compute": r.compute_dtype,
    }


def standard_side(args: argparse.Namespace, bits: int, compute: str, ckpt: bool) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, get_linear_schedule_with_warmup

    from trainables import data, models
    from trainables.devices import pick_device
    from trainables.memory import MB, PeakMeter

    cfg = trial_config(args, bits, compute, ckpt)
    device = pick_device(cfg.training.device)
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    dtype = getattr(torch, compute)
    tokenizer = models.load_tokenizer(cfg.model)
    task_data = data.prepare(  # the batches rankbits' loop.prepare makes, in the same seeded order
        data.load_raw(cfg.task),
        cfg.task,
        tokenizer,
        seq_len=cfg.training.seq_len,
        batch_size=cfg.training.batch_size,
        seed=cfg.training.seed,
        examples_needed=None,
        eval_examples=None,
        eval_tokens=256,
    )
    meter = PeakMeter(device)
    meter.set_baseline()
    kwargs: dict[str, Any] = {"dtype": dtype}
    if bits == 4:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": device.type if device.type != "cuda" else 0}
    model = AutoModelForCausalLM.from_pretrained(args.folder, **kwargs)
    if bits != 4:
        model.to(device)
    models.own_memory(model)  # as rankbits does: mapped checkpoint pages are not training memory
    for module in model.modules():  # the same CPU layout rankbits keeps (see trainables/quantize.py)
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    _, blocks = models.find_blocks(model)
    targets = sorted(
        {n.rsplit(".", 1)[-1] for n, m in blocks[0].named_modules() if hasattr(m, "weight") and n}
    )
    targets = [t for t in targets if "norm" not in t]
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=targets, task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.06 * args.steps), args.steps)
    model.train()
    batches = task_data.train.iterate()
    torch.manual_seed(cfg.training.seed)
    meter.start_phase()
    tokens = 0
    start = time.perf_counter()
    for _ in range(args.steps):
        batch = {k: v.to(device) for k, v in next(batches).items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        meter.sample()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum().item())
    if device.type in ("cuda", "mps"):
        getattr(torch, device.type).synchronize()
    seconds = time.perf_counter() - start
    return {
        "peak_mb": round(meter.peak() / MB, 1),
        "tokens_per_s": round(tokens / seconds, 1),
        "tokens": tokens,
    }


def worker(args: argparse.Namespace) -> None:
    bits, compute, ckpt = args.variant.split(",")
    run = rankbits_side if args.side == "rankbits" else standard_side
    benchlib.write_worker_output(args.worker_out, run(args, int(bits), compute, ckpt == "1"))


# --- the parent: rows, side by side ---------------------------------------------------------------------------


def model_folder(name: str, tmp: Path) -> str:
    """A from_pretrained folder of the model (tiny presets are written out once, with their tokenizer)."""
    from trainables import models
    from trainables.config import ModelConfig

    cfg = ModelConfig(name=name)
    resolved = models._materialize(cfg)
    if resolved.kind != "tiny":
        return resolved.source
    folder = tmp / name
    model = models.load_model(cfg, "wikitext2", models.load_tokenizer(cfg))
    model.save_pretrained(folder)
    models.load_tokenizer(cfg).save_pretrained(folder)
    return str(folder)


def side(
    args: argparse.Namespace, which: str, variant: tuple[int, str, bool], tmp: Path, evaluate=False
) -> dict:
    bits, compute, ckpt = variant
    worker_args = [
        "--side",
        which,
        "--variant",
        f"{bits},{compute},{int(ckpt)}",
        "--folder",
        args.folder,
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
        "--seq-len",
        str(args.seq_len),
        "--device",
        args.device,
    ]
    worker_args += ["--threads", str(args.threads)] if args.threads else []
    worker_args += ["--quick"] if args.quick else []
    worker_args += ["--eval"] if evaluate else []
    out = tmp / f"{which}-{bits}-{compute}-{int(ckpt)}-{int(evaluate)}.json"
    result, done = benchlib.run_worker(Path(__file__), worker_args, out, timeout=3600)
    print(f"  {which:<9} {bits:>2}-bit {compute:<8} ckpt={ckpt!s:<5} {done.wall_s:6.1f} s", flush=True)
    return result


def build_report(args: argparse.Namespace, rows: list[Row], check: dict[str, Any]) -> Report:
    peaks = [r["peak_ratio"] for r in rows] or [float("nan")]
    speeds = [r["speed_ratio"] for r in rows] or [float("nan")]
    header = [
        f"standard_path ({'quick' if args.quick else 'full'}): rankbits fit() vs transformers + PEFT + bitsandbytes",
        f"  {args.model}, WikiText-2, {args.steps} steps of {args.batch} x {args.seq_len} tokens, LoRA r=8 on every "
        f"block linear, AdamW; torch threads: {args.threads or 'torch default'}; device: {args.device}",
        f"  machine: {benchlib.machine()}; each side of each row in a fresh process; peaks above the process's "
        "state before loading (weights included)",
    ]
    if args.model == "smollm2-135m":
        header.append(
            "  smollm2-135m's weights come from a 4-bit (Q4_1) GGUF file: NF4 on it re-quantizes weights that were "
            "already 4-bit, so 4-bit vs 16-bit quality differences here are not those of a 16-bit checkpoint"
        )
    notes = [
        f"issue-12 check (rankbits B-Q4): new regime (compute {check['asked_compute']} -> "
        f"{check['default_compute']}, checkpointing on) "
        f"{check['default_peak']} MB vs old regime (float32, no checkpointing) {check['old_peak']} MB: "
        f"{check['peak_ratio']:.3f}x (goal <= 0.40); perplexity {check['default_ppl']:.3f} vs "
        f"{check['old_ppl']:.3f} ({100 * (check['ppl_ratio'] - 1):+.2f}%, goal within 3%)",
    ]
    ratio_line = (
        f"ratio rankbits/standard: peak median {benchlib.median(peaks):.3f} (max {max(peaks):.3f}, goal <= 1.05); "
        f"tokens/s median {benchlib.median(speeds):.3f} (min {min(speeds):.3f}, goal >= 0.95)"
        if rows
        else "ratio rankbits/standard: no rows measured (--check-only runs the issue-12 check alone)"
    )
    return Report(
        name=NAME,
        quick=args.quick,
        header=header,
        columns=COLUMNS,
        rows=rows,
        sections={"speed (tokens/s)": (SPEED_COLUMNS, rows)},
        notes=notes,
        ratio_line=ratio_line,
        ratio={
            "name": "rankbits/standard peak and tokens/s (medians)",
            **(
                {
                    "peak": benchlib.median(peaks),
                    "peak_max": max(peaks),
                    "speed": benchlib.median(speeds),
                    "speed_min": min(speeds),
                }
                if rows
                else {}  # --check-only: no ratio (NaN is not JSON)
            ),
            "issue12_check": check,
        },
        settings={"model": args.model, "steps": args.steps, "batch": args.batch, "seq_len": args.seq_len},
        column_digits={
            "peak_ratio": 3,
            "speed_ratio": 3,
            "std_peak_MB": 1,
            "rb_peak_MB": 1,
            "rb_predicted_MB": 1,
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchlib.setup_environment()
    if args.worker_out is not None:
        worker(args)
        return 0
    benchlib.passive_omp(args.quick)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-standard-") as tmp:
        args.folder = model_folder(args.model, Path(tmp))
        old = side(args, "rankbits", (4, "float32", False), Path(tmp), evaluate=True)
        variants = [v for v in args.variants if v[1] in args.computes or v == (4, "float32", False)]
        for variant in [] if args.check_only else variants:
            std = side(args, "standard", variant, Path(tmp))
            rb = old if variant == (4, "float32", False) else side(args, "rankbits", variant, Path(tmp))
            bits, compute, ckpt = variant
            rows.append(
                {
                    "bits": bits,
                    "compute": compute,
                    "ckpt": ckpt,
                    "std_peak_MB": std["peak_mb"],
                    "rb_peak_MB": rb["peak_mb"],
                    "rb_predicted_MB": rb["predicted_mb"],
                    "peak_ratio": benchlib.safe_ratio(rb["peak_mb"], std["peak_mb"]),
                    "std_tok_s": std["tokens_per_s"],
                    "rb_tok_s": rb["tokens_per_s"],
                    "speed_ratio": benchlib.safe_ratio(rb["tokens_per_s"], std["tokens_per_s"]),
                    "same_tokens": rb["tokens"] == std["tokens"],
                    "_rb": rb,
                }
            )
        default = side(args, "rankbits", (4, args.check_compute, True), Path(tmp), evaluate=True)
    for row in rows:
        row.pop("_rb")
    check = {
        "asked_compute": args.check_compute,
        "default_compute": default["compute"],
        "default_peak": default["peak_mb"],
        "old_peak": old["peak_mb"],
        "peak_ratio": benchlib.safe_ratio(default["peak_mb"], old["peak_mb"]),
        "default_ppl": default["perplexity"],
        "old_ppl": old["perplexity"],
        "ppl_ratio": benchlib.safe_ratio(default["perplexity"], old["perplexity"]),
    }
    benchlib.finish(build_report(args, rows, check), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
