"""Device helpers: which device a trial runs on, and which compute dtype that device runs well.

The compute dtype is the dtype of activations, of bitsandbytes' compute, of 16-bit block layers and of every
frozen floating weight outside the quantized layers (embeddings, norms, LM head), as in the QLoRA recipe
(Dettmers et al. 2023: NF4 storage, bfloat16 compute). Trainable weights (LoRA / AdaLoRA matrices, a
classification head) and the AdamW state stay float32.

`auto` resolves, per device:
- cuda: bfloat16 where the GPU supports it (`torch.cuda.is_bf16_supported()`, Ampere and later), else float16;
  bfloat16 when predicting for a CUDA device that is not present.
- mps: bfloat16 where this macOS / chip runs it (a bfloat16 tensor can be made on the device: macOS 14 and later),
  else float16 (fp16 autocast exists on MPS since torch 2.5; bf16 is the safer dtype, see APPLE-SILICON.md).
- cpu: bfloat16 where the CPU has native bfloat16 arithmetic (x86 `avx512_bf16` or `amx_bf16` in /proc/cpuinfo,
  Arm `bf16` / macOS `hw.optional.arm.FEAT_BF16`), else float32 (emulated bfloat16 is slower than float32).
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import torch

from trainables.config import COMPUTE_DTYPES, DEVICES
from trainables.errors import ConfigError

__all__ = ["COMPUTE_DTYPES", "DEVICES", "pick_device", "resolve_compute_dtype"]
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(name: str) -> torch.device:
    """`auto`: mps, then cuda, then cpu; an explicit device that is not available is a ConfigError."""
    mps_ok = mps_available()
    if name == "auto":
        if mps_ok:
            return torch.device("mps")
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "mps" and not mps_ok:
        raise ConfigError("training.device: mps is not available on this machine; use auto or cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device: cuda is not available on this machine; use auto or cpu")
    return torch.device(name)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic in hardware (see the module docstring for the flags read)."""
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5
            )
            return out.stdout.strip() == "1"
        except (OSError, subprocess.SubprocessError):
            return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags = set(value.split())
            return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def _mps_runs_bf16() -> bool:
    try:
        torch.ones(1, dtype=torch.bfloat16, device="mps")
        return True
    except (RuntimeError, TypeError):
        return False


def resolve_compute_dtype(name: str, device_type: str) -> str:
    """The concrete compute dtype (`bfloat16`, `float16` or `float32`) that `name` means on `device_type`.

    Raises ConfigError for an unknown name. `device_type` may name a device this machine lacks (predictions for
    another machine): then `auto` is bfloat16 on cuda and mps."""
    if name not in COMPUTE_DTYPES:
        raise ConfigError(
            f"training.compute_dtype: {name!r} is not a compute dtype; choose one of {', '.join(COMPUTE_DTYPES)}"
        )
    if name != "auto":
        return name
    if device_type == "cuda":
        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            return "float16"
        return "bfloat16"
    if device_type == "mps":
        if mps_available() and not _mps_runs_bf16():
            return "float16"
        return "bfloat16"
    return "bfloat16" if cpu_has_native_bf16() else "float32"


def torch_dtype(name: str) -> torch.dtype:
    """torch dtype of a concrete compute dtype name."""
    return DTYPES[name]


def dtype_bytes(name: str) -> int:
    """Bytes per element of a concrete compute dtype name."""
    return 4 if name == "float32" else 2
