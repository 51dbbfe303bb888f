"""Result columns: one `Column` per value a trial's row can hold, in one table (`COLUMNS`, at the bottom).

Everything that lists result columns is generated from this table (PEFT `method_comparison` keeps one
`TrainResult` for every column a run reports): the summary CSV's columns and the row of every trial
(`trainables.records.flatten`), the analysis frame's columns and dtypes (`analysis.results`), the columns allowed
as objectives and their natural directions (`analysis.objectives`, `rankbits pareto --objectives`), plot axis
labels (`analysis.plots`), decimals in tables (`analysis.report`, the terminal summary of `search.results_io`),
and what Optuna is told for a trial that never trained (`search.searcher.infeasible_values`: the value the config
fixes where `known`, else `Column.worst`). `register` adds a column (a test adds a made-up one).

`analysis` reads trainables' column metadata through this module only; it imports nothing heavy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from trainables.errors import ConfigError

DTYPES = ("string", "layers", "Int64", "float64", "status")
"""Column kinds: pandas `string`; `layers` (comma-joined per-layer numbers like "8,4,4,8", a `string`); nullable
`Int64`; `float64` (NaN when missing); `status` (a categorical of `trainables.result.TrialStatus`)."""
DIRECTIONS = ("min", "max")


@dataclass(frozen=True)
class Column:
    """One result column: its type, unit, objective direction, worst value, label and table format."""

    name: str
    dtype: str = "float64"
    """One of `DTYPES`: how the analysis frame types it."""
    unit: str = ""
    """`MB` (2^20 bytes), `s`, `tokens/s`, `bits` ...; empty for counts and ratios."""
    direction: str | None = None
    """`max` or `min` when the column may be an objective (its natural direction); None: not an objective."""
    label: str = ""
    """Axis label in plots; empty: the name."""
    digits: int | None = None
    """Decimals in tables; None: 4 significant digits."""
    summary: bool = True
    """In `experiment_summary.csv` and every trial's row; False: added by analysis to its frames only."""
    source: str | None = None
    """Where a trial's row reads it (`records.flatten`): None -> the `TrialResult` field of the same name;
    `config.<section>.<field>` (or `config.config_id`) -> the trial's `TrialConfig`; `derived` -> computed in
    `trainables.records` (`DERIVED`)."""
    low: float = 0.0
    """The smallest value it can take: the worst of a `max` objective (nothing measured is never better)."""
    high: float = math.inf
    """The largest value it can take: the worst of a `min` objective (Optuna stores +inf)."""
    known: bool = False
    """The config fixes it without training (`search.searcher.known_values`): recorded for infeasible trials."""
    planned: bool = False
    """The config alone fixes it: analysis fills it from `params.json` for a trial that never reported it."""
    blank_when_partial: bool = False
    """A stopped or interrupted trial never measured it: blank in its row, not 0."""
    short: str | None = None
    """Heading in the terminal summary table (`search.results_io.table_text`); None: not shown there."""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"column {self.name}: dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise ConfigError(f"column {self.name}: direction {self.direction!r}; use min, max or None")

    def worst(self, direction: str | None = None) -> float:
        """The worst value in `direction` (default: its own): `low` for max, `high` for min."""
        return self.low if (direction or self.direction) == "max" else self.high

    @property
    def axis_label(self) -> str:
        return self.label or self.name


COLUMNS: list[Column] = []
"""The table, in the analysis frame's column order (filled at the bottom of this module, and by `register`)."""


def register(column: Column) -> Column:
    """Append a column (before the analysis-only trailing columns when it is a summary column); ConfigError when
    the name is taken."""
    if any(c.name == column.name for c in COLUMNS):
        raise ConfigError(f"column {column.name!r} is already in the result table")
    trailing = [i for i, c in enumerate(COLUMNS) if not c.summary and i > 0 and COLUMNS[i - 1].summary]
    at = trailing[-1] if column.summary and trailing else len(COLUMNS)
    COLUMNS.insert(at, column)
    return column


def unregister(name: str) -> None:
    """Remove a column (tests that register a made-up one)."""
    COLUMNS[:] = [c for c in COLUMNS if c.name != name]


def column(name: str) -> Column | None:
    return next((c for c in COLUMNS if c.name == name), None)


def summary_columns() -> list[str]:
    """`experiment_summary.csv`'s columns, in order."""
    return [c.name for c in COLUMNS if c.summary]


def planned_columns() -> list[str]:
    """Columns the trial's config alone fixes (`Column.planned`)."""
    return [c.name for c in COLUMNS if c.planned]


def frame_columns() -> list[str]:
    """The analysis frame's columns, in order (summary columns framed by source / kind / trial number and the
    derived extras)."""
    return [c.name for c in COLUMNS]


def names_of(dtype: str) -> tuple[str, ...]:
    """Columns of one `DTYPES` kind."""
    return tuple(c.name for c in COLUMNS if c.dtype == dtype)


def dtypes() -> dict[str, str]:
    """{column: `DTYPES` kind} of every column."""
    return {c.name: c.dtype for c in COLUMNS}


def objective_columns() -> dict[str, str]:
    """{column: natural direction} of every column allowed as an objective, in table order."""
    return {c.name: c.direction for c in COLUMNS if c.direction is not None}


def worst_values(objectives: Mapping[str, str] | None = None) -> dict[str, float]:
    """{column: worst value} for `objectives` ({column: direction}; default: every objective column in its own
    direction). ConfigError for a column that cannot be an objective."""
    chosen = objectives if objectives is not None else objective_columns()
    out = {}
    for name, direction in chosen.items():
        col = column(name)
        if col is None or col.direction is None:
            raise ConfigError(
                f"objective {name!r} is not an objective column; allowed: {', '.join(objective_columns())}"
            )
        out[name] = col.worst(direction)
    return out


def digits_of(name: str) -> int | None:
    """Decimals of `name` in tables (None: 4 significant digits, also for columns not in the table)."""
    col = column(name)
    return col.digits if col is not None else None


def axis_label(name: str) -> str:
    col = column(name)
    return col.axis_label if col is not None else name


def is_memory(name: str) -> bool:
    """Whether the column is a memory size (unit MB)."""
    col = column(name)
    return col is not None and col.unit == "MB"


V = TypeVar("V")


class LiveMap(Mapping[str, V]):
    """A read-only mapping recomputed from the table on every access (old module constants such as
    `OBJECTIVE_COLUMNS` stay importable and see columns registered later)."""

    def __init__(self, build: Callable[[], Mapping[str, V]]) -> None:
        self._build = build

    def __getitem__(self, key: str) -> V:
        return self._build()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._build())

    def __len__(self) -> int:
        return len(self._build())

    def __repr__(self) -> str:
        return repr(dict(self._build()))


# --- the table ------------------------------------------------------------------------------------------------

_MB = "MB"

# fmt: off
for _column in (
    Column("source", "string", summary=False),
    Column("kind", "string", summary=False),
    Column("trial_number", "Int64", summary=False),
    Column("trial_id", "string", source="derived", short="trial"),
    Column("config_id", "string", source="config.config_id", short="config", planned=True),
    Column("task", "string", source="config.task.name", short="task", planned=True),
    Column("model", "string", source="config.model.name", planned=True),
    Column("seed", "Int64", source="config.training.seed", short="seed", planned=True),
    Column("method", "string", source="config.adapter.method", planned=True),
    Column("quantization", "string", source="derived", planned=True),
    Column("lora_strategy", "string", source="derived", planned=True),
    Column("status", "status", short="status"),
    Column("error", "string"),
    Column("accuracy", direction="max", high=1.0, label="accuracy", digits=3, short="acc"),
    Column("perplexity", direction="min", label="perplexity", digits=2, short="ppl"),
    Column("macro_f1", direction="max", high=1.0, label="macro-F1", digits=3),
    Column("num_classes", "Int64"),
    Column("eval_loss", direction="min", label="eval loss", digits=4),
    Column("trainable_params", "Int64", direction="min", label="trainable parameters", known=True,
           blank_when_partial=True),
    Column("total_params", "Int64", blank_when_partial=True),
    Column("trainable_pct", unit="%", direction="min", label="trainable parameters (%)", digits=3,
           blank_when_partial=True, short="train%"),
    Column("peak_memory_mb", unit=_MB, direction="min", label="peak memory (MB)", digits=1, short="peak MB"),
    Column("peak_load_memory_mb", unit=_MB, direction="min", label="peak load memory (MB)", digits=1),
    Column("weight_memory_mb", unit=_MB, direction="min", label="weight memory (MB)", digits=1, known=True,
           blank_when_partial=True, short="weights MB"),
    Column("adapter_memory_mb", unit=_MB, direction="min", label="adapter memory (MB)", digits=1,
           blank_when_partial=True),
    Column("predicted_peak_mb", unit=_MB, direction="min", label="predicted peak memory (MB)", digits=1,
           short="pred MB"),
    Column("train_time_s", unit="s", direction="min", label="train time (s)", digits=1, blank_when_partial=True,
           short="time s"),
    Column("tokens_per_s", unit="tokens/s", direction="max", label="throughput (tokens/s)",
           blank_when_partial=True, short="tok/s"),
    Column("steps", "Int64"),
    Column("bits_per_layer", "layers", short="bits"),
    Column("mean_bits", unit="bits", direction="min", label="mean bits per weight", digits=2, source="derived"),
    Column("ranks_per_layer", "layers", short="ranks"),
    Column("total_rank", "Int64", direction="min", label="total LoRA rank", known=True, blank_when_partial=True),
    Column("initial_total_rank", "Int64", known=True, blank_when_partial=True),
    Column("lr", source="config.training.lr", planned=True),
    Column("batch_size", "Int64", source="config.training.batch_size", planned=True),
    Column("seq_len", "Int64", source="config.training.seq_len", planned=True),
    Column("compute_dtype", "string", source="derived"),
    Column("gradient_checkpointing", "string", source="config.training.gradient_checkpointing"),
    Column("device", "string"),
    Column("memory_measure", "string"),
    Column("data_note", "string"),
    Column("perplexity_convention", "string"),
    Column("config_key", "string", source="derived", planned=True),  # trainables.config.config_key: no seed
    Column("n_layers", "Int64", summary=False),
    Column("origin", "string", summary=False),
    Column("tune_iterations", "Int64", summary=False),
):
    register(_column)
# fmt: on
