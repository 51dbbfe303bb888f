import torch

from spaces.grid import GRID_IDS, grid_config
from trainables import memory
from trainables.config import ModelConfig
from trainables.memory import PeakMeter, arch_for, estimate


def test_cpu_meter_isolates_each_phase():
    meter = PeakMeter(torch.device("cpu"))
    meter.set_baseline()
    meter.start_phase()
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB
    big += 1
    assert meter.peak() >= 60 * 2**20
    del big
    meter.start_phase()
    assert meter.peak() < 40 * 2**20


def test_mps_meter_samples_current_allocated_when_no_peak_api(monkeypatch):
    current = {"bytes": 100}
    monkeypatch.setattr(torch.mps, "current_allocated_memory", lambda: current["bytes"])
    monkeypatch.setattr(memory, "_mps_peak_api", lambda: None)
    meter = PeakMeter(torch.device("mps"))
    assert meter.method == "mps-sampled-current-allocated"
    meter.set_baseline()
    meter.start_phase()
    for value in (500, 900, 300):
        current["bytes"] = value
        meter.sample()
    assert meter.peak() == 800


def test_mps_meter_uses_accelerator_peak_counters_when_present(monkeypatch):
    state = {"peak": 0}
    monkeypatch.setattr(torch.mps, "current_allocated_memory", lambda: 10)
    monkeypatch.setattr(
        memory, "_mps_peak_api", lambda: (lambda: state["peak"], lambda: state.update(peak=10))
    )
    meter = PeakMeter(torch.device("mps"))
    assert meter.method == "mps-max-allocated"
    meter.set_baseline()
    meter.start_phase()
    state["peak"] = 4010
    assert meter.peak() == 4000


def test_estimate_orders_the_grid_configs_by_weight_memory():
    cfgs = {c: grid_config(c, "sst2", "tiny-bert", 2) for c in GRID_IDS}
    arch = arch_for(cfgs["B-FP"])
    est = {c: estimate(arch, cfg) for c, cfg in cfgs.items()}
    assert est["B-Q4"].weights < est["Joint-2"].weights < est["B-FP"].weights
    assert est["B-FP"].activations == est["B-Q4"].activations
    assert all(e.total > e.weights for e in est.values())


def test_arch_reads_shapes_without_weights():
    from trainables.config import TrialConfig

    arch = arch_for(TrialConfig(model=ModelConfig(name="tiny-llama"), task={"name": "wikitext2"}))
    assert arch.num_layers == 2 and arch.hidden == 64 and arch.causal
    assert [n for n, *_ in arch.block_linears[0]][:2] == ["self_attn.q_proj", "self_attn.k_proj"]
