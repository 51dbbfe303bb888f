"""`rankbits allocate`: bits per block under a weight-memory or peak budget, and LoRA ranks per block under a
trainable-parameter budget, chosen without training from the measured sensitivity table (exact integer programs,
`trainables.allocation`). Prints each allocation as a `--set` line to paste into `rankbits run`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from search.sensitivity_cmd import add_model_flags, config_of, settings_of, table_for
from trainables.errors import ConfigError

MB = 1024 * 1024


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "allocate",
        help="bits / ranks per block under a memory or parameter budget, from measured sensitivity (no training)",
    )
    add_model_flags(p)
    p.add_argument(
        "--weight-budget-mb", type=float, default=None, help="weight memory budget in MB (2^20 bytes)"
    )
    p.add_argument(
        "--peak-budget-mb",
        type=float,
        default=None,
        help="predicted training peak budget in MB (the training settings of the grid's B-Q4 for the task, "
        "changed with --set)",
    )
    p.add_argument(
        "--param-budget",
        default=None,
        help="trainable parameter budget for the ranks: a number, or `grid` for the grid's LoRA r=8 count",
    )
    p.add_argument(
        "--ranks", default=None, help="ranks to choose from per block (default: 0,2,4,8,12,16,24,32)"
    )
    p.add_argument(
        "--device", choices=("cpu", "cuda", "mps"), default=None, help="device of the peak prediction"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(handler=handle)


def _ranks(text: str | None) -> tuple[int, ...]:
    from trainables.allocation import RANK_CHOICES

    if text is None:
        return RANK_CHOICES
    try:
        ranks = tuple(sorted({int(r) for r in text.split(",") if r.strip()}))
    except ValueError:
        raise ConfigError(f"--ranks {text!r}: give a comma list of ranks like 0,4,8,16") from None
    if not ranks or min(ranks) < 0 or max(ranks) <= 0:
        raise ConfigError(f"--ranks {text!r}: ranks must be >= 0 with at least one > 0")
    return ranks


def handle(args: argparse.Namespace) -> int:
    from search.resources import detect_device
    from spaces.grid import critical_layers, grid_config
    from trainables import allocation
    from trainables.devices import dtype_bytes, resolve_compute_dtype
    from trainables.memory import adapter_param_count
    from trainables.predict import arch_of

    if args.weight_budget_mb is None and args.peak_budget_mb is None and args.param_budget is None:
        raise ConfigError("give --weight-budget-mb, --peak-budget-mb and / or --param-budget")
    for flag, value in (
        ("--weight-budget-mb", args.weight_budget_mb),
        ("--peak-budget-mb", args.peak_budget_mb),
    ):
        if value is not None and value <= 0:
            raise ConfigError(f"{flag} {value:g}: must be > 0")
    ranks = _ranks(args.ranks)
    cfg = config_of(args)
    arch = arch_of(cfg)
    base = grid_config("B-Q4", cfg.task.name, cfg.model.name, arch.num_layers, data_dir=cfg.task.data_dir)
    base = base.with_overrides(args.overrides) if args.overrides else base
    budget_params = None
    if args.param_budget is not None:
        if args.param_budget == "grid":
            budget_params = adapter_param_count(arch, base)
        else:
            try:
                budget_params = int(float(args.param_budget))
            except ValueError:
                raise ConfigError(f"--param-budget {args.param_budget!r}: give a number or `grid`") from None
            if budget_params <= 0:
                raise ConfigError(f"--param-budget {budget_params}: must be > 0")
    device = args.device or detect_device(None).kind
    settings = dataclasses.replace(settings_of(args), by_kind=False)  # the allocation reads whole blocks
    e = dtype_bytes(resolve_compute_dtype(cfg.training.compute_dtype, device))
    if args.weight_budget_mb is not None:  # refused before minutes of measuring
        least = arch.other_bytes(e) + sum(
            allocation.block_weight_bytes(arch, min(settings.bits), cfg.quantization, e)
        )
        if least > args.weight_budget_mb * MB:
            raise ConfigError(
                f"--weight-budget-mb {args.weight_budget_mb:g}: below the smallest this model takes "
                f"({least / MB:,.1f} MB with every block at {min(settings.bits)} bits); raise the budget"
            )
    table = table_for(cfg, settings, use_cache=not args.no_cache)
    out: dict[str, Any] = {
        "model": cfg.model.name,
        "task": cfg.task.name,
        "device": device,
        "allocations": [],
    }
    lines = [f"rankbits allocate: {cfg.model.name} on {cfg.task.name} (MB = 2^20 bytes)"]
    rule = set(critical_layers(arch.num_layers))
    low, high = table.bits[0], table.bits[-1]
    reference = {
        f"uniform {low}-bit": sum(b.kl[low] for b in table.blocks),
        f"rule ({len(rule)} blocks at {high})": sum(
            b.kl[high if b.index in rule else low] for b in table.blocks
        ),
    }
    bit_allocs = []
    if args.weight_budget_mb is not None:
        bit_allocs.append(
            ("weight", allocation.allocate_bits(table, arch, cfg.quantization, args.weight_budget_mb * MB, e))
        )
    if args.peak_budget_mb is not None:
        bit_allocs.append(
            ("peak", allocation.allocate_bits_for_peak(table, base, arch, args.peak_budget_mb * MB, device))
        )
    for what, alloc in bit_allocs:
        lines += [
            "",
            f"bits under a {what} budget of {alloc.budget / MB:,.1f} MB: {what} {alloc.used / MB:,.1f} MB, "
            f"summed KL {alloc.objective:.4g} nats ("
            + ", ".join(f"{k}: {v:.4g}" for k, v in reference.items())
            + ")",
            "  bits per block: " + " ".join(map(str, alloc.choices)),
            "  " + alloc.set_line(),
        ]
        out["allocations"].append(
            {"budget": what, **alloc.__dict__, "set": alloc.set_line(), "reference_kl": reference}
        )
    if budget_params is not None:
        alloc = allocation.allocate_ranks(table, arch, base.adapter, budget_params, ranks)
        uniform = sum(b.gain(base.adapter.r) for b in table.blocks)
        lines += [
            "",
            f"ranks under {budget_params:,} trainable parameters: {int(alloc.used):,} used, captured gradient "
            f"energy {alloc.objective:.4g} (uniform r={base.adapter.r}: {uniform:.4g})",
            "  ranks per block: " + " ".join(map(str, alloc.choices)),
            "  " + alloc.set_line(),
        ]
        out["allocations"].append({"budget": "params", **alloc.__dict__, "set": alloc.set_line()})
    print(json.dumps(out, indent=1) if args.json else "\n".join(lines))
    sys.stdout.flush()
    return 0
