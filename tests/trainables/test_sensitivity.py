"""Measured layer sensitivity on tiny models: table shape, KL behaviour, restoring blocks, gradient signals, cache."""

from __future__ import annotations

import json

import pytest
import torch

from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.sensitivity import (
    SensitivitySettings,
    SensitivityTable,
    cache_path,
    kind_of,
    load_or_measure,
    measure_sensitivity,
    restore,
    swap_in,
)

SMALL = SensitivitySettings(examples=6, seq_len=32, grad_examples=3, max_rank=8)


def _cfg(tiny_data, model="tiny-llama", task="wikitext2", **training):
    return TrialConfig.from_dict(
        {
            "model": {"name": model},
            "task": {"name": task, "data_dir": str(tiny_data)},
            "training": {"compute_dtype": "float32", "device": "cpu", **training},
        }
    )


@pytest.fixture(scope="module")
def llama_table(tiny_data):
    return measure_sensitivity(_cfg(tiny_data), SMALL)


def test_table_has_one_row_per_block_with_both_widths_and_both_kinds(llama_table):
    t = llama_table
    assert len(t.blocks) == 2 and t.bits == [4, 8] and t.kinds == ["attention", "mlp"]
    assert t.tokens == 6 * 32  # every real token of the 6 calibration blocks
    for b in t.blocks:
        assert set(b.kl) == {4, 8} and set(b.kind_kl) == {"attention", "mlp"}
        assert len(b.spectrum) == 8 and b.importance > 0 and b.fisher > 0
        assert b.spectrum == sorted(b.spectrum, reverse=True)
        # the mean gradient's squared singular values sum to its squared norm (8 kept of at most 64 here)
        assert sum(b.spectrum) <= b.importance * (1 + 1e-6)
    df = t.frame()
    assert list(df.index) == [0, 1]
    assert {"kl4", "kl8", "attention_kl4", "mlp_kl8", "importance", "fisher", "rank"} <= set(df.columns)
    assert sorted(df["rank"]) == [1, 2]


def test_quantizing_a_block_raises_kl_and_4_bit_hurts_more_than_8(llama_table):
    for b in llama_table.blocks:
        assert b.kl[4] > b.kl[8] > 0
        for kind in ("attention", "mlp"):
            assert b.kind_kl[kind][4] > 0


def test_an_exact_copy_of_a_block_gives_zero_kl(tiny_data):
    """32-bit 'quantization' is a float32 copy: with the earlier blocks replayed from the reference pass, the
    output must be the reference exactly (catches a replay that feeds a block the wrong input)."""
    table = measure_sensitivity(
        _cfg(tiny_data), SensitivitySettings(examples=4, seq_len=32, grad_examples=0, bits=(32,))
    )
    assert [b.kl[32] for b in table.blocks] == [0.0, 0.0]
    assert table.blocks[0].importance is None and table.blocks[0].spectrum == []


def test_swap_in_and_restore_leave_the_weights_untouched():
    from torch import nn

    from trainables.config import QuantizationConfig

    block = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 32))
    before = [p.detach().clone() for p in block.parameters()]
    originals = swap_in(block, ["0", "1"], 4, QuantizationConfig(), torch.device("cpu"), torch.float32)
    assert type(block[0]).__name__ == "Linear4bit"
    restore(block, originals)
    assert all(torch.equal(a, b) for a, b in zip(before, block.parameters()))
    assert type(block[0]) is nn.Linear


def test_kinds_follow_module_names():
    assert kind_of("self_attn.q_proj") == "attention" and kind_of("attention.output.dense") == "attention"
    assert kind_of("attn.c_proj") == "attention"
    assert kind_of("mlp.gate_proj") == "mlp" and kind_of("intermediate.dense") == "mlp"
    assert kind_of("output.dense") == "mlp"


def test_sst2_classifier_and_gpt2_conv1d(tiny_data):
    small = SensitivitySettings(examples=8, seq_len=32, grad_examples=2, max_rank=4, bits=(4,))
    bert = measure_sensitivity(_cfg(tiny_data, "tiny-bert", "sst2"), small)
    assert bert.tokens == 8 and all(b.kl[4] >= 0 for b in bert.blocks)
    gpt2 = measure_sensitivity(_cfg(tiny_data, "tiny-gpt2"), dataclass_replace(small, by_kind=False))
    assert gpt2.kinds == [] and all(b.kl[4] > 0 for b in gpt2.blocks)


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_other_seed_is_another_sample_and_the_cache_hits(tiny_data, monkeypatch):
    cfg = _cfg(tiny_data)
    s = SensitivitySettings(examples=4, seq_len=32, grad_examples=2, max_rank=4, by_kind=False)
    first, cached = load_or_measure(cfg, s)
    assert not cached
    calls = []
    monkeypatch.setattr(
        "trainables.sensitivity.measure_sensitivity", lambda *a, **k: calls.append(1) or first
    )
    again, cached = load_or_measure(cfg, s)
    assert cached and calls == [] and again == SensitivityTable.from_dict(first.to_dict())
    _, cached = load_or_measure(cfg, s, use_cache=False)
    assert not cached and calls == [1]
    _, cached = load_or_measure(cfg, dataclass_replace(s, seed=1))  # another sample: another key
    assert not cached and calls == [1, 1]
    monkeypatch.setattr("trainables.sensitivity.measure_sensitivity", measure_sensitivity)  # the real one
    with_kinds, cached = load_or_measure(cfg, dataclass_replace(s, seed=2, by_kind=True))
    assert not cached and with_kinds.kinds == ["attention", "mlp"]
    monkeypatch.setattr("trainables.sensitivity.measure_sensitivity", lambda *a, **k: calls.append(1))
    calls.clear()
    again, cached = load_or_measure(cfg, dataclass_replace(s, seed=2))  # a table with kinds serves without
    assert cached and calls == [] and again.kinds == ["attention", "mlp"]
    key = json.loads(next(cache_path(cfg, first.key).parent.glob("*.json")).read_text())["key"]
    assert len(key) == 64


def test_settings_are_validated_in_one_line():
    with pytest.raises(ConfigError, match="bits: \\[5\\]"):
        SensitivitySettings(bits=(5,))
    with pytest.raises(ConfigError, match="examples: 0 must be > 0"):
        SensitivitySettings(examples=0)


def test_too_few_examples_is_one_line(tiny_data):
    with pytest.raises(ConfigError, match="fewer than the 100000 asked"):
        measure_sensitivity(_cfg(tiny_data), SensitivitySettings(examples=100000, seq_len=32))


def test_ranking_orders_by_damage_saved(llama_table):
    saved = llama_table.damage_avoided()
    order = llama_table.ranking()
    assert saved[order[0]] >= saved[order[1]]
    assert llama_table.most_sensitive(1) == [order[0]]
    with pytest.raises(ConfigError, match="measured bits \\[4, 8\\], not 16"):
        llama_table.ranking(4, 16)
