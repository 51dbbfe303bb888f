"""The 8-bit block layer: int8 weights, computed weight-only (see `Int8Linear`)."""

from __future__ import annotations

import bitsandbytes as bnb
import torch
from torch import nn


class Int8Linear(bnb.nn.Linear8bitLt):
    """int8 weights with one float32 scale per output row (LLM.int8()'s row-wise absmax quantization), computed
    weight-only: the weight is dequantized to the compute dtype and multiplied in that dtype, in training and in
    evaluation alike, on every device.

    bitsandbytes' `Linear8bitLt` computes differently by mode and device: on CPU in train mode it multiplies by the
    dequantized weight, in eval mode (and on CUDA always) it also quantizes the activations to int8 (LLM.int8(); with
    `threshold=0.0` no outlier column is kept in 16 bits), so a trial was scored through another function than the
    one it trained (perplexity 33.49 vs 32.65 on SmolLM2-135M with all blocks int8). Weight-only int8 keeps the
    scored forward equal to the trained one and keeps the memory saving (the weight is stored in int8); it gives up
    the int8 matmul kernels, which only pay off on CUDA inference. It is still a `bnb.nn.Linear8bitLt`, so PEFT puts
    its bitsandbytes 8-bit LoRA / AdaLoRA layers on it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        cb = weight.data if weight.dtype == torch.int8 else self.state.CB
        scb = getattr(weight, "SCB", None)
        if scb is None:
            scb = self.state.SCB
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return Int8WeightOnlyMatmul.apply(x, cb, scb, bias)


def dequantize_int8(cb: torch.Tensor, scb: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """int8 row-quantized weight (out, in) and its row absmax (out,) -> the weight in `dtype`."""
    return cb.to(dtype) * (scb.to(dtype) / 127.0).unsqueeze(1)


class Int8WeightOnlyMatmul(torch.autograd.Function):
    """y = x W^T + b with W dequantized from int8 on the fly, in forward and again in backward, so that only the
    int8 weight is kept between them (autograd would otherwise keep each layer's dequantized copy until backward,
    as bitsandbytes' own weight-only path, `MatMul8bitFp`, also avoids). Gradients flow to x only."""

    @staticmethod
    def forward(ctx, x, cb, scb, bias):  # type: ignore[override]
        ctx.save_for_backward(cb, scb)
        ctx.has_bias = bias is not None
        return nn.functional.linear(x, dequantize_int8(cb, scb, x.dtype), bias)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        cb, scb = ctx.saved_tensors
        grad_x = grad @ dequantize_int8(cb, scb, grad.dtype) if ctx.needs_input_grad[0] else None
        grad_bias = None
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0)
        return grad_x, None, None, grad_bias


def convert_int8(src: nn.Linear) -> Int8Linear:
    """An `Int8Linear` holding `src`'s weight row-quantized to int8 (quantized on the move to the device), bias
    left for the caller; the 8-bit entry of `trainables.precisions`."""
    new = Int8Linear(
        src.in_features,
        src.out_features,
        bias=src.bias is not None,
        has_fp16_weights=False,
        threshold=0.0,
        device="meta",
    )
    new.weight = bnb.nn.Int8Params(
        src.weight.data.float().contiguous(), requires_grad=False, has_fp16_weights=False
    )
    return new
