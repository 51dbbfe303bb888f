"""The Makefile's data default: ../shared/data when it sits beside the clone, else a clear message."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(clone: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANKBITS_DATA_DIR", "DATA", "MAKEFLAGS")}
    return subprocess.run(
        ["make", "-s", "data-check", *args], cwd=clone, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_clone_without_shared_data_beside_it_is_told_so(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy(MAKEFILE, clone / "Makefile")
    proc = make(clone)
    assert proc.returncode == 0 and "no local data" in proc.stderr and "DATA=" in proc.stderr
    bad = make(clone, f"DATA={tmp_path / 'nope'}")
    assert bad.returncode == 2 and str(tmp_path / "nope") in bad.stderr


def test_shared_data_beside_the_clone_is_the_default(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy(MAKEFILE, clone / "Makefile")
    (tmp_path / "shared" / "data" / "sst2").mkdir(parents=True)
    proc = make(clone)
    assert proc.returncode == 0 and f"data from {tmp_path / 'shared' / 'data'}" in proc.stdout
