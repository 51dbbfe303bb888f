"""The sensitivity placement and the reduced space: pure functions of an Optuna trial, fed a precomputed order."""

from __future__ import annotations

import optuna
import pytest

from spaces.pareto import (
    PLACEMENTS,
    REDUCED_SPREADS,
    SENSITIVITY,
    build_config,
    place_high,
    propose,
    suggest_params,
    suggest_reduced,
)
from trainables.config import TrialConfig
from trainables.errors import ConfigError

optuna.logging.set_verbosity(optuna.logging.ERROR)

L = 8
ORDER = [5, 0, 7, 2, 3, 1, 6, 4]  # most sensitive first
BASE = TrialConfig.from_dict({"task": {"name": "wikitext2"}, "model": {"name": "tiny-llama"}})
REDUCED_PARAMS = {"method", "n_high", "rank_spread", "rank_budget", "init_r", "target_ratio"}


def fixed_trial(params):
    study = optuna.create_study()
    study.enqueue_trial(params)
    return study.ask()


def test_reduced_space_proposes_only_valid_points_in_sensitivity_order():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen_n = set()
    for _ in range(60):
        trial = study.ask()
        params = suggest_reduced(trial, L, ORDER)
        assert set(trial.params) <= REDUCED_PARAMS  # no low_bits, placement, per-layer ranks
        n = trial.params["n_high"]
        seen_n.add(n)
        assert params["bits"] == [8 if i in ORDER[:n] else 4 for i in range(L)]
        if params["method"] == "lora":
            assert trial.params["rank_spread"] in REDUCED_SPREADS
            assert trial.distributions["rank_spread"].choices == tuple(REDUCED_SPREADS)
        cfg = build_config(params, BASE, L)  # every proposal is a valid TrialConfig
        assert cfg.quantization.bits_per_layer(L) == params["bits"]
        study.tell(trial, 0.0)
    assert len(seen_n) > 4  # the count of 8-bit blocks is what varies


def test_reduced_point_equals_the_full_space_point_with_sensitivity_placement():
    point = {"method": "lora", "low_bits": 4, "n_high": 3, "high_bits": 8, "placement": SENSITIVITY}
    point.update({"rank_spread": "rising", "rank_budget": 6})
    full = suggest_params(fixed_trial(point), L, order=ORDER)
    reduced = suggest_reduced(fixed_trial(point), L, ORDER)
    assert full == reduced
    assert full["bits"] == [8 if i in (5, 0, 7) else 4 for i in range(L)]


def test_full_space_offers_the_sensitivity_placement_only_with_an_order():
    point = {"method": "lora", "low_bits": 4, "n_high": 2, "high_bits": 8, "placement": "top"}
    point.update({"rank_spread": "uniform", "rank_budget": 8})
    without = fixed_trial(point)
    suggest_params(without, L)
    assert without.distributions["placement"].choices == tuple(
        PLACEMENTS
    )  # existing studies resume unchanged
    with_order = fixed_trial(point)
    suggest_params(with_order, L, order=ORDER)
    assert with_order.distributions["placement"].choices == (*PLACEMENTS, SENSITIVITY)


def test_place_high_by_sensitivity_and_bad_orders():
    assert place_high(L, 3, SENSITIVITY, ORDER) == [0, 5, 7]
    assert place_high(L, 0, SENSITIVITY, ORDER) == []
    for bad in (None, [0, 1, 2], [0] * L):
        with pytest.raises(ConfigError, match="measured block order"):
            place_high(L, 2, SENSITIVITY, bad)


def test_propose_dispatches_and_refuses_what_it_cannot_build():
    trial = optuna.create_study().ask()
    assert "bits" in propose(trial, "reduced", L, order=ORDER)
    with pytest.raises(ConfigError, match="--space reduced needs"):
        propose(optuna.create_study().ask(), "reduced", L)
    with pytest.raises(ConfigError, match="--space 'tiny'"):
        propose(optuna.create_study().ask(), "tiny", L)
