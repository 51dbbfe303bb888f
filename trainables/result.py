"""The typed outcome of one trial: status plus every metric the research reports."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainables.config import TrialConfig


class TrialStatus(str, enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    """Raised (out of memory, non-finite loss, broken model): `error` holds the reason."""
    STOPPED = "stopped"
    """Stopped early by a scheduler (ASHA): its metrics are partial and kept off Pareto fronts."""
    INFEASIBLE = "infeasible"
    """Never trained: the memory model predicted it over the budget."""
    DIVERGED = "diverged"
    """Trained to the end, but its training loss ended far above its start (`trainables.divergence`): its metrics
    are kept for the record, `error` says why, and it is kept off Pareto fronts."""
    INTERRUPTED = "interrupted"
    """Cut short by Ctrl-C; `--resume` runs it again. What it had not measured is left blank."""


@dataclass
class TrialResult:
    status: TrialStatus = TrialStatus.COMPLETED
    error: str | None = None
    task: str = ""
    model: str = ""
    config_id: str | None = None
    metric_name: str = ""
    """The task metric (`TaskSpec.metric`): `accuracy` (classification) or `perplexity` (language modelling)."""
    accuracy: float | None = None
    perplexity: float | None = None
    macro_f1: float | None = None
    """Classification with more than two classes: the unweighted mean of the per-class F1 scores."""
    num_classes: int | None = None
    """Classification: the number of classes (the head's outputs); None for a language model."""
    label_names: list[str] = field(default_factory=list)
    """Classification: the class names in label-id order (textcls: the labels found in the data, sorted)."""
    eval_loss: float | None = None
    final_train_loss: float | None = None
    """Task loss of the last logged step (AdaLoRA: without its orthogonality penalty, see `final_orth_penalty`)."""
    final_orth_penalty: float | None = None
    """AdaLoRA: the orthogonality term (orth_reg_weight x regulariser) PEFT added to the optimized loss at the last
    logged step; None for LoRA."""
    steps: int = 0
    trainable_params: int = 0
    total_params: int = 0
    """Base model parameters (4-bit weights counted as weights, not packed bytes) plus adapter parameters."""
    trainable_pct: float = 0.0
    weight_memory_mb: float = 0.0
    """Computed bytes of the base model's weights as stored (quantization state included)."""
    adapter_memory_mb: float = 0.0
    peak_memory_mb: float | None = None
    """Measured peak during training, above the trial's starting point (see `memory_measure`)."""
    peak_load_memory_mb: float | None = None
    """Measured peak while loading and quantizing the model."""
    predicted_peak_mb: float | None = None
    memory_measure: str = ""
    compute_dtype: str = ""
    """The concrete compute dtype the trial ran in (`bfloat16`, `float16`, `float32`; empty in older results,
    which all ran in float32)."""
    gradient_checkpointing: bool | None = None
    """Whether block activations were recomputed in the backward pass (None in older results: they were not)."""
    load_time_s: float = 0.0
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    train_tokens: int = 0
    tokens_per_s: float = 0.0
    bits_per_layer: list[int] = field(default_factory=list)
    bits_per_weight_per_layer: list[float] = field(default_factory=list)
    layer_weight_bytes: list[int] = field(default_factory=list)
    ranks_per_layer: list[float] = field(default_factory=list)
    """Mean adapter rank of the adapted modules of each block (AdaLoRA: after pruning)."""
    initial_ranks_per_layer: list[float] = field(default_factory=list)
    total_rank: int = 0
    """Sum of the ranks of all adapted modules."""
    initial_total_rank: int = 0
    module_ranks: dict[str, int] = field(default_factory=dict)
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    """(step, task loss) at every logged step: comparable across LoRA and AdaLoRA."""
    penalty_curve: list[tuple[int, float]] = field(default_factory=list)
    """AdaLoRA: (step, orthogonality term added to the optimized loss) at every logged step; empty for LoRA."""
    device: str = ""
    data_note: str = ""
    perplexity_convention: str = ""
    """Language modelling: how the text became blocks (`trainables.config.PERPLEXITY_CONVENTIONS`): `joined` (as released,
    the common definition) or `lines` (line by line, blank lines dropped); empty for classification."""
    versions: dict[str, str] = field(default_factory=dict)
    harness: dict[str, Any] = field(default_factory=dict)
    """How the trial was run and measured (`trainables.harness.Harness.to_dict()`: trial_process, reuse_workers,
    mmap_threshold); empty in older results and in results built without a harness."""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        data["loss_curve"] = [list(p) for p in self.loss_curve]
        data["penalty_curve"] = [list(p) for p in self.penalty_curve]
        return data

    @classmethod
    def of(cls, cfg: TrialConfig, **fields: Any) -> TrialResult:
        """A result naming the trial's task, model, config id and task metric, with `fields` set."""
        from trainables.tasks import get_task

        spec = get_task(cfg.task.name)
        metric = spec.metric
        convention = cfg.task.perplexity_convention if spec.head_kind == "causal_lm" else ""
        return cls(
            task=cfg.task.name,
            model=cfg.model.name,
            config_id=cfg.config_id,
            metric_name=metric,
            perplexity_convention=convention,
            **fields,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["status"] = TrialStatus(kwargs.get("status", "completed"))
        kwargs["loss_curve"] = [tuple(p) for p in kwargs.get("loss_curve", [])]
        kwargs["penalty_curve"] = [tuple(p) for p in kwargs.get("penalty_curve", [])]
        return cls(**kwargs)
