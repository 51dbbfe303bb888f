import pytest

from spaces.grid import GRID_IDS, critical_layers, grid_config, manual_ranks, parse_config_ids
from trainables.errors import ConfigError


def test_the_six_configs_match_the_research_plan():
    c = {i: grid_config(i, "sst2", "minilm-l6", 6) for i in GRID_IDS}
    assert c["B-FP"].quantization.bits_per_layer(6) == [16] * 6 and c["B-FP"].adapter.method == "lora"
    assert c["B-FP"].adapter.ranks_per_layer(6) == [8] * 6
    assert c["B-Q4"].quantization.bits_per_layer(6) == [4] * 6 and c["B-Q4"].quantization.double_quant
    assert c["B-Q4"].quantization.quant_type == "nf4"
    for ada in ("B-Ada", "Joint-1", "Joint-2"):
        assert (c[ada].adapter.method, c[ada].adapter.init_r, c[ada].adapter.target_r) == ("adalora", 12, 4)
    assert c["B-Ada"].quantization.bits_per_layer(6) == [16] * 6
    assert c["Joint-1"].quantization.bits_per_layer(6) == [4] * 6
    assert c["Joint-2"].quantization.bits_per_layer(6) == [8, 4, 4, 4, 4, 8]
    assert c["Joint-3"].quantization.bits_per_layer(6) == [8, 4, 4, 4, 4, 8]
    assert c["Joint-3"].adapter.method == "lora" and c["Joint-3"].adapter.ranks_per_layer(6) == [
        4,
        4,
        8,
        8,
        12,
        12,
    ]


def test_critical_layers_and_manual_ranks_scale_with_depth():
    assert critical_layers(6) == [0, 5]
    assert critical_layers(30) == [0, 1, 2, 27, 28, 29]
    assert sum(manual_ranks(30).values()) == 8 * 30
    assert sum(manual_ranks(6).values()) == 8 * 6


def test_unknown_config_id_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown config id 'B-FP8'; choose from B-FP, B-Q4, B-Ada"):
        parse_config_ids("B-FP,B-FP8")
