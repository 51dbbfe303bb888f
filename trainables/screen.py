"""Zero-training low fidelity: a configuration's task metric before any training step, on a small evaluation sample.

`Screener(base, examples)` loads the tokenizer and the task's data once (with `base`'s training settings and an
evaluation sample of `examples` rows); `Screener.score(cfg)` builds each candidate's model as a trial does
(`loop.build_quantized`: load, convert every block to the config's bits) and scores it with the trial's own
evaluation (the task's `TaskSpec.score`, as `loop.score_all`) with no optimizer step. The adapter is left off: a
trial's adapter starts as a zero update (LoRA's B and AdaLoRA's singular values are zero), so the model a trial
would evaluate before training computes the same outputs; what the score measures is the damage of the config's
bit allocation. `rankbits pareto --screen` uses it as the first rung of a multi-fidelity search.

The sample is drawn from the task's **training** text (`calibration_sample`: `examples` rows chosen by the seed,
as the sensitivity measurement does), never from the evaluation split: trials report their metric on the
evaluation split, so choosing what to train by it would select on the test text.

The score is meaningful only where the task's metric is meaningful untrained (`TaskSpec.untrained_metric_meaningful`:
language modelling, whose pretrained head already predicts the text; not classification, whose new head gives
chance accuracy whatever the weights): other tasks are refused (`check_screenable`).

Cost per candidate: one model load and quantization (what a trial spends before its first step) plus one forward
pass over the sample (`examples` x `training.seq_len` tokens for a language-model task), no backward pass; the
data is read and tokenized once per `Screener`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from trainables.config import TrialConfig
from trainables.data import TaskData
from trainables.errors import ConfigError

FIDELITY = "zero_training"
"""The fidelity name every screen result carries (the trials' own results are full training)."""


@dataclass(frozen=True)
class ScreenScore:
    """One configuration's zero-training evaluation."""

    fidelity: str
    """`FIDELITY`."""
    metric: str
    """The task metric's name (a TrialResult field, e.g. `perplexity`)."""
    value: float
    """The task metric of the untrained (quantized, adapter at init) model on the sample."""
    loss: float
    """Mean task loss on the sample (nats per token for language modelling)."""
    eval_rows: int
    """Evaluation rows scored (blocks of `training.seq_len` tokens for language modelling)."""
    weight_memory_mb: float
    """The quantized base weights as stored (MB = 2^20 bytes), as a trial reports them."""
    seconds: float
    """Wall time: load, quantize and score."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_screenable(task: str) -> None:
    """ConfigError (one line) when `task`'s metric says nothing before training (see module docstring)."""
    from trainables.tasks import get_task

    spec = get_task(task)
    if not spec.untrained_metric_meaningful:
        raise ConfigError(
            f"--screen: {task}'s {spec.metric} is meaningless before training (its {spec.head_kind} head starts "
            "at random, so every configuration scores chance); drop --screen for this task"
        )


def calibration_sample(task_data: TaskData, examples: int, seed: int) -> TaskData:
    """`task_data` whose evaluation rows are `examples` rows of its training data chosen by `seed` (all of them when
    it holds fewer), so a score on it never touches the evaluation split. ConfigError for `examples` < 1."""
    import dataclasses
    import random

    if examples < 1:
        raise ConfigError(f"--screen-examples {examples}: must be >= 1")
    pool = task_data.train
    chosen = sorted(random.Random(seed).sample(range(len(pool.ids)), min(examples, len(pool.ids))))
    labels = None if pool.labels is None else [pool.labels[i] for i in chosen]
    return dataclasses.replace(task_data, eval_ids=[pool.ids[i] for i in chosen], eval_labels=labels)


class Screener:
    """Zero-training scores of configurations that share `base`'s model, task and training settings (they differ
    in bits and adapter). Loads the tokenizer and data at construction: ConfigError for a task whose metric is
    meaningless untrained, `examples` < 1, or data that cannot be read."""

    def __init__(self, base: TrialConfig, examples: int) -> None:
        from trainables import models
        from trainables.devices import pick_device, resolve_compute_dtype, torch_dtype
        from trainables.quiet import quiet_libraries

        check_screenable(base.task.name)
        if examples < 1:
            raise ConfigError(f"--screen-examples {examples}: must be >= 1")
        quiet_libraries()
        self.base = base.with_overrides(
            {
                "training.eval_examples": examples,
                "training.eval_tokens": min(base.training.eval_tokens, examples * base.training.seq_len),
            }
        )
        self.device = pick_device(base.training.device)
        self.dtype = torch_dtype(resolve_compute_dtype(base.training.compute_dtype, self.device.type))
        self.tokenizer = models.load_tokenizer(base.model)
        from trainables.loop import load_task_data

        # no training: the sample comes from the training text (module docstring), never the evaluation split
        self.head, task_data = load_task_data(self.base, self.tokenizer, None)
        self.task_data = calibration_sample(task_data, examples, base.training.seed)

    def score(self, cfg: TrialConfig) -> ScreenScore:
        """`cfg`'s zero-training score on the sample. ConfigError when `cfg` differs from the base config in model,
        task or training settings other than those a search samples (learning rate, gradient checkpointing)."""
        import torch

        from trainables.loop import build_quantized, seed_everything
        from trainables.memory import MB
        from trainables.tasks import get_task

        same = ("model", "task")
        if any(getattr(cfg, part) != getattr(self.base, part) for part in same) or (
            cfg.training.seq_len != self.base.training.seq_len
        ):
            raise ConfigError("screen: a candidate differs from the base config in model, task or seq_len")
        start = time.perf_counter()
        seed_everything(cfg.training.seed)
        model, *_, report = build_quantized(cfg, self.head, self.tokenizer, self.device, self.dtype)
        spec = get_task(cfg.task.name)
        model.eval()
        with torch.no_grad():
            scores = spec.score(model, self.task_data, cfg.training.eval_batch_size, self.device)
        del model  # the candidate's model goes before the next one is loaded
        return ScreenScore(
            fidelity=FIDELITY,
            metric=spec.metric,
            value=float(scores.value),
            loss=float(scores.loss),
            eval_rows=len(self.task_data.eval_ids),
            weight_memory_mb=round(report.weight_bytes / MB, 3),
            seconds=round(time.perf_counter() - start, 3),
        )


def screen_config(cfg: TrialConfig, examples: int) -> ScreenScore:
    """Score one configuration with no training on `examples` rows of its training data (`calibration_sample`;
    language modelling: blocks of `training.seq_len` tokens); `cfg`'s device and compute dtype. Raises ConfigError as `Screener` does."""
    return Screener(cfg, examples).score(cfg)
