"""Peak-memory measurement per device, and the analytic memory model that predicts a trial's training peak.

Measurement (`PeakMeter`), always relative to the trial's starting point (taken before the model is loaded):
- Linux CPU: the process resident-set high-water mark (`VmHWM`), reset through `/proc/self/clear_refs` at the start
  of each phase, so the peak belongs to this trial and phase only.
- CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`.
- MPS: `torch.accelerator.max_memory_allocated` / `reset_peak_memory_stats` when this torch has them for MPS;
  otherwise `torch.mps.current_allocated_memory()` sampled after each optimizer step (before zero_grad), keeping the
  maximum (`driver_allocated_memory` is the reserved pool and overstates the peak, so it is not used).
- Elsewhere (macOS CPU): the process RSS sampled at the same points.

Prediction (`estimate`): weights (exact bytes per layer, from `quantize.formula_bytes`) + adapter weights, their
gradients and two AdamW moments (float32) + activations kept for backward (per block, linear in batch x tokens,
plus the attention matrices, plus the logits of a causal LM) x a per-device factor + the largest layer's
dequantized float32 copy + a fixed framework overhead. The CPU factor and overhead were fitted to measured peaks
(`benchmarks/memory_exactness.py` prints predicted vs measured side by side).
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainables.config import TrialConfig

MB = 1024 * 1024

# --- measurement --------------------------------------------------------------------------------------------


def _proc_status_kb(field_name: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field_name}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def trim_heap() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so RSS reflects live memory."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass


def release_device_memory() -> None:
    """After a trial: hand the accelerator's cached blocks back, so that a Ray worker that runs the next trial
    (reused on MPS and CUDA) starts it with the memory of the last one freed."""
    gc.collect()
    mps = getattr(torch, "mps", None)
    if (
        mps is not None
        and getattr(torch.backends, "mps", None) is not None
        and torch.backends.mps.is_available()
    ):
        mps.empty_cache()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    trim_heap()


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = (
    0  # 0: keep glibc defaults (fastest); e.g. 262144 tracks live memory closer, ~2x slower
)


def configure_allocator() -> None:
    """glibc: serve every allocation above 256 KiB (tensors) from mmap and return it to the OS when freed.

    By default glibc raises its mmap threshold after large frees and then keeps freed tensor memory in the heap, so
    the resident set ratchets up step after step and its high-water mark stops describing the trial. A fixed
    threshold keeps RSS close to the live tensors, which makes the measured peak meaningful and repeatable."""
    threshold = int(os.environ.get("RANKBITS_MMAP_THRESHOLD", MMAP_THRESHOLD_BYTES))
    if not sys.platform.startswith("linux") or threshold <= 0:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, threshold)
        libc.mallopt(M_TRIM_THRESHOLD, 4 * threshold)
    except (OSError, AttributeError):
        pass


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _mps_peak_api() -> tuple[Any, Any] | None:
    acc = getattr(torch, "accelerator", None)
    if acc is None or not hasattr(acc, "max_memory_allocated") or not hasattr(acc, "reset_peak_memory_stats"):
        return None
    try:
        acc.reset_peak_memory_stats()
        acc.max_memory_allocated()
    except (RuntimeError, NotImplementedError, TypeError, AttributeError):
        return None
    return acc.max_memory_allocated, acc.reset_peak_memory_stats


class PeakMeter:
    """Measures the peak memory of a phase (loading, training) above the trial's baseline."""

    def __init__(self, device: torch.device):
        self.device = device
        self._peak_api = None
        if device.type == "cuda":
            self.method = "cuda-max-allocated"
        elif device.type == "mps":
            self._peak_api = _mps_peak_api()
            self.method = "mps-max-allocated" if self._peak_api else "mps-sampled-current-allocated"
        elif _proc_status_kb("VmHWM") is not None and _reset_hwm():
            self.method = "cpu-rss-hwm"
            configure_allocator()
        else:
            self.method = "cpu-rss-sampled"
        self.baseline = 0
        self._sampled = 0

    def current(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.memory_allocated(self.device))
        if self.device.type == "mps":
            return int(torch.mps.current_allocated_memory())
        rss = _proc_status_kb("VmRSS") if self.method == "cpu-rss-hwm" else None
        return rss if rss is not None else _rss_bytes()

    def set_baseline(self) -> None:
        trim_heap()
        self.baseline = self.current()

    def start_phase(self) -> None:
        """Forget earlier peaks: what `peak()` returns from now on belongs to this phase."""
        trim_heap()
        self._sampled = self.current()
        if self.method == "cuda-max-allocated":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self._peak_api is not None:
            self._peak_api[1]()
        elif self.method == "cpu-rss-hwm":
            _reset_hwm()

    def sample(self) -> None:
        """Call after each optimizer step, before zero_grad (where gradients and optimizer state coexist)."""
        if self.method in ("mps-sampled-current-allocated", "cpu-rss-sampled"):
            self._sampled = max(self._sampled, self.current())

    def peak(self) -> int:
        """Peak bytes of the current phase above the baseline."""
        if self.method == "cuda-max-allocated":
            raw = int(torch.cuda.max_memory_allocated(self.device))
        elif self._peak_api is not None:
            raw = int(self._peak_api[0]())
        elif self.method == "cpu-rss-hwm":
            raw = _proc_status_kb("VmHWM") or 0
        else:
            self.sample()
            raw = self._sampled
        return max(0, raw - self.baseline)


# --- prediction ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchSpec:
    """What the memory model needs to know about a model: read off its module tree on the meta device."""

    num_layers: int
    hidden: int
    intermediate: int
    heads: int
    vocab: int
    causal: bool
    block_linears: tuple[tuple[tuple[str, int, int, bool], ...], ...]
    """Per block: (name, out_features, in_features, has_bias) of each linear layer."""
    other_bytes: int
    """float32 bytes of everything outside the blocks' linear layers (tied weights once)."""


def arch_from_model(model: nn.Module, causal: bool) -> ArchSpec:
    from trainables.models import find_blocks
    from trainables.quantize import is_linear_like

    config = model.config
    _, blocks = find_blocks(model)
    per_block = []
    inside = set()
    for block in blocks:
        linears = []
        for name, mod in block.named_modules():
            if name and is_linear_like(mod):
                out_f, in_f = mod.weight.shape if isinstance(mod, nn.Linear) else mod.weight.shape[::-1]
                linears.append((name, int(out_f), int(in_f), mod.bias is not None))
                inside.update(id(p) for p in mod.parameters(recurse=False))
        per_block.append(tuple(linears))
    seen: set[int] = set()
    other = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in inside or id(t) in seen:
            continue
        seen.add(id(t))
        other += t.numel() * t.element_size()  # meta tensors keep their dtype (int64 buffers: 8 bytes)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or config.dim
    inter = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None) or 1
    return ArchSpec(
        num_layers=len(blocks),
        hidden=int(hidden),
        intermediate=int(inter),
        heads=int(heads),
        vocab=int(config.vocab_size),
        causal=causal,
        block_linears=tuple(per_block),
        other_bytes=int(other),
    )


def arch_for(cfg: TrialConfig) -> ArchSpec:
    """ArchSpec of the trial's model without loading weights."""
    from trainables.models import meta_model

    return arch_from_model(meta_model(cfg.model, cfg.task.name), causal=cfg.task.name == "wikitext2")


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    adapter: int
    """Adapter weights + gradients + two AdamW moments."""
    activations: int
    transient: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.adapter + self.activations + self.transient + self.overhead

    @property
    def total_mb(self) -> float:
        return self.total / MB

    def parts(self) -> dict[str, int]:
        """The predicted peak by part, in bytes, summing to `total`: weights, adapters, optimizer (adapter
        gradients + two AdamW moments), activations, logits (counted inside activations here), overhead
        (framework overhead + the transient dequantized copy of the largest quantized layer)."""
        adapters = self.adapter // 4
        return {
            "weights": self.weights,
            "adapters": adapters,
            "optimizer": self.adapter - adapters,
            "activations": self.activations,
            "logits": 0,
            "overhead": self.transient + self.overhead,
        }


# Activations kept for backward, per block per token, in float32 values (multiples of the hidden size, of the MLP
# width, and of heads x tokens for scores, probabilities and dropout masks), and the causal-LM logits copies:
ACT_HIDDEN = 14.0
ACT_INTER = 3.0
ACT_ATTN = 3.0
LOGIT_COPIES = 3.0
# Measured / formula ratios per device. CPU: the activation factor and the fixed overhead fitted together (minimax
# relative error) to the process RSS high-water mark (glibc keeps freed tensor memory resident) of the reference
# grid, 12 trials each in a fresh process with oneDNN's primitive cache off: minilm-l6 SST-2 (300 steps, 773-985
# MB measured) and smollm2-135m WikiText-2 (24 steps, 5235-5722 MB); all 12 within 12% of the prediction. MPS /
# CUDA count live tensors only: the factor is the live-tensor ratio measured on CPU with every tensor allocation
# mmapped (untested on Apple hardware, where the trial's measured peak is recorded beside the prediction).
ACT_FACTOR = {"cpu": 1.86, "mps": 1.3, "cuda": 1.3}
OVERHEAD_BYTES = {"cpu": 240 * MB, "mps": 64 * MB, "cuda": 32 * MB}
SST2_PEAK_TOKENS = (
    66  # the longest SST-2 sentence in BERT / Llama tokens is about 66 (so shorter rows than seq_len)
)


def peak_row_tokens(cfg: TrialConfig) -> int:
    return min(cfg.training.seq_len, SST2_PEAK_TOKENS) if cfg.task.name == "sst2" else cfg.training.seq_len


def adapter_param_count(arch: ArchSpec, cfg: TrialConfig) -> int:
    from trainables.adapters import target_names

    targets = target_names("b", [[n for n, *_ in block] for block in arch.block_linears], cfg.adapter)
    shapes = {f"b.{i}.{n}": (o, k) for i, block in enumerate(arch.block_linears) for n, o, k, _ in block}
    ranks = cfg.adapter.ranks_per_layer(arch.num_layers)
    total = 0
    for r, layer in zip(ranks, targets):
        for name in layer:
            out_f, in_f = shapes[name]
            total += r * (out_f + in_f) + (r if cfg.adapter.method == "adalora" else 0)
    if not arch.causal:  # the classification head trains too
        total += arch.hidden * arch.hidden + arch.hidden + 2 * arch.hidden + 2
    return total


def estimate(arch: ArchSpec, cfg: TrialConfig, device_type: str = "cpu") -> MemoryEstimate:
    """Predicted training peak of `cfg` on `arch` (bytes, by component)."""
    from trainables.quantize import formula_bytes

    half = 2
    bits = cfg.quantization.bits_per_layer(arch.num_layers)
    weights = arch.other_bytes
    largest = 0
    for b, block in zip(bits, arch.block_linears):
        for _, out_f, in_f, bias in block:
            weights += formula_bytes(b, out_f, in_f, bias, cfg.quantization.double_quant, half)[0]
            if b in (4, 8):
                largest = max(largest, out_f * in_f * 4)
    adapter = adapter_param_count(arch, cfg) * 4 * 4  # weights, grads, exp_avg, exp_avg_sq
    rows, tokens = cfg.training.batch_size, peak_row_tokens(cfg)
    per_block = rows * tokens * (ACT_HIDDEN * arch.hidden + ACT_INTER * arch.intermediate)
    per_block += rows * arch.heads * tokens * tokens * ACT_ATTN
    raw = 4 * arch.num_layers * per_block
    if arch.causal:
        raw += 4 * LOGIT_COPIES * rows * tokens * arch.vocab
    activations = int(raw * ACT_FACTOR.get(device_type, ACT_FACTOR["cpu"]))
    transient = 2 * largest
    return MemoryEstimate(
        weights, adapter, activations, transient, OVERHEAD_BYTES.get(device_type, OVERHEAD_BYTES["cpu"])
    )
