"""LoRA / AdaLoRA on the (quantized) blocks: PEFT configs with per-layer ranks, and rank read-back.

Target modules are given to PEFT as full module names, so a per-layer rank pattern lands exactly on the layers of
block i and nowhere else. PEFT picks its bitsandbytes LoRA / AdaLoRA layer for each 4-bit / 8-bit base layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trainables.config import AdapterConfig
from trainables.errors import ConfigError


def target_names(prefix: str, layer_modules: list[list[str]], cfg: AdapterConfig) -> list[list[str]]:
    """Full names of the adapted modules of each block (filtered by `cfg.target_modules` suffixes)."""
    out = []
    for i, names in enumerate(layer_modules):
        chosen = [
            n
            for n in names
            if cfg.target_modules is None or any(n == t or n.endswith("." + t) for t in cfg.target_modules)
        ]
        out.append([f"{prefix}.{i}.{n}" for n in chosen])
    if not any(out):
        available = sorted({n.rsplit(".", 1)[-1] for names in layer_modules for n in names})
        raise ConfigError(
            f"adapter.target_modules: {cfg.target_modules} matches no linear layer in the blocks; "
            f"available: {', '.join(available)}"
        )
    return out


def peft_config(cfg: AdapterConfig, targets: list[list[str]], task: str, total_steps: int) -> Any:
    """The PEFT LoraConfig (with a per-module rank pattern) or AdaLoraConfig for these targets."""
    from peft import AdaLoraConfig, LoraConfig, TaskType

    from trainables.tasks import spec_of

    task_type = TaskType.CAUSAL_LM if spec_of(task).head_kind == "causal_lm" else TaskType.SEQ_CLS
    if cfg.method == "adalora":
        tinit, tfinal, delta = cfg.schedule(total_steps)
        return AdaLoraConfig(
            init_r=cfg.init_r,
            target_r=cfg.target_r,
            tinit=tinit,
            tfinal=tfinal,
            deltaT=delta,
            beta1=cfg.beta1,
            beta2=cfg.beta2,
            orth_reg_weight=cfg.orth_reg_weight,
            total_step=total_steps,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=[n for names in targets for n in names],
            task_type=task_type,
        )
    ranks = cfg.ranks_per_layer(len(targets))
    names = [n for r, layer in zip(ranks, targets) if r > 0 for n in layer]
    if not names:
        raise ConfigError(
            "adapter.layer_ranks: every layer has rank 0, nothing would train; give some layer a rank > 0"
        )
    pattern = {re.escape(n): r for r, layer in zip(ranks, targets) if r > 0 and r != cfg.r for n in layer}
    return LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=names,
        rank_pattern=pattern,
        task_type=task_type,
    )


def attach(
    model: nn.Module,
    cfg: AdapterConfig,
    prefix: str,
    layer_modules: list[list[str]],
    task: str,
    total_steps: int,
) -> Any:
    """Wrap `model` with the adapter; only adapter weights (and the classification head) train."""
    from peft import get_peft_model

    targets = target_names(prefix, layer_modules, cfg)
    return get_peft_model(model, peft_config(cfg, targets, task, total_steps))


def _lora_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {
        name: mod
        for name, mod in model.named_modules()
        if hasattr(mod, "lora_A") and "default" in getattr(mod, "lora_A", {})
    }


def active_ranks(model: nn.Module, trained: bool = True) -> dict[str, int]:
    """Rank of each adapted module: LoRA's r; after AdaLoRA training, the count of singular values not pruned
    to zero (AdaLoRA starts its singular values at zero, so before training it is init_r)."""
    out = {}
    for name, mod in _lora_modules(model).items():
        lora_e = getattr(mod, "lora_E", None)
        if trained and lora_e is not None and "default" in lora_e:
            out[name] = int(torch.count_nonzero(lora_e["default"].detach()).item())
        else:
            out[name] = int(mod.r["default"])
    return out


def ranks_by_layer(ranks: dict[str, int], prefix: str, num_layers: int) -> list[list[int]]:
    """Group module ranks by block index (blocks without adapters get an empty list)."""
    pattern = re.compile(rf"(^|\.){re.escape(prefix)}\.(\d+)\.")
    grouped: list[list[int]] = [[] for _ in range(num_layers)]
    for name, r in ranks.items():
        match = pattern.search(name)
        if match:
            grouped[int(match.group(2))].append(r)
    return grouped


def adapter_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def set_dtypes(model: nn.Module, compute_dtype: torch.dtype) -> None:
    """Trainable weights (adapters, a classification head that PEFT copied from the base) in float32, as the QLoRA
    recipe keeps them, with the compute-dtype activations cast to float32 on the way into a trained head; frozen
    adapter parameters (AdaLoRA's `ranknum`) in the compute dtype.

    PEFT already keeps LoRA / AdaLoRA matrices in float32 (`autocast_adapter_dtype`) and casts inputs to them; a
    head listed in `modules_to_save` is a copy in the base's dtype, so it is cast here and given a pre-hook. PEFT's
    bitsandbytes AdaLoRA layers scale their compute-dtype output by the float32 `ranknum` after casting it back,
    which turns the whole residual stream float32 (peft 0.21.2); `ranknum` holds a small integer (the rank), exact
    in 16 bits."""
    for param in model.parameters():
        if not param.is_floating_point():
            continue
        want = torch.float32 if param.requires_grad else compute_dtype
        if param.dtype != want and (param.requires_grad or _is_adapter_param(model, param)):
            param.data = param.data.to(want)
    for module in model.modules():
        if type(module).__name__ == "ModulesToSaveWrapper":
            module.register_forward_pre_hook(_inputs_to_float32)


def _is_adapter_param(model: nn.Module, param: nn.Parameter) -> bool:
    ids = getattr(model, "_rankbits_adapter_param_ids", None)
    if ids is None:
        ids = {id(p) for n, p in model.named_parameters() if ".ranknum." in n or ".lora_" in n}
        model._rankbits_adapter_param_ids = ids
    return id(param) in ids


def _inputs_to_float32(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)


def orth_penalty(model: nn.Module) -> Callable[[], float] | None:
    """For an AdaLoRA model, a function returning the term PEFT's `AdaLoraModel.forward` adds to the task loss
    when labels are given: orth_reg_weight x the mean over the adapter's lora_A (P) and lora_B (Q) matrices of
    ||P P^T - I||_F (and ||Q^T Q - I||_F), in loss units (nats), on the current weights, without gradients.
    None for models without an AdaLoRA adapter.

    The model's `.loss` is the task loss plus this term (PEFT adds it in place, so the task loss cannot be read
    back); subtracting it gives the task loss for logging, comparable with LoRA runs."""
    base = getattr(model, "base_model", None)
    configs = getattr(base, "peft_config", None)
    name = getattr(base, "trainable_adapter_name", None)
    if not configs or name is None or not hasattr(configs[name], "orth_reg_weight"):
        return None
    weight = float(configs[name].orth_reg_weight)
    inner = base.model
    params = [
        (p, "lora_A" in n)
        for n, p in inner.named_parameters()
        if ("lora_A" in n or "lora_B" in n) and name in n
    ]

    @torch.no_grad()
    def penalty() -> float:
        if not params or weight == 0:
            return 0.0
        covs = [p @ p.T if is_a else p.T @ p for p, is_a in params]  # r x r each
        if len({c.shape for c in covs}) == 1:  # AdaLoRA keeps init_r everywhere: one batched norm
            stacked = torch.stack(covs)
            eye = torch.eye(stacked.size(-1), dtype=stacked.dtype, device=stacked.device)
            norms = torch.linalg.matrix_norm(stacked - eye)
        else:
            norms = torch.stack(
                [
                    torch.linalg.matrix_norm(c - torch.eye(len(c), dtype=c.dtype, device=c.device))
                    for c in covs
                ]
            )
        return weight * float(norms.float().mean())  # one device sync

    return penalty
