"""The fixed six-config grid of the research plan, as functions of the model's layer count.

| id      | method  | weights                                   | LoRA                    |
|---------|---------|-------------------------------------------|-------------------------|
| B-FP    | LoRA    | 16-bit                                    | fixed r=8               |
| B-Q4    | QLoRA   | 4-bit NF4 + double quant                  | fixed r=8               |
| B-Ada   | AdaLoRA | 16-bit                                    | adaptive 12 -> 4        |
| Joint-1 | AdaLoRA | 4-bit                                     | adaptive 12 -> 4        |
| Joint-2 | AdaLoRA | mixed: critical layers 8-bit, others 4-bit | adaptive 12 -> 4       |
| Joint-3 | LoRA    | mixed 8/4-bit (same critical layers)      | manual per-layer ranks  |

**Critical layers** (`critical_layers`): the first and the last ceil(L/12) transformer blocks (for a 6-layer MiniLM:
blocks 0 and 5, bits "8,4,4,4,4,8"; for 30-layer SmolLM2: blocks 0-2 and 27-29). Why: quantization-sensitivity
studies of transformers (LLM.int8(), outlier-aware and mixed-precision work such as OWQ / SqueezeLLM, and
layer-pruning studies) consistently find the first blocks (which turn raw embeddings into the residual stream and
where outlier features appear) and the last blocks (which feed the head directly, with no later layer to correct
their error) the most sensitive to weight error, while middle blocks tolerate 4 bits best.
With `quantization.critical=sensitivity` the same number of blocks is chosen by measurement instead
(`critical_layers(num_layers, ranking)` with the measured order of `trainables.sensitivity`): the most sensitive
blocks, so the bytes stay those of the rule.

**Joint-3's manual ranks** (`manual_ranks`): the same average rank as B-FP (8) moved towards the top of the network:
the lower third of the blocks gets r=4, the middle third r=8, the upper third r=12 (MiniLM: 4,4,8,8,12,12). AdaLoRA's
own allocations give the top blocks the most rank, so Joint-3 tests that finding with a fixed, free-to-compute
pattern at equal trainable-parameter budget.
"""

from __future__ import annotations

import math
from typing import Any

from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.tasks import TASKS, get_task

GRID_IDS = ("B-FP", "B-Q4", "B-Ada", "Joint-1", "Joint-2", "Joint-3")

# The research grid's fixed hyperparameters and model presets per task live in each task's spec
# (`trainables.tasks`, `TaskSpec.training` / `.model`); these are the old names, read from it at import.
TASK_TRAINING: dict[str, dict[str, Any]] = {name: dict(spec.training) for name, spec in TASKS.items()}
TASK_MODELS = {name: spec.model for name, spec in TASKS.items()}
# AdaLoRA starts its singular values at zero with P, Q ~ N(0, 0.02), so its update grows far slower than LoRA's at
# the same learning rate: at LoRA's 1e-3 it stayed at chance on SST-2 after 150 steps, at 5x it reached 0.79-0.81
# (orthogonality weight 0.1, the AdaLoRA paper's GLUE value).
ADALORA_LR_FACTOR = 5.0
ADALORA_ORTH_REG = 0.1


def critical_layers(num_layers: int, ranking: list[int] | None = None) -> list[int]:
    """First and last ceil(L/12) blocks; with `ranking` (block indices, most sensitive first, as
    `SensitivityTable.ranking`), that many of its first blocks instead. Sorted block indices."""
    k = max(1, math.ceil(num_layers / 12))
    rule = sorted(set(range(k)) | set(range(max(0, num_layers - k), num_layers)))
    if ranking is None:
        return rule
    if sorted(ranking) != list(range(num_layers)):
        raise ConfigError(
            f"sensitivity ranking {ranking} is not an order of the model's {num_layers} blocks; measure it for "
            "this model"
        )
    return sorted(ranking[: len(rule)])


def manual_ranks(num_layers: int, mean_rank: int = 8) -> dict[int, int]:
    """Joint-3's ranks: mean_rank/2 for the lower third, mean_rank for the middle, 1.5x for the upper third."""
    out = {}
    for i in range(num_layers):
        third = min(2, 3 * i // num_layers)
        out[i] = (mean_rank // 2, mean_rank, mean_rank * 3 // 2)[third]
    return out


def mixed_bits(num_layers: int, ranking: list[int] | None = None) -> dict[int, int]:
    return {i: 8 for i in critical_layers(num_layers, ranking)}


MIXED_IDS = ("Joint-2", "Joint-3")
"""The grid configs with 8-bit critical blocks (the ones `quantization.critical` changes)."""


def grid_overrides(
    config_id: str, num_layers: int, ranking: list[int] | None = None
) -> dict[str, dict[str, Any]]:
    """The quantization and adapter sections that define a grid config (`ranking`: see `critical_layers`)."""
    adalora = {
        "method": "adalora",
        "init_r": 12,
        "target_r": 4,
        "alpha": 16.0,
        "orth_reg_weight": ADALORA_ORTH_REG,
    }
    lora = {"method": "lora", "r": 8, "alpha": 16.0}
    critical = "rule" if ranking is None else "sensitivity"
    mixed = {"default_bits": 4, "layer_bits": mixed_bits(num_layers, ranking), "critical": critical}
    table: dict[str, dict[str, dict[str, Any]]] = {
        "B-FP": {"quantization": {"default_bits": 16}, "adapter": lora},
        "B-Q4": {"quantization": {"default_bits": 4, "double_quant": True}, "adapter": lora},
        "B-Ada": {"quantization": {"default_bits": 16}, "adapter": adalora},
        "Joint-1": {"quantization": {"default_bits": 4}, "adapter": adalora},
        "Joint-2": {"quantization": dict(mixed), "adapter": adalora},
        "Joint-3": {
            "quantization": dict(mixed),
            "adapter": {**lora, "layer_ranks": manual_ranks(num_layers)},
        },
    }
    if config_id not in table:
        raise ConfigError(f"unknown config id {config_id!r}; choose one of {', '.join(GRID_IDS)}")
    return table[config_id]


def grid_config(
    config_id: str,
    task: str,
    model: str,
    num_layers: int,
    seed: int = 0,
    data_dir: str | None = None,
    max_steps: int | None = None,
    ranking: list[int] | None = None,
) -> TrialConfig:
    """The TrialConfig of one grid cell (training defaults of the task's spec; `--set` overrides come after). `ranking`:
    the measured sensitivity order that places Joint-2 / Joint-3's 8-bit blocks (see `critical_layers`)."""
    parts = grid_overrides(config_id, num_layers, ranking)
    training = dict(get_task(task).training, seed=seed)
    if parts["adapter"]["method"] == "adalora":
        training["lr"] *= ADALORA_LR_FACTOR
    if max_steps is not None:
        training["max_steps"] = max_steps
    return TrialConfig.from_dict(
        {
            "config_id": config_id,
            "task": {"name": task, "data_dir": data_dir},
            "model": {"name": model},
            "quantization": parts["quantization"],
            "adapter": parts["adapter"],
            "training": training,
        }
    )


def parse_config_ids(text: str) -> list[str]:
    ids = [c.strip() for c in text.split(",") if c.strip()]
    for c in ids:
        if c not in GRID_IDS:
            raise ConfigError(f"unknown config id {c!r}; choose from {', '.join(GRID_IDS)}")
    if not ids:
        raise ConfigError(f"--configs is empty; choose from {', '.join(GRID_IDS)}")
    return ids
