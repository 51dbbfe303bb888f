import json

import pytest

from trainables.config import AdapterConfig, QuantizationConfig, TrainingConfig, TrialConfig
from trainables.errors import ConfigError


def test_defaults_round_trip_through_json():
    cfg = TrialConfig.from_dict(
        {"quantization": {"default_bits": 4, "layer_bits": {0: 8, 5: 8}}, "adapter": {"layer_ranks": {1: 4}}}
    )
    again = TrialConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))  # int keys become strings in JSON
    assert again == cfg
    assert again.quantization.layer_bits == {0: 8, 5: 8}


@pytest.mark.parametrize("bits", [2, 3, 6, 12, 64])
def test_bit_width_outside_allowed_set_is_rejected(bits):
    with pytest.raises(ConfigError, match=f"bit width {bits} is not supported; choose one of 4, 8, 16, 32"):
        QuantizationConfig(default_bits=bits)
    with pytest.raises(ConfigError, match=r"layer_bits\[2\]"):
        QuantizationConfig(layer_bits={2: bits})


def test_layer_map_naming_missing_layer_says_how_many_layers():
    q = QuantizationConfig(layer_bits={7: 8})
    with pytest.raises(ConfigError, match="names layer 7 but the model has 6 layers"):
        q.bits_per_layer(6)
    assert QuantizationConfig(default_bits=4, layer_bits={0: 8}).bits_per_layer(3) == [8, 4, 4]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"r": 0}, "rank 0 must be > 0"),
        ({"r": -2}, "must be > 0"),
        ({"method": "adalora", "init_r": 4, "target_r": 8}, "target_r: 8 is above init_r 4"),
        ({"method": "dora"}, "unknown method 'dora'"),
        ({"dropout": 1.5}, "dropout"),
        ({"layer_ranks": {0: -1}}, "must be >= 0"),
    ],
)
def test_adapter_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AdapterConfig(**kwargs)


def test_adalora_schedule_defaults_and_bounds():
    a = AdapterConfig(method="adalora")
    assert a.schedule(200) == (20, 40, 2)
    with pytest.raises(ConfigError, match="must be below the 10 training steps"):
        AdapterConfig(method="adalora", tinit=5, tfinal=5).schedule(10)


def test_overrides_parse_types_and_reject_bad_keys():
    cfg = TrialConfig().with_overrides(
        [
            "training.lr=1e-4",
            "r=4",
            "adapter.target_modules=query,value",
            "quantization.layer_bits=0:8,5:8",
            "training.epochs=none",
        ]
    )
    assert cfg.training.lr == 1e-4 and cfg.adapter.r == 4
    assert cfg.adapter.target_modules == ["query", "value"]
    assert cfg.quantization.layer_bits == {0: 8, 5: 8}
    with pytest.raises(ConfigError, match="has no setting 'lrr'"):
        TrialConfig().with_overrides(["training.lrr=1"])
    with pytest.raises(ConfigError, match="wrong type, expected an integer"):
        TrialConfig().with_overrides(["training.batch_size=big"])
    with pytest.raises(ConfigError, match="no such setting"):
        TrialConfig().with_overrides(["nonsense=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        TrialConfig().with_overrides(["training.lr"])


def test_dict_values_of_wrong_type_are_rejected():
    with pytest.raises(ConfigError, match="training.lr: 'fast' has the wrong type"):
        TrialConfig.from_dict({"training": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="no such setting"):
        TrialConfig.from_dict({"training": {"learning_rate": 1.0}})
    with pytest.raises(ConfigError, match="unknown config section"):
        TrialConfig.from_dict({"trainer": {}})


def test_task_and_device_names_are_checked():
    with pytest.raises(ConfigError, match="unknown task 'mnli'"):
        TrialConfig.from_dict({"task": {"name": "mnli"}})
    with pytest.raises(ConfigError, match="training.device"):
        TrainingConfig(device="tpu")
