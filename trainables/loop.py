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

from trainables import adapters, data, metrics, models
from trainables.config import TrialConfig
from trainables.errors import ConfigError, TrialFailed
from trainables.memory import MB, PeakMeter, arch_from_model, estimate, release_device_memory
from trainables.quantize import quantize_model
from trainables.quiet import quiet_libraries
from trainables.result import TrialResult, TrialStatus

ProgressFn = Callable[[dict[str, Any]], None]


def pick_device(name: str) -> torch.device:
    """`auto`: mps, then cuda, then cpu; an explicit device that is not available is a ConfigError."""
    mps_ok = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        if mps_ok:
            return torch.device("mps")
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "mps" and not mps_ok:
        raise ConfigError("training.device: mps is not available on this machine; use auto or cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device: cuda is not available on this machine; use auto or cpu")
    return torch.device(name)


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


def prepare(cfg: TrialConfig) -> Prepared:
    """Everything before the first optimizer step: device, data, model, quantization, adapter."""
    quiet_libraries()
    device = pick_device(cfg.training.device)
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    limit_device_memory(device, cfg.training.memory_fraction)
    seed_everything(cfg.training.seed)
    meter = PeakMeter(device)
    result = TrialResult.of(cfg, device=device.type, versions=versions(), memory_measure=meter.method)
    tokenizer = models.load_tokenizer(cfg.model)
    raw = data.load_raw(cfg.task)
    # Only the SST-2 sentences the run will see are tokenized (epochs need them all).
    needed = None if cfg.training.epochs is not None else cfg.training.max_steps * cfg.training.batch_size
    task_data = data.prepare(
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
    del raw
    result.data_note = task_data.data_note
    steps = total_steps(cfg, len(task_data.train))

    # The module tree on the meta device: the memory prediction, and every import loading needs, before the baseline.
    arch = arch_from_model(models.meta_model(cfg.model, cfg.task.name), causal=cfg.task.name == "wikitext2")
    result.predicted_peak_mb = round(estimate(arch, cfg, device.type).total_mb, 1)
    import bitsandbytes  # noqa: F401
    import peft  # noqa: F401

    meter.set_baseline()
    meter.start_phase()
    t0 = time.perf_counter()
    model = models.load_model(cfg.model, cfg.task.name, tokenizer, seed=cfg.training.seed)
    prefix, blocks = models.find_blocks(model)
    report = quantize_model(model, blocks, cfg.quantization, device)
    base_params = sum(layer.n_weights for layer in report.layers) + sum(
        p.numel() for n, p in _named_unique(model) if not _in_block_linears(n, prefix, report)
    )
    layer_modules = [layer.modules for layer in report.layers]
    seed_everything(cfg.training.seed)  # adapter init independent of the loading path
    model = adapters.attach(model, cfg.adapter, prefix, layer_modules, cfg.task.name, steps)
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
            value = float(loss.item())
            result.loss_curve.append((step, round(value, 5)))
            info: dict[str, Any] = {
                "step": step,
                "train_loss": value,
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
    final = adapters.ranks_by_layer(adapters.active_ranks(model), p.prefix, p.num_layers)
    result.module_ranks = adapters.active_ranks(model)
    result.ranks_per_layer = [_mean(r) for r in final]
    result.total_rank = sum(sum(r) for r in final)


def evaluate(p: Prepared) -> None:
    """The final evaluation: the task metric and loss into the result."""
    start = time.perf_counter()
    value, loss = score(p)
    if p.cfg.task.name == "sst2":
        p.result.accuracy = value
    else:
        p.result.perplexity = value
    p.result.eval_loss = loss
    p.result.eval_time_s = round(time.perf_counter() - start, 3)


@torch.no_grad()
def score(p: Prepared) -> tuple[float, float]:
    """(accuracy or perplexity, mean task loss) on the evaluation data; leaves the model in eval mode."""
    model, td = p.model, p.task_data
    model.eval()
    bs = p.cfg.training.eval_batch_size
    pad = td.train.pad_id
    if p.cfg.task.name == "sst2":
        if td.eval_labels is None:
            raise TrialFailed("SST-2 evaluation data has no labels")
        preds: list[int] = []
        loss_sum = 0.0
        for i in range(0, len(td.eval_ids), bs):
            batch = _to(
                data.collate(td.eval_ids[i : i + bs], td.eval_labels[i : i + bs], pad, causal=False), p.device
            )
            labels = batch.pop("labels")  # the task loss alone (AdaLoRA adds its regulariser to a model loss)
            logits = model(**batch).logits.float()
            loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
            preds.extend(logits.argmax(-1).tolist())
        return metrics.accuracy(preds, td.eval_labels), loss_sum / max(1, len(td.eval_labels))
    nll_sums: list[float] = []
    counts: list[int] = []
    for i in range(0, len(td.eval_ids), bs):
        batch = _to(data.collate(td.eval_ids[i : i + bs], None, pad, causal=True), p.device)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        shift_logits = logits[:, :-1].float()
        shift_labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(
            shift_logits.reshape(-1, shift_logits.size(-1)),
            shift_labels.reshape(-1),
            reduction="none",
            ignore_index=-100,
        ).view(shift_labels.shape)
        valid = shift_labels != -100
        nll_sums.extend((nll * valid).sum(1).tolist())
        counts.extend(valid.sum(1).tolist())
    return metrics.perplexity(nll_sums, counts), sum(nll_sums) / max(1, sum(counts))


def save_adapter(p: Prepared, folder: str | Path) -> None:
    """Write the PEFT adapter (loadable with `PeftModel.from_pretrained`)."""
    p.model.save_pretrained(str(folder))


def fit(
    cfg: TrialConfig, progress: ProgressFn | None = None, adapter_dir: str | Path | None = None
) -> TrialResult:
    """Run one trial. Every failure (out of memory, non-finite loss, a broken model or data) comes back as a
    result with status failed and the reason; callers check configs up front with `checks.preflight`."""
    prepared = None
    try:
        prepared = prepare(cfg)
        train(prepared, progress)
        evaluate(prepared)
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
