import json
from pathlib import Path

import pytest
import torch

from spaces.grid import GRID_IDS, grid_config
from trainables import memory
from trainables.config import ModelConfig, TrialConfig
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
    cfgs = {
        c: grid_config(c, "sst2", "tiny-bert", 2).with_overrides(["training.compute_dtype=bfloat16"])
        for c in GRID_IDS
    }
    arch = arch_for(cfgs["B-FP"])
    est = {c: estimate(arch, cfg) for c, cfg in cfgs.items()}
    assert est["B-Q4"].weights < est["Joint-2"].weights < est["B-FP"].weights
    # 16-bit blocks in a 16-bit compute dtype keep no cast copies; 4-bit ones add a dequantization buffer
    assert est["B-FP"].activations < est["B-Q4"].activations < est["B-FP"].activations + 2**20
    assert all(e.total == sum(e.parts().values()) > e.weights for e in est.values())


def test_arch_reads_shapes_without_weights():
    from trainables.config import TrialConfig

    arch = arch_for(TrialConfig(model=ModelConfig(name="tiny-llama"), task={"name": "wikitext2"}))
    assert arch.num_layers == 2 and arch.hidden == 64 and arch.causal
    assert [n for n, *_ in arch.block_linears[0]][:2] == ["self_attn.q_proj", "self_attn.k_proj"]


REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
LLAMA_1B = Path(__file__).resolve().parents[2] / "benchmarks" / "configs" / "llama-3.2-1b-shape"


def _standard_path():
    path = REFERENCE / "cuda-h200-standard-path-llama1b-2026-11-29.jsonl"
    if not path.is_file():
        pytest.skip("../shared/reference is not beside the repository")
    return {r["variant"]: r for r in map(json.loads, path.read_text().splitlines())}


@pytest.mark.parametrize(
    "variant,config_id,dtype,ckpt",
    [
        ("4bit-bf16", "B-Q4", "bfloat16", False),
        ("4bit-bf16-gc", "B-Q4", "bfloat16", True),
        ("16bit-bf16", "B-FP", "bfloat16", False),
        ("16bit-bf16-gc", "B-FP", "bfloat16", True),
        ("4bit-fp32compute", "B-Q4", "float32", False),
        ("4bit-fp32compute-gc", "B-Q4", "float32", True),
    ],
)
def test_cuda_prediction_matches_the_standard_path(variant, config_id, dtype, ckpt):
    """Out of sample for the rankbits side: the targets were measured on the standard transformers + PEFT path
    (shared/reference), the Llama-1B shape from its config.json alone, CUDA, batch 4 x 256."""
    measured = _standard_path()[variant]["peak_alloc_mb"]
    cfg = grid_config(config_id, "wikitext2", str(LLAMA_1B), 16, max_steps=20).with_overrides(
        {
            "training.compute_dtype": dtype,
            "training.gradient_checkpointing": ckpt,
            "training.batch_size": 4,
            "training.seq_len": 256,
        }
    )
    predicted = estimate(arch_for(cfg), cfg, "cuda").total_mb
    assert abs(predicted / measured - 1) < 0.10, (predicted, measured)


def test_cuda_prediction_holds_on_the_rankbits_reference_records():
    """rankbits' own six configs on CUDA before the compute dtype existed (float32, no checkpointing)."""
    path = REFERENCE / "cuda-h200-2026-11-29.jsonl"
    if not path.is_file():
        pytest.skip("../shared/reference is not beside the repository")
    ratios = {}
    for record in map(json.loads, path.read_text().splitlines()):
        if "Llama" not in record["model"]:
            continue
        data = record["cfg"]
        data["model"]["name"] = str(LLAMA_1B)
        data["training"].update(compute_dtype="float32", gradient_checkpointing=False)
        cfg = TrialConfig.from_dict(data)
        ratios[record["config_id"]] = estimate(arch_for(cfg), cfg, "cuda").total_mb / record["peak_memory_mb"]
    assert len(ratios) == 6 and all(abs(r - 1) < 0.10 for r in ratios.values()), ratios


LIVE_PEAKS = (
    Path(__file__).resolve().parents[2] / "benchmarks" / "reference" / "cpu-live-peaks-2026-11-30.jsonl"
)


def test_model_key_names_the_live_tensor_measure_only_for_a_linux_cpu_with_a_threshold(monkeypatch):
    monkeypatch.setattr(memory.sys, "platform", "linux")
    assert memory.model_key("cpu", 262144) == memory.LIVE_TENSORS
    assert memory.model_key("cpu", 0) == "cpu"
    assert memory.model_key("cuda", 262144) == "cuda" and memory.model_key("mps", 262144) == "mps"
    monkeypatch.setattr(memory.sys, "platform", "darwin")  # no glibc: the threshold is not applied
    assert memory.model_key("cpu", 262144) == "cpu"


@pytest.mark.skipif(
    not memory.sys.platform.startswith("linux"), reason="glibc's mmap threshold is Linux only"
)
def test_cpu_live_constants_predict_the_plan_measure_peaks_within_10pct():
    """`rankbits plan --measure N --mmap-threshold 262144` on this project's CPU machine (2026-11-30): each record
    says whether it was fitted on (`fit`) or predicted before it ran. Every record is within 10%: the twelve grid
    configs at the plan's defaults (issue 16's figure), and the other settings (no checkpointing, batch 2 and
    32), the AdaLoRA configs and the out-of-sample rows among them."""
    from trainables.harness import use_mmap_threshold
    from trainables.models import count_layers

    records = [json.loads(line) for line in LIVE_PEAKS.read_text().splitlines() if line.strip()]
    use_mmap_threshold(262144)
    errors = {}
    for r in records:
        layers = count_layers(ModelConfig(name=r["model"]))
        cfg = grid_config(r["config_id"], r["task"], r["model"], layers, max_steps=r["steps"])
        cfg = cfg.with_overrides(r["settings"])
        predicted = estimate(arch_for(cfg), cfg, "cpu").total_mb
        errors[(r["model"], r["config_id"], json.dumps(r["settings"]))] = r["measured_mb"] / predicted - 1
    use_mmap_threshold(None)
    defaults = {k: e for k, e in errors.items() if k[2] == "{}"}
    assert len(defaults) == 12, sorted(defaults)
    assert all(abs(e) <= 0.10 for e in errors.values()), errors
