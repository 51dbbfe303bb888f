"""`rankbits run`: one trial in this process (no Ray); `trial_result.json` (the same file, in the same format, as in
a Tune trial folder) and the PEFT adapter in the output folder. Progress: tqdm bars for the training steps and the
final evaluation, on stderr."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

from search.common import (
    add_data_flag,
    add_harness_flags,
    add_set_flag,
    add_task_flag,
    apply_overrides,
    check_harness_flags,
    check_max_steps,
    fold_task_data_flags,
    seed_arg,
    task_spec,
    task_training,
)
from search.results_io import SPEC_FILE, move_aside
from spaces.grid import GRID_IDS, grid_config
from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.harness import Harness
from trainables.trainable import RESULT_FILE, write_trial_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run one trial (a grid config or your own settings) without Ray")
    p.add_argument(
        "--config", default=None, help=f"grid config id: {', '.join(GRID_IDS)} (default: plain settings)"
    )
    add_task_flag(p)
    p.add_argument(
        "--model", default=None, help="preset, hub id or local folder (default: the task's preset)"
    )
    add_data_flag(p)
    p.add_argument(
        "--max-steps", type=int, default=None, help="optimizer steps (default: the task's, e.g. SST-2 300)"
    )
    p.add_argument(
        "--seed", type=seed_arg, default=0, help="training seed (data order, adapter init, dropout)"
    )
    p.add_argument(
        "--output", default=None, help="output folder (default results/runs/<config>-<task>-s<seed>-<time>)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a result in --output (the old folder is moved aside)",
    )
    add_set_flag(p)
    add_harness_flags(p, ray=False)
    p.set_defaults(handler=handle)


def build_config(args: argparse.Namespace) -> TrialConfig:
    spec = task_spec(args.task)
    fold_task_data_flags(args)
    model = args.model or spec.model
    check_max_steps(args)  # both branches: a grid cell's steps and task_training's
    from trainables.checks import preflight
    from trainables.config import ModelConfig
    from trainables.models import count_layers

    if args.config is not None:
        cell = functools.partial(
            grid_config,
            args.config,
            args.task,
            model,
            count_layers(ModelConfig(name=model)),
            seed=args.seed,
            data_dir=args.data_dir,
            max_steps=args.max_steps,
        )
        cfg = cell()
    else:
        training = task_training(spec, args)  # the task's defaults, as a grid cell gets them
        cfg = TrialConfig.from_dict(
            {
                "task": {"name": args.task, "data_dir": args.data_dir},
                "model": {"name": model},
                "training": training,
            }
        )
    cfg = apply_overrides(cfg, args.overrides)
    if args.config is not None:
        from search.sensitivity_cmd import place_critical

        cfg = place_critical(cfg, cell, args.overrides)
    preflight(cfg)
    return cfg


def run_harness(args: argparse.Namespace) -> Harness:
    """The harness of one trial without Ray: --trial-process (else $RANKBITS_TRIAL_PROCESS, else inline) and
    --mmap-threshold (else $RANKBITS_MMAP_THRESHOLD, else 0). Raises ConfigError for a bad value or for fork
    where this platform has no forkserver."""
    from trainables.forked import available
    from trainables.harness import chosen_mmap_threshold, from_env

    check_harness_flags(args)
    process = args.trial_process or from_env("trial_process") or "inline"
    if process == "fork" and not available():
        raise ConfigError(f"--trial-process fork: no forkserver on {sys.platform}; use inline")
    return Harness(
        trial_process=process, reuse_workers=None, mmap_threshold=chosen_mmap_threshold(args.mmap_threshold)
    )


def handle(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    harness = run_harness(args)
    name = (
        f"{cfg.config_id or 'custom'}-{cfg.task.name}-s{cfg.training.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    out = Path(args.output) if args.output else Path("results") / "runs" / name
    prepare_output(out, args.overwrite)
    from trainables.harness import use_mmap_threshold
    from trainables.loop import fit

    print(
        f"rankbits run: {cfg.config_id or 'custom'} on {cfg.task.name} with {cfg.model.name} -> {out}",
        file=sys.stderr,
    )
    started = time.time()
    with Bars(cfg.training.max_steps if cfg.training.epochs is None else None) as bars:
        if harness.trial_process == "fork":  # a fresh process's peak, as in a grid on Linux CPU
            from trainables.forked import fit_forked

            result = fit_forked(
                cfg, progress=bars.step, adapter_dir=out / "adapter", mmap_threshold=harness.mmap_threshold
            )
        else:
            use_mmap_threshold(harness.mmap_threshold)
            result = fit(cfg, progress=bars.step, adapter_dir=out / "adapter", eval_progress=bars.evaluate)
    result.harness = harness.to_dict()
    write_trial_file(out, out.name, cfg, result, started)
    print(summary_text(cfg, result))
    return 0 if result.status.value == "completed" else 1


def prepare_output(out: Path, overwrite: bool) -> None:
    """Make `out` ready for one trial's files. Refused (ConfigError): a grid or Pareto results folder (its
    experiment.json), a folder that already holds a result without `overwrite`. With `overwrite` the earlier folder
    is moved aside to `<out>.old-<time>` (as `grid --overwrite` does), so no completed result is deleted."""
    if (out / SPEC_FILE).exists():
        raise ConfigError(
            f"--output {str(out)!r} is a grid / Pareto results folder ({SPEC_FILE}); give a folder of its own"
        )
    if any((out / f).exists() for f in (RESULT_FILE, "result.json")):
        if not overwrite:
            raise ConfigError(
                f"--output {str(out)!r} already holds a result; choose another folder or pass --overwrite "
                "(the old one is moved aside)"
            )
        print(f"moved the earlier result aside to {move_aside(out)}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)


class Bars:
    """tqdm bars on stderr: optimizer steps (with the loss and an ETA), then the final evaluation's examples."""

    def __init__(self, total_steps: int | None) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.train = tqdm(total=total_steps, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True)
        self.eval: Any = None

    def step(self, info: dict[str, Any]) -> None:
        # The clock starts at the first step, not at model loading (else s/step counts the loading).
        if self.train.n == 0:
            self.train.reset(total=self.train.total)
        self.train.update(info["step"] - self.train.n)
        self.train.set_postfix(loss=f"{info['train_loss']:.4f}", refresh=False)

    def evaluate(self, done: int, total: int) -> None:
        if self.eval is None:
            if self.train.total is not None:  # training is over: the last steps are not reported one by one
                self.train.update(self.train.total - self.train.n)
            self.train.close()
            self.eval = self._tqdm(
                total=total, desc="evaluate", unit="ex", file=sys.stderr, dynamic_ncols=True
            )
        self.eval.update(done - self.eval.n)

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.train.close()
        if self.eval is not None:
            self.eval.close()


def summary_text(cfg: TrialConfig, r) -> str:  # noqa: ANN001 - TrialResult
    metric = (
        f"accuracy {r.accuracy:.4f}"
        if r.accuracy is not None
        else (f"perplexity {r.perplexity:.2f}" if r.perplexity is not None else "no metric")
    )
    if r.macro_f1 is not None:
        metric += f"   macro-F1 {r.macro_f1:.4f}"
    lines = [
        f"{cfg.config_id or 'custom'} | {cfg.task.name} | {cfg.model.name} | seed {cfg.training.seed} | {r.status.value}",
    ]
    if r.error:
        lines.append(f"  reason: {r.error}")
    lines += [
        f"  {metric}   eval loss {r.eval_loss if r.eval_loss is not None else float('nan'):.4f}",
        f"  trainable {r.trainable_params:,} of {r.total_params:,} params ({r.trainable_pct:.3f}%)",
        f"  weights {r.weight_memory_mb:.1f} MB   peak train {r.peak_memory_mb} MB (predicted {r.predicted_peak_mb})"
        f"   peak load {r.peak_load_memory_mb} MB   [{r.memory_measure}]",
        f"  train {r.train_time_s:.1f}s   {r.tokens_per_s:,.0f} tokens/s   {r.steps} steps on {r.device}",
        f"  bits per layer  {','.join(map(str, r.bits_per_layer))}",
        f"  ranks per layer {','.join(f'{x:g}' for x in r.ranks_per_layer)}   total rank {r.total_rank}"
        f" (from {r.initial_total_rank})",
        f"  data: {r.data_note}",
    ]
    return "\n".join(lines)
