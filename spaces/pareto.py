"""Optuna define-by-run search spaces for the Pareto search: pure functions of an Optuna trial (no Ray).

`suggest_params(trial, num_layers)` samples the structure; `build_config(params, base, num_layers)` turns the
sampled values into a TrialConfig. Parameters (every name below is an Optuna parameter):

- `method`: `lora` or `adalora`; `adalora` only where the step budget can run its schedule (`runnable_methods`:
  AdaLoRA needs tinit + tfinal below the steps, so `--max-steps 2` leaves LoRA alone).
- Bits per layer, parametrized so a sampler can learn *how many* layers get more bits and *which*:
  `low_bits` (the searchable widths of `trainables.precisions`: 4, 8, 16) is every layer's width; when a wider
  one exists, `n_high` layers (0..L) get `high_bits` (a wider searchable width: 8 or 16 above 4, 16 above 8),
  placed by `placement`: `ends` (alternating first / last blocks, the grid's "critical layers"), `top` (last
  blocks), `bottom` (first blocks), `middle` (around the centre), and, only when the search is given a measured
  sensitivity order (`order`: block indices, most sensitive first), `sensitivity` (the first `n_high` blocks of
  that order). A study keeps one choice list for `placement`: `rankbits pareto` records whether it had an order
  (`--warm-start`, `--space reduced`) in experiment.json and `--resume` restores it. Optuna keeps one set of choices per parameter
  name, so a choice list other than the widest one (AdaLoRA without a precision that lacks its layer; the widths
  above 8 when a fourth width exists) gets its own name, e.g. `high_bits_12_16`.
- LoRA rank budget: `rank_budget` is the mean rank per layer (2..16, even); `rank_spread` spreads it over layers:
  `uniform`; `rising` (lower third 0.5x, middle 1x, upper third 1.5x: Joint-3's pattern); `falling` (the mirror);
  `per_layer` (an independent `rank_<i>` in 1..16 for each layer i, for samplers that can use the freedom).
- AdaLoRA (learning rate x ADALORA_LR_FACTOR and orthogonality weight 0.1, as in the grid): `init_r` in {4, 8, 12, 16} and `target_ratio` in {0.25, 0.33, 0.5, 0.75} (target_r = round(ratio x init_r),
  at least 1).

- `gradient_checkpointing` in {True, False} where the search has a time objective (`checkpointing_choices`):
  checkpointing trades time for memory, so only a search that sees time can weigh it; otherwise the base config's
  setting (on by default) is kept and no parameter is sampled.

The grid's six configs are points of this space (`grid_points`), so `--enqueue-grid` evaluates them first (those
of a method the budget cannot run are left out).

**Reduced space** (`suggest_reduced`, `rankbits pareto --space reduced`): `method`; every block at 4 bits and
`n_high` (0..L) blocks at 8 bits, the first `n_high` of the sensitivity order; `rank_budget` with `rank_spread` in
uniform / rising / falling for LoRA (no `per_layer`), `init_r` / `target_ratio` for AdaLoRA; `gradient_checkpointing`
as above. The order is computed once by the caller and passed in, never per trial. A point of the reduced space with
`placement: sensitivity` and `low_bits: 4`, `high_bits: 8` is the same config in the full space.
"""

from __future__ import annotations

from typing import Any

from spaces.grid import ADALORA_LR_FACTOR, ADALORA_ORTH_REG, GRID_IDS, critical_layers, grid_config
from trainables.config import AdapterConfig, TrialConfig
from trainables.errors import ConfigError
from trainables.precisions import PRECISIONS, search_bits

METHODS = ["lora", "adalora"]
LOW_BITS = search_bits()
"""The built-in searchable widths (4, 8, 16); `suggest_params` reads the live registry."""
PLACEMENTS = ["ends", "top", "bottom", "middle"]
SENSITIVITY = "sensitivity"
"""The placement that follows a measured order (offered only when the space is given one)."""
SPACES = ("full", "reduced")
"""`rankbits pareto --space`: the whole space (`suggest_params`) or the sensitivity-ordered one (`suggest_reduced`)."""
REDUCED_BITS = (4, 8)
"""The reduced space's widths: every block at the first, `n_high` blocks at the second."""
REDUCED_SPREADS = ["uniform", "rising", "falling"]
SPREADS = ["uniform", "rising", "falling", "per_layer"]
INIT_RANKS = [4, 8, 12, 16]
TARGET_RATIOS = [0.25, 0.33, 0.5, 0.75]
MAX_RANK = 16


def place_high(num_layers: int, n_high: int, placement: str, order: list[int] | None = None) -> list[int]:
    """Indices of the layers that get the higher bit width (ascending). `sensitivity` takes the first `n_high` of
    `order` (block indices, most sensitive first); ConfigError when `order` is missing or not a permutation of the
    layers."""
    n = max(0, min(n_high, num_layers))
    if placement == SENSITIVITY:
        return sorted(check_order(order, num_layers)[:n])
    if placement == "top":
        return list(range(num_layers - n, num_layers))
    if placement == "bottom":
        return list(range(n))
    if placement == "middle":
        start = (num_layers - n) // 2
        return list(range(start, start + n))
    order = [i for pair in zip(range(num_layers), reversed(range(num_layers))) for i in pair]
    chosen: list[int] = []
    for i in order:
        if i not in chosen:
            chosen.append(i)
    return sorted(chosen[:n])


def check_order(order: list[int] | None, num_layers: int) -> list[int]:
    """`order` itself; ConfigError unless it holds every layer index 0..num_layers-1 exactly once."""
    if order is None or sorted(order) != list(range(num_layers)):
        raise ConfigError(
            f"placement {SENSITIVITY!r} needs the measured block order of all {num_layers} blocks (got "
            f"{order!r}); measure it with `rankbits sensitivity` for this model and task"
        )
    return list(order)


def spread_ranks(num_layers: int, mean_rank: int, spread: str) -> list[int]:
    """Per-layer ranks for a budget of `mean_rank` per layer (total = mean_rank x L, up to rounding)."""
    if spread == "uniform":
        return [mean_rank] * num_layers
    factors = (0.5, 1.0, 1.5) if spread == "rising" else (1.5, 1.0, 0.5)
    return [max(1, round(mean_rank * factors[min(2, 3 * i // num_layers)])) for i in range(num_layers)]


def runnable_methods(base: TrialConfig) -> list[str]:
    """The adapter methods (of `METHODS`, in order) that `base`'s training budget can run: AdaLoRA only when its
    schedule (tinit + tfinal, `base.adapter`'s or the defaults) leaves steps to prune in. With `epochs` the step
    count depends on the data, and AdaLoRA is kept (the pre-flight check cannot judge it either)."""
    if base.training.epochs is not None:
        return list(METHODS)
    ada = AdapterConfig(**{**base.to_dict()["adapter"], "method": "adalora", "layer_ranks": {}})
    try:
        ada.schedule(base.training.max_steps)
    except ConfigError:
        return [m for m in METHODS if m != "adalora"]
    return list(METHODS)


TIME_OBJECTIVES = ("train_time_s", "tokens_per_s")


def checkpointing_choices(objectives: list[str], base: TrialConfig) -> list[bool]:
    """The gradient-checkpointing settings the search may propose: both where an objective measures time, else
    the base config's own."""
    if any(o in TIME_OBJECTIVES for o in objectives):
        return [True, False]
    return [base.training.gradient_checkpointing]


def suggest_params(
    trial: Any,
    num_layers: int,
    methods: list[str] | None = None,
    checkpointing: list[bool] | None = None,
    order: list[int] | None = None,
) -> dict[str, Any]:
    """Sample one point (define-by-run); returns the structural choices as plain values. `methods`: the adapter
    methods to choose from (default `METHODS`; pass `runnable_methods(base)` so every proposal can run);
    `checkpointing`: gradient-checkpointing settings to choose from (`checkpointing_choices`; default: not
    sampled, the base config's setting stays); `order`: a measured sensitivity order (block indices, most
    sensitive first), which adds the placement `sensitivity`."""
    if order is not None:
        check_order(order, num_layers)
    method = trial.suggest_categorical("method", list(methods or METHODS))
    everyone = search_bits()
    widths = [b for b in everyone if method != "adalora" or PRECISIONS[b].adalora]
    low = _suggest_width(trial, "low_bits", widths, everyone)
    bits = [low] * num_layers
    higher = [b for b in widths if b > low]
    if higher:
        n_high = trial.suggest_int("n_high", 0, num_layers)
        if n_high:
            high = _suggest_width(trial, "high_bits", higher, everyone[1:])
            placements = PLACEMENTS + [SENSITIVITY] if order is not None else PLACEMENTS
            placement = trial.suggest_categorical("placement", placements)
            for i in place_high(num_layers, n_high, placement, order):
                bits[i] = high
    out: dict[str, Any] = {"method": method, "bits": bits}
    _suggest_rest(trial, out, num_layers, checkpointing, SPREADS)
    return out


def suggest_reduced(
    trial: Any,
    num_layers: int,
    order: list[int],
    methods: list[str] | None = None,
    checkpointing: list[bool] | None = None,
) -> dict[str, Any]:
    """Sample one point of the reduced space (module docstring): every block at `REDUCED_BITS[0]` bits but the
    first `n_high` blocks of `order` (block indices, most sensitive first, measured once by the caller) at
    `REDUCED_BITS[1]`; LoRA ranks as a budget with a uniform / rising / falling spread, or AdaLoRA's init / target
    rank. Returns the same dict as `suggest_params` (for `build_config`). ConfigError for a bad `order`, or a
    registry whose searchable widths lack 4 or 8."""
    check_order(order, num_layers)
    low, high = REDUCED_BITS
    if not set(REDUCED_BITS) <= set(search_bits()):
        raise ConfigError(f"--space reduced needs the widths {low} and {high} among the searchable ones")
    method = trial.suggest_categorical("method", list(methods or METHODS))
    n_high = trial.suggest_int("n_high", 0, num_layers)
    bits = [low] * num_layers
    for i in order[:n_high]:
        bits[i] = high
    out: dict[str, Any] = {"method": method, "bits": bits}
    _suggest_rest(trial, out, num_layers, checkpointing, REDUCED_SPREADS)
    return out


def propose(
    trial: Any,
    space: str,
    num_layers: int,
    methods: list[str] | None = None,
    checkpointing: list[bool] | None = None,
    order: list[int] | None = None,
) -> dict[str, Any]:
    """One point of `space` (`SPACES`): `suggest_params` (full) or `suggest_reduced` (needs `order`)."""
    if space == "full":
        return suggest_params(trial, num_layers, methods, checkpointing, order)
    if space == "reduced":
        if order is None:
            raise ConfigError("--space reduced needs the measured sensitivity order of the blocks")
        return suggest_reduced(trial, num_layers, order, methods, checkpointing)
    raise ConfigError(f"--space {space!r}: choose one of {', '.join(SPACES)}")


def _suggest_rest(
    trial: Any, out: dict[str, Any], num_layers: int, checkpointing: list[bool] | None, spreads: list[str]
) -> None:
    """Into `out`: gradient checkpointing (when there is a choice) and the adapter's ranks for `out["method"]`."""
    if checkpointing and len(checkpointing) > 1:
        out["gradient_checkpointing"] = trial.suggest_categorical(
            "gradient_checkpointing", list(checkpointing)
        )
    if out["method"] == "lora":
        spread = trial.suggest_categorical("rank_spread", spreads)
        if spread == "per_layer":
            out["ranks"] = [trial.suggest_int(f"rank_{i}", 1, MAX_RANK) for i in range(num_layers)]
        else:
            mean = trial.suggest_int("rank_budget", 2, MAX_RANK, step=2)
            out["ranks"] = spread_ranks(num_layers, mean, spread)
    else:
        init_r = trial.suggest_categorical("init_r", INIT_RANKS)
        ratio = trial.suggest_categorical("target_ratio", TARGET_RATIOS)
        out["init_r"] = init_r
        out["target_r"] = max(1, round(init_r * ratio))


def _suggest_width(trial: Any, name: str, choices: list[int], widest: list[int]) -> int:
    """A bit width of `choices`: fixed when there is one; else parameter `name` when `choices` is the `widest`
    list, else `name` suffixed with the choices (Optuna refuses other choices under a name it has seen)."""
    if len(choices) == 1:
        return choices[0]
    key = name if choices == widest else "_".join([name, *map(str, choices)])
    return int(trial.suggest_categorical(key, choices))


def build_config(params: dict[str, Any], base: TrialConfig, num_layers: int) -> TrialConfig:
    """The TrialConfig for sampled `params` on top of `base` (task, model, training settings)."""
    data = base.to_dict()
    bits = params["bits"]
    default = max(set(bits), key=bits.count)
    data["quantization"].update(
        {"default_bits": default, "layer_bits": {i: b for i, b in enumerate(bits) if b != default}}
    )
    if params["method"] == "lora":
        ranks = params["ranks"]
        common = max(set(ranks), key=ranks.count)
        data["adapter"].update(
            {"method": "lora", "r": common, "layer_ranks": {i: r for i, r in enumerate(ranks) if r != common}}
        )
    else:
        data["adapter"].update(
            {
                "method": "adalora",
                "init_r": params["init_r"],
                "target_r": params["target_r"],
                "layer_ranks": {},
                "orth_reg_weight": ADALORA_ORTH_REG,
            }
        )
        data["training"]["lr"] = base.training.lr * ADALORA_LR_FACTOR
    if "gradient_checkpointing" in params:
        data["training"]["gradient_checkpointing"] = bool(params["gradient_checkpointing"])
    data["config_id"] = None
    cfg = TrialConfig.from_dict(data)
    cfg.config_id = match_grid(cfg, num_layers)
    return cfg


def _signature(cfg: TrialConfig, num_layers: int) -> tuple:
    a = cfg.adapter
    ranks = tuple(a.ranks_per_layer(num_layers)) if a.method == "lora" else (a.init_r, a.target_r)
    bits = tuple(cfg.quantization.bits_per_layer(num_layers))
    return (a.method, bits, ranks, cfg.training.gradient_checkpointing)


def match_grid(cfg: TrialConfig, num_layers: int) -> str | None:
    """The grid id whose bits and ranks equal this config's, if any (so enqueued grid points keep their labels)."""
    for config_id in GRID_IDS:
        ref = grid_config(config_id, cfg.task.name, cfg.model.name, num_layers)
        ref.training.gradient_checkpointing = TrialConfig().training.gradient_checkpointing
        if _signature(ref, num_layers) == _signature(cfg, num_layers):
            return config_id
    return None


def grid_points(num_layers: int, methods: list[str] | None = None) -> list[dict[str, Any]]:
    """The six grid configs as parameter dicts of this space (for Optuna's enqueue_trial), in `GRID_IDS` order,
    keeping only those whose method is in `methods` (default: all)."""
    n_crit = len(critical_layers(num_layers))
    uniform8 = {"rank_spread": "uniform", "rank_budget": 8}
    ada = {"init_r": 12, "target_ratio": 0.33}
    points = {
        "B-FP": {"method": "lora", "low_bits": 16, **uniform8},
        "B-Q4": {"method": "lora", "low_bits": 4, "n_high": 0, **uniform8},
        "B-Ada": {"method": "adalora", "low_bits": 16, **ada},
        "Joint-1": {"method": "adalora", "low_bits": 4, "n_high": 0, **ada},
        "Joint-2": {
            "method": "adalora",
            "low_bits": 4,
            "n_high": n_crit,
            "high_bits": 8,
            "placement": "ends",
            **ada,
        },
        "Joint-3": {
            "method": "lora",
            "low_bits": 4,
            "n_high": n_crit,
            "high_bits": 8,
            "placement": "ends",
            "rank_spread": "rising",
            "rank_budget": 8,
        },
    }
    # The grid trains with checkpointing (the default); ignored by Optuna where the parameter is not sampled.
    return [
        {**points[c], "gradient_checkpointing": True}
        for c in GRID_IDS
        if methods is None or points[c]["method"] in methods
    ]
