"""Budgeted allocation without training: bits per block under a weight-memory or peak budget, and LoRA ranks per
block under a trainable-parameter budget, from a measured `sensitivity.SensitivityTable`.

Both are multiple-choice knapsacks (one option per block, one budget) solved exactly as a small integer program
with `scipy.optimize.milp` (HiGHS, relative gap 0), as LQ-LoRA (Guo et al. 2024) allocates its quantization
configurations under a memory budget:

- **bits**: minimize sum_i KL_i(b_i) subject to the model's weight bytes <= budget. KL_i(b) is the measured damage
  of block i alone at b bits; summing them assumes the blocks' damages add up, the same first-order assumption as
  LQ-LoRA's and HAWQ-V3's layer-wise sums. Weight bytes are exact (`quantize.formula_bytes` for every block linear,
  plus everything else in the compute dtype, as `memory.estimate` counts them). Options: the widths the table
  measured (4 and 8 by default).
- **peak**: the same with the predicted training peak (`predict.predict_peak`) as the budget; the non-weight
  part of the peak barely depends on the bits, so the weight budget is the peak budget minus that part, tightened by
  any excess and solved again (at most `PEAK_ROUNDS` times).
- **ranks**: maximize sum_i gain_i(r_i) subject to the LoRA parameter count <= budget, where gain_i(r) is the
  gradient energy a rank-r update of block i captures (`BlockSensitivity.gain`: the first r squared singular values
  of the calibration mean gradient, summed over the block's targets; by Eckart-Young the first-order loss decrease
  of one gradient step restricted to rank r). It is concave in r because singular values come sorted. A rank-r
  block costs r x (sum of in + out widths of its targets) parameters (`memory.adapter_param_count`), the
  classification head counted once beside them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from trainables.errors import ConfigError
from trainables.memory import MB, ArchSpec

RANK_CHOICES = (0, 2, 4, 8, 12, 16, 24, 32)
"""Ranks per block `allocate_ranks` chooses from by default (0 = no adapter on the block)."""
PEAK_ROUNDS = 6


@dataclass(frozen=True)
class Allocation:
    """One option per block and what it costs."""

    kind: str
    """`bits` or `ranks`."""
    choices: list[int]
    """Per block: the bit width or the rank."""
    objective: float
    """Summed KL (bits, nats) or summed captured gradient energy (ranks)."""
    used: float
    """Bytes (bits: weight bytes, or the predicted peak for a peak budget) or parameters (ranks)."""
    budget: float
    """The budget in the same unit as `used`."""

    def set_line(self) -> str:
        """The `--set` flags that apply this allocation in `rankbits run` / `grid` / `plan`."""
        pairs = ",".join(f"{i}:{c}" for i, c in enumerate(self.choices))
        if self.kind == "bits":
            return f"--set quantization.layer_bits={pairs}"
        return f"--set adapter.method=lora --set adapter.layer_ranks={pairs}"


def solve_mckp(values: list[list[float]], weights: list[list[float]], budget: float) -> list[int]:
    """Exact multiple-choice knapsack: for each group i pick one option j (index into values[i]) minimizing
    sum values[i][j] subject to sum weights[i][j] <= budget; the chosen option index per group.

    An integer program over binary x_ij (sum_j x_ij = 1 per group) for `scipy.optimize.milp` with relative gap 0;
    values are scaled to a largest magnitude of 1 so HiGHS's absolute tolerances stay below the differences.
    Raises ConfigError when even the lightest options exceed the budget (naming the least it takes)."""
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp

    if len(values) != len(weights) or any(len(v) != len(w) or not v for v, w in zip(values, weights)):
        raise ValueError(
            "solve_mckp: values and weights need one non-empty, equally long option list per group"
        )
    least = sum(min(w) for w in weights)
    if least > budget:
        raise ConfigError(f"budget {budget:,.0f} is below the least any choice takes ({least:,.0f})")
    flat_v = np.array([v for group in values for v in group], dtype=float)
    flat_w = np.array([w for group in weights for w in group], dtype=float)
    scale = float(np.abs(flat_v).max()) or 1.0
    n = flat_v.size
    groups = np.zeros((len(values), n))
    start = 0
    for i, group in enumerate(values):
        groups[i, start : start + len(group)] = 1.0
        start += len(group)
    wscale = float(flat_w.max()) or 1.0
    constraints = [
        LinearConstraint(groups, 1.0, 1.0),
        LinearConstraint(flat_w[None, :] / wscale, -np.inf, budget / wscale),
    ]
    res = milp(
        flat_v / scale,
        constraints=constraints,
        integrality=np.ones(n),
        bounds=Bounds(0, 1),
        options={"mip_rel_gap": 0.0},
    )
    if not res.success or res.x is None:  # pragma: no cover - feasibility is checked above
        raise ConfigError(f"budget {budget:,.0f}: the integer program found no allocation ({res.message})")
    chosen = []
    start = 0
    for group in values:
        part = res.x[start : start + len(group)]
        chosen.append(int(np.argmax(part)))
        start += len(group)
    return chosen


def block_weight_bytes(arch: ArchSpec, bits: int, qcfg: Any, compute_bytes: int) -> list[int]:
    """Per block: exact bytes of its linear layers at `bits` (`quantize.formula_bytes`, as `memory.estimate`)."""
    from trainables.quantize import formula_bytes

    half = compute_bytes if compute_bytes == 2 else 2
    return [
        sum(
            formula_bytes(bits, o, k, bias, qcfg.double_quant, half, compute_bytes)[0]
            for _, o, k, bias in block
        )
        for block in arch.block_linears
    ]


def _check_table(table: Any, arch: ArchSpec) -> None:
    if len(table.blocks) != arch.num_layers:
        raise ConfigError(
            f"the sensitivity table has {len(table.blocks)} blocks but the model has {arch.num_layers}; "
            "measure it for this model"
        )


def allocate_bits(
    table: Any,
    arch: ArchSpec,
    qcfg: Any,
    budget_bytes: float,
    compute_bytes: int,
    bits: list[int] | None = None,
) -> Allocation:
    """Bits per block minimizing the summed measured KL with the model's weight bytes <= `budget_bytes`.

    `bits`: the widths to choose from (default: those the table measured); `compute_bytes`: bytes per element of
    the compute dtype (everything outside the block linears is stored in it). Raises ConfigError for a budget below
    every block at the narrowest width (one line, in MB = 2^20 bytes) or a width the table lacks."""
    _check_table(table, arch)
    bits = sorted(bits or table.bits)
    table._need(*bits)
    fixed = arch.other_bytes(compute_bytes)
    per_bits = {b: block_weight_bytes(arch, b, qcfg, compute_bytes) for b in bits}
    values = [[block.kl[b] for b in bits] for block in table.blocks]
    weights = [[per_bits[b][i] for b in bits] for i in range(arch.num_layers)]
    least = fixed + sum(min(w) for w in weights)
    if least > budget_bytes:
        raise ConfigError(
            f"weight budget {budget_bytes / MB:,.1f} MB is below the smallest this model takes "
            f"({least / MB:,.1f} MB with every block at {bits[0]} bits); raise the budget"
        )
    chosen = solve_mckp(values, weights, budget_bytes - fixed)
    choice = [bits[j] for j in chosen]
    used = fixed + sum(weights[i][j] for i, j in enumerate(chosen))
    objective = sum(values[i][j] for i, j in enumerate(chosen))
    return Allocation("bits", choice, objective, float(used), float(budget_bytes))


def allocate_bits_for_peak(
    table: Any,
    cfg: Any,
    arch: ArchSpec,
    peak_budget_bytes: float,
    device_type: str,
    bits: list[int] | None = None,
) -> Allocation:
    """Bits per block minimizing the summed KL with the predicted training peak of `cfg` (`predict.predict_peak`
    on `device_type`, with the allocation as `quantization.layer_bits`) <= `peak_budget_bytes`. `used` is the
    predicted peak in bytes. Raises ConfigError when no allocation fits (one line, in MB)."""
    from trainables.devices import dtype_bytes, resolve_compute_dtype
    from trainables.predict import predict_peak

    e = dtype_bytes(resolve_compute_dtype(cfg.training.compute_dtype, device_type))
    bits = sorted(bits or table.bits)

    def peak(choice: list[int]) -> Any:
        q = dataclasses.replace(cfg.quantization, layer_bits=dict(enumerate(choice)))
        return predict_peak(dataclasses.replace(cfg, quantization=q), device_type, arch)

    lowest = peak([bits[0]] * arch.num_layers)
    if lowest.total > peak_budget_bytes:
        raise ConfigError(
            f"peak budget {peak_budget_bytes / MB:,.1f} MB is below the smallest predicted peak "
            f"({lowest.total / MB:,.1f} MB with every block at {bits[0]} bits); raise it or lower "
            "training.batch_size / seq_len"
        )
    weight_budget = peak_budget_bytes - (lowest.total - lowest.weights)
    for _ in range(PEAK_ROUNDS):
        alloc = allocate_bits(table, arch, cfg.quantization, weight_budget, e, bits)
        est = peak(alloc.choices)
        if est.total <= peak_budget_bytes:
            return dataclasses.replace(alloc, used=float(est.total), budget=float(peak_budget_bytes))
        weight_budget -= est.total - peak_budget_bytes
    fallback = [bits[0]] * arch.num_layers
    values = sum(b.kl[bits[0]] for b in table.blocks)
    return Allocation("bits", fallback, values, float(lowest.total), float(peak_budget_bytes))


def rank_unit_params(arch: ArchSpec, adapter_cfg: Any) -> list[int]:
    """Per block: LoRA parameters per unit of rank, the sum of in + out widths of its adapted modules."""
    from trainables.adapters import target_names

    names = [[n for n, *_ in block] for block in arch.block_linears]
    targets = target_names("b", names, adapter_cfg)
    shapes = {f"b.{i}.{n}": (o, k) for i, block in enumerate(arch.block_linears) for n, o, k, _ in block}
    return [sum(shapes[t][0] + shapes[t][1] for t in layer) for layer in targets]


def allocate_ranks(
    table: Any,
    arch: ArchSpec,
    adapter_cfg: Any,
    budget_params: int,
    ranks: tuple[int, ...] = RANK_CHOICES,
) -> Allocation:
    """LoRA rank per block maximizing the summed captured gradient energy (`BlockSensitivity.gain`) with the
    trainable parameters (LoRA matrices plus the classification head, as `memory.adapter_param_count`) <=
    `budget_params`. Raises ConfigError for a table without gradient signals, or a budget that leaves no block an
    adapter (one line)."""
    _check_table(table, arch)
    if any(not b.spectrum for b in table.blocks):
        raise ConfigError(
            "the sensitivity table has no gradient signals; measure it with --grad-examples > 0"
        )
    ranks = tuple(sorted(set(ranks)))
    unit = rank_unit_params(arch, adapter_cfg)
    available = budget_params - arch.head_params
    smallest = min(r for r in ranks if r > 0) * min(u for u in unit if u > 0) if any(unit) else 0
    if not any(unit) or available < smallest:
        raise ConfigError(
            f"parameter budget {budget_params:,} leaves no block an adapter (the smallest rank "
            f"{min(r for r in ranks if r > 0)} on one block takes {smallest + arch.head_params:,}); raise it"
        )
    values = [[-block.gain(r) for r in ranks] for block in table.blocks]
    weights = [[r * u for r in ranks] for u in unit]
    chosen = solve_mckp(values, weights, available)
    choice = [ranks[j] for j in chosen]
    used = arch.head_params + sum(r * u for r, u in zip(choice, unit))
    objective = sum(block.gain(r) for block, r in zip(table.blocks, choice))
    return Allocation("ranks", choice, objective, float(used), float(budget_params))
