"""Guided Pareto search: warm starts from measured bit allocations, a sensitivity-ordered reduced space, and a
zero-training screen as the first rung of multi-fidelity (`rankbits pareto --warm-start / --space / --screen`).

- **Warm start** (`--warm-start N`): the measured sensitivity table of the base config (`trainables.sensitivity`,
  cached; the grid's `critical=sensitivity` reads the same table) and, at N weight-memory budgets spread evenly
  from every block at 4 bits to every block at 8 (both ends included; one budget: the middle), the bit allocation
  that minimizes the summed KL (`trainables.allocation.allocate_bits`, an exact knapsack). Each becomes a point of
  the search space, LoRA at the grid's uniform rank 8: `{n_high: k, placement: "sensitivity"}`, the k most
  sensitive blocks at 8 bits. Where the blocks all cost the same bytes (every decoder-only model here), the
  knapsack's optimum *is* such a top-k set: it saves the most KL per block it can afford, and the sensitivity order
  sorts blocks by exactly that saving (KL at 4 - KL at 8). Where block sizes differ and the optimum is not a prefix
  of the order, the point is the largest top-k set that fits the same budget (`WarmPoint.exact` is False): the
  space samples placements as prefixes of one order, so that is the closest point it can express, and it keeps
  the budget the allocation was solved for.
- **Reduced space** (`--space reduced`, `spaces.pareto.suggest_reduced`): method, 4-bit blocks with `n_high`
  8-bit blocks in sensitivity order, rank budget and spread. The order is measured once here and handed to the
  define-by-run function.
- **Screen** (`--screen N`): N proposals of the space drawn at random (a random sampler on a scratch in-memory
  study; duplicates and proposals predicted over `--memory-budget-mb` are skipped), each scored without training
  on `--screen-examples` evaluation rows (`trainables.screen`, fidelity `zero_training`), and those non-dominated
  on the objectives as the screen can judge them (the task metric as screened; `peak_memory_mb` as the predicted
  peak; columns the config fixes, such as `weight_memory_mb`, as known; time objectives are left out) are
  enqueued to train. Screened candidates are not trials: they do not count against `--trials` and are not in the
  study; each costs one model load and quantization plus one forward pass over the sample (no backward pass,
  no optimizer). Every candidate's row is written to `screen.csv` in the results folder as it is scored. The
  screen refuses tasks whose metric is chance before training (`TaskSpec.untrained_metric_meaningful`): ranking
  by it would be ranking by noise.

Points are enqueued (Optuna `enqueue_trial`, through Ray's `points_to_evaluate`) in the order warm start, then
screen survivors, after the grid's when `--enqueue-grid` is given, duplicates dropped, and only into a fresh study
(a resumed search has run them already). All four settings are recorded in experiment.json (`"guided"`) and read
back by `--resume`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from search.common import SpecFlag
from trainables.config import TrialConfig
from trainables.errors import ConfigError

WARM_RANK = 8
"""LoRA rank per block of the warm-start points (the grid's uniform r=8)."""
WARM_BITS = (4, 8)
"""The widths the warm-start allocations choose between."""
SCREEN_EXAMPLES = 16
"""Default evaluation rows of the screen (WikiText-2: 16 blocks of 256 tokens = 4,096 tokens)."""
SCREEN_ATTEMPTS = 20
"""Proposals drawn per wanted candidate before the screen settles for fewer (a small space runs out of distinct
points)."""


@dataclass(frozen=True)
class GuidedOptions:
    """The guided-search settings of `rankbits pareto` (recorded in experiment.json as `guided`)."""

    warm_start: int = 0
    """Allocation points to enqueue (0: none)."""
    space: str = "full"
    """`full` or `reduced` (`spaces.pareto.SPACES`)."""
    screen: int = 0
    """Candidates to score without training (0: no screen)."""
    screen_examples: int = SCREEN_EXAMPLES
    """Evaluation rows per screened candidate."""

    def __post_init__(self) -> None:
        from spaces.pareto import SPACES

        if self.warm_start < 0:
            raise ConfigError(f"--warm-start {self.warm_start}: must be >= 0 (0: no warm start)")
        if self.space not in SPACES:
            raise ConfigError(f"--space {self.space!r}: choose one of {', '.join(SPACES)}")
        if self.screen < 0:
            raise ConfigError(f"--screen {self.screen}: must be >= 0 (0: no screen)")
        if self.screen_examples < 1:
            raise ConfigError(f"--screen-examples {self.screen_examples}: must be >= 1")

    @property
    def needs_order(self) -> bool:
        """Whether the search needs the measured block order (warm start or the reduced space)."""
        return self.warm_start > 0 or self.space == "reduced"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


GUIDED_FLAGS = [
    SpecFlag("warm_start", lambda s: s["guided"]["warm_start"]),
    SpecFlag("space", lambda s: s["guided"]["space"]),
    SpecFlag("screen", lambda s: s["guided"]["screen"]),
    SpecFlag("screen_examples", lambda s: s["guided"]["screen_examples"]),
]
"""What `pareto --resume` reads back from experiment.json's `guided` (absent in older folders: the defaults)."""


def add_flags(p: argparse.ArgumentParser) -> None:
    """`--warm-start`, `--space`, `--screen`, `--screen-examples` on `rankbits pareto`."""
    p.add_argument(
        "--warm-start",
        type=int,
        default=0,
        metavar="N",
        help="first train N bit allocations solved from the measured sensitivity table at budgets from all "
        "4-bit to all 8-bit (measured once, cached)",
    )
    p.add_argument(
        "--space",
        default="full",
        choices=("full", "reduced"),
        help="full: every placement and width; reduced: 4-bit blocks with n_high 8-bit ones in measured "
        "sensitivity order, rank budget and spread",
    )
    p.add_argument(
        "--screen",
        type=int,
        default=0,
        metavar="N",
        help="score N proposals without training on a small sample and train the non-dominated ones first "
        "(language-model tasks; not counted in --trials)",
    )
    p.add_argument(
        "--screen-examples",
        type=int,
        default=SCREEN_EXAMPLES,
        metavar="N",
        help=f"rows per screened proposal, drawn from the task's training text, never its evaluation split "
        f"(blocks of seq_len tokens; default {SCREEN_EXAMPLES})",
    )


def options_of(args: argparse.Namespace) -> GuidedOptions:
    """The options the parsed flags ask for; ConfigError for a bad value."""
    return GuidedOptions(
        warm_start=args.warm_start,
        space=args.space,
        screen=args.screen,
        screen_examples=args.screen_examples,
    )


def check(options: GuidedOptions, task: str, enqueue_grid: bool) -> None:
    """Refusals before anything is written: a screen on a task whose metric means nothing untrained, and the
    grid's points in the reduced space (which holds only B-Q4 and Joint-1 of them). One-line ConfigError."""
    if options.screen:
        from trainables.screen import check_screenable

        check_screenable(task)
    if enqueue_grid and options.space == "reduced":
        raise ConfigError(
            "--enqueue-grid needs --space full: the reduced space cannot express the grid's 16-bit and "
            "ends-placed configs; drop one of the two"
        )


# --- warm start ----------------------------------------------------------------------------------------------


def sensitivity_table(base: TrialConfig, quiet: bool = False) -> Any:
    """The measured (or cached) sensitivity table of `base`'s model and task, without module kinds, with
    training seed 0 (as `search.sensitivity_cmd.sensitivity_ranking`: one table per model and task)."""
    from search.sensitivity_cmd import table_for
    from trainables.sensitivity import SensitivitySettings

    return table_for(
        base.with_overrides({"training.seed": 0}), SensitivitySettings(by_kind=False), True, quiet
    )


def budget_fractions(n: int) -> list[float]:
    """N evenly spread fractions of the way from all-4-bit to all-8-bit weight bytes: both ends for N >= 2, the
    middle for N = 1."""
    if n <= 0:
        return []
    if n == 1:
        return [0.5]
    return [i / (n - 1) for i in range(n)]


@dataclass(frozen=True)
class WarmPoint:
    """One warm-start allocation and the search-space point that stands for it."""

    budget_bytes: float
    """The weight-memory budget it was solved for (bytes)."""
    allocation: list[int]
    """The knapsack's bits per block."""
    n_high: int
    """8-bit blocks of the point (the first n_high of the sensitivity order)."""
    exact: bool
    """Whether the allocation is that top-n_high set itself (else: the largest top-k set within the budget)."""
    point: dict[str, Any] = field(default_factory=dict)
    """The parameters to enqueue (valid in both spaces)."""

    @property
    def budget_mb(self) -> float:
        """The budget in MB (2^20 bytes)."""
        return self.budget_bytes / (1024 * 1024)


def allocation_point(n_high: int, base: TrialConfig) -> dict[str, Any]:
    """The search-space point `n_high` most sensitive blocks at 8 bits, the rest at 4, LoRA at uniform rank
    `WARM_RANK`, `base`'s gradient checkpointing. Valid in the full space (given an order) and the reduced one
    (which ignores `low_bits`, `high_bits` and `placement`)."""
    from spaces.pareto import SENSITIVITY

    point: dict[str, Any] = {"method": "lora", "low_bits": WARM_BITS[0], "n_high": n_high}
    if n_high:
        point.update({"high_bits": WARM_BITS[1], "placement": SENSITIVITY})
    point.update({"rank_spread": "uniform", "rank_budget": WARM_RANK})
    point["gradient_checkpointing"] = base.training.gradient_checkpointing
    return point


def warm_start_points(
    table: Any, arch: Any, base: TrialConfig, n: int, device_kind: str, order: list[int] | None = None
) -> list[WarmPoint]:
    """The `n` warm-start allocations (module docstring) for `base`'s model on `arch`, weight bytes counted in
    the compute dtype `base` resolves to on `device_kind`; `order`: the block order (default `table.ranking()`).
    Points that coincide (a small model, many budgets) are kept once. Raises ConfigError when the table lacks 4 or
    8 bits or does not match the model."""
    from trainables import allocation
    from trainables.devices import dtype_bytes, resolve_compute_dtype

    low, high = WARM_BITS
    table._need(low, high)
    order = list(order if order is not None else table.ranking(low, high))
    e = dtype_bytes(resolve_compute_dtype(base.training.compute_dtype, device_kind))
    fixed = arch.other_bytes(e)
    lo = allocation.block_weight_bytes(arch, low, base.quantization, e)
    hi = allocation.block_weight_bytes(arch, high, base.quantization, e)
    least, most = fixed + sum(lo), fixed + sum(hi)
    out: list[WarmPoint] = []
    for f in budget_fractions(n):
        budget = least + f * (most - least)
        alloc = allocation.allocate_bits(table, arch, base.quantization, budget, e, list(WARM_BITS))
        chosen = {i for i, b in enumerate(alloc.choices) if b == high}
        k = len(chosen)
        exact = chosen == set(order[:k])
        if not exact:  # the largest prefix of the order within the same budget
            k = 0
            while k < len(order) and _prefix_bytes(order, k + 1, lo, hi, fixed) <= budget:
                k += 1
        if any(w.n_high == k for w in out):
            continue
        out.append(WarmPoint(budget, list(alloc.choices), k, exact, allocation_point(k, base)))
    return out


def _prefix_bytes(order: list[int], k: int, lo: list[int], hi: list[int], fixed: int) -> int:
    top = set(order[:k])
    return fixed + sum(hi[i] if i in top else lo[i] for i in range(len(lo)))


# --- screen ----------------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """One screened proposal: its parameters (a point to enqueue), config and scores."""

    point: dict[str, Any]
    cfg: TrialConfig
    bits: list[int]
    """Bits per block."""
    ranks: list[int]
    """LoRA rank per block (AdaLoRA: its initial rank)."""
    predicted_peak_mb: float
    known: dict[str, float]
    score: Any = None
    """`trainables.screen.ScreenScore` once scored."""


def sample_candidates(
    n: int,
    *,
    base: TrialConfig,
    num_layers: int,
    space: str,
    order: list[int] | None,
    methods: list[str],
    checkpointing: list[bool],
    arch: Any,
    device_kind: str,
    budget_mb: float | None,
    seed: int,
    exclude: list[TrialConfig] | None = None,
) -> list[Candidate]:
    """Up to `n` distinct proposals of `space` from a random sampler seeded with `seed` (a scratch in-memory
    study: the search's own study never sees them), leaving out those predicted over `budget_mb` and those equal
    to a config in `exclude` (points enqueued anyway); gives up after `SCREEN_ATTEMPTS` x n draws."""
    import optuna

    from search.searcher import known_values
    from spaces.pareto import build_config, propose
    from trainables.predict import predict_peak

    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    seen = {_key(c) for c in exclude or []}
    out: list[Candidate] = []
    for _ in range(SCREEN_ATTEMPTS * n):
        if len(out) >= n:
            break
        trial = scratch.ask()
        cfg = build_config(propose(trial, space, num_layers, methods, checkpointing, order), base, num_layers)
        scratch.tell(trial, state=optuna.trial.TrialState.FAIL)  # nothing to learn from: random draws
        est = predict_peak(cfg, device_kind, arch)
        if _key(cfg) in seen or (budget_mb is not None and est.total_mb > budget_mb):
            continue
        seen.add(_key(cfg))
        bits = cfg.quantization.bits_per_layer(num_layers)
        ranks = cfg.adapter.ranks_per_layer(num_layers)
        out.append(
            Candidate(dict(trial.params), cfg, bits, ranks, est.total_mb, known_values(arch, cfg, est))
        )
    return out


def _key(cfg: TrialConfig) -> str:
    data = cfg.to_dict()
    data.pop("config_id", None)
    return json.dumps(data, sort_keys=True, default=str)


def screen_objectives(objectives: dict[str, str], metric: str) -> dict[str, str]:
    """{objective: the screen's column for it}: the task metric as screened, `peak_memory_mb` as the predicted
    peak, columns fixed by the config (`searcher.known_values`) as known; others (time) have no stand-in."""
    from search.searcher import KNOWN_RESULT_FIELDS

    out = {}
    for name in objectives:
        if name == metric:
            out[name] = metric
        elif name == "peak_memory_mb":
            out[name] = "predicted_peak_mb"
        elif name in KNOWN_RESULT_FIELDS or name == "predicted_peak_mb":
            out[name] = name
    return out


def screen_frame(candidates: list[Candidate], objectives: dict[str, str]) -> Any:
    """One row per scored candidate (pandas DataFrame): fidelity, method, bits and ranks per block, the screened
    metric and loss, evaluation rows, predicted peak and known columns (MB = 2^20 bytes), seconds, `params` (the
    point, JSON) and `non_dominated` on the objectives as `screen_objectives` maps them."""
    import numpy as np
    import pandas as pd

    from analysis.pareto import is_pareto_optimal

    rows = []
    for i, c in enumerate(candidates):
        s = c.score
        rows.append(
            {
                "candidate": i,
                "fidelity": s.fidelity,
                "method": c.cfg.adapter.method,
                "config_id": c.cfg.config_id or "",
                "bits_per_layer": " ".join(map(str, c.bits)),
                "ranks": " ".join(map(str, c.ranks)),
                s.metric: s.value,
                "eval_loss": s.loss,
                "eval_rows": s.eval_rows,
                "predicted_peak_mb": round(c.predicted_peak_mb, 1),
                **{k: v for k, v in c.known.items() if k != "predicted_peak_mb"},
                "screen_s": s.seconds,
                "params": json.dumps(c.point, sort_keys=True),
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame.assign(non_dominated=pd.Series(dtype=bool))
    metric = candidates[0].score.metric
    columns = screen_objectives(objectives, metric)
    loss = np.column_stack(
        [
            pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
            * (-1.0 if objectives[name] == "max" else 1.0)
            for name, col in columns.items()
        ]
    )
    frame["non_dominated"] = is_pareto_optimal(loss)
    return frame


def run_screen(
    candidates: list[Candidate],
    base: TrialConfig,
    options: GuidedOptions,
    objectives: dict[str, str],
    root: Path,
) -> Any:
    """Score every candidate without training (`trainables.screen.Screener`), rewriting `root/screen.csv`
    atomically after each; returns the final frame (`screen_frame`)."""
    from search.common import atomic_write_text
    from trainables.results_folder import SCREEN_FILE
    from trainables.screen import Screener

    screener = Screener(base, options.screen_examples)
    frame = screen_frame([], objectives)
    for i, c in enumerate(candidates):
        c.score = screener.score(c.cfg)
        print(
            f"rankbits: screen {i + 1}/{len(candidates)} ({c.score.fidelity}, {c.score.eval_rows} rows): "
            f"{c.score.metric} {c.score.value:.4g}, predicted peak {c.predicted_peak_mb:,.0f} MB, "
            f"{c.score.seconds:.0f} s",
            flush=True,
        )
        frame = screen_frame(candidates[: i + 1], objectives)
        atomic_write_text(root / SCREEN_FILE, frame.to_csv(index=False))
    return frame


# --- the plan ----------------------------------------------------------------------------------------------------


@dataclass
class GuidedPlan:
    """What the guided options add to a search: the block order for the space and the points to enqueue."""

    order: list[int] | None = None
    points: list[dict[str, Any]] = field(default_factory=list)
    warm: list[WarmPoint] = field(default_factory=list)
    screened: Any = None
    """The screen's frame (`screen_frame`), or None."""


def plan(
    options: GuidedOptions,
    *,
    base: TrialConfig,
    num_layers: int,
    arch: Any,
    device_kind: str,
    budget_mb: float | None,
    objectives: dict[str, str],
    methods: list[str],
    root: Path,
    fresh: bool,
    seed: int,
    before: list[dict[str, Any]] | None = None,
) -> GuidedPlan:
    """The order (measured once, when the options need one) and, for a `fresh` study, the points to enqueue
    after `before` (the grid's): warm starts (those predicted over `budget_mb` left out), then screen survivors,
    each once. Prints what it does."""
    from spaces.pareto import checkpointing_choices

    out = GuidedPlan()
    table = None
    if options.needs_order:
        table = sensitivity_table(base)
        out.order = table.ranking(*WARM_BITS)
        print(
            f"rankbits: sensitivity order (most sensitive first): {' '.join(map(str, out.order))}", flush=True
        )
    if not fresh or not (options.warm_start or options.screen):
        return out
    checkpointing = checkpointing_choices(list(objectives), base)

    def config(point: dict[str, Any]) -> TrialConfig:
        return point_config(point, base, num_layers, options.space, out.order, methods, checkpointing)

    taken = [config(p) for p in before or []]
    if options.warm_start and table is not None:
        warm = warm_start_points(table, arch, base, options.warm_start, device_kind, out.order)
        keys = {_key(c) for c in taken}
        out.warm = [w for w in warm if _key(config(w.point)) not in keys]  # e.g. all 4-bit = the grid's B-Q4
        if budget_mb is not None:  # a point predicted over the budget would never train: not worth a trial
            from trainables.predict import predicted_peak_mb

            over = [w for w in out.warm if predicted_peak_mb(config(w.point), device_kind, arch) > budget_mb]
            if over:
                print(
                    f"rankbits: {len(over)} warm start(s) predicted over --memory-budget-mb {budget_mb:g} left out",
                    flush=True,
                )
            out.warm = [w for w in out.warm if w not in over]
        taken += [config(w.point) for w in out.warm]
        for w in out.warm:
            print(
                f"rankbits: warm start at {w.budget_mb:,.1f} MB of weights: {w.n_high} most sensitive blocks "
                f"at 8 bits{'' if w.exact else ' (the largest top-k set within the budget)'}",
                flush=True,
            )
    points = [w.point for w in out.warm]
    if options.screen:
        candidates = sample_candidates(
            options.screen,
            base=base,
            num_layers=num_layers,
            space=options.space,
            order=out.order,
            methods=methods,
            checkpointing=checkpointing,
            arch=arch,
            device_kind=device_kind,
            budget_mb=budget_mb,
            seed=seed,
            exclude=taken,
        )
        out.screened = run_screen(candidates, base, options, objectives, root)
        survivors = [c.point for c, keep in zip(candidates, out.screened["non_dominated"]) if keep]
        print(
            f"rankbits: screen keeps {len(survivors)} of {len(candidates)} candidates (non-dominated without "
            f"training; not counted in --trials) -> {root / 'screen.csv'}",
            flush=True,
        )
        points += survivors
    out.points = points
    sys.stdout.flush()
    return out


def point_config(
    point: dict[str, Any],
    base: TrialConfig,
    num_layers: int,
    space: str,
    order: list[int] | None,
    methods: list[str] | None = None,
    checkpointing: list[bool] | None = None,
) -> TrialConfig:
    """The TrialConfig an enqueued `point` becomes in `space` (a scratch study asks for it as the search would);
    parameters the point leaves out are sampled at random."""
    import optuna

    from spaces.pareto import build_config, propose

    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    scratch.enqueue_trial(point)
    trial = scratch.ask()
    return build_config(propose(trial, space, num_layers, methods, checkpointing, order), base, num_layers)
