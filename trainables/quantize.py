"""Per-layer weight precision: swap each block's linear layers for a layer of its precision, count bytes exactly.

The precisions, and how each converts a layer and counts its bytes, are the entries of `trainables.precisions`;
this module applies them. Built in: 4 = bitsandbytes `Linear4bit` (NF4 by default, with double quantization, computing in the compute dtype),
8 = `Int8Linear` (a `Linear8bitLt`: int8 weights + one float32 scale per output row, computed weight-only in the
compute dtype, see `trainables/int8.py`), 16 = 16-bit weights (the compute dtype when that is 16-bit, else
`quantization.half_dtype` in a `CastLinear`), 32 = float32 weights. GPT-2's `Conv1D` layers are turned into
`nn.Linear` (transposed weight) first. Every other frozen floating weight (embeddings, norms, LM head) is cast to
the compute dtype (`cast_frozen`); trainable weights stay float32.

Layers are converted one at a time and the float32 original is dropped right away, so quantizing never holds a
second full-precision copy of the model.

Byte accounting (`layer_bytes`, `formula_bytes`) counts every tensor a layer keeps: packed weights, the 4-bit
absmax constants (8-bit when double-quantized, plus the float32 second-level absmax per 256 blocks, the 256-entry
second-level code and its offset), the 16-entry 4-bit code, the int8 row scales, and the bias. Effective bits per
weight count the parts that grow with the weight (packed weights and absmax constants): 4.127 for NF4 with double
quantization and block size 64 (4 + 8/64 + 32/(64*256)), 4.5 without double quantization.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from trainables.config import QuantizationConfig
from trainables.devices import torch_dtype
from trainables.precisions import BLOCKSIZE_4BIT, NESTED_BLOCKSIZE, peft_flags, precision  # noqa: F401


class CastLinear(nn.Linear):
    """A linear layer whose weights are stored in another dtype than the activations (16-bit weights in a
    float32 network, or float32 weights in a 16-bit one): casts the input to the weights' dtype and the output
    back. The bias is stored in the compute dtype and added after the cast back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.linear(x.to(self.weight.dtype), self.weight).to(x.dtype)
        return out + self.bias if self.bias is not None else out


HalfLinear = CastLinear  # the name of results made before the compute dtype existed


def storage_dtype(bits: int, qcfg: QuantizationConfig, compute_dtype: torch.dtype) -> torch.dtype | None:
    """The dtype a `bits`-wide block layer keeps its weights in (`Precision.storage_dtype`; None for the packed
    bitsandbytes 4 / 8-bit layers): 32 -> float32; 16 -> the compute dtype when that is 16-bit, else
    `quantization.half_dtype`."""
    store = precision(bits).storage_dtype
    return None if store is None else torch_dtype(store(qcfg, dtype_name(compute_dtype)))


def base_load_dtype(
    bits_per_layer: list[int], qcfg: QuantizationConfig, compute_dtype: torch.dtype
) -> torch.dtype:
    """The dtype to load the model in before quantizing: the widest storage dtype of its blocks' precisions when
    wider than the compute dtype (a float32 block: float32, the rest cast after quantizing), else the compute
    dtype."""
    stores = {storage_dtype(b, qcfg, compute_dtype) for b in set(bits_per_layer)} - {None}
    widest = max(stores, key=lambda d: d.itemsize, default=compute_dtype)
    return widest if widest.itemsize > compute_dtype.itemsize else compute_dtype


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.bfloat16` -> "bfloat16" (the names of `trainables.devices`)."""
    return str(dtype).removeprefix("torch.")


def _as_linear(module: nn.Module) -> nn.Linear:
    """nn.Linear view of a Linear or GPT-2 Conv1D (whose weight is stored transposed)."""
    if isinstance(module, nn.Linear):
        return module
    in_f, out_f = module.weight.shape
    lin = nn.Linear(in_f, out_f, bias=module.bias is not None, device="meta")
    lin.weight = nn.Parameter(module.weight.data.t().contiguous(), requires_grad=False)
    if module.bias is not None:
        lin.bias = nn.Parameter(module.bias.data, requires_grad=False)
    return lin


def is_linear_like(module: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (nn.Linear, Conv1D))


def convert_linear(
    module: nn.Module,
    bits: int,
    qcfg: QuantizationConfig,
    device: torch.device,
    compute_dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """A new layer of `bits` precision with the weights of `module` (Linear or Conv1D), placed on `device`.

    The bias of every kind is stored in `compute_dtype` (bitsandbytes casts it to the input's dtype anyway)."""
    src = _as_linear(module)
    has_bias = src.bias is not None
    weight = src.weight.data
    bias = src.bias.data.to(compute_dtype) if has_bias else None
    entry = precision(bits)
    if entry.convert is not None:
        new: nn.Module = entry.convert(src, qcfg, compute_dtype)
    else:
        store = storage_dtype(bits, qcfg, compute_dtype)
        cls = nn.Linear if store == compute_dtype else CastLinear
        new = cls(src.in_features, src.out_features, bias=has_bias, device="meta")
        new.weight = nn.Parameter(weight.to(store), requires_grad=False)
    if has_bias:
        new.bias = nn.Parameter(bias, requires_grad=False)
    return new.to(device)  # bitsandbytes quantizes on the move to the device


@dataclass
class LayerReport:
    """Bytes and bits of one transformer block's linear layers."""

    index: int
    bits: int
    n_weights: int = 0
    weight_bytes: int = 0
    """Every byte the block's linear layers hold (weights, quantization state, bias)."""
    scaling_bytes: int = 0
    """The part that grows with the weights: packed weights plus per-block / per-row constants."""
    modules: list[str] = field(default_factory=list)

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.scaling_bytes / self.n_weights if self.n_weights else 0.0


def _nbytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def layer_bytes(module: nn.Module) -> tuple[int, int]:
    """(all bytes, bytes that scale with the weight) a converted linear layer holds, bias included in the first."""
    bias = _nbytes(getattr(module, "bias", None))
    weight = module.weight
    state = getattr(weight, "quant_state", None)
    if state is not None:  # 4-bit
        scaling = _nbytes(weight) + _nbytes(state.absmax)
        fixed = _nbytes(state.code)
        if state.nested:
            scaling += _nbytes(state.state2.absmax)
            fixed += _nbytes(state.state2.code) + _nbytes(state.offset)
        return scaling + fixed + bias, scaling
    scb = getattr(weight, "SCB", None)
    if weight.dtype == torch.int8:
        scaling = _nbytes(weight) + _nbytes(scb)
        return scaling + bias, scaling
    return _nbytes(weight) + bias, _nbytes(weight)


def formula_bytes(
    bits: int,
    out_features: int,
    in_features: int,
    bias: bool = False,
    double_quant: bool = True,
    half_bytes: int = 2,
    compute_bytes: int = 4,
) -> tuple[int, int]:
    """The analytic (all bytes, scaling bytes) of a layer; must equal `layer_bytes` of the converted layer.

    `compute_bytes`: bytes per element of the compute dtype, which the bias is stored in."""
    bias_bytes = compute_bytes * out_features if bias else 0
    total, scaling = precision(bits).weight_bytes(out_features, in_features, double_quant, half_bytes)
    return total + bias_bytes, scaling


@dataclass
class QuantReport:
    layers: list[LayerReport]
    other_bytes: int
    """Bytes of everything outside the blocks' linear layers (embeddings, norms, head), tied weights once."""

    @property
    def weight_bytes(self) -> int:
        return self.other_bytes + sum(layer.weight_bytes for layer in self.layers)

    @property
    def bits_per_layer(self) -> list[int]:
        return [layer.bits for layer in self.layers]


def quantize_blocks(
    blocks: nn.ModuleList,
    bits_per_layer: list[int],
    qcfg: QuantizationConfig,
    device: torch.device,
    compute_dtype: torch.dtype = torch.float32,
) -> list[LayerReport]:
    """Replace every linear layer inside block i with a `bits_per_layer[i]` layer on `device`, in place."""
    reports = []
    for index, (block, bits) in enumerate(zip(blocks, bits_per_layer)):
        report = LayerReport(index=index, bits=bits)
        targets = [(name, mod) for name, mod in block.named_modules() if name and is_linear_like(mod)]
        for name, mod in targets:
            parent_name, _, child = name.rpartition(".")
            parent = block.get_submodule(parent_name) if parent_name else block
            new = convert_linear(mod, bits, qcfg, device, compute_dtype)
            setattr(parent, child, new)
            del mod
            total, scaling = layer_bytes(new)
            report.n_weights += new.in_features * new.out_features
            report.weight_bytes += total
            report.scaling_bytes += scaling
            report.modules.append(name)
        reports.append(report)
    return reports


def _is_bnb(module: nn.Module) -> bool:
    return type(module).__module__.startswith("bitsandbytes")


def other_bytes(model: nn.Module, blocks: nn.ModuleList) -> int:
    """Bytes of parameters and buffers outside the blocks' linear layers, each tensor counted once."""
    inside = _block_linear_params(blocks)
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in inside or id(t) in seen:
            continue
        seen.add(id(t))
        total += _nbytes(t)
    return total


def mark_quantized(model: nn.Module, bits_per_layer: list[int]) -> None:
    """Set the flags PEFT reads to pick its bitsandbytes LoRA / AdaLoRA layer types (it still checks each layer)."""
    for flag, value in peft_flags(bits_per_layer).items():
        setattr(model, flag, value)


def _block_linear_params(blocks: nn.ModuleList) -> set[int]:
    return {
        id(p)
        for m in blocks.modules()
        if is_linear_like(m) or _is_bnb(m)
        for p in m.parameters(recurse=False)
    }


def cast_frozen(model: nn.Module, blocks: nn.ModuleList, compute_dtype: torch.dtype) -> None:
    """Cast every floating parameter outside the blocks' linear layers (embeddings, norms, LM head, position
    tables) to the compute dtype, in place (tied weights once). Buffers keep their dtype (rotary frequencies are
    computed in float32 by the models themselves)."""
    inside = _block_linear_params(blocks)
    for module in model.modules():
        for param in list(module.parameters(recurse=False)):
            if id(param) in inside or not param.is_floating_point() or param.dtype == compute_dtype:
                continue
            param.data = param.data.to(compute_dtype)


def quantize_model(
    model: nn.Module,
    blocks: nn.ModuleList,
    qcfg: QuantizationConfig,
    device: torch.device,
    compute_dtype: torch.dtype = torch.float32,
) -> QuantReport:
    """Quantize the blocks per the config, cast the other frozen weights to the compute dtype, move the rest of
    the model to `device`, and account the bytes."""
    bits = qcfg.bits_per_layer(len(blocks))
    reports = quantize_blocks(blocks, bits, qcfg, device, compute_dtype)
    cast_frozen(model, blocks, compute_dtype)
    model.to(device)
    mark_quantized(model, bits)
    return QuantReport(layers=reports, other_bytes=other_bytes(model, blocks))
