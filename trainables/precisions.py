"""Weight precisions of the transformer blocks' linear layers: one `Precision` per bit width, one registry.

Each entry says everything the rest of rankbits needs to know about a precision (PEFT's dispatcher pattern,
`peft/tuners/lora/model.py`: one entry per backend, nothing else branches on it):

- how a linear layer is converted (`convert`, or `storage_dtype` for plain floating-point weights),
- its exact weight bytes (`weight_bytes`; `quantize.layer_bytes` of the converted layer must equal it),
- its label in results, reports and plots (`label`),
- whether PEFT's AdaLoRA can adapt it (`adalora`) and which model flag PEFT reads for it (`peft_flag`),
- its memory-model terms (`storage_dtype`: a weight stored in another dtype than the compute dtype keeps its
  cast input for backward; `dequantizes`: the forward builds a compute-dtype copy of the weight),
- what the template process of forked trials imports for it (`preload`),
- whether the Pareto search proposes it (`searchable`).

Built in (bottom of this file): 4 = bitsandbytes `Linear4bit` (NF4 by default, FP4 with `quant_type`, double
quantization, block size 64), 8 = `trainables.int8.Int8Linear` (int8 + one float32 scale per output row,
computed weight-only), 16 = 16-bit floats (the compute dtype when it is 16-bit, else `quantization.half_dtype`),
32 = float32. `BIT_WIDTHS`, `LOW_BITS`, `quantization_label`, the preload list and the conversion, byte and
memory-model dispatch all come from `PRECISIONS`; `register` adds one (a test adds a made-up 12-bit one).

This module imports no torch at import time (the CLI and `trainables.config` read it); converters import what
they need when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainables.errors import ConfigError

if TYPE_CHECKING:
    from trainables.config import QuantizationConfig

BLOCKSIZE_4BIT = 64
"""Weights per absmax constant of bitsandbytes' 4-bit layers (its default, QLoRA's value)."""
NESTED_BLOCKSIZE = 256
"""Absmax constants per second-level constant with double quantization (bitsandbytes' `compress_statistics`)."""


@dataclass(frozen=True)
class Precision:
    """One weight precision: how to build a layer of it, count its bytes, name it, and model its memory."""

    bits: int
    """The bit width users write (`quantization.default_bits`, `layer_bits`, `--set`); the registry key."""
    label: str
    """Name of a model uniformly at this precision in results (`quantization` column), reports and plots."""
    weight_bytes: Callable[[int, int, bool, int], tuple[int, int]]
    """(out_features, in_features, double_quant, half_bytes) -> (all bytes, bytes that grow with the weight)
    of the layer's weight and quantization state, bias excluded; `half_bytes`: bytes of a 16-bit element."""
    convert: Callable[[Any, QuantizationConfig, Any], Any] | None = None
    """(nn.Linear holding the float weight, quantization config, compute torch.dtype) -> the new layer, its
    weight set and frozen, its bias left for the caller, on the meta device or CPU (moved to the device after).
    None: plain floats, a `CastLinear` / `nn.Linear` of `storage_dtype`."""
    storage_dtype: Callable[[QuantizationConfig, str], str] | None = None
    """Plain floating-point weights: (quantization config, compute dtype name) -> the dtype name the weight is
    stored in. None for packed formats (bitsandbytes' 4 / 8-bit)."""
    dequantizes: bool = False
    """Memory model: the forward builds a compute-dtype copy of the weight (bitsandbytes' 4 / 8-bit layers)."""
    adalora: bool = True
    """PEFT's AdaLoRA has a layer for this base layer type (`peft/tuners/adalora/bnb.py` for 4 / 8-bit)."""
    peft_flag: str | None = None
    """Model attribute PEFT reads to pick its bitsandbytes layers (`is_loaded_in_4bit`), set when any block has
    this precision."""
    preload: tuple[str, ...] = ()
    """Modules the forked trials' template process imports for this precision (`trainables.preload`)."""
    searchable: bool = True
    """Whether the Pareto search space proposes it (`spaces.pareto`); float32 is the unquantized reference."""

    def __post_init__(self) -> None:
        if self.convert is None and self.storage_dtype is None:
            raise ConfigError(
                f"precision {self.bits}: give `convert` or `storage_dtype` (how to build a layer)"
            )


PRECISIONS: dict[int, Precision] = {}
"""The registry: bit width -> Precision, filled at the bottom of this module (and by `register`)."""


def register(entry: Precision) -> Precision:
    """Add a precision; ConfigError when its bit width is taken. Returns the entry."""
    if entry.bits in PRECISIONS:
        raise ConfigError(f"precision {entry.bits}: already registered ({PRECISIONS[entry.bits].label})")
    PRECISIONS[entry.bits] = entry
    return entry


def unregister(bits: int) -> None:
    """Remove a precision (tests that register a made-up one)."""
    PRECISIONS.pop(bits, None)


def bit_widths() -> tuple[int, ...]:
    """Every registered bit width, ascending (today 4, 8, 16, 32)."""
    return tuple(sorted(PRECISIONS))


def search_bits() -> list[int]:
    """The bit widths the Pareto search proposes, ascending (today 4, 8, 16)."""
    return [b for b in bit_widths() if PRECISIONS[b].searchable]


def precision(bits: int) -> Precision:
    """The entry of `bits`; ConfigError naming the allowed widths when there is none."""
    try:
        return PRECISIONS[bits]
    except (KeyError, TypeError):
        raise ConfigError(
            f"bit width {bits!r} is not supported; choose one of {', '.join(map(str, bit_widths()))}"
        ) from None


def quantization_label(bits: Iterable[int]) -> str:
    """The precision's label ('fp32', '16-bit', 'int8', 'nf4') for uniform bits ('12-bit' for a width this
    version does not know, as in results made with another); 'mixed 8/4' and the like otherwise."""
    kinds = sorted(set(bits), reverse=True)
    if len(kinds) == 1:
        entry = PRECISIONS.get(kinds[0])
        return entry.label if entry is not None else f"{kinds[0]}-bit"
    return "mixed " + "/".join(str(k) for k in kinds)


def peft_flags(bits: Iterable[int]) -> dict[str, bool]:
    """{model attribute: value} PEFT reads to pick its bitsandbytes layers, for blocks of `bits`."""
    used = {precision(b).peft_flag for b in bits}
    return {p.peft_flag: p.peft_flag in used for p in PRECISIONS.values() if p.peft_flag}


def preload_modules() -> tuple[str, ...]:
    """Modules every registered precision needs imported before a forked trial starts, each once."""
    return tuple(dict.fromkeys(m for p in PRECISIONS.values() for m in p.preload))


def float_bytes(n_weights: int, element_bytes: int) -> tuple[int, int]:
    """(all, scaling) bytes of `n_weights` plain floats of `element_bytes` each."""
    return element_bytes * n_weights, element_bytes * n_weights


# --- the built-in precisions ----------------------------------------------------------------------------------


def _nf4_bytes(out_features: int, in_features: int, double_quant: bool, half_bytes: int) -> tuple[int, int]:
    """bitsandbytes `Params4bit`: two weights a byte, one absmax per 64 weights (float32, or with double
    quantization uint8 plus a float32 per 256 of those, a 256-entry float32 code and a float32 offset), and the
    16-entry float32 4-bit code (bitsandbytes `functional.quantize_4bit`)."""
    n = out_features * in_features
    blocks = -(-n // BLOCKSIZE_4BIT)
    packed = -(-n // 2)
    if double_quant:
        scaling = packed + blocks + 4 * -(-blocks // NESTED_BLOCKSIZE)
        fixed = 16 * 4 + 256 * 4 + 4
    else:
        scaling = packed + 4 * blocks
        fixed = 16 * 4
    return scaling + fixed, scaling


def _convert_4bit(src: Any, qcfg: QuantizationConfig, compute_dtype: Any) -> Any:
    import bitsandbytes as bnb

    new = bnb.nn.Linear4bit(
        src.in_features,
        src.out_features,
        bias=src.bias is not None,
        compute_dtype=compute_dtype,
        compress_statistics=qcfg.double_quant,
        quant_type=qcfg.quant_type,
        device="meta",
    )
    new.weight = bnb.nn.Params4bit(
        src.weight.data.float().contiguous(),
        requires_grad=False,
        compress_statistics=qcfg.double_quant,
        quant_type=qcfg.quant_type,
        blocksize=BLOCKSIZE_4BIT,
    )
    # On AVX512-BF16 CPUs an eval-mode Linear4bit repacks its weight one way; keep the portable layout.
    new.support_avx512bf16_for_cpu = False
    return new


def _int8_bytes(out_features: int, in_features: int, double_quant: bool, half_bytes: int) -> tuple[int, int]:
    """int8 weights plus one float32 absmax per output row (bitsandbytes `Int8Params.SCB`)."""
    scaling = out_features * in_features + 4 * out_features
    return scaling, scaling


def _convert_8bit(src: Any, qcfg: QuantizationConfig, compute_dtype: Any) -> Any:
    from trainables.int8 import convert_int8

    return convert_int8(src)


def _half_storage(qcfg: QuantizationConfig, compute: str) -> str:
    return compute if compute != "float32" else qcfg.half_dtype


# fmt: off
for _entry in (
    Precision(bits=4, label="nf4", weight_bytes=_nf4_bytes, convert=_convert_4bit, dequantizes=True,
              peft_flag="is_loaded_in_4bit", preload=("bitsandbytes",)),
    Precision(bits=8, label="int8", weight_bytes=_int8_bytes, convert=_convert_8bit, dequantizes=True,
              peft_flag="is_loaded_in_8bit", preload=("bitsandbytes", "trainables.int8")),
    Precision(bits=16, label="16-bit", weight_bytes=lambda o, i, dq, half: float_bytes(o * i, half),
              storage_dtype=_half_storage),
    Precision(bits=32, label="fp32", weight_bytes=lambda o, i, dq, half: float_bytes(o * i, 4),
              storage_dtype=lambda qcfg, compute: "float32", searchable=False),
):
    register(_entry)
# fmt: on
