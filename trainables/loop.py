"""fit(TrialConfig) -> TrialResult: load, quantize, attach adapters, train, evaluate. No Ray here.

AdamW with linear warm-up and linear decay, gradient clipping, seeded everything, AdaLoRA's `update_and_allocate`
after every optimizer step (the Hugging Face Trainer never calls it). A non-finite loss stops the trial at once.
"""

from __future__ import annotations

import math
import os
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainables import adapters, data, models
from trainables.config import TrialConfig
from trainables.devices import pick_device, resolve_compute_dtype, torch_dtype
from trainables.divergence import divergence_reason, final_window
from trainables.errors import TrialFailed
from trainables.memory import MB, PeakMeter, release_device_memory
from trainables.predict import predicted_peak_mb
from trainables.quantize import base_load_dtype, quantize_model
from trainables.quiet import quiet_libraries
from trainables.result import TrialResult, TrialStatus
from trainables.tasks import Head, Scores, get_task

ProgressFn = Callable[[dict[str, Any]], None]
EvalProgressFn = Callable[[int, int], None]
"""Called with (examples evaluated so far, examples in all) during the final evaluation."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass


def limit_device_memory(device: torch.device, fraction: float | None) -> None:
    """Cap this process's share of device memory so an oversized trial raises out-of-memory instead of swapping."""
    if fraction is None:
        return
    if device.type == "mps":
        torch.mps.set_per_process_memory_fraction(fraction)
    elif device.type == "cuda":
        torch.cuda.set_per_process_memory_fraction(min(fraction, 1.0), device)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes", "ray", "optuna"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def total_steps(cfg: TrialConfig, train_len: int) -> int:
    if cfg.training.epochs is not None:
        per_epoch = max(1, train_len // cfg.training.batch_size)
        return max(1, math.ceil(per_epoch * cfg.training.epochs))
    return cfg.training.max_steps


@dataclass
class Prepared:
    """A model ready to train, with its data and bookkeeping (separate from the loop for benchmarks and tests)."""

    cfg: TrialConfig
    device: torch.device
    tokenizer: Any
    model: Any
    task_data: data.TaskData
    steps: int
    prefix: str
    num_layers: int
    result: TrialResult
    meter: PeakMeter


def load_task_data(cfg: TrialConfig, tokenizer: Any, needed: int | None) -> tuple[Head, data.TaskData]:
    """(the model head `cfg`'s task needs, its tokenized data): the task's `load_raw` and `prepare` with `cfg`'s
    training settings; `needed`: classification training sentences to tokenize (None: all)."""
    spec = get_task(cfg.task.name)
    raw = spec.load_raw(cfg.task)
    # the head: a classification task's classes as its data holds them
    head = Head(spec.head_kind, len(raw.label_names)) if raw.label_names else spec.head(cfg.task)
    task_data = spec.prepare(
        raw,
        cfg.task,
        tokenizer,
        cfg.training.seq_len,
        cfg.training.batch_size,
        cfg.training.seed,
        needed,
        cfg.training.eval_examples,
        cfg.training.eval_tokens,
    )
    return head, task_data


def build_quantized(
    cfg: TrialConfig, head: Head, tokenizer: Any, device: torch.device, dtype: torch.dtype
) -> tuple[Any, str, Any, Any]:
    """(model, block prefix, blocks, `quantize.QuantReport`): the base model loaded and every block converted
    to `cfg`'s bits on `device`, before any adapter. Loads in the compute dtype `dtype` unless a block keeps
    float32 weights (then float32, cast after quantizing)."""
    bits = cfg.quantization.bits_per_layer(models.count_layers(cfg.model))
    load_dtype = base_load_dtype(bits, cfg.quantization, dtype)
    model = models.load_model(cfg.model, head, tokenizer, seed=cfg.training.seed, dtype=load_dtype)
    prefix, blocks = models.find_blocks(model)
    report = quantize_model(model, blocks, cfg.quantization, device, dtype)
    models.own_memory(model)  # unmap the checkpoint: its resident pages are no training memory
    return model, prefix, blocks, report


def prepare(cfg: TrialConfig) -> Prepared:
    """Everything before the first optimizer step: device, data, model, quantization, adapter."""
    quiet_libraries()
    device = pick_device(cfg.training.device)
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    limit_device_memory(device, cfg.training.memory_fraction)
    seed_everything(cfg.training.seed)
    meter = PeakMeter(device)
    compute = resolve_compute_dtype(cfg.training.compute_dtype, device.type)
    dtype = torch_dtype(compute)
    result = TrialResult.of(
        cfg,
        device=device.type,
        versions=versions(),
        memory_measure=meter.method,
        compute_dtype=compute,
        gradient_checkpointing=cfg.training.gradient_checkpointing,
    )
    tokenizer = models.load_tokenizer(cfg.model)
    # Only the classification sentences the run will see are tokenized (epochs need them all).
    needed = None if cfg.training.epochs is not None else cfg.training.max_steps * cfg.training.batch_size
    head, task_data = load_task_data(cfg, tokenizer, needed)
    result.data_note = task_data.data_note
    if task_data.label_names is not None:
        result.num_classes, result.label_names = len(task_data.label_names), list(task_data.label_names)
    steps = total_steps(cfg, len(task_data.train))

    # The module tree on the meta device: the memory prediction, and every import loading needs, before the baseline.
    result.predicted_peak_mb = round(predicted_peak_mb(cfg, device.type), 1)
    import bitsandbytes  # noqa: F401
    import peft  # noqa: F401

    meter.set_baseline()
    meter.start_phase()
    t0 = time.perf_counter()
    model, prefix, blocks, report = build_quantized(cfg, head, tokenizer, device, dtype)
    if cfg.training.gradient_checkpointing:
        models.enable_gradient_checkpointing(model)
    base_params = sum(layer.n_weights for layer in report.layers) + sum(
        p.numel() for n, p in _named_unique(model) if not _in_block_linears(n, prefix, report)
    )
    layer_modules = [layer.modules for layer in report.layers]
    seed_everything(cfg.training.seed)  # adapter init independent of the loading path
    model = adapters.attach(model, cfg.adapter, prefix, layer_modules, cfg.task.name, steps)
    adapters.set_dtypes(model, dtype)
    result.load_time_s = round(time.perf_counter() - t0, 3)
    result.peak_load_memory_mb = round(meter.peak() / MB, 1)

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result.trainable_params = trainable
    result.total_params = base_params + trainable
    result.trainable_pct = round(100.0 * trainable / result.total_params, 4)
    result.weight_memory_mb = round(report.weight_bytes / MB, 3)
    result.adapter_memory_mb = round(adapters.adapter_bytes(model) / MB, 3)
    result.bits_per_layer = report.bits_per_layer
    result.bits_per_weight_per_layer = [round(layer.bits_per_weight, 4) for layer in report.layers]
    result.layer_weight_bytes = [layer.weight_bytes for layer in report.layers]
    initial = adapters.ranks_by_layer(adapters.active_ranks(model, trained=False), prefix, len(blocks))
    result.initial_ranks_per_layer = [_mean(r) for r in initial]
    result.initial_total_rank = sum(sum(r) for r in initial)
    return Prepared(cfg, device, tokenizer, model, task_data, steps, prefix, len(blocks), result, meter)


def _named_unique(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return list(model.named_parameters())  # named_parameters already skips tied duplicates


def _in_block_linears(name: str, prefix: str, report: Any) -> bool:
    if not name.startswith(prefix + "."):
        return False
    rest = name[len(prefix) + 1 :]
    index, _, sub = rest.partition(".")
    module = sub.rsplit(".", 1)[0]
    return index.isdigit() and int(index) < len(report.layers) and module in report.layers[int(index)].modules


def _mean(values: list[int]) -> float:
    return round(sum(values) / len(values), 3) if values else 0.0


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def train(p: Prepared, progress: ProgressFn | None = None) -> None:
    cfg, model, result = p.cfg, p.model, p.result
    from transformers import get_linear_schedule_with_warmup

    params = [q for q in model.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.training.lr, weight_decay=cfg.training.weight_decay)
    warmup = int(cfg.training.warmup_ratio * p.steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, p.steps)
    is_adalora = cfg.adapter.method == "adalora"
    penalty_of = adapters.orth_penalty(model)  # AdaLoRA adds it to `.loss`; the task loss is logged apart
    task_losses: list[float] = []  # NaN where AdaLoRA's penalty was not computed (neither logged nor read)
    window_from = p.steps - final_window(p.steps)
    model.train()
    batches = p.task_data.train.iterate()
    tokens = 0
    seed_everything(cfg.training.seed)
    p.meter.start_phase()
    start = time.perf_counter()
    for step in range(1, p.steps + 1):
        batch = _to(next(batches), p.device)
        loss = model(**batch).loss
        if not torch.isfinite(loss):
            raise TrialFailed(
                f"non-finite loss ({loss.item()}) at step {step}; lower training.lr or check the data"
            )
        penalty_now = penalty_of is not None and (
            step == 1
            or step > window_from
            or step % cfg.training.log_every == 0
            or step % (cfg.training.eval_every or p.steps) == 0
        )  # only the steps logging and the divergence check read (measured at 0.1-2% of a step)
        penalty = penalty_of() if penalty_now else None  # on the weights the loss saw
        total = float(loss.item())
        task_losses.append(
            total - penalty if penalty is not None else total if penalty_of is None else math.nan
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.training.max_grad_norm)
        optimizer.step()
        scheduler.step()
        if is_adalora:
            model.base_model.update_and_allocate(step)
        p.meter.sample()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum().item())
        eval_now = (
            cfg.training.eval_every is not None and step % cfg.training.eval_every == 0 and step < p.steps
        )
        if step % cfg.training.log_every == 0 or step == p.steps or eval_now:
            value = task_losses[-1]
            result.loss_curve.append((step, round(value, 5)))
            if penalty is not None:
                result.penalty_curve.append((step, round(penalty, 5)))
            info: dict[str, Any] = {
                "step": step,
                "train_loss": value,
                **({"orth_penalty": penalty} if penalty is not None else {}),
                "tokens": tokens,
                "elapsed_s": time.perf_counter() - start,
            }
            if eval_now:
                info[result.metric_name] = score(p)[0]
                model.train()
            if progress is not None and step < p.steps:
                progress(info)
    if p.device.type in ("cuda", "mps"):
        getattr(torch, p.device.type).synchronize()
    result.train_time_s = round(time.perf_counter() - start, 3)
    result.peak_memory_mb = round(p.meter.peak() / MB, 1)
    result.steps = p.steps
    result.train_tokens = tokens
    result.tokens_per_s = round(tokens / result.train_time_s, 1) if result.train_time_s > 0 else 0.0
    result.final_train_loss = result.loss_curve[-1][1] if result.loss_curve else None
    result.final_orth_penalty = result.penalty_curve[-1][1] if result.penalty_curve else None
    reason = divergence_reason(task_losses, cfg.training.divergence_factor)
    if reason is not None:  # still evaluated: its metrics are kept for the record, off the fronts
        result.status, result.error = TrialStatus.DIVERGED, reason
    final = adapters.ranks_by_layer(adapters.active_ranks(model), p.prefix, p.num_layers)
    result.module_ranks = adapters.active_ranks(model)
    result.ranks_per_layer = [_mean(r) for r in final]
    result.total_rank = sum(sum(r) for r in final)


def evaluate(p: Prepared, eval_progress: EvalProgressFn | None = None) -> None:
    """The final evaluation: the task's metrics (`TaskSpec.metrics`, result fields) and loss into the result."""
    start = time.perf_counter()
    scores = score_all(p, eval_progress)
    setattr(p.result, get_task(p.cfg.task.name).metric, scores.value)
    for name, value in scores.extra.items():
        setattr(p.result, name, value)
    p.result.eval_loss = scores.loss
    p.result.eval_time_s = round(time.perf_counter() - start, 3)


@torch.no_grad()
def score_all(p: Prepared, eval_progress: EvalProgressFn | None = None) -> Scores:
    """The task's evaluation (`TaskSpec.score`) of the model on the evaluation data: its metric, mean task loss
    and further metrics; leaves the model in eval mode. `eval_progress(examples done, examples in all)` is called
    after each batch."""
    p.model.eval()
    spec = get_task(p.cfg.task.name)
    return spec.score(p.model, p.task_data, p.cfg.training.eval_batch_size, p.device, eval_progress)


def score(p: Prepared, eval_progress: EvalProgressFn | None = None) -> tuple[float, float]:
    """(the task metric, e.g. accuracy or perplexity, mean task loss) of `score_all`."""
    scores = score_all(p, eval_progress)
    return scores.value, scores.loss


def save_adapter(p: Prepared, folder: str | Path) -> None:
    """Write the PEFT adapter (loadable with `PeftModel.from_pretrained`)."""
    p.model.save_pretrained(str(folder))


def fit(
    cfg: TrialConfig,
    progress: ProgressFn | None = None,
    adapter_dir: str | Path | None = None,
    eval_progress: EvalProgressFn | None = None,
) -> TrialResult:
    """Run one trial. Every failure (out of memory, non-finite loss, a broken model or data) comes back as a
    result with status failed and the reason; callers check configs up front with `checks.preflight`."""
    prepared = None
    try:
        prepared = prepare(cfg)
        train(prepared, progress)
        evaluate(prepared, eval_progress)
        if adapter_dir is not None:
            save_adapter(prepared, adapter_dir)
        return prepared.result
    except Exception as exc:  # noqa: BLE001 - every trial failure is recorded, not lost
        result = (
            prepared.result
            if prepared is not None
            else TrialResult(
                task=cfg.task.name, model=cfg.model.name, config_id=cfg.config_id, versions=versions()
            )
        )
        result.status = TrialStatus.FAILED
        result.error = _reason(exc)
        if os.environ.get("RANKBITS_DEBUG"):
            traceback.print_exc()
        return result
    finally:
        prepared = None  # the model, optimizer and batches go before the next trial in this process
        release_device_memory()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = exc.__class__.__name__
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return f"out of memory: {text[:300]}"
    return f"{name}: {text[:300]}" if not isinstance(exc, TrialFailed) else text[:300]
