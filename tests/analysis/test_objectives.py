from __future__ import annotations

import pandas as pd
import pytest

from analysis import parse_objectives
from analysis.objectives import OBJECTIVE_COLUMNS, default_objectives, format_objectives, validate_objectives
from trainables.errors import ConfigError


def test_parse_objectives_keeps_order_and_directions() -> None:
    assert parse_objectives("accuracy:max,peak_memory_mb:min") == {"accuracy": "max", "peak_memory_mb": "min"}
    parsed = parse_objectives(" peak_memory_mb : MIN , perplexity:min ")
    assert list(parsed) == ["peak_memory_mb", "perplexity"]
    assert parsed == {"peak_memory_mb": "min", "perplexity": "min"}


def test_parse_objectives_natural_direction_when_left_out() -> None:
    assert parse_objectives("accuracy,train_time_s") == {"accuracy": "max", "train_time_s": "min"}


def test_required_columns_are_allowed() -> None:
    required = [
        "accuracy",
        "perplexity",
        "eval_loss",
        "peak_memory_mb",
        "weight_memory_mb",
        "trainable_params",
        "predicted_peak_mb",
        "train_time_s",
    ]
    assert set(required) <= set(OBJECTIVE_COLUMNS)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("acuracy:max", "'acuracy'"),
        ("accuracy:maximum", "'maximum'"),
        ("accuracy:max,accuracy:min", "twice"),
        ("", "names no objective"),
        (" , ", "names no objective"),
    ],
)
def test_parse_objectives_rejects_bad_input(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_objectives(text)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_unknown_column_message_lists_allowed() -> None:
    with pytest.raises(ConfigError, match="allowed: accuracy, perplexity"):
        parse_objectives("f1:max")


def test_validate_against_frame() -> None:
    df = pd.DataFrame({"accuracy": [float("nan")], "peak_memory_mb": [1.0]})
    assert validate_objectives({"peak_memory_mb": "MIN"}, df) == {"peak_memory_mb": "min"}
    with pytest.raises(ConfigError, match="'perplexity' is not in these results"):
        validate_objectives({"perplexity": "min"}, df)
    with pytest.raises(ConfigError, match="'accuracy' has no values"):
        validate_objectives({"accuracy": "max"}, df)
    assert validate_objectives({"accuracy": "max"}, df, require_values=False) == {"accuracy": "max"}
    with pytest.raises(ConfigError, match="direction 'up'"):
        validate_objectives({"accuracy": "up"})
    with pytest.raises(ConfigError, match="none given"):
        validate_objectives({})


def test_default_objectives_prefer_accuracy_when_it_has_values() -> None:
    with_acc = pd.DataFrame(
        {"accuracy": [0.9, None], "perplexity": [None, 20.0], "peak_memory_mb": [1.0, 2.0]}
    )
    without = pd.DataFrame(
        {"accuracy": [None, None], "perplexity": [30.0, 20.0], "peak_memory_mb": [1.0, 2.0]}
    )
    assert default_objectives(with_acc) == {"accuracy": "max", "peak_memory_mb": "min"}
    assert default_objectives(without) == {"perplexity": "min", "peak_memory_mb": "min"}


def test_format_round_trips() -> None:
    objectives = {"accuracy": "max", "peak_memory_mb": "min", "train_time_s": "min"}
    assert parse_objectives(format_objectives(objectives)) == objectives
