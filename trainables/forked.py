"""`fit()` in a fresh child process forked from a template that has imported the training stack but never trained.

Why: on CPU the training peak is the process's resident-set high-water mark, and a process that already ran a trial
keeps glibc's raised mmap threshold and its heap layout, so the same trial measured 20-35% lower in a reused process
than in a fresh one. Starting a fresh Ray worker per trial fixes the measurement but pays the imports of torch,
transformers, peft and bitsandbytes and an actor start every trial (~6.6 s on a 2-core CPU). Here the Ray worker is
reused and each trial runs in a child of multiprocessing's forkserver, which imported the training stack once
(`trainables.preload`): the child has a fresh heap and a fresh high-water mark, and starts in a fraction of a
second. Checked against fresh Ray workers on the SST-2 grid (300 steps): peaks within -4.1% to +2.6%, same accuracies
(benchmarks/README.md).

The child sends its progress rows and finally its `TrialResult` through a pipe; the parent relays the progress to
its own callback (`tune.report` in the trainable). A child that dies without a result (killed by the kernel's
out-of-memory killer, a crash in native code) comes back as a failed result naming its exit signal or code. The
child is killed when the parent stops listening (a scheduler stopping the trial, an interrupted run), and it dies
with the forkserver, which ends when the process that started it ends.

Linux only (fork after importing torch; macOS's Metal and CUDA do not survive a fork). CUDA and MPS trials measure
their peaks with the allocator's counters and run in the worker's own process.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainables.config import TrialConfig
from trainables.errors import TrialStopped
from trainables.result import TrialResult, TrialStatus

PRELOAD = ["trainables.preload"]
"""What the template process imports before it forks trials (if that import fails, children import lazily)."""

ProgressFn = Callable[[dict[str, Any]], None]
STOP_POLL_S = 0.2

_context: Any = None


def available() -> bool:
    """Whether trials can run in forked children here (Linux with the forkserver start method)."""
    return sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods()


def forkserver() -> Any:
    """The multiprocessing context whose server process imports `PRELOAD` once (started by the first trial)."""
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _context = ctx
    return _context


def fit_forked(
    cfg: TrialConfig,
    progress: ProgressFn | None = None,
    adapter_dir: str | Path | None = None,
    stop_requested: Callable[[], bool] | None = None,
    mmap_threshold: int | None = None,
) -> TrialResult:
    """`trainables.loop.fit` in a child process forked from the template; same arguments, same result.

    `mmap_threshold`: glibc's mmap threshold of the child in bytes (`trainables.harness`; None: the environment's
    default). The template's environment is the one of the first trial, so the setting travels as an argument.

    `stop_requested` is polled while the child trains (every `STOP_POLL_S`): once it returns true the child is killed
    and `TrialStopped` raised, so that a scheduler's stop frees the worker at once instead of at the next report."""
    ctx = forkserver()
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=_child_main,
        args=(
            cfg.to_dict(),
            str(adapter_dir) if adapter_dir is not None else None,
            os.getcwd(),
            send,
            mmap_threshold,
        ),
        name=f"rankbits-trial-{cfg.config_id or 'trial'}",
        daemon=True,
    )
    child.start()
    send.close()  # the child holds the only writing end: end of file once it exits
    result: TrialResult | None = None
    try:
        while True:
            if stop_requested is not None and not receive.poll(STOP_POLL_S):
                if stop_requested():
                    raise TrialStopped(f"{cfg.config_id or 'trial'}: stopped by the scheduler")
                continue
            try:
                kind, payload = receive.recv()
            except EOFError:
                break
            if kind == "progress" and progress is not None:
                progress(payload)
            elif kind == "result":
                result = TrialResult.from_dict(payload)
        child.join()
    finally:
        receive.close()
        if child.is_alive():  # stopped by the scheduler, or the caller stopped listening (interrupted)
            child.kill()
            child.join()
    if result is None:
        result = TrialResult.of(cfg, status=TrialStatus.FAILED, error=death_reason(child.exitcode))
    return result


def death_reason(exitcode: int | None) -> str:
    """Why a trial process ended without a result, in one line."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (the kernel's out-of-memory killer sends it: lower the batch size or the budget)"
        return f"trial process killed by {name}{hint if -exitcode == signal.SIGKILL else ''}"
    return (
        f"trial process exited with code {exitcode} without a result (RANKBITS_DEBUG=1 prints its traceback)"
    )


def _child_main(
    cfg_dict: dict[str, Any], adapter_dir: str | None, cwd: str, conn: Any, mmap_threshold: int | None = None
) -> None:
    _die_with_parent()
    os.chdir(cwd)  # the template's working folder is the one of the trial that started it (Tune changes it)
    from trainables.harness import use_mmap_threshold
    from trainables.loop import fit

    use_mmap_threshold(mmap_threshold)  # before fit: its peak meter sets glibc's threshold from it

    def relay(info: dict[str, Any]) -> None:
        conn.send(("progress", info))

    result = fit(TrialConfig.from_dict(cfg_dict), progress=relay, adapter_dir=adapter_dir)
    conn.send(("result", result.to_dict()))
    conn.close()


def _die_with_parent() -> None:
    """SIGKILL this process when its parent (the forkserver) ends, so no trial outlives its run."""
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent ended before the signal was armed
        os._exit(1)
