"""The task registry: one module per task, each registering one `TaskSpec` (see `base.py`).

`TASKS` maps a task name to its spec; every other list of tasks (the `task.name` choices, `--task` / `--tasks`
choices, `grid --model-<task>` flags, default training settings and model presets, metric names and directions,
model heads, the memory model's row shape) is read from it. Adding a task is one new module that subclasses
`ClassificationTask` or `LanguageModelTask` and is decorated with `@register`, plus its import at the bottom of
this file (or an import anywhere before use, as a test does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from trainables.errors import ConfigError
from trainables.tasks.base import (
    HEADS,
    ClassificationTask,
    Head,
    LanguageModelTask,
    Scores,
    TaskSpec,
)

if TYPE_CHECKING:
    from trainables.config import TaskConfig

TASKS: dict[str, TaskSpec] = {}
"""Registered tasks by name, in registration order."""

T = TypeVar("T", bound=type[TaskSpec])


def register(cls: T) -> T:
    """Class decorator: register one instance of a TaskSpec subclass under its `name`.

    Raises ValueError for a name that is not an identifier or already taken, or a head outside `HEADS`."""
    spec = cls()
    if not spec.name.isidentifier():
        raise ValueError(f"task name {spec.name!r}: use a Python identifier (it names --model-{spec.name})")
    if spec.name in TASKS:
        raise ValueError(f"task {spec.name!r} is registered twice")
    if spec.head_kind not in HEADS:
        raise ValueError(f"task {spec.name!r}: head {spec.head_kind!r}; one of {', '.join(HEADS)}")
    TASKS[spec.name] = spec
    return cls


def unregister(name: str) -> None:
    """Remove a task (tests that register a made-up one)."""
    TASKS.pop(name, None)


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)


def get_task(name: str) -> TaskSpec:
    """The spec of task `name`; ConfigError naming the registered tasks when there is none."""
    spec = TASKS.get(name)
    if spec is None:
        raise ConfigError(f"task.name: unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return spec


def spec_of(task: str | TaskConfig) -> TaskSpec:
    """The spec of a task name or TaskConfig."""
    return get_task(task if isinstance(task, str) else task.name)


def head_of(task: str | TaskConfig | Head) -> Head:
    """The model head for a task name (its default head), a TaskConfig (classification tasks may count their
    labels in the data) or a Head (returned as is)."""
    if isinstance(task, Head):
        return task
    if isinstance(task, str):
        return get_task(task).head()
    return get_task(task.name).head(task)


def metric_directions() -> dict[str, str]:
    """Every metric some task measures, with its direction ({"accuracy": "max", "perplexity": "min", ...})."""
    return {m: d for spec in TASKS.values() for m, d in spec.metrics.items()}


__all__ = [
    "TASKS",
    "ClassificationTask",
    "Head",
    "LanguageModelTask",
    "Scores",
    "TaskSpec",
    "get_task",
    "head_of",
    "metric_directions",
    "register",
    "spec_of",
    "task_names",
    "unregister",
]

# The shipped tasks, one module each (import order = registry order = help order).
from trainables.tasks import sst2, wikitext2, textcls, lm  # noqa: E402, F401, I001
