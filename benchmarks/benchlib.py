"""Shared helpers of the benchmark scripts: arguments, environment, subprocesses, tables and the JSON output.

Every script prints a header, one or more aligned tables and, as its last line, a ratio; the same numbers go to a
JSON file (`--out`, default `benchmarks/results/<name>.json`):
{"benchmark", "quick", "date", "machine", "header", "columns", "rows", "ratio", "sections", "settings"}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED_DATA = REPO.parent / "shared" / "data"
WORKER_FLAG = "--worker-out"
Row = dict[str, Any]

if str(REPO) not in sys.path:  # the project is normally installed (editable); this covers a bare checkout
    sys.path.insert(0, str(REPO))


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """The arguments every benchmark takes: --quick, --out, and the hidden worker flag."""
    p = argparse.ArgumentParser(prog=f"benchmarks/{name}.py", description=description)
    p.add_argument("--quick", action="store_true", help="the small form (minutes on a laptop CPU)")
    p.add_argument("--out", type=Path, default=RESULTS / f"{name}.json", help="where the table goes as JSON")
    p.add_argument(WORKER_FLAG, dest="worker_out", type=Path, default=None, help=argparse.SUPPRESS)
    return p


def setup_environment() -> None:
    """Offline, quiet, and the shared data folder unless RANKBITS_DATA_DIR says otherwise."""
    os.environ.setdefault("RANKBITS_DATA_DIR", str(SHARED_DATA))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    import warnings

    warnings.filterwarnings("ignore")


def passive_omp(enable: bool) -> str:
    """Quick forms: OpenMP threads sleep instead of spinning while they wait (OMP_WAIT_POLICY=PASSIVE), for this
    process and its children, unless the environment already chose. With two torch threads on a 2-core machine
    that another process keeps busy, spinning made each step 10-40x slower; the harness picks the thread count,
    so this is the one knob left. Returns what the header should say."""
    if enable:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset (libgomp default)')}"


def machine() -> str:
    return f"{os.cpu_count()}-core {platform.machine()} CPU, {platform.system()}, Python {platform.python_version()}"


# --- subprocesses -------------------------------------------------------------------------------------------


@dataclass
class Finished:
    """A finished subprocess: exit code, output, wall time and the wall-clock time it was launched at."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    launched: float


def run(args: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> Finished:
    """Run a command (no shell), timing it from launch to exit; LAUNCH_TIME is passed in the environment."""
    launched = time.time()
    start = time.perf_counter()
    child_env = dict(os.environ if env is None else env)
    child_env["BENCH_LAUNCH_TIME"] = repr(launched)
    proc = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    return Finished(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start, launched)


def check(done: Finished, what: str) -> Finished:
    if done.returncode != 0:
        tail = (done.stdout[-1500:] + "\n" + done.stderr[-2500:]).strip()
        raise SystemExit(f"{what} failed with exit code {done.returncode}:\n{tail}")
    return done


def run_worker(script: Path, args: Sequence[str], out: Path, timeout: float) -> tuple[Any, Finished]:
    """Run `script` in worker mode in a fresh Python process; returns the JSON it wrote and the timing."""
    done = check(
        run([sys.executable, str(script), *args, WORKER_FLAG, str(out)], timeout), f"worker {script.name}"
    )
    return json.loads(out.read_text()), done


def launch_time() -> float | None:
    """In a worker: when the parent launched this process (time.time()), if it said."""
    value = os.environ.get("BENCH_LAUNCH_TIME")
    return float(value) if value else None


def write_worker_output(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, default=str))


# --- numbers ------------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def safe_ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or not b or not math.isfinite(a) or not math.isfinite(b):
        return math.nan
    return a / b


def geomean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    return math.exp(statistics.fmean(math.log(v) for v in finite)) if finite else math.nan


# --- tables and output --------------------------------------------------------------------------------------


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def table_text(
    rows: Sequence[Row], columns: Sequence[str], digits: int = 2, column_digits: dict[str, int] | None = None
) -> str:
    """Rows as an aligned text table (numbers right-aligned, text left-aligned); floats with `digits` decimals
    unless `column_digits` names the column."""
    places = column_digits or {}
    cells = [[_cell(row.get(c), places.get(c, digits)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(row.get(c), int | float) or row.get(c) is None for row in rows) for c in columns
    ]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(columns)), line(["-" * w for w in widths]), *(line(r) for r in cells)])


@dataclass
class Report:
    """What a benchmark prints and writes: header lines, the main table, extra sections, the closing ratio."""

    name: str
    quick: bool
    header: list[str]
    columns: list[str]
    rows: list[Row]
    ratio_line: str
    ratio: dict[str, Any]
    sections: dict[str, tuple[list[str], list[Row]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    column_digits: dict[str, int] = field(default_factory=dict)

    def text(self) -> str:
        parts = [*self.header, "", table_text(self.rows, self.columns, column_digits=self.column_digits)]
        for title, (columns, rows) in self.sections.items():
            parts += ["", f"{title}:", table_text(rows, columns, column_digits=self.column_digits)]
        if self.notes:
            parts += [""] + self.notes
        parts += ["", self.ratio_line]
        return "\n".join(parts)

    def payload(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "quick": self.quick,
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": machine(),
            "header": self.header,
            "columns": self.columns,
            "rows": self.rows,
            "sections": {
                t: {"columns": c, "rows": "the main rows" if r is self.rows else r}
                for t, (c, r) in self.sections.items()
            },
            "notes": self.notes,
            "ratio": self.ratio,
            "ratio_line": self.ratio_line,
            "settings": self.settings,
        }


def finish(report: Report, out: Path) -> None:
    """Write the JSON, then print the report (its last line is the ratio)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    report.notes.append(f"json: {out}")
    out.write_text(json.dumps(report.payload(), indent=2, default=_json_default, allow_nan=True) + "\n")
    print(report.text(), flush=True)


def _json_default(value: Any) -> Any:
    return str(value)  # Paths, enums
