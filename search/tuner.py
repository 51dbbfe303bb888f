"""Ray Tune set-up shared by the grid and the Pareto search: Ray start, Tuner construction or restore, callbacks.

Progress is printed by `ProgressCallback` (one line per trial event); Ray's and the libraries' own logs are kept
quiet. After every finished or failed trial the summary files are rewritten (`SummaryCallback`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from search.envfile import load_env
from search.resources import MEMORY_RESOURCE, DeviceInfo
from search.results_io import write_summary
from trainables.errors import ConfigError
from trainables.results_folder import ERROR_FILE, INTERRUPTED_FILE, RESULT_FILE, tune_dir, tune_dirs

QUIET_ENV = {
    "RAY_DEDUP_LOGS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "0",
    "RAY_TRAIN_V2_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "PYTHONWARNINGS": "ignore",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",  # progress reports carry the objectives only at the end
}


def quiet() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore")
    for name in ("ray", "ray.tune", "ray.air", "filelock", "transformers", "bitsandbytes", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:  # pragma: no cover
        pass


def init_ray(device: DeviceInfo, address: str | None, meanwhile: Callable[[], object] | None = None) -> bool:
    """Start a local Ray (CPUs + the memory budget as a custom resource) or join `address`.
    Returns whether the cluster offers the memory resource (trials then request it).

    `meanwhile` runs in a thread while Ray starts (Ray's start is mostly waiting for its processes; the trial
    set-up's imports of transformers and the meta-model builds overlap with it: 1.3-2.4 s less before the first
    trial on a 2-core machine). Its exception, if any, is raised after Ray is up."""

    quiet()
    load_env()  # before Ray starts: a local Ray's workers inherit this environment, no secret in runtime_env
    errors: list[BaseException] = []

    def run_meanwhile() -> None:
        try:
            meanwhile()  # type: ignore[misc]
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    helper = threading.Thread(target=run_meanwhile, daemon=True) if meanwhile is not None else None
    if helper is not None:
        helper.start()
    try:
        return _start_ray(device, address)
    finally:
        if helper is not None:
            helper.join()
            if errors:
                raise errors[0]


def worker_niceness() -> int:
    """Niceness of the trial processes of a local Ray. Ray starts workers at 15 so that its own processes stay
    responsive; a trial is the whole job here, and at 15 it ran 37% slower than the same `fit()` outside Ray
    whenever anything else used the cores. 0 unless RAY_worker_niceness says otherwise."""
    return int(os.environ.get("RAY_worker_niceness", "0"))


def reuse_workers(device: DeviceInfo, trial_process: str | None = None, reuse: bool | None = None) -> bool:
    """Whether a finished trial's Ray worker may run the next trial: `search.resources.reuse_workers` (the flag,
    else RANKBITS_REUSE_WORKERS, else the device's default)."""
    from search.resources import reuse_workers as decide

    return decide(device, trial_process, reuse)


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """ConfigError at once when a `host:port` address has nothing listening (Ray itself retries its GCS connection
    for minutes, printing warnings); `auto`, `ray://` and other forms are left to Ray."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not host or "/" in address or not port.isdigit():
        return
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(
            f"--ray-address {address!r}: nothing answers there ({exc.__class__.__name__}); start the cluster with "
            "`ray start --head` and pass the address it prints (host:port), or drop --ray-address"
        ) from None


def _start_ray(device: DeviceInfo, address: str | None) -> bool:
    import ray

    if ray.is_initialized():
        return MEMORY_RESOURCE in ray.cluster_resources()
    kwargs: dict[str, Any] = {
        "logging_level": logging.ERROR,
        "log_to_driver": False,
        "configure_logging": True,
    }
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"--ray-address {address!r}: cannot connect ({exc.__class__.__name__}); start the "
                "cluster with `ray start --head` and pass its address (host:port)"
            ) from exc
        return MEMORY_RESOURCE in ray.cluster_resources()
    ray.init(
        address="local",  # a new local instance: without it Ray joins a `ray start` cluster or $RAY_ADDRESS and
        # refuses num_cpus (a bare ValueError); joining one is what --ray-address is for
        num_cpus=device.cpus,
        resources={MEMORY_RESOURCE: float(int(device.memory_mb))},
        include_dashboard=False,
        _system_config={"worker_niceness": worker_niceness()},
        **kwargs,
    )
    return True


def trial_dirname(trial: Any) -> str:
    """Readable trial folder names: <config>-<task>-s<seed>_<trial id>."""
    cell = trial.config.get("cell") or trial.config
    spec = cell.get("trial") or {}
    label = spec.get("config_id") or "trial"
    task = (spec.get("task") or {}).get("name", "")
    seed = (spec.get("training") or {}).get("seed", "")
    return f"{label}-{task}-s{seed}_{trial.trial_id}" if spec else f"trial_{trial.trial_id}"


def cell_resources(config: dict[Any, Any]) -> Any:
    """Per-trial Ray resources (a placement group of one bundle), carried in the trial's config."""
    from ray.tune import PlacementGroupFactory

    wanted = dict((config.get("cell") or config).get("resources") or {"cpu": 1})
    bundle = {("CPU" if key == "cpu" else key): value for key, value in wanted.items()}
    return PlacementGroupFactory([bundle])


def _exceptions(mapping: dict[Any, Any] | None) -> str:
    return f" ({','.join(f'{k}:{v}' for k, v in mapping.items())})" if mapping else ""


def trial_label(trial: Any) -> str:
    """How progress lines name a trial: `B-Q4-sst2-s0` for a grid cell; for a search trial its study trial
    number, method, bits and ranks (`#7 lora bits 4 (0:8,5:8) r 8 (3:16)`: the common value, then the layers
    that differ)."""
    cell = trial.config.get("cell") or trial.config
    spec = cell.get("trial") or {}
    number = cell.get("study_trial")
    if number is None or spec.get("config_id"):
        prefix = f"#{number} " if number is not None else ""
        if not spec:
            return f"{prefix}trial {trial.trial_id}"
        task = (spec.get("task") or {}).get("name", "")
        seed = (spec.get("training") or {}).get("seed", "")
        return f"{prefix}{spec.get('config_id') or 'trial'}-{task}-s{seed}"
    quant, adapter = spec.get("quantization") or {}, spec.get("adapter") or {}
    bits = f"bits {quant.get('default_bits')}{_exceptions(quant.get('layer_bits'))}"
    if adapter.get("method") == "adalora":
        ranks = f"r {adapter.get('init_r')}->{adapter.get('target_r')}"
    else:
        ranks = f"r {adapter.get('r')}{_exceptions(adapter.get('layer_ranks'))}"
    return f"#{number} {adapter.get('method', 'lora')} {bits} {ranks}"


_PLANNED: dict[str, int] = {}
"""Trials this run will train, set by `plan_progress`: a restored Tuner brings back the callbacks pickled by the
run it continues, with that run's count."""


def plan_progress(total: int) -> None:
    """Tell the progress lines how many trials this run trains (before `fit`)."""
    _PLANNED["total"] = total


class ProgressCallback(Callback):
    """One line per trial start, progress report (every few steps), finish and failure, counted as (done/total)
    against the trials this run trains (a resumed run counts only what is left)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.start = time.time()

    def setup(self, *args: Any, **info: Any) -> None:
        self.total = _PLANNED.get("total", self.total)
        self.done = 0
        self.start = time.time()

    def _label(self, trial: Any) -> str:
        return trial_label(trial)

    def _clock(self) -> str:
        return f"{time.time() - self.start:7.1f}s"

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"[{self._clock()}] start   {self._label(trial)}", flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("status") == "running":
            extra = "".join(f"  {k} {result[k]:.4f}" for k in ("accuracy", "perplexity") if k in result)
            print(
                f"[{self._clock()}] running {self._label(trial)}  step {result.get('steps')}"
                f"  loss {result.get('train_loss', float('nan')):.4f}{extra}",
                flush=True,
            )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        r = trial.last_result or {}
        metric = (
            f"accuracy {r['accuracy']:.4f}"
            if r.get("accuracy") is not None
            else f"perplexity {r['perplexity']:.2f}"
            if r.get("perplexity") is not None
            else r.get("status")
        )
        print(
            f"[{self._clock()}] done    {self._label(trial)}  {metric}  peak {r.get('peak_memory_mb')} MB"
            f"  ({self.done}/{self.total})",
            flush=True,
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        r = trial.last_result or {}
        print(
            f"[{self._clock()}] {r.get('status', 'failed'):<7} {self._label(trial)}  "
            f"{r.get('error') or 'errored'}  ({self.done}/{self.total})",
            flush=True,
        )


class SummaryCallback(Callback):
    """Rewrite the summary files after every finished or failed trial."""

    def __init__(self, root: Path, order: list[str] | None) -> None:
        self.root = root
        self.order = order

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        write_summary(self.root, self.order)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        write_summary(self.root, self.order)


def make_callbacks(root: Path, order: list[str] | None, total: int) -> list[Any]:
    callbacks: list[Any] = [ProgressCallback(total), SummaryCallback(root, order)]
    wandb_cb = wandb_callback(root.name)
    if wandb_cb is not None:
        callbacks.append(wandb_cb)
    return callbacks


def wandb_callback(group: str) -> Any:
    """Ray's W&B logger when WANDB_API_KEY is set (from the environment or .env) and wandb is installed."""
    load_env()
    if not os.environ.get("WANDB_API_KEY"):
        return None
    try:
        import wandb  # noqa: F401
    except ImportError:
        print(
            "WANDB_API_KEY is set but wandb is not installed: pip install 'rankbits[tracking]'",
            file=sys.stderr,
        )
        return None
    from search.tracking import SecretFreeWandbCallback

    return SecretFreeWandbCallback(
        project=os.environ.get("WANDB_PROJECT", "rankbits"),
        group=group,
        excludes=["trial", "cell"],
        log_config=False,
    )


def trial_trainable() -> Any:
    """The one trainable, with its per-trial resources read from each trial's config."""
    from ray import tune

    from trainables.trainable import train_trial

    return tune.with_resources(train_trial, cell_resources)


def restore(path: Path) -> Any:
    """The Tuner of an interrupted experiment: unfinished trials run again, finished and errored ones are kept."""
    from ray import tune

    return tune.Tuner.restore(
        str(path.resolve()),
        trial_trainable(),
        resume_unfinished=True,
        resume_errored=False,
        restart_errored=False,
    )


def new_tuner(path: Path, param_space: dict[str, Any] | None, tune_config: Any, callbacks: list[Any]) -> Any:
    """A Tuner writing its experiment into `path` (a folder of the results root)."""
    from ray import tune

    run_config = tune.RunConfig(
        name=path.name,
        storage_path=str(path.parent.resolve()),
        callbacks=callbacks,
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=0),
    )
    return tune.Tuner(
        trial_trainable(), param_space=param_space, tune_config=tune_config, run_config=run_config
    )


def fit_tuner(tuner: Any, root: Path, order: list[str] | None) -> None:
    """`tuner.fit()`, with Ctrl-C made visible: Tune catches SIGINT, stops its trials, saves the experiment and
    returns as if done (its cut-short trials then read as stopped early). Here the trials it left without a result
    are marked interrupted (their rows get that status and blanks for what they never measured), the summary is
    rewritten and KeyboardInterrupt is raised, so the CLI prints the resume hint and exits 130.

    Tune's handler restores the handler it found when it catches SIGINT; the one installed here is that handler,
    so finding it back after `fit` means Tune caught an interrupt. Raises KeyboardInterrupt only then.
    Every trial of this run without a result or error file is marked, so in a search with ASHA a trial that ASHA
    had stopped earlier in the same run reads as interrupted too until the resume clears the marks."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    tune_catches = threading.current_thread() is threading.main_thread() and not int(
        os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0")
    )
    previous = signal.signal(signal.SIGINT, interrupt) if tune_catches else None
    try:
        grid = tuner.fit()
    finally:
        caught = tune_catches and signal.getsignal(signal.SIGINT) is interrupt
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if not caught:
        return
    analysis = getattr(grid, "_experiment_analysis", None)
    for trial in getattr(analysis, "trials", []):
        trial_dir = Path(trial.path) if trial.path else None
        if trial_dir is None or not trial_dir.is_dir():
            continue  # never started
        if not (trial_dir / RESULT_FILE).exists() and not (trial_dir / ERROR_FILE).exists():
            (trial_dir / INTERRUPTED_FILE).write_text("interrupted by Ctrl-C; rerun with --resume\n")
    write_summary(root, order)
    raise KeyboardInterrupt


def clear_interrupted(root: Path) -> int:
    """Forget the interrupted marks before a resume runs those trials again. Returns how many there were."""
    marks = [mark for base in tune_dirs(root) for mark in base.glob(f"*/{INTERRUPTED_FILE}")]
    for mark in marks:
        mark.unlink(missing_ok=True)
    return len(marks)


def build_or_restore(
    root: Path,
    param_space: dict[str, Any] | None,
    tune_config: Any,
    callbacks: list[Any],
    resume: bool,
    path: Path | None = None,
) -> Any:
    """A Tuner writing into `path` (default root/tune), or the restored one when that experiment exists."""
    from ray import tune

    path = tune_dir(root) if path is None else path
    if resume and path.exists() and tune.Tuner.can_restore(str(path.resolve())):
        return restore(path)
    if path.exists():  # started but never saved its state: keep the trials it finished, start the rest afresh
        aside = path.with_name(f"{path.name}.incomplete-{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(aside)
    return new_tuner(path, param_space, tune_config, callbacks)
