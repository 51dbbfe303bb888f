"""Harness settings that change what a trial measures, as one typed record: stored in `experiment.json` and in every
trial's result (`TrialResult.harness`), so a results folder says how its peaks were measured.

- `trial_process`: `fork` trains each trial in a child forked from a pre-imported template (`trainables.forked`: a
  fresh heap, so the CPU resident-set peak is a fresh process's), `inline` in the worker's own process. On CPU, a
  reused process measured the same trial 20-35% lower (minilm-l6 SST-2, 300 steps; see `search.tuner`).
- `reuse_workers`: whether a finished trial's Ray worker runs the next trial (`reuse_actors`); None where no Ray
  worker runs the trial (`rankbits run`).
- `mmap_threshold`: glibc's mmap threshold in bytes for the training process (`mallopt(M_MMAP_THRESHOLD)`, Linux
  only); 0 keeps glibc's default (fastest). 262144 makes the resident set track live tensors closely at about half
  the speed (`trainables.memory.configure_allocator`).

Each is a CLI flag of `rankbits run / grid / pareto` (`--trial-process`, `--reuse-workers / --no-reuse-workers`,
`--mmap-threshold`); the environment variables in `ENV` are still read as their defaults.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from trainables.errors import ConfigError

TRIAL_PROCESSES = ("fork", "inline")
DEFAULT_MMAP_THRESHOLD = 0
"""Bytes; 0: glibc's own (dynamic) threshold."""
ENV = {
    "trial_process": "RANKBITS_TRIAL_PROCESS",
    "reuse_workers": "RANKBITS_REUSE_WORKERS",
    "mmap_threshold": "RANKBITS_MMAP_THRESHOLD",
}
"""Environment variables read as the flags' defaults (setting -> variable)."""


@dataclass(frozen=True)
class Harness:
    trial_process: str = "inline"
    """`fork` or `inline` (see the module docstring)."""
    reuse_workers: bool | None = None
    """Ray's `reuse_actors`; None: the trial ran without Ray."""
    mmap_threshold: int = DEFAULT_MMAP_THRESHOLD
    """glibc mmap threshold of the training process, bytes (0: glibc's default)."""

    def __post_init__(self) -> None:
        if self.trial_process not in TRIAL_PROCESSES:
            raise ConfigError(f"trial process {self.trial_process!r}: use {' or '.join(TRIAL_PROCESSES)}")
        if self.reuse_workers not in (None, True, False):
            raise ConfigError(f"reuse workers {self.reuse_workers!r}: use true or false")
        if isinstance(self.mmap_threshold, bool) or not isinstance(self.mmap_threshold, int):
            raise ConfigError(f"mmap threshold {self.mmap_threshold!r}: give a whole number of bytes")
        if self.mmap_threshold < 0:
            raise ConfigError(
                f"mmap threshold {self.mmap_threshold}: must be >= 0 bytes (0: glibc's default)"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Harness:
        return cls(**{k: data[k] for k in ("trial_process", "reuse_workers", "mmap_threshold") if k in data})


def parse_trial_process(text: str | None, what: str = "--trial-process") -> str | None:
    """`fork` / `inline` (case-insensitive); None or empty: not set. Raises ConfigError naming `what`."""
    if text is None or not str(text).strip():
        return None
    value = str(text).strip().lower()
    if value not in TRIAL_PROCESSES:
        raise ConfigError(f"{_named(what, text)}: use fork or inline")
    return value


def parse_reuse_workers(text: str | bool | None, what: str = "--reuse-workers") -> bool | None:
    """`1/0`, `true/false`, `yes/no` or a bool; None or empty: not set. Raises ConfigError naming `what`."""
    if text is None or isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if not value:
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{_named(what, text)}: use 1 or 0")


def parse_mmap_threshold(text: str | int | None, what: str = "--mmap-threshold") -> int | None:
    """Whole bytes >= 0 (`262144`, `256K`, `1M`: K and M are 2^10 and 2^20); None or empty: not set.
    Raises ConfigError naming `what`."""
    if text is None or (isinstance(text, int) and not isinstance(text, bool)):
        value = text
    else:
        raw = str(text).strip().upper()
        if not raw:
            return None
        scale = {"K": 2**10, "M": 2**20}.get(raw[-1], 1)
        digits = raw[:-1] if scale > 1 else raw
        if not digits.isdigit():
            raise ConfigError(
                f"{_named(what, text)}: give bytes as a whole number, e.g. 262144 or 256K (0: glibc's default)"
            )
        value = int(digits) * scale
    if value is not None and value < 0:
        raise ConfigError(f"{_named(what, value)}: must be >= 0 bytes (0: glibc's default)")
    return value


def _named(what: str, value: Any) -> str:
    """`--flag 'value'` or `VARIABLE='value'`."""
    return f"{what}{value!r}" if what.endswith("=") else f"{what} {value!r}"


def from_env(name: str) -> Any:
    """The setting `name` ("trial_process", "reuse_workers", "mmap_threshold") from its environment variable
    (`ENV`), parsed; None when unset. A bad value is a ConfigError naming the variable."""
    raw = os.environ.get(ENV[name])
    what = f"{ENV[name]}="
    if name == "trial_process":
        return parse_trial_process(raw, what)
    if name == "reuse_workers":
        return parse_reuse_workers(raw, what)
    return parse_mmap_threshold(raw, what)


_ACTIVE: dict[str, int] = {}


def use_mmap_threshold(threshold: int | None) -> None:
    """The mmap threshold this process trains with (set by the trainable from the trial's harness before `fit`),
    or that the trials it plans for train with (set by `search.resources.resolve_harness` and `rankbits plan`);
    it selects the memory model's CPU constants (`trainables.memory.model_key`). None: back to the environment's
    default."""
    if threshold is None:
        _ACTIVE.pop("mmap_threshold", None)
    else:
        _ACTIVE["mmap_threshold"] = int(threshold)


def default_mmap_threshold() -> int:
    """What `--mmap-threshold` defaults to: $RANKBITS_MMAP_THRESHOLD, else `DEFAULT_MMAP_THRESHOLD`."""
    value = from_env("mmap_threshold")
    return DEFAULT_MMAP_THRESHOLD if value is None else value


def chosen_mmap_threshold(flag: str | int | None) -> int:
    """The mmap threshold (bytes) a run uses: its `--mmap-threshold` value (text or bytes, parsed by
    `parse_mmap_threshold`), else `default_mmap_threshold()`. Raises ConfigError for a bad value."""
    value = parse_mmap_threshold(flag)
    return default_mmap_threshold() if value is None else value


def mmap_threshold() -> int:
    """The mmap threshold (bytes) this process trains with: set by `use_mmap_threshold`, else
    `default_mmap_threshold()`."""
    if "mmap_threshold" in _ACTIVE:
        return _ACTIVE["mmap_threshold"]
    return default_mmap_threshold()
