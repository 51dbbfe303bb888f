"""Resource limits for one device: how many trials run at once, their threads and their memory share.

- Accelerator (one Apple Silicon GPU, or one CUDA GPU): trials share the device under a memory budget (default: the
  usable share of unified memory, `torch.mps.recommended_max_memory()`; `--device-memory-gb` overrides). Each trial
  asks Ray for the custom resource `device_memory_mb` equal to its predicted peak (+ headroom), so trials run
  concurrently only when their predicted peaks fit together. On MPS each trial is also capped with
  `torch.mps.set_per_process_memory_fraction`, so one that outgrows its share fails cleanly instead of swapping.
- CPU only: the cores are split between concurrent trials (each trial's torch thread count = its CPU share), and
  predicted peaks must fit in the available RAM the same way. On Linux each CPU trial runs in a fresh process forked
  from a pre-imported template (`trainables.forked`): its peak is a fresh process's, its start a fraction of a
  second; `--trial-process inline` (or RANKBITS_TRIAL_PROCESS=inline) runs it in the Ray worker's own process
  instead. The choices that change what is measured are one `trainables.harness.Harness` (`resolve_harness`),
  recorded in experiment.json and in every result.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

from trainables.errors import ConfigError
from trainables.harness import (
    ENV,
    Harness,
    chosen_mmap_threshold,
    from_env,
    parse_reuse_workers,
    parse_trial_process,
)

MEMORY_RESOURCE = "device_memory_mb"
HEADROOM = 1.25
REQUEST_STEP_MB = 256
MIN_CPUS_PER_TRIAL = 1


@dataclass(frozen=True)
class DeviceInfo:
    kind: str  # "mps", "cuda" or "cpu"
    memory_mb: float
    """Usable memory for trials: the device's recommended working set, or available RAM on CPU."""
    cpus: int


def detect_device(device_memory_gb: float | None = None) -> DeviceInfo:
    """The device trials run on (`trainables.devices.pick_device("auto")`: mps, then cuda, then cpu) and its memory
    budget in MB (2^20 bytes): MPS's recommended working set, 90% of the CUDA device's memory or 80% of the available
    RAM; `device_memory_gb` (GiB) overrides it."""
    import psutil
    import torch

    from trainables.devices import pick_device

    cpus = os.cpu_count() or 1
    kind = pick_device("auto").type
    if kind == "mps":
        memory = torch.mps.recommended_max_memory() / 2**20
    elif kind == "cuda":
        memory = torch.cuda.get_device_properties(0).total_memory / 2**20 * 0.9
    else:
        memory = psutil.virtual_memory().available / 2**20 * 0.8
    if device_memory_gb is not None:
        memory = device_memory_gb * 1024
    return DeviceInfo(kind, float(memory), cpus)


@dataclass(frozen=True)
class TrialResources:
    cpus: int
    memory_mb: float
    """Ray custom resource request (predicted peak x headroom, at most the budget)."""
    threads: int
    memory_fraction: float | None
    """MPS: share of the recommended working set this trial may allocate."""
    forked: bool = False
    """Train in a child forked from a pre-imported template process (`forked_trials`)."""

    def ray_request(self, use_memory_resource: bool) -> dict[str, float]:
        req: dict[str, float] = {"cpu": self.cpus}
        if use_memory_resource:
            req[MEMORY_RESOURCE] = self.memory_mb
        return req


def plan_trial(
    device: DeviceInfo, predicted_peak_mb: float, concurrency: int, harness: Harness | None = None
) -> TrialResources:
    """Resources of one trial given how many trials may run side by side (CPU split evenly between them);
    `harness` says whether it trains in a forked child (None: `forked_trials(device)`)."""
    cpus = max(MIN_CPUS_PER_TRIAL, device.cpus // max(1, concurrency))
    # Requests are rounded up to 256 MB steps: trials with equal requests can reuse one Ray worker (no re-imports).
    want = min(device.memory_mb, math.ceil(predicted_peak_mb * HEADROOM / REQUEST_STEP_MB) * REQUEST_STEP_MB)
    fraction = None
    if device.kind == "mps":
        import torch

        recommended = torch.mps.recommended_max_memory() / 2**20
        fraction = round(min(1.0, want / recommended), 4) if recommended else None
    return TrialResources(
        cpus=cpus,
        memory_mb=float(want),
        threads=cpus,
        memory_fraction=fraction,
        forked=harness.trial_process == "fork" if harness is not None else forked_trials(device),
    )


def forked_trials(device: DeviceInfo, trial_process: str | None = None) -> bool:
    """Whether trials train in a child forked from a pre-imported template instead of the Ray worker's process.

    `trial_process` (`--trial-process`: fork / inline), else $RANKBITS_TRIAL_PROCESS, else: on CPU, yes where fork
    is available (Linux): the peak is the process's resident-set high-water mark, which only a fresh process
    measures the same way every time (see `trainables.forked`). MPS and CUDA peaks come from the allocator's
    counters, and neither Metal nor CUDA survives a fork: in process. Fork where unavailable is a ConfigError."""
    from trainables.forked import available

    typed = parse_trial_process(trial_process)
    chosen = typed or from_env("trial_process")
    if chosen == "fork" and not available():
        source = "--trial-process fork" if typed else f"{ENV['trial_process']}=fork"
        raise ConfigError(f"{source}: no forkserver on {sys.platform}; use inline")
    if chosen:
        return chosen == "fork"
    return device.kind == "cpu" and available()


def reuse_workers(device: DeviceInfo, trial_process: str | None = None, reuse: bool | None = None) -> bool:
    """Whether a finished trial's Ray worker process may run the next trial (`reuse_actors`): saves the imports of
    torch, transformers, peft and bitsandbytes and the actor start (~6.6 s a trial on a 2-core CPU).

    `reuse` (`--reuse-workers / --no-reuse-workers`), else $RANKBITS_REUSE_WORKERS (1 or 0), else: on MPS and
    CUDA, yes: peaks come from the allocator's per-phase counters. On CPU, yes when trials train in forked children
    (`forked_trials`, the Linux default); not when they train in the worker's own process, whose resident-set
    high-water mark depends on its history: a process that already ran a trial keeps glibc's raised mmap threshold
    and its heap layout, and the next trial measured 20-35% lower than the same trial in a fresh process
    (minilm-l6 SST-2, 300 steps: B-Q4 817 vs 1060 MB, B-Ada 825 vs 1275 MB, both with the oneDNN cache on)."""
    chosen = parse_reuse_workers(reuse)
    if chosen is None:
        chosen = from_env("reuse_workers")
    if chosen is not None:
        return chosen
    return device.kind != "cpu" or forked_trials(device, trial_process)


def resolve_harness(
    device: DeviceInfo,
    trial_process: str | None = None,
    reuse: bool | None = None,
    mmap_threshold: str | int | None = None,
) -> Harness:
    """The harness of a grid or search on `device`: each setting from its flag, else its environment variable
    (`trainables.harness.ENV`), else the default for the device. Raises ConfigError for a bad value.

    Its mmap threshold becomes this process's (`trainables.harness.use_mmap_threshold`), so that the peaks this
    process predicts (the grid's packing, the search's budget, warm-start points) are those of the measure its
    trials use (`trainables.memory.model_key`)."""
    from trainables.harness import use_mmap_threshold

    harness = Harness(
        trial_process="fork" if forked_trials(device, trial_process) else "inline",
        reuse_workers=reuse_workers(device, trial_process, reuse),
        mmap_threshold=chosen_mmap_threshold(mmap_threshold),
    )
    use_mmap_threshold(harness.mmap_threshold)
    return harness


def max_concurrency(device: DeviceInfo, predicted_peaks_mb: list[float], requested: int | None = None) -> int:
    """How many trials may run at once: at most one per two cores, and
    never more than the smallest predicted peaks that fit in the memory budget together."""
    if not predicted_peaks_mb:
        return 1
    limit = requested or max(1, device.cpus // 2)
    fit = 0
    total = 0.0
    for peak in sorted(predicted_peaks_mb):
        total += peak * HEADROOM
        if total > device.memory_mb:
            break
        fit += 1
    return max(1, min(limit, fit, len(predicted_peaks_mb)))
