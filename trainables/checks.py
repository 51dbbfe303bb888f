"""Pre-flight checks: everything about a TrialConfig that can be wrong is found before any training starts."""

from __future__ import annotations

from typing import Any

from trainables import adapters, models
from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.loop import pick_device, total_steps

POSITION_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx", "max_seq_len", "seq_length")
"""Config attributes that bound a model's sequence length, in the order they are looked up."""
PADDING_OFFSET_TYPES = ("roberta", "xlm-roberta", "camembert", "data2vec-text")
"""Model types whose position ids start after the padding index (pad_token_id + 1 table rows unused)."""


def preflight(cfg: TrialConfig) -> int:
    """Raise ConfigError for a model that cannot be found, layer maps naming layers the model lacks, a sequence
    length above the model's positions, a classification head with another number of labels than the task's,
    task data that cannot be read (`TaskSpec.check_data`: a data folder missing files, a bad own-data file),
    adapter.target_modules matching no linear layer of the blocks, or an AdaLoRA schedule that does not fit the
    steps. Returns the model's layer count."""
    from trainables.tasks import get_task

    pick_device(cfg.training.device)
    get_task(cfg.task.name).check_data(cfg.task)  # before the model: the head may need the data's classes
    config = models.load_config(cfg.model)
    n = models.num_layers_of(config)
    cfg.quantization.bits_per_layer(n)
    cfg.adapter.ranks_per_layer(n)
    if cfg.adapter.method == "lora" and cfg.adapter.layer_ranks and not any(cfg.adapter.ranks_per_layer(n)):
        raise ConfigError(
            "adapter.layer_ranks: every layer has rank 0, nothing would train; give a layer rank > 0"
        )
    check_model_bounds(cfg, config)
    if cfg.adapter.target_modules is not None:
        check_target_modules(cfg)
    if cfg.adapter.method == "adalora" and cfg.training.epochs is None:
        cfg.adapter.schedule(total_steps(cfg, 0))
    return n


def position_limit(config: Any) -> tuple[str, int, bool] | None:
    """(config attribute, longest sequence in tokens, whether the positions are rotary) of a transformers config,
    or None when it states no limit. Rotary models (Llama, Qwen2, SmolLM) have no position table, but their
    `max_position_embeddings` is the context they were trained for (already extended when rope scaling is set)."""
    for attr in POSITION_ATTRS:
        value = getattr(config, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if getattr(config, "model_type", "") in PADDING_OFFSET_TYPES:
                value -= (getattr(config, "pad_token_id", None) or 0) + 1
            rotary = any(
                getattr(config, a, None) is not None
                for a in ("rope_parameters", "rope_scaling", "rope_theta")
            )
            return attr, value, rotary
    return None


def check_model_bounds(cfg: TrialConfig, config: Any) -> None:
    """ConfigError naming the setting, its value and the model's limit, for settings the model config bounds:
    `training.seq_len` (classification truncation length, language-model block length, in tokens) against the
    positions, and for a classification task a checkpoint whose classification head has another number of labels
    than the task's classes. (Layer maps are checked against the
    layer count by the config classes.)

    Rotary models are refused too, not warned about: past their trained context the perplexity they give is not
    a number that compares with anything, and a grid would record it as a result."""
    limit = position_limit(config)
    if limit is not None and cfg.training.seq_len > limit[1]:
        attr, value, rotary = limit
        kind = "context it was trained for" if rotary else "position table size"
        raise ConfigError(
            f"training.seq_len: {cfg.training.seq_len} tokens is above the {value} that model {cfg.model.name!r} "
            f"takes (config {attr}, its {kind}); use training.seq_len <= {value}"
        )
    heads = [
        a for a in (getattr(config, "architectures", None) or []) if a.endswith("ForSequenceClassification")
    ]
    if not heads:
        return
    from trainables.tasks import get_task, head_of

    head = head_of(cfg.task)
    if not head.causal and config.num_labels != head.num_labels:
        title = get_task(cfg.task.name).title
        raise ConfigError(
            f"model {cfg.model.name!r}: its {heads[0]} head has {config.num_labels} labels, {title} needs "
            f"{head.num_labels}; use the base model (without the classification head) or a "
            f"{head.num_labels}-label checkpoint"
        )


def check_target_modules(cfg: TrialConfig) -> None:
    """ConfigError when `adapter.target_modules` names no linear layer of the model's blocks (found on the meta
    device: no weights loaded), listing the names there are."""
    from trainables.quantize import is_linear_like

    prefix, blocks = models.find_blocks(models.meta_model(cfg.model, cfg.task))
    names = [[n for n, m in block.named_modules() if n and is_linear_like(m)] for block in blocks]
    adapters.target_names(prefix, names, cfg.adapter)
