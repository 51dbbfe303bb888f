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
    """An `evaluate` metric from this folder: `accuracy`, `f1` (macro-F1) or `perplexity`."""
    import evaluate

    return evaluate.load(str(HERE / f"{name}.py"))


def accuracy(predictions: list[int], references: list[int]) -> float:
    return float(load("accuracy").compute(predictions=predictions, references=references)["accuracy"])


def macro_f1(predictions: list[int], references: list[int]) -> float:
    """Unweighted mean of the per-class F1 over the classes in either list (scikit-learn's macro average)."""
    return float(load("f1").compute(predictions=predictions, references=references)["macro_f1"])


def perplexity(nll_sums: list[float], token_counts: list[int]) -> float:
    """exp(mean token NLL) over every evaluated token."""
    value = load("perplexity").compute(nll_sums=nll_sums, token_counts=token_counts)["perplexity"]
    return float(value) if math.isfinite(value) else float("inf")
