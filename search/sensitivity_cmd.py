"""`rankbits sensitivity`: each block's measured quantization damage and rank importance, as a table, JSON or plot.

The measurement is `trainables.sensitivity.measure_sensitivity` (output KL divergence to the unquantized model with
only that block, or one module kind of it, at 4 / 8 bits; gradient signals of the adaptable weights), cached per
model, task, data sample and settings. `sensitivity_ranking` is what `quantization.critical=sensitivity` uses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from search.common import add_data_flag, add_set_flag, apply_overrides, seed_arg
from trainables.config import TASKS, TrialConfig
from trainables.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sensitivity",
        help="per-block damage of 4 / 8-bit weights (KL to the unquantized model) and rank importance (minutes)",
    )
    add_model_flags(p)
    p.add_argument("--plot", default=None, metavar="OUT.png", help="also draw the table into this image")
    p.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of a table")
    p.set_defaults(handler=handle)


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """--model, --task, the calibration settings, --no-cache, --data-dir and --set (shared with `allocate`)."""
    p.add_argument("--model", required=True, help="preset, hub id or model folder")
    p.add_argument("--task", default="sst2", help=f"task: {', '.join(TASKS)}")
    p.add_argument(
        "--examples",
        type=int,
        default=None,
        help="calibration examples (default: 4 WikiText-2 blocks of 128 tokens, or 64 SST-2 sentences)",
    )
    p.add_argument("--seq-len", type=int, default=None, help="tokens per calibration example (default: 128)")
    p.add_argument(
        "--grad-examples",
        type=int,
        default=None,
        help="examples for the gradient signals (default: 4 WikiText-2 / 16 SST-2; 0: skip)",
    )
    p.add_argument(
        "--seed", type=seed_arg, default=0, help="which calibration sample (a seeded draw of training data)"
    )
    p.add_argument("--bits", default="4,8", help="bit widths to measure, comma list of 4, 8, 16, 32")
    p.add_argument(
        "--no-kinds", action="store_true", help="skip the attention / MLP measurements (3x faster)"
    )
    p.add_argument("--no-cache", action="store_true", help="measure again even if a cached table exists")
    add_data_flag(p)
    add_set_flag(p)


def settings_of(args: argparse.Namespace) -> Any:
    from trainables.sensitivity import SensitivitySettings

    try:
        bits = tuple(int(b) for b in args.bits.split(",") if b.strip())
    except ValueError:
        raise ConfigError(f"--bits {args.bits!r}: give a comma list like 4,8") from None
    return SensitivitySettings(
        examples=args.examples,
        seq_len=args.seq_len,
        grad_examples=args.grad_examples,
        seed=args.seed,
        bits=bits,
        by_kind=not args.no_kinds,
    )


def config_of(args: argparse.Namespace) -> TrialConfig:
    """The TrialConfig naming model, task, data and settings; ConfigError (one line) for an unknown task or a
    model whose config cannot be found."""
    from trainables.models import count_layers

    if args.task not in TASKS:
        raise ConfigError(f"--task {args.task!r}: unknown task; choose one of {', '.join(TASKS)}")
    cfg = TrialConfig.from_dict(
        {"task": {"name": args.task, "data_dir": args.data_dir}, "model": {"name": args.model}}
    )
    cfg = apply_overrides(cfg, args.overrides)
    count_layers(cfg.model)  # a model that cannot be found fails here, in one line
    return cfg


def _progress(done: int, total: int, what: str) -> None:
    print(f"rankbits sensitivity: {done}/{total} {what}", file=sys.stderr, flush=True)


def table_for(cfg: TrialConfig, settings: Any, use_cache: bool, quiet: bool = False) -> Any:
    """The measured (or cached) table; says on stderr which it is."""
    from trainables.checks import position_limit
    from trainables.models import load_config
    from trainables.sensitivity import load_or_measure

    limit = position_limit(load_config(cfg.model))
    seq_len = settings.resolved(cfg.task.name).seq_len
    if limit is not None and seq_len > limit[1]:
        raise ConfigError(
            f"--seq-len {seq_len}: model {cfg.model.name!r} takes at most {limit[1]} tokens (config {limit[0]}); "
            f"use --seq-len <= {limit[1]}"
        )
    if not quiet:
        print(
            f"rankbits sensitivity: {cfg.model.name} on {cfg.task.name} (cached after the first run)",
            file=sys.stderr,
        )
    table, cached = load_or_measure(cfg, settings, use_cache, None if quiet else _progress)
    if not quiet:
        print(
            f"rankbits sensitivity: {'from the cache' if cached else f'measured in {table.seconds:.0f} s'}",
            file=sys.stderr,
        )
    return table


_RANKINGS: dict[tuple[Any, ...], list[int]] = {}


def sensitivity_ranking(cfg: TrialConfig) -> list[int]:
    """The block order (most sensitive first, by the KL saved going from 4 to 8 bits) of `cfg`'s model and task,
    from the cached table or measured now with the default calibration sample, without module kinds. One
    ranking per model and task for every seed (measured with training.seed 0), so configs stay comparable."""
    from trainables.sensitivity import SensitivitySettings

    base = cfg.with_overrides({"training.seed": 0})
    key = (base.model.name, base.model.cache_dir, base.task.name, base.task.data_dir, base.training.device)
    if key not in _RANKINGS:
        table = table_for(base, SensitivitySettings(by_kind=False), use_cache=True)
        _RANKINGS[key] = table.ranking()
    return _RANKINGS[key]


def place_critical(cfg: TrialConfig, build: Any, overrides: list[str]) -> TrialConfig:
    """`cfg` itself, unless it is Joint-2 / Joint-3 with `quantization.critical=sensitivity`: then the grid cell
    rebuilt by `build(ranking=...)` with the measured order (`sensitivity_ranking`), `overrides` applied again."""
    from spaces.grid import MIXED_IDS

    if cfg.config_id not in MIXED_IDS or cfg.quantization.critical != "sensitivity":
        return cfg
    return apply_overrides(build(ranking=sensitivity_ranking(cfg)), overrides)


def table_text(table: Any) -> str:
    """The table as aligned text: one row per block, KL in nats per predicted token / sentence."""
    from trainables.tasks import get_task

    df = table.frame()
    lines = [
        f"rankbits sensitivity: {table.model} on {table.task}, {table.tokens} predicted "
        f"{'tokens' if get_task(table.task).head_kind == 'causal_lm' else 'rows'} ({table.data_note}), seed "
        f"{table.settings['seed']}, {table.settings['compute_dtype']} on {table.settings['device']}",
        "KL = mean KL divergence to the unquantized model (nats) with only that block (or kind) quantized; "
        "importance = squared gradient norm of its adaptable weights; rank 1 = most sensitive",
        "",
    ]
    header = ["block", *df.columns]
    rows = [header]
    for index, row in df.iterrows():
        cells = [str(index)]
        for col in df.columns:
            value = row[col]
            cells.append(
                "-"
                if value is None or value != value
                else (f"{int(value)}" if col == "rank" else f"{value:.3g}")
            )
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    if len(table.bits) >= 2:
        lines += ["", f"most sensitive first: {' '.join(map(str, table.ranking()))}"]
    return "\n".join(lines)


def plot_table(table: Any, path: str) -> None:
    """Draw KL per block at each width (log scale) and the importance per block; writes `path`."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = table.frame()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(6, 0.3 * len(df) + 3), 6), sharex=True)
    for bits in table.bits:
        ax1.plot(df.index, df[f"kl{bits}"], marker="o", label=f"block at {bits} bits")
        for kind in table.kinds:
            ax1.plot(df.index, df[f"{kind}_kl{bits}"], ls="--", alpha=0.6, label=f"{kind} at {bits} bits")
    ax1.set_yscale("log")
    ax1.set_ylabel("KL to unquantized (nats)")
    ax1.legend(fontsize=7)
    ax1.set_title(f"{table.model} on {table.task}: layer sensitivity")
    if df["importance"].notna().all():
        ax2.bar(df.index, df["importance"])
    ax2.set_ylabel("gradient norm^2 (importance)")
    ax2.set_xlabel("block")
    ax2.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # blocks are whole numbers
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def handle(args: argparse.Namespace) -> int:
    cfg = config_of(args)
    settings = settings_of(args)
    if args.plot and not Path(args.plot).resolve().parent.is_dir():  # before minutes of measuring
        raise ConfigError(f"--plot {args.plot!r}: its folder does not exist; create it or give another path")
    table = table_for(cfg, settings, use_cache=not args.no_cache)
    if args.plot:
        plot_table(table, args.plot)
        print(f"rankbits sensitivity: plot written to {args.plot}", file=sys.stderr)
    print(json.dumps(table.to_dict(), indent=1) if args.json else table_text(table))
    return 0
