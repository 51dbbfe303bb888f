"""Training tokens/s of fit()'s loop against a minimal hand-written PEFT + transformers loop doing the same work.

Same work on both sides, per base precision (16-bit, 4-bit NF4, 8-bit int8, mixed 8/4 on the critical layers):
- the same model, loaded in float32 and quantized with the project's own `quantize_model`, so the bits are
  identical; the same LoRA (r=8, alpha 16, dropout 0.05) on every linear layer of the blocks;
- the same batches: the project's tokenized SST-2 / WikiText-2 batches in the same seeded order (collated inside
  the timed loop on both sides), the same batch size and sequence length;
- AdamW, linear warm-up and decay, gradient clipping; no evaluation. Tokens are counted the same way
  (the attention mask's sum), and only the training loop is timed.

fit() side: `trainables.loop.prepare` + `trainables.loop.train` (fit()'s own loop, with its per-step checks, memory
sampling and logging); `tokens_per_s` from its TrialResult. Hand-written side: `AutoModelFor*.from_pretrained`,
`quantize_model`, `peft.get_peft_model(LoraConfig(...))` and a bare loop. The two sides are interleaved (A B, then
B A on the next repeat, so neither always runs on a warmer process) after one untimed warm-up run, and the median
tokens/s of the repeats is reported (`fit/hand` is the ratio of the two medians). `paired` is the median over
repeats of each back-to-back pair's ratio: a pair shares the machine's load of that moment, so drift between
repeats (runs of one side spread by +-10% at 2 threads on 2 cores) cancels.

Threads: the quick form uses one torch thread on both sides. On a 2-core machine that another process keeps busy,
two threads made every step 5-20x slower (8-bit layers most), which says nothing about either loop.

    python benchmarks/throughput.py --quick   # minilm-l6 SST-2, 5 steps, 1 repeat, 1 torch thread
    python benchmarks/throughput.py           # minilm-l6, 40 steps; smollm2-135m WikiText-2, 3 steps; 4 repeats
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import dataclass
from typing import Any

import benchlib
from benchlib import Report, Row

NAME = "throughput"
BASES = ("16-bit", "4-bit", "8-bit", "mixed 8/4")
QUICK = {"runs": [("minilm-l6", "sst2", 5)], "repeats": 1, "threads": 1}
FULL = {"runs": [("minilm-l6", "sst2", 40), ("smollm2-135m", "wikitext2", 3)], "repeats": 4, "threads": None}
WARMUP_STEPS = 2


@dataclass
class Run:
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = benchlib.parser(NAME, __doc__.splitlines()[0])
    p.add_argument(
        "--runs",
        default=None,
        help="comma list of model:task:steps (default: per form), e.g. minilm-l6:sst2:15,tiny-llama:wikitext2:5",
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="timed runs per side and base (default: per form)"
    )
    p.add_argument("--bases", default=",".join(BASES), help=f"comma list of {', '.join(BASES)}")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads on both sides (default: quick 1, full torch's)",
    )
    args = p.parse_args(argv)
    form = QUICK if args.quick else FULL
    args.runs = parse_runs(args.runs) if args.runs else form["runs"]
    args.repeats = args.repeats or form["repeats"]
    args.threads = args.threads or form["threads"]
    args.bases = [b.strip() for b in args.bases.split(",") if b.strip()]
    unknown = [b for b in args.bases if b not in BASES]
    if unknown:
        p.error(f"--bases: unknown base {unknown[0]!r}; choose from {', '.join(BASES)}")
    return args


def parse_runs(text: str) -> list[tuple[str, str, int]]:
    runs = []
    for item in text.split(","):
        model, task, steps = item.split(":")
        runs.append((model, task, int(steps)))
    return runs


def base_config(model: str, task: str, steps: int, base: str, threads: int | None) -> Any:
    """B-FP's training settings and LoRA (r=8) on the given base precision."""
    from spaces.grid import grid_config
    from trainables.config import ModelConfig
    from trainables.models import count_layers

    layers = count_layers(ModelConfig(name=model))
    cfg = grid_config("B-FP", task, model, layers, max_steps=steps)
    default_bits, layer_bits = base_bits(base, layers)
    return cfg.with_overrides(
        {
            "quantization.default_bits": default_bits,
            "quantization.layer_bits": layer_bits,
            "training.threads": threads,
            "training.eval_examples": 1,  # nothing is evaluated: tokenize as little as possible
            "training.eval_tokens": cfg.training.seq_len,
        }
    )


def base_bits(base: str, layers: int) -> tuple[int, dict[int, int]]:
    """(default bits, per-layer overrides): mixed is 8-bit on the grid's critical layers, 4-bit elsewhere."""
    from spaces.grid import mixed_bits

    if base == "mixed 8/4":
        return 4, mixed_bits(layers)
    return int(base.split("-")[0]), {}


# --- fit() side ---------------------------------------------------------------------------------------------


def run_fit(cfg: Any) -> Run:
    from trainables import loop

    prepared = loop.prepare(cfg)
    loop.train(prepared)
    result = prepared.result
    del prepared
    release()
    return Run(result.train_tokens, result.train_time_s)


# --- hand-written side --------------------------------------------------------------------------------------


def task_data(cfg: Any) -> Any:
    """The project's tokenized batches, exactly as prepare() builds them for this config."""
    from trainables import data, models

    tokenizer = models.load_tokenizer(cfg.model)
    raw = data.load_raw(cfg.task)
    t = cfg.training
    return data.prepare(
        raw,
        cfg.task,
        tokenizer,
        t.seq_len,
        t.batch_size,
        t.seed,
        t.max_steps * t.batch_size,
        t.eval_examples,
        t.eval_tokens,
    )


def load_base(cfg: Any) -> Any:
    """The float32 model with the task's head, straight from transformers (tiny presets: the project's builder)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from trainables import models
    from trainables.tasks import head_of

    resolved = models.resolve(cfg.model)
    head = head_of(cfg.task)
    torch.manual_seed(cfg.training.seed)
    if resolved.kind != "local":
        return models.load_model(cfg.model, head, models.load_tokenizer(cfg.model), cfg.training.seed)
    if not head.causal:
        return AutoModelForSequenceClassification.from_pretrained(
            resolved.source, num_labels=head.num_labels, dtype=torch.float32
        )
    model = AutoModelForCausalLM.from_pretrained(resolved.source, dtype=torch.float32)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    return model


def hand_model(cfg: Any, device: Any) -> Any:
    """Quantized base (the project's quantize_model) + PEFT LoRA on every linear layer of the blocks."""
    from peft import LoraConfig, TaskType, get_peft_model

    from trainables.models import find_blocks
    from trainables.quantize import quantize_model
    from trainables.tasks import head_of

    model = load_base(cfg)
    prefix, blocks = find_blocks(model)
    report = quantize_model(model, blocks, cfg.quantization, device)
    targets = [f"{prefix}.{layer.index}.{name}" for layer in report.layers for name in layer.modules]
    a = cfg.adapter
    lora = LoraConfig(
        r=a.r,
        lora_alpha=a.alpha,
        lora_dropout=a.dropout,
        target_modules=targets,
        task_type=TaskType.CAUSAL_LM if head_of(cfg.task).causal else TaskType.SEQ_CLS,
    )
    return get_peft_model(model, lora)


def run_hand(cfg: Any, batches_of: Any, steps: int | None = None) -> Run:
    """The bare loop: forward, backward, clip, AdamW + linear schedule, zero_grad; tokens = attention mask sum."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    from trainables.devices import pick_device

    device = pick_device(cfg.training.device)
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    model = hand_model(cfg, device)
    t = cfg.training
    steps = steps or t.max_steps
    params = [q for q in model.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(t.warmup_ratio * steps), steps)
    model.train()
    batches = batches_of.train.iterate()
    tokens = 0
    start = time.perf_counter()
    for _ in range(steps):
        batch = {k: v.to(device) for k, v in next(batches).items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum().item())
    if device.type in ("cuda", "mps"):
        getattr(torch, device.type).synchronize()
    seconds = time.perf_counter() - start
    del model, optimizer, scheduler, params
    release()
    return Run(tokens, seconds)


def release() -> None:
    from trainables.memory import trim_heap

    gc.collect()
    trim_heap()


# --- measuring ----------------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, model: str, task: str, steps: int) -> list[Row]:
    """Interleaved runs of both sides for every base; one row per base with median tokens/s."""
    configs = {base: base_config(model, task, steps, base, args.threads) for base in args.bases}
    data = task_data(configs[args.bases[0]])
    run_hand(configs[args.bases[0]], data, steps=WARMUP_STEPS)  # untimed: first-call costs (kernels, oneDNN)
    runs: dict[str, dict[str, list[Run]]] = {b: {"fit": [], "hand": []} for b in args.bases}
    for repeat in range(args.repeats):
        for base in args.bases:
            order = ("fit", "hand") if repeat % 2 == 0 else ("hand", "fit")
            for side in order:
                run = run_fit(configs[base]) if side == "fit" else run_hand(configs[base], data)
                runs[base][side].append(run)
                print(
                    f"  {model} {base:<9} {side:<4} repeat {repeat + 1}: {run.tokens_per_s:8.1f} tok/s",
                    flush=True,
                )
    return [row(model, task, steps, base, runs[base]) for base in args.bases]


def row(model: str, task: str, steps: int, base: str, runs: dict[str, list[Run]]) -> Row:
    fit_tps = benchlib.median([r.tokens_per_s for r in runs["fit"]])
    hand_tps = benchlib.median([r.tokens_per_s for r in runs["hand"]])
    same_tokens = {r.tokens for r in runs["fit"]} == {r.tokens for r in runs["hand"]}
    return {
        "model": model,
        "task": task,
        "base": base,
        "steps": steps,
        "tokens/run": runs["fit"][0].tokens,
        "same_tokens": same_tokens,
        "fit_tok/s": fit_tps,
        "hand_tok/s": hand_tps,
        "fit/hand": benchlib.safe_ratio(fit_tps, hand_tps),
        "paired": benchlib.median(
            [benchlib.safe_ratio(f.tokens_per_s, h.tokens_per_s) for f, h in zip(runs["fit"], runs["hand"])]
        ),
        "fit_runs": [round(r.tokens_per_s, 1) for r in runs["fit"]],
        "hand_runs": [round(r.tokens_per_s, 1) for r in runs["hand"]],
    }


def build_report(args: argparse.Namespace, rows: list[Row]) -> Report:
    import torch

    ratios = [r["fit/hand"] for r in rows]
    overall = benchlib.geomean(ratios)
    threads = args.threads or torch.get_num_threads()
    header = [
        f"throughput ({'quick' if args.quick else 'full'}): fit() loop vs hand-written PEFT + transformers loop",
        f"  runs: {', '.join(f'{m} {t} {s} steps' for m, t, s in args.runs)}; {args.repeats} repeat(s) per side "
        f"and base, median; LoRA r=8 (B-FP's settings); torch threads: {threads}",
        f"  machine: {benchlib.machine()} (tokens/s depend on other load; the ratio is the result)",
    ]
    columns = [
        "model",
        "task",
        "base",
        "steps",
        "tokens/run",
        "same_tokens",
        "fit_tok/s",
        "hand_tok/s",
        "fit/hand",
        "paired",
    ]
    paired = [r["paired"] for r in rows]
    ratio_line = (
        f"ratio fit/hand-written tokens/s: {overall:.3f} (geometric mean over {len(rows)} rows; "
        f"min {min(ratios):.3f}, max {max(ratios):.3f}; paired: min {min(paired):.3f})"
    )
    return Report(
        name=NAME,
        quick=args.quick,
        header=header,
        columns=columns,
        rows=rows,
        ratio_line=ratio_line,
        ratio={
            "name": "fit/hand-written tokens/s",
            "value": overall,
            "per_row": ratios,
            "paired_per_row": paired,
        },
        settings={"runs": args.runs, "repeats": args.repeats, "bases": args.bases, "threads": threads},
        column_digits={"fit_tok/s": 1, "hand_tok/s": 1, "fit/hand": 3, "paired": 3},
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchlib.setup_environment()
    from trainables.quiet import quiet_libraries

    quiet_libraries()
    rows = []
    for model, task, steps in args.runs:
        rows += measure(args, model, task, steps)
    benchlib.finish(build_report(args, rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
