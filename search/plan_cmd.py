"""`rankbits plan`: each grid config's predicted training peak, by part, from the model's config alone.

Reads only the model's `config.json` (a folder, a preset or a hub id; no weights: the module tree is built on the
meta device) and asks the one prediction the trials use (`trainables.predict.predict_peak`). For each grid config
and each combination of the settings given with alternatives (`--set training.batch_size=4|8|16`) it prints the
peak split into weights, adapters, optimizer (gradients + AdamW state), activations, logits, overhead; whether it
fits the memory budget (default: the device's usable memory, the budget the grid packs trials into); and the largest
batch size and sequence length that fit. `--measure N` trains N real steps of every row, each in a fresh process,
and prints the measured peak beside the predicted one. No Ray or Optuna import: it answers in seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.common import add_data_flag, add_task_flag, fold_task_data_flags
from spaces.grid import GRID_IDS, grid_config, parse_config_ids
from trainables.config import TrialConfig, resolve_key
from trainables.errors import ConfigError
from trainables.harness import ENV, chosen_mmap_threshold, use_mmap_threshold

MB = 1024 * 1024
PLAN_DEVICES = ("cpu", "cuda", "mps")
ALTERNATIVES = "|"
SEARCH_CAP = 1 << 20
"""Upper end of the largest-batch / longest-sequence searches when the model names no position limit."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan", help="predict each grid config's training peak from the model's config (no weights, seconds)"
    )
    p.add_argument("--model", required=True, help="preset, hub id, model folder or its config.json")
    add_task_flag(p)
    p.add_argument(
        "--configs",
        "--config",
        dest="configs",
        default=",".join(GRID_IDS),
        help=f"comma list of {', '.join(GRID_IDS)} (--configs as in grid; --config is the same flag)",
    )
    p.add_argument(
        "--device", choices=PLAN_DEVICES, default=None, help="device to predict for (default: this machine's)"
    )
    p.add_argument(
        "--memory-gb",
        type=float,
        default=None,
        help="memory budget in GB (2^30 bytes; default: the device's usable memory, as the grid uses)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE[|VALUE...]",
        help="override a setting; alternatives separated by | give one row each, e.g. "
        "'training.batch_size=4|8' (repeatable; rows are every combination)",
    )
    p.add_argument(
        "--measure",
        type=int,
        default=None,
        metavar="N",
        help="also train N steps of each row and measure (SST-2 pads each batch to its longest sentence: at "
        "under ~30 steps no batch is near the longest the plan allows for, and the peak reads low)",
    )
    p.add_argument(
        "--mmap-threshold",
        default=None,
        metavar="BYTES",
        help="plan for (and measure with) trials run with this glibc mmap threshold, as `grid --mmap-threshold` "
        "(262144 or 256K: the CPU resident set tracks live tensors; 0: glibc's default, whose resident set "
        "ratchets with the memory it keeps and is predicted with wider error); default "
        f"${ENV['mmap_threshold']}, else 0",
    )
    add_data_flag(p)
    p.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of a table")
    p.set_defaults(handler=handle)


@dataclass(frozen=True)
class PlanRow:
    """The prediction for one grid config and one combination of the varied settings (sizes in MB = 2^20 B)."""

    config_id: str
    settings: dict[str, str]
    """The varied settings of this row, as given (`training.batch_size` -> "8")."""
    batch_size: int
    seq_len: int
    parts_mb: dict[str, float]
    """weights, adapters, optimizer, activations, logits, overhead (the memory model's parts, in order)."""
    total_mb: float
    fits: bool | None
    """total_mb <= the budget; None without a budget."""
    max_batch_size: int | None
    """Largest batch size (this row's sequence length) that fits; 0: not even 1; None without a budget."""
    max_seq_len: int | None
    """Largest sequence length (this row's batch size) that fits, at most the model's positions; 0: not even 8."""
    measured_mb: float | None = None
    measure_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    model: str
    task: str
    device: str
    budget_mb: float | None
    """The memory budget in MB; None when predicting for another device without `--memory-gb`."""
    rows: list[PlanRow]
    measure: str = ""
    """The memory model's key for what is predicted (`trainables.memory.model_key`: the device, or `cpu-live`
    when CPU trials set an mmap threshold and their resident set tracks live tensors)."""


def split_variants(overrides: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(`--set` assignments applied to every row, [(key, alternatives)] that make one row per combination).

    Raises ConfigError for an assignment without `=` or an unknown key, naming it."""
    fixed: list[str] = []
    varied: list[tuple[str, list[str]]] = []
    for text in overrides:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {text!r}: expected key=value, e.g. training.batch_size=4|8")
        section, name = resolve_key(key.strip())
        if ALTERNATIVES in value:
            options = [v.strip() for v in value.split(ALTERNATIVES)]
            if not all(options):
                raise ConfigError(f"--set {text!r}: an empty alternative; write e.g. {key}=4|8")
            varied.append((f"{section}.{name}", options))
        else:
            fixed.append(text)
    return fixed, varied


def _model_name(text: str) -> str:
    path = Path(text).expanduser()
    return str(path.parent) if path.name == "config.json" and path.is_file() else text


def _read_arch(cfg: TrialConfig) -> Any:
    from trainables.predict import arch_of

    try:
        return arch_of(cfg)
    except ConfigError as exc:
        lines = str(exc).strip().splitlines()
        if len(lines) <= 1:
            raise
        # transformers' multi-paragraph errors: keep their first sentence, on one line
        first = lines[0].rstrip()
        raise ConfigError(first + ")" * (first.count("(") - first.count(")"))) from None
    except Exception as exc:  # noqa: BLE001 - any unreadable config becomes one line, exit 2
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        raise ConfigError(
            f"--model {cfg.model.name!r}: cannot build it from its config ({text}); give a folder holding a "
            "transformers config.json of a supported model"
        ) from None


def _max_positions(config: Any) -> int:
    for attr in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value >= 8:
            return value
    return SEARCH_CAP


def _with_training(cfg: TrialConfig, **changes: Any) -> TrialConfig:
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, **changes))


def largest_fitting(total_mb: Any, low: int, high: int, budget_mb: float) -> int:
    """Largest n in [low, high] with total_mb(n) <= budget_mb, for a total non-decreasing in n (doubling, then
    bisection: about 2 log2(n) predictions); low - 1 when not even `low` fits."""
    if total_mb(low) > budget_mb:
        return low - 1
    good, step = low, 1
    while good + step <= high and total_mb(good + step) <= budget_mb:
        good += step
        step *= 2
    bad = min(high + 1, good + step)
    while bad - good > 1:
        mid = (good + bad) // 2
        if total_mb(mid) <= budget_mb:
            good = mid
        else:
            bad = mid
    return good


def build_plan(
    model: str,
    task: str,
    config_ids: list[str],
    device: str,
    budget_mb: float | None,
    overrides: list[str] | None = None,
    data_dir: str | None = None,
) -> Plan:
    """Predict every (grid config x combination of varied settings) row. Pure apart from reading the model's
    config. Raises ConfigError for an unknown task, config id, setting, or a model whose config cannot be read."""
    from trainables.predict import predict_peak
    from trainables.tasks import TASKS

    if task not in TASKS:
        raise ConfigError(f"--task {task!r}: unknown task; choose one of {', '.join(TASKS)}")
    if device not in PLAN_DEVICES:
        raise ConfigError(f"--device {device!r}: choose one of {', '.join(PLAN_DEVICES)}")
    if budget_mb is not None and budget_mb <= 0:
        raise ConfigError(f"--memory-gb {budget_mb / 1024:g}: must be > 0")
    model = _model_name(model)
    fixed, varied = split_variants(overrides or [])
    base = TrialConfig.from_dict({"task": {"name": task, "data_dir": data_dir}, "model": {"name": model}})
    if fixed:  # own data (task.data=...) decides a classification head's width
        base = base.with_overrides(fixed)
    arch = _read_arch(base)
    from trainables.checks import check_model_bounds
    from trainables.models import load_config_view

    model_config = load_config_view(base.model)
    positions = _max_positions(model_config)
    rows = []
    for config_id in config_ids:
        cell = grid_config(config_id, task, model, arch.num_layers, data_dir=data_dir)
        if fixed:
            cell = cell.with_overrides(fixed)
        for combo in itertools.product(*[options for _, options in varied]):
            settings = {key: value for (key, _), value in zip(varied, combo)}
            cfg = cell.with_overrides(settings) if settings else cell
            check_model_bounds(cfg, model_config)  # what `run` refuses, plan refuses too (exit 2)
            est = predict_peak(cfg, device, arch)
            total = est.total / MB
            max_batch = max_seq = None
            if budget_mb is not None:

                def by_batch(b: int, c: TrialConfig = cfg) -> float:
                    return predict_peak(_with_training(c, batch_size=b), device, arch).total / MB

                def by_seq(s: int, c: TrialConfig = cfg) -> float:
                    return predict_peak(_with_training(c, seq_len=s), device, arch).total / MB

                max_batch = largest_fitting(by_batch, 1, SEARCH_CAP, budget_mb)
                seq = largest_fitting(by_seq, 8, positions, budget_mb)
                max_seq = seq if seq >= 8 else 0
            rows.append(
                PlanRow(
                    config_id=config_id,
                    settings=settings,
                    batch_size=cfg.training.batch_size,
                    seq_len=cfg.training.seq_len,
                    parts_mb={k: round(v / MB, 1) for k, v in est.parts().items()},
                    total_mb=round(total, 1),
                    fits=None if budget_mb is None else total <= budget_mb,
                    max_batch_size=max_batch,
                    max_seq_len=max_seq,
                    extra={"config": cfg.to_dict(), "positions": positions},
                )
            )
    from trainables.memory import model_key

    return Plan(
        model=model, task=task, device=device, budget_mb=budget_mb, rows=rows, measure=model_key(device)
    )


def _measure_child(cfg_dict: dict[str, Any], queue: Any, mmap_threshold: int = 0) -> None:
    from trainables.loop import prepare, train

    use_mmap_threshold(mmap_threshold)  # before prepare: its peak meter sets glibc's threshold from it
    try:
        prepared = prepare(TrialConfig.from_dict(cfg_dict))
        train(prepared)
        queue.put((prepared.result.peak_memory_mb, None))
    except Exception as exc:  # noqa: BLE001 - a failed measurement is reported beside its row
        queue.put((None, f"{exc.__class__.__name__}: {str(exc).strip()[:200]}"))


def measure_row(
    row: PlanRow, steps: int, device: str, mmap_threshold: int = 0
) -> tuple[float | None, str | None]:
    """Train `steps` steps of the row's config in a fresh process (its peak is a fresh process's, as a grid
    trial's) with glibc's mmap threshold at `mmap_threshold` bytes (0: glibc's own); (measured training peak in
    MB, None) or (None, the reason it failed)."""
    import multiprocessing as mp

    cfg = TrialConfig.from_dict(row.extra["config"]).with_overrides(
        {"training.max_steps": steps, "training.device": device, "training.log_every": max(1, steps)}
    )
    if cfg.adapter.method == "adalora":
        try:
            cfg.adapter.schedule(steps)
        except ConfigError:  # too few steps for the default warm-up and final phases: prune from the start
            cfg = cfg.with_overrides({"adapter.tinit": 0, "adapter.tfinal": 0, "adapter.deltaT": 1})
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure_child, args=(cfg.to_dict(), queue, mmap_threshold))
    proc.start()
    try:
        measured, error = queue.get()
    except KeyboardInterrupt:
        proc.kill()
        raise
    proc.join()
    if measured is None and error is None:
        error = f"the measuring process ended with exit code {proc.exitcode}"
    return measured, error


def plan_dict(plan: Plan) -> dict[str, Any]:
    """JSON form: the plan's fields and one object per row (without the full configs)."""
    rows = []
    for row in plan.rows:
        item = {k: v for k, v in dataclasses.asdict(row).items() if k != "extra"}
        if row.measured_mb is not None:
            item["measured_error_pct"] = round(100.0 * (row.measured_mb - row.total_mb) / row.total_mb, 1)
        rows.append(item)
    return {
        "model": plan.model,
        "task": plan.task,
        "device": plan.device,
        "measure": plan.measure,
        "budget_mb": None if plan.budget_mb is None else round(plan.budget_mb, 1),
        "rows": rows,
    }


RATCHET_HINT = (
    "rankbits plan: measuring with glibc's default allocator, whose resident-set peak moved by up to 40% between "
    "configs and runs here; add --mmap-threshold 262144 to measure live tensors (about half the speed)"
)
"""Said before a CPU measure without an mmap threshold (README: `plan --measure` on this CPU)."""


def _measure_note(key: str) -> str:
    from trainables.memory import MEASURES

    return f" ({MEASURES[key]})" if key in MEASURES else ""


def plan_text(plan: Plan) -> str:
    parts = list(plan.rows[0].parts_mb) if plan.rows else []
    budget = f"{plan.budget_mb:,.0f} MB" if plan.budget_mb is not None else "none (give --memory-gb)"
    lines = [
        f"rankbits plan: {plan.model} on {plan.task}, {plan.device}{_measure_note(plan.measure)}, "
        f"budget {budget} (MB = 2^20 bytes)",
        "",
    ]
    measured = any(r.measured_mb is not None or r.measure_error for r in plan.rows)
    header = ["config", "settings", "batch x seq", *parts, "total", "fits", "max batch", "max seq"]
    if measured:
        header += ["measured", "error"]
    table = [header]
    for r in plan.rows:
        cells = [
            r.config_id,
            " ".join(f"{k.split('.')[-1]}={v}" for k, v in r.settings.items()) or "-",
            f"{r.batch_size} x {r.seq_len}",
            *[f"{r.parts_mb[p]:,.1f}" for p in parts],
            f"{r.total_mb:,.1f}",
            "-" if r.fits is None else ("yes" if r.fits else "NO"),
            "-" if r.max_batch_size is None else str(r.max_batch_size),
            "-" if r.max_seq_len is None else str(r.max_seq_len) + _limit_mark(r),
        ]
        if measured:
            if r.measured_mb is not None:
                cells += [
                    f"{r.measured_mb:,.1f}",
                    f"{100.0 * (r.measured_mb - r.total_mb) / r.total_mb:+.1f}%",
                ]
            else:
                cells += ["failed", (r.measure_error or "")[:60]]
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        lines.append(
            "  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
        )
    if any(_limit_mark(r) for r in plan.rows):
        lines += ["", "* the model's own position limit: every length the model takes fits the budget"]
    return "\n".join(lines)


def _limit_mark(row: PlanRow) -> str:
    """'*' when the largest fitting sequence length is the model's position limit, not the budget's."""
    positions = row.extra.get("positions")
    return (
        "*" if row.max_seq_len is not None and positions is not None and row.max_seq_len >= positions else ""
    )


def _device_and_budget(args: argparse.Namespace) -> tuple[str, float | None]:
    from search.resources import detect_device

    if args.memory_gb is not None and args.memory_gb <= 0:
        raise ConfigError(f"--memory-gb {args.memory_gb:g}: must be > 0")
    here = detect_device(args.memory_gb)
    device = args.device or here.kind
    if device == here.kind or args.memory_gb is not None:
        return device, here.memory_mb
    return device, None


def handle(args: argparse.Namespace) -> int:
    if args.measure is not None and args.measure <= 0:
        raise ConfigError(f"--measure {args.measure}: give a number of steps >= 1")
    threshold = chosen_mmap_threshold(args.mmap_threshold)
    use_mmap_threshold(threshold)  # the CPU constants of the measure the trials (and --measure) use
    device, budget = _device_and_budget(args)
    fold_task_data_flags(args)
    plan = build_plan(
        args.model, args.task, parse_config_ids(args.configs), device, budget, args.overrides, args.data_dir
    )
    if args.measure:
        from trainables.loop import pick_device

        pick_device(device)  # ConfigError (one line, exit 2) when the device is not here
        if plan.measure == "cpu" and sys.platform.startswith("linux"):
            print(RATCHET_HINT, file=sys.stderr)
        measured = []
        for row in plan.rows:
            print(f"rankbits plan: measuring {row.config_id} {row.settings or ''}", file=sys.stderr)
            value, error = measure_row(row, args.measure, device, threshold)
            print(
                f"rankbits plan:   measured {value} MB, predicted {row.total_mb} MB"
                if error is None
                else error,
                file=sys.stderr,
            )
            measured.append(dataclasses.replace(row, measured_mb=value, measure_error=error))
        plan = dataclasses.replace(plan, rows=measured)
        for line in measure_warnings(plan, args.measure):
            print(f"rankbits plan: warning: {line}", file=sys.stderr)
    print(json.dumps(plan_dict(plan), indent=2) if args.json else plan_text(plan))
    return 0


SHORT_MEASURE_STEPS = 30
"""Below this many steps a padded-batch task (SST-2) has not yet met a batch near its longest row (--measure's help)."""
MEASURE_WARN = 0.25
"""Rows measured further than this from their prediction are named after the table."""


def measure_warnings(plan: Plan, steps: int) -> list[str]:
    """What a reader of `plan --measure` must know before trusting its error column: a short measure of a task
    whose batches are padded to their longest row, and rows whose measure is off by more than 25%."""
    from trainables.tasks import get_task

    lines = []
    if get_task(plan.task).head_kind == "classification" and steps < SHORT_MEASURE_STEPS:
        lines.append(
            f"--measure {steps}: {plan.task} pads each batch to its longest row and the first {steps} steps "
            f"may not reach the longest the plan allows for; the measure reads low (use >= {SHORT_MEASURE_STEPS})"
        )
    for row in plan.rows:
        if row.measured_mb is None or not row.total_mb:
            continue
        error = (row.measured_mb - row.total_mb) / row.total_mb
        if abs(error) > MEASURE_WARN:
            lines.append(
                " ".join([row.config_id, *(f"{k}={v}" for k, v in row.settings.items())])
                + f" measured {100 * error:+.0f}% from its prediction ({row.measured_mb:,.1f} vs "
                f"{row.total_mb:,.1f} MB): beyond the band the memory model is checked to (README, memory model)"
            )
    return lines
