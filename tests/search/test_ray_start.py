"""init_ray's overlap of set-up work with Ray's start, and the trial processes' niceness (no Ray started here)."""

from __future__ import annotations

import threading

import pytest

from search import tuner
from search.resources import DeviceInfo
from trainables.errors import ConfigError

DEVICE = DeviceInfo("cpu", 4096.0, 2)


def test_meanwhile_runs_in_another_thread_while_ray_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}
    started = threading.Event()

    def fake_start(device: DeviceInfo, address: str | None) -> bool:
        seen["overlapped"] = started.wait(timeout=5)  # the helper runs while Ray "starts"
        return True

    def work() -> None:
        seen["thread"] = threading.current_thread() is not threading.main_thread()
        started.set()

    monkeypatch.setattr(tuner, "_start_ray", fake_start)
    assert tuner.init_ray(DEVICE, None, meanwhile=work) is True
    assert seen == {"thread": True, "overlapped": True}


def test_meanwhile_error_is_raised_after_ray_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(tuner, "_start_ray", lambda device, address: calls.append("ray") or True)

    def bad() -> None:
        raise ConfigError("memory budget 1 MB is below the smallest trial's predicted peak")

    with pytest.raises(ConfigError, match="memory budget 1 MB"):
        tuner.init_ray(DEVICE, None, meanwhile=bad)
    assert calls == ["ray"]


def test_trial_processes_run_at_normal_priority_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    assert tuner.worker_niceness() == 0
    monkeypatch.setenv("RAY_worker_niceness", "10")
    assert tuner.worker_niceness() == 10


def test_workers_are_reused_only_where_the_peak_does_not_depend_on_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RANKBITS_REUSE_WORKERS", raising=False)
    monkeypatch.delenv("RANKBITS_TRIAL_PROCESS", raising=False)
    assert tuner.reuse_workers(DeviceInfo("mps", 12000.0, 8)) is True
    assert tuner.reuse_workers(DeviceInfo("cuda", 12000.0, 8)) is True
    assert tuner.reuse_workers(DEVICE) is True  # CPU on Linux: each trial trains in a fresh forked child
    # trains in the worker's own process: its peak depends on the process's history
    monkeypatch.setenv("RANKBITS_TRIAL_PROCESS", "inline")
    assert tuner.reuse_workers(DEVICE) is False
    monkeypatch.setenv("RANKBITS_REUSE_WORKERS", "1")
    assert tuner.reuse_workers(DEVICE) is True
    monkeypatch.setenv("RANKBITS_REUSE_WORKERS", "0")
    assert tuner.reuse_workers(DeviceInfo("mps", 12000.0, 8)) is False
