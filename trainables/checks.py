"""Pre-flight checks: everything about a TrialConfig that can be wrong is found before any training starts."""

from __future__ import annotations

from trainables import data, models
from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.loop import pick_device, total_steps


def preflight(cfg: TrialConfig) -> int:
    """Raise ConfigError for a model that cannot be found, layer maps naming layers the model lacks, a data folder
    missing files, or an AdaLoRA schedule that does not fit the steps. Returns the model's layer count."""
    pick_device(cfg.training.device)
    n = models.count_layers(cfg.model)
    cfg.quantization.bits_per_layer(n)
    cfg.adapter.ranks_per_layer(n)
    if cfg.adapter.method == "lora" and cfg.adapter.layer_ranks and not any(cfg.adapter.ranks_per_layer(n)):
        raise ConfigError(
            "adapter.layer_ranks: every layer has rank 0, nothing would train; give a layer rank > 0"
        )
    root = data.data_root(cfg.task)
    if root is not None:
        data.check_local(root, cfg.task.name)
    if cfg.adapter.method == "adalora" and cfg.training.epochs is None:
        cfg.adapter.schedule(total_steps(cfg, 0))
    return n
