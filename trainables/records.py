"""One flat row per trial: the shape of `experiment_summary.csv`, Tune's reported metrics and analysis frames.

A record is built from the trial's `TrialConfig` and `TrialResult`; list-valued fields become comma-joined strings
("8,4,4,4,4,8") so that the CSV stays one row per trial.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from trainables.columns import COLUMNS, Column, summary_columns
from trainables.config import TrialConfig, config_key
from trainables.precisions import quantization_label
from trainables.result import TrialResult, TrialStatus

SUMMARY_COLUMNS = summary_columns()
"""The summary CSV's columns at import (`trainables.columns` is the table; `summary_columns()` reads it live)."""


def _join(values: list[Any]) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


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


UNMEASURED_WHEN_PARTIAL = tuple(c.name for c in COLUMNS if c.blank_when_partial)
"""Columns a stopped or interrupted trial never measured (`Column.blank_when_partial`): blank in its row, not 0."""


def flatten(trial_id: str, cfg: TrialConfig, result: TrialResult) -> dict[str, Any]:
    """The trial's row: one value per summary column of `trainables.columns`, read from the column's `source`
    (lists comma-joined, enums as their value, missing text as "")."""
    row = {c.name: _value(c, trial_id, cfg, result) for c in COLUMNS if c.summary}
    if result.status in (TrialStatus.STOPPED, TrialStatus.INTERRUPTED):
        row.update({c.name: None for c in COLUMNS if c.summary and c.blank_when_partial and not row[c.name]})
    return row


DERIVED: dict[str, Callable[[str, TrialConfig, TrialResult], Any]] = {
    "trial_id": lambda trial_id, cfg, result: trial_id,
    "config_key": lambda trial_id, cfg, result: config_key(cfg),
    "quantization": lambda trial_id, cfg, result: (
        quantization_label(result.bits_per_layer) if result.bits_per_layer else _planned_quant(cfg)
    ),
    "lora_strategy": lambda trial_id, cfg, result: lora_strategy(cfg),
    "mean_bits": lambda trial_id, cfg, result: mean_bits(result),
    "compute_dtype": lambda trial_id, cfg, result: result.compute_dtype or cfg.training.compute_dtype,
}
"""Row values computed from the trial (columns with `source="derived"`)."""


def _value(column: Column, trial_id: str, cfg: TrialConfig, result: TrialResult) -> Any:
    value: Any
    if column.source == "derived":
        value = DERIVED[column.name](trial_id, cfg, result)
    elif column.source and column.source.startswith("config."):
        value = cfg
        for part in column.source.split(".")[1:]:
            value = getattr(value, part)
    else:
        value = getattr(result, column.source or column.name)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return _join(value)
    if value is None and column.dtype == "string":
        return ""
    return value


def _planned_quant(cfg: TrialConfig) -> str:
    q = cfg.quantization
    kinds = sorted({q.default_bits, *q.layer_bits.values()}, reverse=True)
    return quantization_label(kinds)
