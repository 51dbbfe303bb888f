"""The searcher tells Optuna a diverged trial failed, so it is never on the study's own front (issue 13 item 9)."""

import optuna
import pytest

from search.searcher import RankbitsOptunaSearch


def space(trial):
    trial.suggest_int("r", 1, 8)


@pytest.mark.parametrize(
    "status,state", [("completed", "COMPLETE"), ("diverged", "FAIL"), ("failed", "FAIL")]
)
def test_trial_end_states(status, state):
    search = RankbitsOptunaSearch(
        space=space, metric=["accuracy", "peak_memory_mb"], mode=["max", "min"], seed=0
    )
    search.suggest("t1")
    search.on_trial_complete("t1", {"status": status, "accuracy": 0.477, "peak_memory_mb": 500.0})
    trial = search._ot_study.trials[0]
    assert trial.state is getattr(optuna.trial.TrialState, state)
    assert (search._ot_study.best_trials != []) == (status == "completed")
