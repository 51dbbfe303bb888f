"""One prediction of a trial's training peak, shared by `rankbits plan`, the grid's resource packing, the Pareto
search's budget constraint, the trainable's infeasibility check and every result's `predicted_peak_mb`.

The model's shape comes from its config alone (a module tree on the meta device, no weights); it is built once per
(model, task head) in this process and reused, so predicting many settings of one model costs milliseconds each.
"""

from __future__ import annotations

import functools

from trainables.config import ModelConfig, TrialConfig
from trainables.memory import MB, ArchSpec, MemoryEstimate, arch_from_model, estimate
from trainables.tasks import Head, head_of


@functools.lru_cache(maxsize=16)
def _arch(model: str, cache_dir: str | None, head: Head) -> ArchSpec:
    """Read from the local config.json where `trainables.arch_config` knows the family (milliseconds, no
    transformers import; checked equal to the meta-device reference by tests/trainables/test_arch_config.py),
    else from the module tree on the meta device."""
    from trainables.arch_config import arch_from_config
    from trainables.models import config_json, meta_model

    cfg = ModelConfig(name=model, cache_dir=cache_dir)
    raw = config_json(cfg)
    arch = arch_from_config(raw, head.causal, head.num_labels) if raw is not None else None
    if arch is not None:
        return arch
    return arch_from_model(meta_model(cfg, head), causal=head.causal)


def arch_of(cfg: TrialConfig) -> ArchSpec:
    """The memory model's view of `cfg`'s model (cached per model name, cache folder and task head).

    Raises ConfigError when the model's config cannot be read (not found offline, no config.json), or the task's
    data when a classification task counts its labels there."""
    return _arch(cfg.model.name, cfg.model.cache_dir, head_of(cfg.task))


def predict_peak(cfg: TrialConfig, device_type: str = "cpu", arch: ArchSpec | None = None) -> MemoryEstimate:
    """Predicted training peak of `cfg` on a `device_type` ("cpu", "cuda" or "mps") device, by part (bytes;
    `.total_mb` in MB = 2^20 bytes). `arch` skips reading the model's config when the caller has it already."""
    return estimate(arch if arch is not None else arch_of(cfg), cfg, device_type)


def predicted_peak_mb(cfg: TrialConfig, device_type: str = "cpu", arch: ArchSpec | None = None) -> float:
    """`predict_peak(...).total` in MB (2^20 bytes)."""
    return predict_peak(cfg, device_type, arch).total / MB
