"""The benchmark scripts' quick forms run end to end: exit code 0, a closing ratio line, a JSON table with rows.

They check that the scripts work, not the numbers they print (timings depend on the machine and its load).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

pytestmark = pytest.mark.slow


def run_quick(script: str, tmp_path: Path, timeout: int = 600) -> tuple[subprocess.CompletedProcess, dict]:
    if not (DATA / "sst2" / "dev.tsv").is_file():
        pytest.skip("../shared/data is not beside the repository")
    out = tmp_path / "x.json"
    env = dict(os.environ, RANKBITS_DATA_DIR=str(DATA), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines and "ratio" in lines[-1], proc.stdout[-2000:]
    return proc, json.loads(out.read_text())


@pytest.mark.ray
def test_harness_overhead_quick(tmp_path):
    _, table = run_quick("harness_overhead.py", tmp_path)
    assert len(table["rows"]) == 2
    assert {r["config"] for r in table["rows"]} == {"B-FP", "B-Q4"}


def test_throughput_quick(tmp_path):
    _, table = run_quick("throughput.py", tmp_path)
    assert [r["base"] for r in table["rows"]] == ["16-bit", "4-bit", "8-bit", "mixed 8/4"]
    assert all(r["same_tokens"] for r in table["rows"])


def test_memory_exactness_quick(tmp_path):
    _, table = run_quick("memory_exactness.py", tmp_path)
    assert [r["config"] for r in table["rows"]] == ["B-FP", "B-Q4", "Joint-2"]
    assert all(r["status"] == "completed" for r in table["rows"])


@pytest.mark.ray
def test_search_quality_quick(tmp_path):
    _, table = run_quick("search_quality.py", tmp_path)
    assert [r["method"] for r in table["rows"]] == ["tpe", "random", "grid"]


def test_standard_path_quick(tmp_path):
    _, table = run_quick("standard_path.py", tmp_path)
    assert [(r["bits"], r["compute"], r["ckpt"]) for r in table["rows"]] == [
        (4, "bfloat16", True),
        (16, "bfloat16", False),
        (4, "float32", False),
    ]
    assert all(r["same_tokens"] for r in table["rows"])
    assert table["ratio"]["issue12_check"]["old_ppl"] > 0
