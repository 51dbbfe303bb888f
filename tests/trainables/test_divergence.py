import pytest

from trainables.config import TrainingConfig
from trainables.divergence import divergence_reason
from trainables.errors import ConfigError
from trainables.result import TrialResult, TrialStatus


def test_loss_far_above_its_start_is_divergence():
    losses = [0.69] + [0.6] * 89 + [127.6] * 10
    reason = divergence_reason(losses, 2.0)
    assert (
        reason is not None and "0.69 (step 1)" in reason and "127.6" in reason and "last 10 steps" in reason
    )


@pytest.mark.parametrize(
    "losses",
    [
        [0.69, 0.5, 0.4, 0.3],  # learning
        [0.69] * 50,  # stuck at chance: bad, but not diverged
        [3.3] + [3.0] * 98 + [9.0],  # one bad batch at the end of 100 steps, averaged over the last 10
        [],
    ],
)
def test_normal_and_stuck_runs_are_not_divergence(losses):
    assert divergence_reason(losses, 2.0) is None


def test_factor_none_turns_the_check_off_and_bad_factors_are_refused():
    assert divergence_reason([0.7, 100.0], None) is None
    assert divergence_reason([0.7, 100.0], 2.0) is not None
    with pytest.raises(ConfigError, match=r"training.divergence_factor: 0.5 must be > 1"):
        TrainingConfig(divergence_factor=0.5)


def test_diverged_status_round_trips():
    result = TrialResult(status=TrialStatus.DIVERGED, error="diverged: ...", penalty_curve=[(1, 0.5)])
    back = TrialResult.from_dict(result.to_dict())
    assert back.status is TrialStatus.DIVERGED and back.penalty_curve == [(1, 0.5)]


def test_only_the_first_step_and_the_final_window_are_read():
    nan = float("nan")  # AdaLoRA steps whose penalty was not computed
    assert divergence_reason([0.7] + [nan] * 88 + [100.0] * 10, 2.0) is not None
    assert divergence_reason([0.7] + [nan] * 88 + [0.4] * 10, 2.0) is None
