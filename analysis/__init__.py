"""Analysis of rankbits results folders: tidy frames, Pareto fronts, hypervolume, plots and the report.

df = load_results(["results/grid", "results/pareto"])
front = pareto_front(df, {"accuracy": "max", "peak_memory_mb": "min"})
hv = hypervolume(df, parse_objectives("accuracy:max,peak_memory_mb:min"))
"""

from __future__ import annotations

from analysis.hypervolume import default_reference_point, hypervolume, hypervolume_history
from analysis.objectives import parse_objectives
from analysis.pareto import pareto_front
from analysis.results import load_results

__all__ = [
    "default_reference_point",
    "hypervolume",
    "hypervolume_history",
    "load_results",
    "parse_objectives",
    "pareto_front",
]
