"""One flat row per trial: the shape of `experiment_summary.csv`, Tune's reported metrics and analysis frames.

A record is built from the trial's `TrialConfig` and `TrialResult`; list-valued fields become comma-joined strings
("8,4,4,4,4,8") so that the CSV stays one row per trial.
"""

from __future__ import annotations

from typing import Any

from trainables.config import TrialConfig
from trainables.result import TrialResult, TrialStatus

SUMMARY_COLUMNS = [
    "trial_id",
    "config_id",
    "task",
    "model",
    "seed",
    "method",
    "quantization",
    "lora_strategy",
    "status",
    "error",
    "accuracy",
    "perplexity",
    "macro_f1",
    "num_classes",
    "eval_loss",
    "trainable_params",
    "total_params",
    "trainable_pct",
    "peak_memory_mb",
    "peak_load_memory_mb",
    "weight_memory_mb",
    "adapter_memory_mb",
    "predicted_peak_mb",
    "train_time_s",
    "tokens_per_s",
    "steps",
    "bits_per_layer",
    "mean_bits",
    "ranks_per_layer",
    "total_rank",
    "initial_total_rank",
    "lr",
    "batch_size",
    "seq_len",
    "compute_dtype",
    "gradient_checkpointing",
    "device",
    "memory_measure",
    "data_note",
    "perplexity_convention",
]


def _join(values: list[Any]) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def quantization_label(bits: list[int]) -> str:
    """'fp32', 'fp16/bf16', 'nf4', 'int8' for uniform bits; 'mixed 8/4' and the like otherwise."""
    names = {32: "fp32", 16: "16-bit", 8: "int8", 4: "nf4"}
    kinds = sorted(set(bits), reverse=True)
    if len(kinds) == 1:
        return names[kinds[0]]
    return "mixed " + "/".join(str(k) for k in kinds)


def lora_strategy(cfg: TrialConfig) -> str:
    a = cfg.adapter
    if a.method == "adalora":
        return f"adaptive {a.init_r}->{a.target_r}"
    if a.layer_ranks and len(set(a.layer_ranks.values()) | {a.r}) > 1:
        return "per-layer ranks"
    return f"fixed r={a.r}"


def mean_bits(result: TrialResult) -> float | None:
    """Weight-count-weighted mean effective bits per weight over the blocks' linear layers."""
    sizes = result.layer_weight_bytes
    bpw = result.bits_per_weight_per_layer
    if not bpw or not sizes:
        return None
    weights = [8 * b / x if x else 0 for b, x in zip(sizes, bpw)]  # weights per layer from bytes and bits
    total = sum(weights)
    return round(sum(w * x for w, x in zip(weights, bpw)) / total, 4) if total else None


UNMEASURED_WHEN_PARTIAL = (
    "trainable_params",
    "total_params",
    "trainable_pct",
    "weight_memory_mb",
    "adapter_memory_mb",
    "train_time_s",
    "tokens_per_s",
    "total_rank",
    "initial_total_rank",
)
"""Columns a stopped or interrupted trial never measured: blank in its row, not 0."""


def flatten(trial_id: str, cfg: TrialConfig, result: TrialResult) -> dict[str, Any]:
    row = _flatten(trial_id, cfg, result)
    if result.status in (TrialStatus.STOPPED, TrialStatus.INTERRUPTED):
        row.update({c: None for c in UNMEASURED_WHEN_PARTIAL if not row[c]})
    return row


def _flatten(trial_id: str, cfg: TrialConfig, result: TrialResult) -> dict[str, Any]:
    bits = result.bits_per_layer
    return {
        "trial_id": trial_id,
        "config_id": cfg.config_id or "",
        "task": cfg.task.name,
        "model": cfg.model.name,
        "seed": cfg.training.seed,
        "method": cfg.adapter.method,
        "quantization": quantization_label(bits) if bits else _planned_quant(cfg),
        "lora_strategy": lora_strategy(cfg),
        "status": result.status.value,
        "error": result.error or "",
        "accuracy": result.accuracy,
        "perplexity": result.perplexity,
        "macro_f1": result.macro_f1,
        "num_classes": result.num_classes,
        "eval_loss": result.eval_loss,
        "trainable_params": result.trainable_params,
        "total_params": result.total_params,
        "trainable_pct": result.trainable_pct,
        "peak_memory_mb": result.peak_memory_mb,
        "peak_load_memory_mb": result.peak_load_memory_mb,
        "weight_memory_mb": result.weight_memory_mb,
        "adapter_memory_mb": result.adapter_memory_mb,
        "predicted_peak_mb": result.predicted_peak_mb,
        "train_time_s": result.train_time_s,
        "tokens_per_s": result.tokens_per_s,
        "steps": result.steps,
        "bits_per_layer": _join(bits),
        "mean_bits": mean_bits(result),
        "ranks_per_layer": _join(result.ranks_per_layer),
        "total_rank": result.total_rank,
        "initial_total_rank": result.initial_total_rank,
        "lr": cfg.training.lr,
        "batch_size": cfg.training.batch_size,
        "seq_len": cfg.training.seq_len,
        "compute_dtype": result.compute_dtype or cfg.training.compute_dtype,
        "gradient_checkpointing": cfg.training.gradient_checkpointing,
        "device": result.device,
        "memory_measure": result.memory_measure,
        "data_note": result.data_note,
        "perplexity_convention": result.perplexity_convention,
    }


def _planned_quant(cfg: TrialConfig) -> str:
    q = cfg.quantization
    kinds = sorted({q.default_bits, *q.layer_bits.values()}, reverse=True)
    return quantization_label(kinds)
