"""Helpers for the CLI / Ray tests: run `rankbits` in a subprocess with the test environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TINY = [
    "--set",
    "training.eval_examples=16",
    "--set",
    "training.eval_tokens=256",
    "--set",
    "training.seq_len=32",
    "--set",
    "training.batch_size=4",
    "--set",
    "training.log_every=1",
]


def env(data_dir: Path | None = None, **extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"})
    if data_dir is not None:
        e["RANKBITS_DATA_DIR"] = str(data_dir)
    e.update(extra)
    return e


def rankbits(
    args: list[str], data_dir: Path | None = None, timeout: int = 600, cwd: Path | None = None, **extra: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(data_dir, **extra),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
