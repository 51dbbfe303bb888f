"""Objectives: which result columns a Pareto front or a hypervolume may use, and in which direction.

An objectives mapping is `{column: "min" | "max"}`, in priority order, e.g. `{"accuracy": "max",
"peak_memory_mb": "min"}`. On the command line it is written `accuracy:max,peak_memory_mb:min`. Bad input
raises `ConfigError` with a one-line message that names the bad value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainables.columns import DIRECTIONS, LiveMap, objective_columns
from trainables.errors import ConfigError

OBJECTIVE_COLUMNS: Mapping[str, str] = LiveMap(objective_columns)
"""Every column allowed as an objective, with its natural direction (used when a direction is left out): the
columns of `trainables.columns` with a `direction`, read live."""

DEFAULT_MEMORY_OBJECTIVE = "peak_memory_mb"


def parse_objectives(text: str) -> dict[str, str]:
    """`"accuracy:max,peak_memory_mb:min"` -> `{"accuracy": "max", "peak_memory_mb": "min"}`.

    A column without `:direction` gets its natural direction (`accuracy` -> max, memory -> min). Unknown
    columns, directions other than min/max, duplicates and an empty list raise `ConfigError`.
    """
    items = [part.strip() for part in str(text).split(",") if part.strip()]
    if not items:
        raise ConfigError(
            f"objectives: {text!r} names no objective; write column:direction pairs such as "
            "accuracy:max,peak_memory_mb:min"
        )
    out: dict[str, str] = {}
    for item in items:
        name, sep, direction = item.partition(":")
        name = name.strip()
        _check_column(name)
        out_direction = direction.strip().lower() if sep else OBJECTIVE_COLUMNS[name]
        if name in out:
            raise ConfigError(f"objectives: {name!r} is given twice; name each column once")
        out[name] = _check_direction(name, out_direction)
    return out


def validate_objectives(
    objectives: Mapping[str, str] | str, df: Any = None, *, require_values: bool = True
) -> dict[str, str]:
    """Normalize an objectives mapping (or its text form); given a results frame, check each column is in
    it and (with `require_values`) has at least one value.

    Returns a new dict with lower-case directions, in the given order.
    """
    if isinstance(objectives, str):
        parsed = parse_objectives(objectives)
    else:
        if not objectives:
            raise ConfigError(
                "objectives: none given; name at least one column, "
                "e.g. {'accuracy': 'max', 'peak_memory_mb': 'min'}"
            )
        parsed = {}
        for name, direction in objectives.items():
            _check_column(name)
            parsed[name] = _check_direction(name, str(direction).strip().lower())
    if df is not None:
        for name in parsed:
            if name not in df.columns:
                raise ConfigError(
                    f"objectives: column {name!r} is not in these results; it has {_valued(df)}"
                )
            if require_values and not df[name].notna().any():
                raise ConfigError(
                    f"objectives: column {name!r} has no values in these results; "
                    f"columns with values: {_valued(df)}"
                )
    return parsed


def default_objectives(df: Any) -> dict[str, str]:
    """accuracy:max when the frame has any accuracy values, else perplexity:min; plus peak_memory_mb:min."""
    has_accuracy = "accuracy" in df.columns and bool(df["accuracy"].notna().any())
    metric = {"accuracy": "max"} if has_accuracy else {"perplexity": "min"}
    return {**metric, DEFAULT_MEMORY_OBJECTIVE: "min"}


def format_objectives(objectives: Mapping[str, str]) -> str:
    """The text form: `{"accuracy": "max", "peak_memory_mb": "min"}` -> "accuracy:max,peak_memory_mb:min"."""
    return ",".join(f"{name}:{direction}" for name, direction in objectives.items())


def _check_column(name: str) -> None:
    if name not in OBJECTIVE_COLUMNS:
        raise ConfigError(f"objectives: unknown column {name!r}; allowed: {', '.join(OBJECTIVE_COLUMNS)}")


def _check_direction(name: str, direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ConfigError(f"objectives: direction {direction!r} for {name!r} is not allowed; use min or max")
    return direction


def _valued(df: Any) -> str:
    names = [c for c in OBJECTIVE_COLUMNS if c in df.columns and df[c].notna().any()]
    return ", ".join(names) if names else "no objective column with values"
