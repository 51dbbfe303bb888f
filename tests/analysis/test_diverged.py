"""A diverged trial (issue 13 item 9) keeps its status through the results folder and stays off fronts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from analysis import load_results, pareto_front
from trainables.result import TrialStatus

OBJ = {"accuracy": "max", "peak_memory_mb": "min"}


def test_diverged_trial_keeps_its_status_and_is_off_the_front(
    tmp_path: Path, make_trial: Callable[..., Any], make_results: Callable[..., Path], tune_trial: Any
) -> None:
    good = make_trial("a1b2c_00000", accuracy=0.85, peak=800.0)
    bad = make_trial("a1b2c_00001", accuracy=0.477, peak=500.0)  # the lowest memory: would be on the front
    bad.result.status = TrialStatus.DIVERGED
    bad.result.error = (
        "diverged: training loss rose from 0.69 (step 1) to a mean of 127.6 over the last 30 steps"
    )
    for kind, tune in (("summary", None), ("tune", [tune_trial(good), tune_trial(bad)])):
        folder = make_results(
            tmp_path / kind,
            "p",
            "pareto",
            [good, bad],
            summary=tune is None,
            all_results=tune is None,
            tune=tune,
        )
        df = load_results(folder)
        assert df.set_index("trial_id")["status"].astype(str).to_dict() == {
            "a1b2c_00000": "completed",
            "a1b2c_00001": "diverged",
        }, kind
        assert list(pareto_front(df, OBJ)["trial_id"]) == ["a1b2c_00000"]
