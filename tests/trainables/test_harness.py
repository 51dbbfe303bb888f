"""Harness switches: one typed record, flags parsed with one-line errors, the environment as their default."""

from __future__ import annotations

import sys

import pytest

from trainables import harness as hs
from trainables import memory
from trainables.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch):
    for name in hs.ENV.values():
        monkeypatch.delenv(name, raising=False)
    hs.use_mmap_threshold(None)
    yield
    hs.use_mmap_threshold(None)


def test_a_harness_round_trips_and_refuses_bad_values() -> None:
    h = hs.Harness("fork", True, 262144)
    assert h.to_dict() == {"trial_process": "fork", "reuse_workers": True, "mmap_threshold": 262144}
    assert hs.Harness.from_dict(h.to_dict()) == h
    with pytest.raises(ConfigError, match="trial process 'spawn': use fork or inline"):
        hs.Harness("spawn")
    with pytest.raises(ConfigError, match="mmap threshold -1: must be >= 0"):
        hs.Harness("inline", None, -1)


@pytest.mark.parametrize(
    "text, expected",
    [(None, None), ("", None), ("0", 0), ("262144", 262144), ("256K", 262144), ("1m", 2**20), (4096, 4096)],
)
def test_mmap_threshold_flag_values(text, expected) -> None:
    assert hs.parse_mmap_threshold(text) == expected


@pytest.mark.parametrize(
    "parse, text, message",
    [
        (hs.parse_mmap_threshold, "lots", r"--mmap-threshold 'lots': give bytes as a whole number"),
        (hs.parse_mmap_threshold, "-5", r"--mmap-threshold '-5': give bytes"),
        (hs.parse_trial_process, "spawn", r"--trial-process 'spawn': use fork or inline"),
        (hs.parse_reuse_workers, "maybe", r"--reuse-workers 'maybe': use 1 or 0"),
    ],
)
def test_bad_flag_values_are_one_line_errors_naming_the_flag(parse, text, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse(text)
    assert "\n" not in str(info.value)


def test_the_environment_is_the_default_and_a_bad_value_names_the_variable(monkeypatch) -> None:
    assert hs.mmap_threshold() == hs.DEFAULT_MMAP_THRESHOLD == 0
    monkeypatch.setenv("RANKBITS_MMAP_THRESHOLD", "262144")
    assert hs.mmap_threshold() == 262144
    hs.use_mmap_threshold(131072)  # the trial's own setting wins over the environment
    assert hs.mmap_threshold() == 131072
    hs.use_mmap_threshold(None)
    monkeypatch.setenv("RANKBITS_MMAP_THRESHOLD", "big")
    with pytest.raises(ConfigError, match="RANKBITS_MMAP_THRESHOLD='big'"):
        hs.mmap_threshold()
    monkeypatch.setenv("RANKBITS_REUSE_WORKERS", "1")
    assert hs.from_env("reuse_workers") is True
    monkeypatch.setenv("RANKBITS_TRIAL_PROCESS", "Inline")
    assert hs.from_env("trial_process") == "inline"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_allocator_takes_the_trials_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    class FakeLibc:
        def mallopt(self, option: int, value: int) -> int:
            calls.append((option, value))
            return 1

    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: FakeLibc())
    memory.configure_allocator()
    assert calls == []  # 0: glibc's own threshold, nothing set
    hs.use_mmap_threshold(262144)
    memory.configure_allocator()
    assert calls == [(memory.M_MMAP_THRESHOLD, 262144), (memory.M_TRIM_THRESHOLD, 4 * 262144)]
