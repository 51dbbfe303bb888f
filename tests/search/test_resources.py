import pytest
import torch

from search.resources import DeviceInfo, detect_device, forked_trials, max_concurrency, plan_trial
from trainables.errors import ConfigError


def test_cpu_cores_are_split_between_concurrent_trials():
    cpu = DeviceInfo("cpu", memory_mb=16000, cpus=8)
    assert max_concurrency(cpu, [1000] * 10) == 4  # at most one trial per two cores
    assert plan_trial(cpu, 1000, 4).threads == 2
    assert plan_trial(cpu, 1000, 1).threads == 8


def test_trials_run_together_only_when_their_predictions_fit():
    mps = DeviceInfo("mps", memory_mb=10000, cpus=10)
    assert max_concurrency(mps, [3000, 3000, 3000, 3000]) == 2  # 3 x 3000 x 1.25 > 10000
    assert max_concurrency(mps, [20000]) == 1  # a trial over budget still runs, alone
    assert max_concurrency(mps, [100] * 20, requested=3) == 3


def test_requests_are_rounded_so_similar_trials_share_workers_and_capped_at_the_budget():
    cpu = DeviceInfo("cpu", memory_mb=4000, cpus=2)
    assert plan_trial(cpu, 1050, 1).memory_mb == plan_trial(cpu, 1062, 1).memory_mb == 1536
    assert plan_trial(cpu, 9000, 1).memory_mb == 4000


def test_mps_trials_get_a_memory_fraction_of_the_recommended_working_set(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "recommended_max_memory", lambda: 12 * 1024 * 2**20)
    device = detect_device()
    assert device.kind == "mps" and device.memory_mb == 12 * 1024
    res = plan_trial(device, 3000, 2)
    assert res.memory_fraction == round(res.memory_mb / (12 * 1024), 4)
    assert res.ray_request(True) == {"cpu": res.cpus, "device_memory_mb": res.memory_mb}
    assert detect_device(device_memory_gb=8).memory_mb == 8192


def test_cpu_trials_train_in_forked_children_accelerator_trials_in_process(monkeypatch):
    monkeypatch.delenv("RANKBITS_TRIAL_PROCESS", raising=False)
    assert plan_trial(DeviceInfo("cpu", 4000, 2), 1000, 1).forked is True  # Linux
    assert plan_trial(DeviceInfo("cuda", 4000, 2), 1000, 1).forked is False
    monkeypatch.setenv("RANKBITS_TRIAL_PROCESS", "inline")
    assert plan_trial(DeviceInfo("cpu", 4000, 2), 1000, 1).forked is False


def test_bad_trial_process_setting_names_the_value_and_the_choices(monkeypatch):
    monkeypatch.setenv("RANKBITS_TRIAL_PROCESS", "spawn")
    with pytest.raises(ConfigError, match=r"RANKBITS_TRIAL_PROCESS='spawn': use fork or inline"):
        forked_trials(DeviceInfo("cpu", 4000, 2))
    monkeypatch.setenv("RANKBITS_TRIAL_PROCESS", "fork")
    monkeypatch.setattr("trainables.forked.available", lambda: False)
    with pytest.raises(ConfigError, match="no forkserver"):
        forked_trials(DeviceInfo("cpu", 4000, 2))
