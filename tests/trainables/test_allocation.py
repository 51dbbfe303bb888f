"""Budgeted allocation: the integer program agrees with brute force, respects budgets, refuses infeasible ones."""

from __future__ import annotations

import itertools
import random

import pytest

from trainables.allocation import (
    allocate_bits,
    allocate_bits_for_peak,
    allocate_ranks,
    block_weight_bytes,
    rank_unit_params,
    solve_mckp,
)
from trainables.config import AdapterConfig, QuantizationConfig, TrialConfig
from trainables.errors import ConfigError
from trainables.memory import ArchSpec
from trainables.sensitivity import BlockSensitivity, SensitivityTable


def _brute(values, weights, budget):
    best = None
    for pick in itertools.product(*[range(len(v)) for v in values]):
        if sum(w[j] for w, j in zip(weights, pick)) <= budget:
            cost = sum(v[j] for v, j in zip(values, pick))
            if best is None or cost < best[0] - 1e-12:
                best = (cost, pick)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_integer_program_matches_brute_force(seed):
    rng = random.Random(seed)
    groups, options = rng.randint(2, 5), rng.randint(2, 4)
    values = [[rng.uniform(0, 1e-3) for _ in range(options)] for _ in range(groups)]
    weights = [[rng.randint(1, 50) * 1000 for _ in range(options)] for _ in range(groups)]
    lo, hi = sum(min(w) for w in weights), sum(max(w) for w in weights)
    budget = rng.randint(lo, hi)
    chosen = solve_mckp(values, weights, budget)
    used = sum(w[j] for w, j in zip(weights, chosen))
    assert used <= budget
    best_cost, _ = _brute(values, weights, budget)
    assert sum(v[j] for v, j in zip(values, chosen)) == pytest.approx(best_cost, rel=1e-9, abs=1e-15)


def test_infeasible_budget_is_one_line():
    with pytest.raises(ConfigError, match="below the least any choice takes"):
        solve_mckp([[1.0, 0.5]], [[10, 20]], 5)


def _arch(layers=4, hidden=64, inter=128):
    block = (
        ("attn.q", hidden, hidden, False),
        ("attn.v", hidden, hidden, False),
        ("mlp.up", inter, hidden, False),
        ("mlp.down", hidden, inter, False),
    )
    return ArchSpec(
        num_layers=layers,
        hidden=hidden,
        intermediate=inter,
        heads=2,
        vocab=100,
        causal=True,
        block_linears=(block,) * layers,
        other_float_elements=100 * hidden,
        other_fixed_bytes=0,
    )


def _table(kl4, kl8=None, spectra=None):
    kl8 = kl8 or [k / 50 for k in kl4]
    blocks = [
        BlockSensitivity(
            index=i,
            kl={4: a, 8: b},
            importance=sum(spectra[i]) if spectra else None,
            spectrum=spectra[i] if spectra else [],
        )
        for i, (a, b) in enumerate(zip(kl4, kl8))
    ]
    return SensitivityTable("m", "wikitext2", "k", {}, "", [], blocks, 10, 0.0)


def test_bits_budget_buys_8_bits_for_the_most_sensitive_blocks_first():
    arch, q = _arch(), QuantizationConfig()
    table = _table([0.01, 0.05, 0.02, 0.08])
    b4, b8 = block_weight_bytes(arch, 4, q, 4)[0], block_weight_bytes(arch, 8, q, 4)[0]
    fixed = arch.other_bytes(4)
    budget = fixed + 2 * b8 + 2 * b4  # room for two 8-bit blocks
    alloc = allocate_bits(table, arch, q, budget, 4)
    assert alloc.choices == [4, 8, 4, 8] and alloc.used <= budget
    assert alloc.used == fixed + 2 * b8 + 2 * b4
    assert alloc.set_line() == "--set quantization.layer_bits=0:4,1:8,2:4,3:8"
    assert allocate_bits(table, arch, q, budget * 10, 4).choices == [8, 8, 8, 8]


def test_bits_budget_matches_the_bytes_of_the_quantized_model():
    """The allocator's bytes are the memory model's: the predicted weights of the allocation's config."""
    from trainables.predict import predict_peak

    arch, q = _arch(), QuantizationConfig()
    alloc = allocate_bits(_table([0.01, 0.05, 0.02, 0.08]), arch, q, 1e9, 4)
    cfg = TrialConfig.from_dict(
        {
            "quantization": {"layer_bits": dict(enumerate(alloc.choices))},
            "training": {"compute_dtype": "float32"},
        }
    )
    assert predict_peak(cfg, "cpu", arch).weights == alloc.used


def test_too_small_a_weight_budget_names_the_least_in_mb():
    arch = _arch()
    with pytest.raises(ConfigError, match=r"weight budget 0.0 MB is below the smallest this model takes"):
        allocate_bits(_table([0.1] * 4), arch, QuantizationConfig(), 10, 4)
    with pytest.raises(ConfigError, match="has 3 blocks but the model has 4"):
        allocate_bits(_table([0.1] * 3), arch, QuantizationConfig(), 1e9, 4)


def test_peak_budget_is_respected():
    from trainables.predict import predict_peak

    arch = _arch()
    cfg = TrialConfig.from_dict({"task": {"name": "wikitext2"}, "training": {"compute_dtype": "float32"}})
    table = _table([0.01, 0.05, 0.02, 0.08])
    low = predict_peak(cfg.with_overrides({"quantization.default_bits": 4}), "cpu", arch).total
    high = predict_peak(cfg.with_overrides({"quantization.default_bits": 8}), "cpu", arch).total
    budget = (low + high) / 2
    alloc = allocate_bits_for_peak(table, cfg, arch, budget, "cpu")
    assert alloc.used <= budget and 8 in alloc.choices and 4 in alloc.choices
    with pytest.raises(ConfigError, match="below the smallest predicted peak"):
        allocate_bits_for_peak(table, cfg, arch, low - 1, "cpu")


def test_ranks_follow_the_gradient_spectra_under_the_parameter_budget():
    arch = _arch(layers=3)
    spectra = [[1.0, 0.5] + [0.0] * 30, [10.0, 8.0, 6.0, 4.0] + [0.1] * 28, [0.1] * 32]
    table = _table([0.1] * 3, spectra=spectra)
    unit = rank_unit_params(arch, AdapterConfig())
    assert unit == [2 * (64 + 64) + (128 + 64) + (64 + 128)] * 3
    budget = 8 * unit[0]
    alloc = allocate_ranks(table, arch, AdapterConfig(), budget, ranks=(0, 2, 4, 8))
    assert alloc.used <= budget and sum(alloc.choices) == 8
    assert alloc.choices[1] == max(alloc.choices)  # the block with most gradient energy gets most rank
    best = max(
        (sum(b.gain(r) for b, r in zip(table.blocks, pick)), pick)
        for pick in itertools.product((0, 2, 4, 8), repeat=3)
        if sum(r * u for r, u in zip(pick, unit)) <= budget
    )
    assert alloc.objective == pytest.approx(best[0])
    assert alloc.set_line().endswith(
        "adapter.layer_ranks=" + ",".join(f"{i}:{r}" for i, r in enumerate(alloc.choices))
    )


def test_rank_budget_errors_are_one_line():
    arch = _arch(layers=2)
    with pytest.raises(ConfigError, match="no gradient signals"):
        allocate_ranks(_table([0.1, 0.1]), arch, AdapterConfig(), 10**6)
    table = _table([0.1, 0.1], spectra=[[1.0], [1.0]])
    with pytest.raises(ConfigError, match="parameter budget 10 leaves no block an adapter"):
        allocate_ranks(table, arch, AdapterConfig(), 10)
