"""Divergence: a run whose training loss ended far above where it started.

The rule compares the task loss of the first optimizer step (measured before any update, so it does not depend on
the learning rate) with the mean task loss over the last tenth of the steps (at least one step, to smooth out
single noisy batches). The run diverged when that final mean is more than `factor` times the first loss.

Why the training loss and not the evaluation loss against a chance level: the chance level is ln(2) = 0.693 for
SST-2 but has no useful counterpart for language modelling (ln(vocabulary) = 10.8 for SmolLM2 is far above where a
diverged model sits), and a well-trained but over-confident classifier can have an evaluation loss above ln(2)
while being accurate. A loss that grew by a large factor during training is a failure of optimization on every
task. Losses are task losses (AdaLoRA's orthogonality penalty left out), in nats per token or per example.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

FINAL_SHARE = 0.1
"""Share of the steps at the end whose mean loss is compared with the first step's."""


def final_window(steps: int) -> int:
    """Number of final steps whose mean loss is compared with the first step's (at least 1)."""
    return max(1, math.ceil(FINAL_SHARE * steps))


def divergence_reason(losses: Sequence[float], factor: float | None) -> str | None:
    """One line saying why the run diverged, or None when it did not (or `factor` is None: the check is off).

    `losses`: the task loss of every optimizer step in order (length = steps); only the first one and the last
    `final_window(steps)` are read (the others may be NaN). `factor`: > 1.
    """
    if factor is None or not losses:
        return None
    start = float(losses[0])
    window = final_window(len(losses))
    final = sum(losses[-window:]) / window
    if final > factor * start:
        return (
            f"diverged: training loss rose from {start:.4g} (step 1) to a mean of {final:.4g} over the last "
            f"{window} steps, above {factor:g}x its start; lower training.lr"
        )
    return None
