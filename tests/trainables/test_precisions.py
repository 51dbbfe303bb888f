"""The precision registry: built-in entries keep today's behaviour, and a made-up precision defined only here (a
12-bit "float16 with its mantissa rounded to 3 bits") works through config validation, conversion, the exact byte
formula, the memory model, labels, the preload list and the Pareto space, without touching any other module."""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna
import pytest
import torch
from torch import nn

from spaces.grid import grid_config
from spaces.pareto import build_config, grid_points, suggest_params
from trainables import precisions
from trainables.config import BIT_WIDTHS, QuantizationConfig, TrialConfig
from trainables.errors import ConfigError
from trainables.memory import arch_for, estimate
from trainables.precisions import Precision, quantization_label, register
from trainables.quantize import CastLinear, convert_linear, formula_bytes, layer_bytes, quantize_model

CPU = torch.device("cpu")
LAYERS = 4


def _round_mantissa(w: torch.Tensor, keep: int = 3) -> torch.Tensor:
    """float16 with all but `keep` mantissa bits zeroed (10 + 1 + 5 -> 12 bits of information)."""
    raw = w.to(torch.float16).view(torch.int16)
    mask = ~((1 << (10 - keep)) - 1)
    return (raw & mask).view(torch.float16)


def _convert_fake12(src: Any, qcfg: QuantizationConfig, compute_dtype: torch.dtype) -> nn.Module:
    new = CastLinear(src.in_features, src.out_features, bias=src.bias is not None, device="meta")
    new.weight = nn.Parameter(_round_mantissa(src.weight.data), requires_grad=False)
    return new


FAKE12 = Precision(
    bits=12,
    label="fake12",
    weight_bytes=lambda o, i, dq, half: (2 * o * i, 2 * o * i),
    convert=_convert_fake12,
    storage_dtype=lambda qcfg, compute: "float16",
    preload=("trainables.quantize",),
)


@pytest.fixture
def fake12(monkeypatch: pytest.MonkeyPatch) -> Precision:
    monkeypatch.setitem(precisions.PRECISIONS, FAKE12.bits, FAKE12)  # removed again after the test
    return FAKE12


def test_built_in_precisions_are_unchanged() -> None:
    assert BIT_WIDTHS == precisions.bit_widths() == (4, 8, 16, 32)
    assert precisions.search_bits() == [4, 8, 16]
    assert [quantization_label([b]) for b in (32, 16, 8, 4)] == ["fp32", "16-bit", "int8", "nf4"]
    assert quantization_label([8, 4, 4, 8]) == "mixed 8/4"
    assert precisions.peft_flags([4, 16]) == {"is_loaded_in_4bit": True, "is_loaded_in_8bit": False}
    assert "bitsandbytes" in precisions.preload_modules()


def test_unknown_width_is_one_line_naming_the_registered_ones(fake12: Precision) -> None:
    with pytest.raises(ConfigError, match=r"bit width 13 is not supported; choose one of 4, 8, 12, 16, 32"):
        QuantizationConfig(default_bits=13)
    with pytest.raises(ConfigError, match="already registered"):
        register(FAKE12)


def test_made_up_precision_validates_converts_and_counts_exactly(fake12: Precision) -> None:
    qcfg = QuantizationConfig(default_bits=12, layer_bits={0: 4})
    assert qcfg.bits_per_layer(3) == [4, 12, 12]
    torch.manual_seed(0)
    lin = nn.Linear(96, 40, bias=True)
    layer = convert_linear(lin, 12, qcfg, CPU)
    assert isinstance(layer, CastLinear) and layer.weight.dtype == torch.float16
    assert torch.equal(layer.weight, _round_mantissa(lin.weight.data))
    assert layer_bytes(layer) == formula_bytes(12, 40, 96, bias=True)
    x = torch.randn(3, 96)
    assert (layer(x) - lin(x)).abs().max() < 0.1 * lin(x).abs().max()  # 3 mantissa bits: about 6% per weight
    assert quantization_label([12]) == "fake12" and quantization_label([12, 4]) == "mixed 12/4"
    assert "trainables.quantize" in precisions.preload_modules()


def test_made_up_precision_through_a_model_and_the_memory_model(fake12: Precision) -> None:
    from trainables import models

    cfg = TrialConfig.from_dict(
        {"task": {"name": "sst2"}, "model": {"name": "tiny-bert"}, "quantization": {"default_bits": 12}}
    )
    tok = models.load_tokenizer(cfg.model)
    model = models.load_model(cfg.model, "sst2", tok)
    _, blocks = models.find_blocks(model)
    report = quantize_model(model, blocks, cfg.quantization, CPU)
    arch = arch_for(cfg)
    est = estimate(arch, dataclasses.replace(cfg), "cpu")
    # the memory model's weights are the exact bytes the converted model holds (float32 compute)
    assert est.weights == report.weight_bytes
    sixteen = estimate(arch, cfg.with_overrides({"quantization.default_bits": 16}), "cpu")
    assert est.weights == sixteen.weights  # both store 2 bytes a weight; fake12 in float16, 16 in bfloat16


def test_made_up_precision_in_the_pareto_space_and_the_grid(fake12: Precision) -> None:
    base = TrialConfig.from_dict({"task": {"name": "sst2"}, "model": {"name": "tiny-bert"}})
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial({"method": "lora", "low_bits": 12, "n_high": 1, "placement": "top"})
    params = suggest_params(study.ask(), LAYERS)
    assert params["bits"] == [12, 12, 12, 16]  # one wider width above 12: fixed, not sampled
    cfg = build_config({**params}, base, LAYERS)
    assert cfg.quantization.bits_per_layer(LAYERS) == [12, 12, 12, 16]
    # above 4 the wider widths are now 8, 12 and 16, under the parameter name the built-in space uses
    study.enqueue_trial({"method": "lora", "low_bits": 4, "n_high": 2, "high_bits": 12, "placement": "ends"})
    assert suggest_params(study.ask(), LAYERS)["bits"] == [12, 4, 4, 12]
    # above 8: 12 or 16, under a name of their own (Optuna keeps one choice list per name)
    study.enqueue_trial(
        {"method": "lora", "low_bits": 8, "n_high": 1, "high_bits_12_16": 12, "placement": "top"}
    )
    trial = study.ask()
    assert suggest_params(trial, LAYERS)["bits"] == [8, 8, 8, 12]
    grid = grid_config("B-FP", "sst2", "tiny-bert", LAYERS).with_overrides({"quantization.default_bits": 12})
    assert grid.quantization.bits_per_layer(LAYERS) == [12] * LAYERS
    assert len(grid_points(LAYERS)) == 6


def test_built_in_space_keeps_its_parameters() -> None:
    study = optuna.create_study()
    study.enqueue_trial({"method": "lora", "low_bits": 8, "n_high": 2, "placement": "bottom"})
    trial = study.ask()
    params = suggest_params(trial, LAYERS)
    assert params["bits"] == [16, 16, 8, 8]
    assert "high_bits" not in trial.params and set(trial.distributions["low_bits"].choices) == {4, 8, 16}


def test_precision_without_an_adalora_layer_is_refused_and_never_proposed_for_adalora(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(precisions.PRECISIONS, 12, dataclasses.replace(FAKE12, adalora=False))
    with pytest.raises(ConfigError, match=r"fake12 \(12-bit\) weights have no PEFT AdaLoRA layer"):
        TrialConfig.from_dict({"quantization": {"default_bits": 12}, "adapter": {"method": "adalora"}})
    TrialConfig.from_dict({"quantization": {"default_bits": 12}, "adapter": {"method": "lora"}})
    study = optuna.create_study()
    for _ in range(20):
        study.enqueue_trial({"method": "adalora"})
        trial = study.ask()
        bits = suggest_params(trial, LAYERS)["bits"]
        assert 12 not in bits
        assert "low_bits" not in trial.params  # its own name: the choice list differs from LoRA's
        study.tell(trial, 0.0)
