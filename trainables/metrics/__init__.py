"""Metric modules shipped with the project, loaded through `evaluate` from local files.

`evaluate.load("accuracy")` needs the hub; these scripts make the same metrics available offline.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


@functools.cache
def load(name: str) -> Any:
    """An `evaluate` metric from this folder: `accuracy` or `perplexity`."""
    import evaluate

    return evaluate.load(str(HERE / f"{name}.py"))


def accuracy(predictions: list[int], references: list[int]) -> float:
    return float(load("accuracy").compute(predictions=predictions, references=references)["accuracy"])


def perplexity(nll_sums: list[float], token_counts: list[int]) -> float:
    """exp(mean token NLL) over every evaluated token."""
    value = load("perplexity").compute(nll_sums=nll_sums, token_counts=token_counts)["perplexity"]
    return float(value) if math.isfinite(value) else float("inf")
