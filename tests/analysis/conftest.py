"""Fixture results folders built in a tmp dir, in the exact layout the grid and Pareto searches write.

results/<name>/experiment.json, experiment_summary.csv (SUMMARY_COLUMNS, `records.flatten` rows),
all_results.json ({trial_id, config, result}), pareto.csv (Pareto searches) and
tune/<trial_dir>/{result.json,params.json} (JSON lines: the flat record plus Tune's own keys; trials stopped
by ASHA have intermediate rows only).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from trainables.config import TrialConfig
from trainables.records import SUMMARY_COLUMNS, flatten
from trainables.result import TrialResult, TrialStatus

MAX_STEPS = 20
N_LAYERS = 6
LAYER_WEIGHTS = 1_000_000
BITS_PER_WEIGHT = {4: 4.127, 8: 8.031, 16: 16.0, 32: 32.0}
EXPERIMENT_ID = "a1b2c"


@dataclass
class Trial:
    trial_id: str
    cfg: TrialConfig
    result: TrialResult

    def record(self) -> dict[str, Any]:
        return flatten(self.trial_id, self.cfg, self.result)


@dataclass
class TuneTrial:
    """How a trial shows up in Tune's folder."""

    trial: Trial
    intermediate: int = 2
    """Intermediate reports before the final one."""
    final: bool = True
    """False: stopped early by ASHA, only the intermediate rows were reported."""
    intermediate_status: str = "running"
    """What the status field of an intermediate row says ("running", or "completed" like a partial record)."""
    intermediate_metric: float | None = None
    """Accuracy reported with intermediate rows (ASHA's metric), None: none."""
    error_txt: str | None = None
    """Contents of Tune's error.txt for a trial that raised."""
    extra: dict[str, Any] = field(default_factory=dict)


def build_trial(
    trial_id: str,
    *,
    config_id: str | None = None,
    bits: Sequence[int] = (32,) * N_LAYERS,
    ranks: Sequence[float] = (8,) * N_LAYERS,
    method: str = "lora",
    accuracy: float | None = 0.9,
    perplexity: float | None = None,
    peak: float | None = 1000.0,
    predicted: float | None = 950.0,
    status: str = "completed",
    error: str | None = None,
    seed: int = 0,
    train_time: float = 60.0,
    task: str = "sst2",
) -> Trial:
    bits = list(bits)
    layer_bits = {i: b for i, b in enumerate(bits) if b != bits[0]}
    adapter: dict[str, Any] = {"method": method}
    if method == "lora":
        adapter["r"] = int(ranks[0])
        adapter["layer_ranks"] = {i: int(r) for i, r in enumerate(ranks) if int(r) != int(ranks[0])}
    cfg = TrialConfig.from_dict(
        {
            "config_id": config_id,
            "task": {"name": task},
            "model": {"name": "tiny-bert"},
            "quantization": {"default_bits": bits[0], "layer_bits": layer_bits},
            "adapter": adapter,
            "training": {"seed": seed, "max_steps": MAX_STEPS, "lr": 5e-4, "batch_size": 16, "seq_len": 64},
        }
    )
    bpw = [BITS_PER_WEIGHT[b] for b in bits]
    layer_bytes = [int(LAYER_WEIGHTS * x / 8) for x in bpw]
    trained = status in ("completed",)
    result = TrialResult(
        status=TrialStatus(status),
        error=error,
        task=task,
        model="tiny-bert",
        config_id=config_id,
        metric_name="accuracy" if task == "sst2" else "perplexity",
        accuracy=accuracy if trained else None,
        perplexity=perplexity if trained else None,
        eval_loss=0.3 if trained else None,
        steps=MAX_STEPS if trained else 0,
        trainable_params=int(sum(ranks) * 2 * 128),
        total_params=N_LAYERS * LAYER_WEIGHTS + int(sum(ranks) * 2 * 128),
        trainable_pct=round(100 * sum(ranks) * 2 * 128 / (N_LAYERS * LAYER_WEIGHTS), 4),
        weight_memory_mb=round(sum(layer_bytes) / 2**20, 3),
        adapter_memory_mb=0.5,
        peak_memory_mb=peak if trained else None,
        predicted_peak_mb=predicted,
        memory_measure="rss-hwm",
        train_time_s=train_time if trained else 0.0,
        tokens_per_s=1000.0 if trained else 0.0,
        bits_per_layer=bits,
        bits_per_weight_per_layer=bpw,
        layer_weight_bytes=layer_bytes,
        ranks_per_layer=[float(r) for r in ranks],
        total_rank=int(sum(ranks) * 4) if trained else 0,
        initial_total_rank=int(sum(ranks) * 4),
        device="cpu",
    )
    return Trial(trial_id, cfg, result)


ADA_RANKS = [2.5, 3.0, 4.0, 4.5, 5.0, 5.0]
"""AdaLoRA's mean rank per layer after pruning from 12 towards 4."""
CRITICAL_8 = [8, 4, 4, 4, 4, 8]
# fmt: off
GRID_SPECS: list[dict[str, Any]] = [
    {"config_id": "B-FP", "bits": [16] * 6, "ranks": [8] * 6, "acc": (0.910, 0.900),
     "peak": (1400.0, 1410.0)},
    {"config_id": "B-Q4", "bits": [4] * 6, "ranks": [8] * 6, "acc": (0.880, 0.890), "peak": (700.0, 690.0)},
    {"config_id": "B-Ada", "bits": [16] * 6, "ranks": ADA_RANKS, "method": "adalora", "acc": (0.915, 0.905),
     "peak": (1450.0, 1440.0)},
    {"config_id": "Joint-1", "bits": [4] * 6, "ranks": ADA_RANKS, "method": "adalora", "acc": (0.885, 0.887),
     "peak": (720.0, 725.0)},
    {"config_id": "Joint-2", "bits": CRITICAL_8, "ranks": ADA_RANKS, "method": "adalora",
     "acc": (0.902, 0.898), "peak": (820.0, 830.0)},
    {"config_id": "Joint-3", "bits": CRITICAL_8, "ranks": [4, 4, 8, 8, 12, 12], "acc": (0.870, None),
     "peak": (650.0, None)},
]
# fmt: on
"""The research plan's six grid configs x two seeds; Joint-3's second seed ran out of memory."""


def build_grid_trials() -> list[Trial]:
    trials: list[Trial] = []
    for spec in GRID_SPECS:
        for seed in (0, 1):
            acc, peak = spec["acc"][seed], spec["peak"][seed]
            failed = acc is None
            trials.append(
                build_trial(
                    f"grid{len(trials):02d}",
                    config_id=spec["config_id"],
                    bits=spec["bits"],
                    ranks=spec["ranks"],
                    method=spec.get("method", "lora"),
                    accuracy=acc,
                    peak=peak,
                    predicted=(peak or 900.0) * 0.95,
                    status="failed" if failed else "completed",
                    error="out of memory: tried to allocate 20.00 MiB" if failed else None,
                    seed=seed,
                    train_time=100.0 + 10 * len(trials),
                )
            )
    return trials


def build_pareto_trials() -> list[Trial]:
    """Eight trials in the summary, with Tune ids `a1b2c_0000N`: a front of four (0, 1, 2, 7), a duplicate of
    front member 1 (4), a dominated one (3), an infeasible one (5) and a failed one (6)."""
    specs: list[dict[str, Any]] = [
        {"bits": [4, 4, 4, 4, 4, 4], "ranks": [2, 2, 4, 4, 4, 2], "acc": 0.860, "peak": 600.0},  # front
        {"bits": [8, 4, 4, 4, 4, 8], "ranks": [4, 4, 8, 8, 8, 4], "acc": 0.895, "peak": 760.0},  # front
        {"bits": [8, 8, 8, 8, 8, 8], "ranks": [8, 8, 8, 8, 8, 8], "acc": 0.905, "peak": 980.0},  # front
        {"bits": [8, 8, 4, 4, 8, 8], "ranks": [8, 8, 8, 8, 8, 8], "acc": 0.880, "peak": 900.0},  # dominated
        {
            "bits": [8, 4, 4, 4, 4, 8],
            "ranks": [4, 4, 8, 8, 8, 4],
            "acc": 0.895,
            "peak": 760.0,
        },  # duplicate of #1
        {"bits": [32] * 6, "ranks": [16] * 6, "acc": None, "peak": None, "status": "infeasible"},
        {
            "bits": [16] * 6,
            "ranks": [16] * 6,
            "acc": None,
            "peak": None,
            "status": "failed",
            "error": "non-finite loss (nan) at step 3; lower training.lr or check the data",
        },
        {"bits": [4, 4, 8, 8, 4, 4], "ranks": [2, 4, 4, 4, 4, 2], "acc": 0.870, "peak": 640.0},  # front
    ]
    return [
        build_trial(
            f"{EXPERIMENT_ID}_{i:05d}",
            bits=s["bits"],
            ranks=s["ranks"],
            accuracy=s["acc"],
            peak=s["peak"],
            predicted=(s["peak"] or 3000.0) * 1.05,
            status=s.get("status", "completed"),
            error=s.get("error"),
            seed=0,
        )
        for i, s in enumerate(specs)
    ]


def build_tune_only_trials() -> list[TuneTrial]:
    """Trials Tune knows about but the summary lacks: two stopped by ASHA, one that raised."""
    stopped_a = build_trial(f"{EXPERIMENT_ID}_00008", bits=[4] * 6, ranks=[2] * 6, accuracy=0.99, peak=100.0)
    stopped_b = build_trial(f"{EXPERIMENT_ID}_00009", bits=[4] * 6, ranks=[4] * 6, accuracy=0.99, peak=100.0)
    crashed = build_trial(f"{EXPERIMENT_ID}_00010", bits=[8] * 6, ranks=[8] * 6, accuracy=None, peak=None)
    return [
        TuneTrial(stopped_a, intermediate=2, final=False, intermediate_status="running"),
        TuneTrial(
            stopped_b, intermediate=1, final=False, intermediate_status="completed", intermediate_metric=0.99
        ),
        TuneTrial(
            crashed,
            intermediate=0,
            final=False,
            error_txt="Traceback (most recent call last):\n  ...\nRuntimeError: worker died\n",
        ),
    ]


def write_results_dir(
    root: Path,
    name: str,
    kind: str,
    trials: Sequence[Trial],
    *,
    summary: bool = True,
    all_results: bool = True,
    tune: Sequence[TuneTrial] | None = None,
    pareto: Sequence[Trial] = (),
) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    meta = {"kind": kind, "name": name, "task": "sst2", "model": "tiny-bert"}
    (folder / "experiment.json").write_text(json.dumps(meta, indent=2))
    if summary:
        _write_csv(folder / "experiment_summary.csv", [t.record() for t in trials])
    if all_results:
        entries = [
            {"trial_id": t.trial_id, "config": t.cfg.to_dict(), "result": t.result.to_dict()} for t in trials
        ]
        (folder / "all_results.json").write_text(json.dumps(entries, indent=1))
    if pareto:
        _write_csv(folder / "pareto.csv", [t.record() for t in pareto])
    if tune is not None:
        (folder / "tune").mkdir()
        (folder / "tune" / "experiment_state-2025-01-01_00-00-00.json").write_text("{}")
        for index, tt in enumerate(tune):
            _write_tune_trial(folder / "tune", index, tt)
    return folder


def _write_csv(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for rec in records:
            writer.writerow({k: "" if v is None else v for k, v in rec.items()})


def _write_tune_trial(tune_dir: Path, index: int, tt: TuneTrial) -> None:
    t = tt.trial
    trial_dir = tune_dir / f"fit_trial_{t.trial_id}_{index}_lr=0.0005_2025-01-01_00-00-{index:02d}"
    trial_dir.mkdir()
    params = {"trial": t.cfg.to_dict(), "num_cpus": 1}
    (trial_dir / "params.json").write_text(json.dumps(params))
    final = t.record()
    rows = []
    for step in range(1, tt.intermediate + 1):
        partial: dict[str, Any] = {k: None for k in SUMMARY_COLUMNS}
        partial.update(
            {
                "trial_id": t.trial_id,
                "config_id": final["config_id"],
                "task": final["task"],
                "model": final["model"],
                "seed": final["seed"],
                "method": final["method"],
                "status": tt.intermediate_status,
                "steps": step * 5,
                "accuracy": tt.intermediate_metric,
                "bits_per_layer": final["bits_per_layer"],
            }
        )
        rows.append(partial)
    if tt.final:
        rows.append(final)
    with (trial_dir / "result.json").open("w") as fh:
        for i, row in enumerate(rows, start=1):
            tune_keys = {
                "trial_id": t.trial_id,
                "training_iteration": i,
                "done": i == len(rows) and tt.final,
                "timestamp": 1_735_689_600 + 100 * index + i,
                "time_this_iter_s": 1.0,
                "time_total_s": float(i),
                "pid": 1234,
                "hostname": "host",
                "node_ip": "127.0.0.1",
                "date": "2025-01-01_00-00-00",
                "iterations_since_restore": i,
                "experiment_tag": f"{index}_lr=0.0005",
                "config": {"trial": t.cfg.to_dict()},
            }
            fh.write(json.dumps({**row, **tune_keys, **tt.extra}) + "\n")
    if tt.error_txt:
        (trial_dir / "error.txt").write_text(tt.error_txt)


@pytest.fixture
def grid_dir(tmp_path: Path) -> Path:
    """A grid folder from the summary files only: 12 trials (6 configs x 2 seeds), one failed."""
    return write_results_dir(tmp_path / "results", "grid-sst2", "grid", build_grid_trials())


@pytest.fixture
def pareto_dir(tmp_path: Path) -> Path:
    """A Pareto folder whose summary holds 8 trials and whose tune/ folder holds those 8 plus 3 more."""
    trials = build_pareto_trials()
    tune = [TuneTrial(t, intermediate=2, final=True) for t in trials] + build_tune_only_trials()
    front = [trials[i] for i in (0, 1, 2, 4, 7)]
    return write_results_dir(tmp_path / "results", "pareto-sst2", "pareto", trials, tune=tune, pareto=front)


@pytest.fixture
def make_results() -> Callable[..., Path]:
    """`write_results_dir(root, name, kind, trials, *, summary, all_results, tune, pareto)`."""
    return write_results_dir


@pytest.fixture
def make_trial() -> Callable[..., Trial]:
    """`build_trial(trial_id, *, config_id, bits, ranks, method, accuracy, peak, status, ...)`."""
    return build_trial


@pytest.fixture
def tune_trial() -> type[TuneTrial]:
    return TuneTrial


@pytest.fixture
def grid_trials() -> list[Trial]:
    return build_grid_trials()


@pytest.fixture
def pareto_trials() -> list[Trial]:
    return build_pareto_trials()


@pytest.fixture
def experiment_id() -> str:
    """The prefix of the Pareto fixture's Tune trial ids (`a1b2c_00007`)."""
    return EXPERIMENT_ID


@pytest.fixture
def front_frame() -> pd.DataFrame:
    """A hand-built frame: mixed directions (accuracy max, memory min), a tie, a duplicate, NaN, excluded
    statuses.

    On the front: a (best memory), b and b2 (duplicates), d (best accuracy). Off: c (tie in memory with b,
    worse accuracy), e (NaN), f (failed but would dominate), g (stopped but would dominate), h (infeasible), i
    (dominated).
    """
    rows = [
        ("a", "completed", 0.80, 100.0),
        ("b", "completed", 0.90, 200.0),
        ("b2", "completed", 0.90, 200.0),
        ("c", "completed", 0.85, 200.0),
        ("d", "completed", 0.95, 400.0),
        ("e", "completed", float("nan"), 50.0),
        ("f", "failed", 0.99, 10.0),
        ("g", "stopped", 0.99, 10.0),
        ("h", "infeasible", 0.99, 10.0),
        ("i", "completed", 0.90, 450.0),
    ]
    df = pd.DataFrame(rows, columns=["trial_id", "status", "accuracy", "peak_memory_mb"])
    df["status"] = df["status"].astype(pd.CategoricalDtype(["completed", "failed", "stopped", "infeasible"]))
    return df
