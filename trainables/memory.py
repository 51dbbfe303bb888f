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
import dataclasses
import gc
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
    from trainables.devices import mps_available  # the one place that says which devices are here

    gc.collect()
    if mps_available():
        torch.mps.empty_cache()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    trim_heap()


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def configure_allocator() -> None:
    """glibc, when the trial's mmap threshold (`trainables.harness`) is set: serve every allocation above it (e.g.
    256 KiB: tensors) from mmap and return it to the OS when freed.

    By default glibc raises its mmap threshold after large frees and then keeps freed tensor memory in the heap, so
    the resident set ratchets up step after step and its high-water mark stops describing the trial. A fixed
    threshold keeps RSS close to the live tensors, which makes the measured peak meaningful and repeatable."""
    from trainables.harness import mmap_threshold

    threshold = mmap_threshold()  # --mmap-threshold, recorded with the trial; 0: glibc's own
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
    other_float_elements: int
    """Elements of the floating parameters outside the blocks' linear layers (embeddings, norms, head; tied
    weights once): stored in the compute dtype."""
    other_fixed_bytes: int
    """Bytes of the buffers (position ids, rotary frequencies), which keep their dtype."""
    head_params: int = 0
    """Parameters of the classification head PEFT trains beside the adapters (`classifier` / `score`, its
    `modules_to_save` for sequence classification); 0 for a causal LM."""
    gated_mlp: bool = False
    """Whether the MLP is gated (Llama's gate / up / down: two linears of the MLP width) or plain (BERT, GPT-2)."""
    attn_dropout: bool = False
    """Whether attention probabilities go through dropout in training (BERT-style encoders): then the attention
    matrices (heads x tokens x tokens) are kept for backward on CPU."""

    def other_bytes(self, compute_bytes: int) -> int:
        """Bytes of everything outside the blocks' linear layers with floating weights of `compute_bytes`."""
        return self.other_float_elements * compute_bytes + self.other_fixed_bytes


def _attn_dropout(config: Any) -> bool:
    for name in ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"):
        value = getattr(config, name, None)
        if isinstance(value, (int, float)):
            return value > 0
    return False


def _head_params(model: nn.Module) -> int:
    for name in ("classifier", "score"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return sum(p.numel() for p in head.parameters())
    return 0


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
    float_elements = fixed = 0
    for t in model.parameters():
        if id(t) in inside or id(t) in seen:
            continue
        seen.add(id(t))
        if t.is_floating_point():
            float_elements += t.numel()
        else:
            fixed += t.numel() * t.element_size()
    for t in model.buffers():
        if id(t) not in seen:
            seen.add(id(t))
            fixed += t.numel() * t.element_size()  # meta tensors keep their dtype (int64 buffers: 8 bytes)
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
        other_float_elements=int(float_elements),
        other_fixed_bytes=int(fixed),
        head_params=0 if causal else _head_params(model),
        gated_mlp=sum(1 for _, out_f, _, _ in per_block[0] if out_f == int(inter)) >= 2
        if per_block
        else False,
        attn_dropout=_attn_dropout(config),
    )


def arch_for(cfg: TrialConfig) -> ArchSpec:
    """ArchSpec of the trial's model with its task's head (`trainables.tasks.head_of`) without loading weights."""
    from trainables.models import meta_model
    from trainables.tasks import head_of

    head = head_of(cfg.task)
    return arch_from_model(meta_model(cfg.model, head), causal=head.causal)


@dataclass(frozen=True)
class MemoryEstimate:
    """A predicted training peak by component, in bytes (see `estimate` for each term and its source): what is
    live at the predicted peak moment, so the parts add up to the peak (with gradient checkpointing the peak is
    either at the loss, when `logits` are live and no block is recomputed, or during a block's recomputation,
    when `logits` is 0)."""

    weights: int
    """The frozen base as stored: block linears at their bit width (exact, `quantize.formula_bytes`), everything
    else in the compute dtype."""
    adapters: int
    """Trainable weights (LoRA / AdaLoRA matrices, a classification head), float32."""
    optimizer: int
    """Their gradients and AdamW's two moments, float32; for AdaLoRA also its rank allocator's importance state
    (`ADALORA_STATE_BYTES` per adapter parameter)."""
    activations: int
    """Tensors kept for backward (all blocks, or with gradient checkpointing one block input each plus one block
    recomputed), and the dequantized weight buffers of 4 / 8-bit layers."""
    logits: int
    """Causal LM: the float32 log-softmax, its gradient and the logits' gradient over the vocabulary."""
    overhead: int
    """What the measure adds beyond live tensors: allocator slack and libraries (see OVERHEAD_BYTES)."""

    def parts(self) -> dict[str, int]:
        """The components in bytes, in a fixed order: weights, adapters, optimizer, activations, logits, overhead."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def total(self) -> int:
        return sum(self.parts().values())

    @property
    def total_mb(self) -> float:
        return self.total / MB


# Saved-for-backward tensors per token per block, in compute-dtype elements: (multiples of the hidden size h: norm
# inputs and outputs, q / k / v after rotary, attention output, residual branches; multiples of the MLP width i:
# the up / gate outputs, the activation, their product), for gated MLPs (Llama family) and plain ones (BERT,
# GPT-2). Gated: fitted to the standard transformers + PEFT path on CUDA
# (`../shared/reference/cuda-h200-standard-path-llama1b-2026-11-29.jsonl`: Llama-1B shape, batch 4 x 256, no
# checkpointing, bfloat16 and float32 compute: 177.6 and 277.6 KB per token per block measured) together with the
# LoRA terms below: 8 h + 3 i. Plain: rankbits' B-Q4 on CUDA (`cuda-h200-2026-11-29.jsonl`: MiniLM-L6 and the
# bert-base shape, SST-2, float32; 9.6 h and 10.3 h per token per block beyond the LoRA terms): 6 h + 1 i.
# Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models") count 34 h bytes per
# token for a 16-bit GPT layer with dropout (17 h elements), the same order.
ACT_HIDDEN = {"gated": 8.0, "plain": 6.0}
ACT_INTER = {"gated": 3.0, "plain": 1.0}
# Encoders with attention dropout keep probabilities and the dropout mask per head and token pair (CPU kernels).
ACT_ATTN_BYTES = 5.0
# Each adapted module keeps its float32 dropout output and a boolean mask of its input width (PEFT casts the
# input to the adapter's float32 and applies lora_dropout): 5 bytes per input element.
LORA_INPUT_BYTES = 5.0
# AdaLoRA scales its update by 1 / ranknum after the matmul; autograd keeps the float32 update (out width) too.
# Seen on CUDA as +1.6 GB for B-Ada over B-FP on the Llama-1B shape (16 layers x 1,024 tokens x 23,552 outputs x 4).
# Not added on CPU, with either measure: the resident-set peaks of the CPU reference grid show no AdaLoRA excess
# (B-Ada 5,722 MB vs B-FP 5,700 on SmolLM2; Joint-1 below B-Q4), and neither does the live-tensor measure
# (minilm-l6 without checkpointing: Joint-1 432.7 MB vs B-Q4 414.7, where this term would add 82 MB).
ADALORA_OUTPUT_BYTES = 4.0
# AdaLoRA's rank allocator keeps three float32 tensors the shape of every adapted parameter (lora_A, lora_B,
# lora_E) from the first step on: the importance, its moving average and its uncertainty (PEFT's
# `RankAllocator.update_ipt`: ipt, exp_avg_ipt, exp_avg_unc). Seen on this CPU with the live-tensor measure:
# smollm2-135m B-Ada keeps 84 MB more than B-FP after a step (44 MB of it this state; adapters and moments 14 MB).
ADALORA_STATE_BYTES = 12.0
# A CastLinear (weights stored in another dtype than the compute dtype) keeps the cast input for backward.
# Causal LM loss in transformers: logits.float() -> log_softmax (kept) -> at the start of backward its gradient
# and the logits' gradient: three float32 copies of batch x tokens x vocab, in either compute dtype (the
# standard path's checkpointed peaks minus their block inputs: 1,558 MB bf16 and 1,557 MB fp32 for 3 x 501 MB).
LOGIT_BYTES = 12.0
# Gradient checkpointing recomputes one block in backward while the block inputs of all blocks are kept; the
# recomputed block's tensors and their gradients coexist briefly.
GC_BLOCKS = 2.0
LIVE_TENSORS = "cpu-live"
"""The model's key for a Linux CPU trial trained with an mmap threshold (`--mmap-threshold`, e.g. 262144): glibc
serves every tensor from mmap and returns it when freed, so the resident set tracks live tensors as an accelerator's
allocated bytes do, and one set of constants predicts it (`model_key`). Without a threshold (`"cpu"`) the resident
set ratchets with freed memory the allocator keeps, and the constants above carry that slack."""


MEASURES = {
    "cpu": "peak of the resident set with glibc's default allocator: freed memory it keeps is included",
    LIVE_TENSORS: "peak of the resident set with an mmap threshold: live tensors",
}
"""What the measured peak of each CPU key counts (said beside a plan; accelerators count allocated tensors)."""
CPU_KEYS = tuple(MEASURES)


# Per-device factor on activations and the measure's fixed overhead. CUDA and MPS count live tensors
# (max_memory_allocated): factor 1, a small overhead for cuBLAS / MPS workspaces and rounding. CPU measures the
# process resident-set high-water mark (glibc keeps freed tensor memory resident, oneDNN scratch buffers): factor
# and overhead fitted together (minimax relative error, 7.2%) to the 12 trials of the CPU reference grid made
# before the compute dtype existed (float32, no checkpointing; README's earlier tables: minilm-l6 SST-2 300 steps,
# 773-985 MB; smollm2-135m WikiText-2 24 steps, 5,235-5,722 MB).
ACT_FACTOR = {"cpu": 2.0, LIVE_TENSORS: 1.0, "mps": 1.0, "cuda": 1.0}
OVERHEAD_BYTES = {"cpu": 340 * MB, LIVE_TENSORS: 126 * MB, "mps": 16 * MB, "cuda": 16 * MB}
# With gradient checkpointing the CPU resident set keeps far more freed memory per live byte (blocks are recomputed
# and freed again in backward). Fitted on this machine's reference grid in the default regime (float32 compute here,
# checkpointing on; 2026-11-30): the activation factor to the six minilm-l6 SST-2 trials (300 steps, 384-512 MB;
# every one within 9%), the logits factor to smollm2-135m WikiText-2 B-FP and B-Q4 (24 steps, 2,484 and 2,548 MB:
# the causal-LM loss's float32 copies are kept once, not recomputed, so they inflate less). The other four
# WikiText-2 configs were predicted before they ran (out of sample; README's reference tables).
# Those runs still counted the memory-mapped checkpoint's resident pages (`trainables.models.own_memory` now unmaps
# it): these constants sit above today's default-allocator peaks (minilm-l6, 30 steps: 10-19% below them), which
# move too much between runs of one config to refit within 10% (smollm2, 6 steps: -38% to -2%; README).
# The live-tensor CPU measure (`LIVE_TENSORS`: glibc mmap threshold 262144, so the resident set follows live
# tensors), fitted on this machine on 2026-11-30 to `rankbits plan --measure --mmap-threshold 262144` in the
# default regime (float32 compute here; benchmarks/reference/cpu-live-peaks-2026-11-30.jsonl, each record marked
# fitted on or predicted): activations and logits as counted (factor 1, as on an accelerator), and an overhead
# of a fixed part plus a part per transformer block (the glibc heap that serves the small tensors, LoRA matrices
# and their gradients and moments below the threshold, and per-module Python and quantization-state objects).
# With checkpointing, the LoRA configs measured 30-36 MB above their parts on minilm-l6 (6 blocks; SST-2, 30
# steps) and 76-78 MB on smollm2-135m (30 blocks; WikiText-2, 6 steps of 4 x 256, and 2 x 256): 23 MB + 1.8 MB
# per block is the line through the two means. AdaLoRA configs sit 10-46 MB higher (heap churn of the rank
# allocator, not modelled). Without checkpointing the fixed part is 126 MB (minilm-l6 B-FP, B-Q4, Joint-1, Joint-3,
# 20 steps: 108-153 MB above their parts). These peaks count only anonymous memory: the checkpoint's mapping is
# released once the blocks are quantized (`trainables.models.own_memory`); before that, its resident pages stood
# up to the whole 513 MB file above smollm2's parts, a fixed cost an earlier fit had put into the logits' factor.
ACT_FACTOR_CHECKPOINTED = {"cpu": 4.28, LIVE_TENSORS: 1.0, "mps": 1.0, "cuda": 1.0}
LOGIT_FACTOR_CHECKPOINTED = {"cpu": 3.4, LIVE_TENSORS: 1.0, "mps": 1.0, "cuda": 1.0}
OVERHEAD_BYTES_CHECKPOINTED = {"cpu": 0, LIVE_TENSORS: 23 * MB, "mps": 16 * MB, "cuda": 16 * MB}
OVERHEAD_PER_BLOCK_BYTES = {LIVE_TENSORS: int(1.8 * MB)}
"""Overhead per transformer block, with or without checkpointing (0 for keys not named)."""


def model_key(device_type: str, mmap_threshold: int | None = None) -> str:
    """The key of `device_type`'s constants: `LIVE_TENSORS` for a Linux CPU whose trials set an mmap threshold
    (`mmap_threshold` bytes; None: this process's, `trainables.harness.mmap_threshold()`, which a trial sets
    before it trains and a grid, search or plan sets for the trials it plans), else `device_type` itself."""
    if device_type != "cpu" or not sys.platform.startswith("linux"):
        return device_type
    if mmap_threshold is None:
        from trainables.harness import mmap_threshold as active

        mmap_threshold = active()
    return LIVE_TENSORS if mmap_threshold > 0 else device_type


def peak_row_tokens(cfg: TrialConfig) -> int:
    """Tokens in the longest training row planned for: the task's row shape (`TaskSpec.peak_row_tokens`, e.g.
    SST-2's `trainables.tasks.sst2.PEAK_TOKENS`) at `training.seq_len`."""
    from trainables.tasks import get_task

    return get_task(cfg.task.name).peak_row_tokens(cfg.task, cfg.training.seq_len)


def adapter_param_count(arch: ArchSpec, cfg: TrialConfig) -> int:
    from trainables.adapters import target_names

    targets = target_names("b", [[n for n, *_ in block] for block in arch.block_linears], cfg.adapter)
    shapes = {f"b.{i}.{n}": (o, k) for i, block in enumerate(arch.block_linears) for n, o, k, _ in block}
    ranks = cfg.adapter.ranks_per_layer(arch.num_layers)
    total = 0
    for r, layer in zip(ranks, targets):
        for name in layer:
            out_f, in_f = shapes[name]
            total += r * (out_f + in_f) + (r + 1 if cfg.adapter.method == "adalora" else 0)  # lora_E, ranknum
    return total + arch.head_params  # the classification head trains too


def _adapted_widths(arch: ArchSpec, cfg: TrialConfig) -> list[tuple[int, int]]:
    """Per block: (summed input width, summed output width) of the adapted modules (rank 0 blocks: none)."""
    from trainables.adapters import target_names

    targets = target_names("b", [[n for n, *_ in block] for block in arch.block_linears], cfg.adapter)
    shapes = {f"b.{i}.{n}": (o, k) for i, block in enumerate(arch.block_linears) for n, o, k, _ in block}
    ranks = cfg.adapter.ranks_per_layer(arch.num_layers)
    return [
        (sum(shapes[n][1] for n in layer), sum(shapes[n][0] for n in layer)) if r > 0 else (0, 0)
        for r, layer in zip(ranks, targets)
    ]


def estimate(arch: ArchSpec, cfg: TrialConfig, device_type: str = "cpu") -> MemoryEstimate:
    """Predicted training peak of `cfg` on `arch` on a `device_type` device (bytes, by component).

    The compute dtype is `cfg.training.compute_dtype` resolved for `device_type` (`devices.resolve_compute_dtype`).
    Activations are per block and token (`ACT_*`, `LORA_INPUT_BYTES`, `ADALORA_OUTPUT_BYTES`; rows count the
    task's `peak_row_tokens`), all blocks without gradient checkpointing, else one block input per block plus
    `GC_BLOCKS` blocks; the causal-LM loss adds `LOGIT_BYTES` per logit. The constants' sources are beside them."""
    from trainables.devices import dtype_bytes, resolve_compute_dtype
    from trainables.precisions import precision
    from trainables.quantize import formula_bytes

    compute = resolve_compute_dtype(cfg.training.compute_dtype, device_type)
    e = dtype_bytes(compute)
    qcfg = cfg.quantization
    half = e if e == 2 else 2
    bits = qcfg.bits_per_layer(arch.num_layers)
    weights = arch.other_bytes(e)
    largest = 0
    cast_inputs = []
    for b, block in zip(bits, arch.block_linears):
        entry = precision(b)
        stored = entry.storage_dtype(qcfg, compute) if entry.storage_dtype is not None else compute
        cast = dtype_bytes(stored) if stored != compute else 0
        cast_inputs.append(sum(k for _, _, k, _ in block) * cast)
        for _, out_f, in_f, bias in block:
            weights += formula_bytes(b, out_f, in_f, bias, qcfg.double_quant, half, e)[0]
            if entry.dequantizes:
                largest = max(largest, out_f * in_f * e)
    n_params = adapter_param_count(arch, cfg)
    rows, tokens = cfg.training.batch_size, peak_row_tokens(cfg)
    bt = rows * tokens
    ada = cfg.adapter.method == "adalora"
    key = model_key(device_type)
    per_block = []
    mlp = "gated" if arch.gated_mlp else "plain"
    for (ins, outs), cast in zip(_adapted_widths(arch, cfg), cast_inputs):
        per_token = e * (ACT_HIDDEN[mlp] * arch.hidden + ACT_INTER[mlp] * arch.intermediate) + cast
        per_token += LORA_INPUT_BYTES * ins + (
            ADALORA_OUTPUT_BYTES * outs if ada and key not in CPU_KEYS else 0
        )
        if arch.attn_dropout and device_type == "cpu":
            per_token += ACT_ATTN_BYTES * arch.heads * tokens
        per_block.append(bt * per_token)
    ckpt = cfg.training.gradient_checkpointing
    factor = (ACT_FACTOR_CHECKPOINTED if ckpt else ACT_FACTOR).get(key, 1.0)
    logit_factor = LOGIT_FACTOR_CHECKPOINTED.get(key, 1.0) if ckpt else factor
    overhead = (OVERHEAD_BYTES_CHECKPOINTED if ckpt else OVERHEAD_BYTES).get(key, OVERHEAD_BYTES["cpu"])
    overhead += OVERHEAD_PER_BLOCK_BYTES.get(key, 0) * arch.num_layers
    logits = LOGIT_BYTES * bt * arch.vocab if arch.causal else 0.0
    transient = 2 * largest
    if cfg.training.gradient_checkpointing:
        # The peak is either at the loss (block inputs + logits) or while a block is recomputed in backward.
        kept = arch.num_layers * bt * arch.hidden * e
        recompute = GC_BLOCKS * max(per_block) + transient
        act = kept + (recompute if recompute > logits else 0)
        logits = logits if logits >= recompute else 0.0
    else:
        act = sum(per_block) + transient
    return MemoryEstimate(
        weights=int(weights),
        adapters=4 * n_params,
        optimizer=12 * n_params + (int(ADALORA_STATE_BYTES * (n_params - arch.head_params)) if ada else 0),
        activations=int(act * factor),
        logits=int(logits * logit_factor),
        overhead=int(overhead),
    )


def __getattr__(name: str) -> Any:
    """`SST2_PEAK_TOKENS`, the old name of `trainables.tasks.sst2.PEAK_TOKENS`."""
    if name == "SST2_PEAK_TOKENS":
        from trainables.tasks.sst2 import PEAK_TOKENS

        return PEAK_TOKENS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
