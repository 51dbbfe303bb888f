"""The grid through Ray Tune on tiny models: full matrix, a failing trial, kill -9 and resume, a Ray cluster."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import TINY, env, rankbits

pytestmark = [pytest.mark.slow, pytest.mark.ray]

TINY_GRID = ["--model-sst2", "tiny-bert", "--model-wikitext2", "tiny-llama", "--max-steps", "3", *TINY]


def summary(root: Path) -> list[dict]:
    with (root / "experiment_summary.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_full_grid_of_12_trials_fills_every_column(tiny_data, tmp_path):
    proc = rankbits(
        ["grid", "--results-dir", str(tmp_path), "--name", "g12", *TINY_GRID], data_dir=tiny_data, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    root = tmp_path / "g12"
    rows = summary(root)
    assert len(rows) == 12
    assert {(r["config_id"], r["task"]) for r in rows} == {
        (c, t)
        for c in ("B-FP", "B-Q4", "B-Ada", "Joint-1", "Joint-2", "Joint-3")
        for t in ("sst2", "wikitext2")
    }
    required = [
        "config_id",
        "task",
        "model",
        "seed",
        "method",
        "quantization",
        "lora_strategy",
        "status",
        "trainable_params",
        "trainable_pct",
        "peak_memory_mb",
        "weight_memory_mb",
        "predicted_peak_mb",
        "train_time_s",
        "tokens_per_s",
    ]
    for r in rows:
        assert r["status"] == "completed", r
        assert all(r[c] != "" for c in required), r
        assert r["accuracy" if r["task"] == "sst2" else "perplexity"] != ""
    everything = json.loads((root / "all_results.json").read_text())
    assert len(everything) == 12 and all(e["result"]["bits_per_layer"] for e in everything)
    trial_dirs = [p for p in (root / "tune").iterdir() if p.is_dir()]
    assert len(trial_dirs) == 12
    assert all(
        (p / "adapter" / "adapter_config.json").exists() and (p / "trial_result.json").exists()
        for p in trial_dirs
    )
    assert "config" in proc.stdout and "B-Ada" in proc.stdout  # the table is printed

    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(root / "tune"))
    assert len(analysis.trials) == 12

    from analysis import load_results

    frame = load_results(root)  # analysis reads a real grid folder
    assert len(frame) == 12 and set(frame["status"]) == {"completed"}
    report = rankbits(["analyze", str(root), "--out", str(tmp_path / "report")], timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    assert (tmp_path / "report" / "report.md").stat().st_size > 0
    assert (tmp_path / "report" / "pareto.csv").exists()

    # the memory benchmark takes its measured side from a grid folder: every trial against the formulas
    out = tmp_path / "memory.json"
    bench = subprocess.run(
        [sys.executable, "benchmarks/memory_exactness.py", "--from-results", str(root), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env(tiny_data),
        cwd=Path(__file__).resolve().parents[2],
    )
    assert bench.returncode == 0, bench.stderr[-2000:] + bench.stdout[-2000:]
    table = json.loads(out.read_text())
    assert len(table["rows"]) == 12
    assert table["ratio"]["blocks_exact"] == [24, 24]  # 12 trials x 2 blocks, byte for byte


def test_failing_trial_is_recorded_and_the_grid_goes_on(tiny_data, tmp_path):
    from transformers import LlamaConfig

    broken = tmp_path / "broken-model"
    LlamaConfig(
        vocab_size=260, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    ).save_pretrained(broken)  # a config but no weights
    proc = rankbits(
        [
            "grid",
            "--results-dir",
            str(tmp_path),
            "--name",
            "gfail",
            "--configs",
            "B-FP,B-Q4",
            "--model-sst2",
            "tiny-bert",
            "--model-wikitext2",
            str(broken),
            "--max-steps",
            "3",
            *TINY,
        ],
        data_dir=tiny_data,
        timeout=600,
    )
    assert proc.returncode == 0 and (tmp_path / "gfail" / "experiment_summary.csv").is_file(), (
        proc.stdout[-2000:] + proc.stderr[-4000:]
    )
    rows = summary(tmp_path / "gfail")
    assert len(rows) == 4, proc.stdout[-3000:]
    by_task = {(r["config_id"], r["task"]): r for r in rows}
    for config_id in ("B-FP", "B-Q4"):
        assert by_task[(config_id, "sst2")]["status"] == "completed"
        failed = by_task[(config_id, "wikitext2")]
        assert failed["status"] == "failed" and "Error" in failed["error"]  # the reason is kept


def test_killed_driver_resumes_without_rerunning_finished_trials(tiny_data, tmp_path):
    args = [
        sys.executable,
        "-m",
        "search.cli",
        "grid",
        "--results-dir",
        str(tmp_path),
        "--name",
        "gkill",
        "--configs",
        "B-FP,B-Q4",
        "--tasks",
        "sst2",
        "--seeds",
        "0,1",
        "--model-sst2",
        "tiny-bert",
        "--max-steps",
        "20",
        *TINY,
    ]
    mark = f"gkill-{os.getpid()}-{time.time()}"  # every process of this test carries it in its environment
    driver = subprocess.Popen(
        args,
        env=env(tiny_data, RANKBITS_TEST_MARK=mark),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    root = tmp_path / "gkill"
    deadline = time.time() + 400
    while time.time() < deadline:
        if (root / "experiment_summary.csv").exists() and len(summary(root)) >= 2:
            break
        time.sleep(0.5)
    else:
        driver.kill()
        pytest.fail("the grid never finished two trials")
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(3)
    before = {r["trial_id"]: r for r in summary(root)}
    finished_files = {p: p.stat().st_mtime for p in root.rglob("trial_result.json")}
    assert len(before) >= 2
    proc = rankbits(args[3:] + ["--resume"], data_dir=tiny_data, timeout=600, RANKBITS_TEST_MARK=mark)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = summary(root)
    assert len(after) == 4 and all(r["status"] == "completed" for r in after)
    assert len({(r["config_id"], r["seed"]) for r in after}) == 4  # each trial exactly once
    for trial_id, row in before.items():
        kept = [r for r in after if r["trial_id"] == trial_id]
        assert kept and kept[0]["accuracy"] == row["accuracy"]
    for path, mtime in finished_files.items():
        assert path.stat().st_mtime == mtime  # finished trials were not run again
    json.loads((root / "all_results.json").read_text())  # never half-written
    try:
        os.killpg(driver.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    # No trial process outlives its run: forked trial children die with their template, which ends with its worker.
    deadline = time.time() + 60
    while marked_processes(mark) and time.time() < deadline:
        time.sleep(1)
    assert not marked_processes(mark)


def marked_processes(mark: str) -> list[str]:
    """Command lines of the live processes whose environment holds RANKBITS_TEST_MARK=mark."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.environ().get("RANKBITS_TEST_MARK") == mark and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(" ".join(proc.info["cmdline"] or [])[:120])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_grid_runs_on_an_existing_ray_cluster(tiny_data, tmp_path):
    ray_bin = Path(sys.executable).with_name("ray")
    port, host = "6391", "127.0.0.2"  # loopback; Ray rewrites a literal 127.0.0.1 to the machine's address
    start = subprocess.run(
        [
            str(ray_bin),
            "start",
            "--head",
            f"--port={port}",
            f"--node-ip-address={host}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        # workers at niceness 0 as in a local Ray (search.tuner.worker_niceness): at Ray's default 15 the one
        # trial waited behind any other load on the machine (95 of the test's 150 s in one CI run)
        env=env(tiny_data, RAY_worker_niceness="0"),
        timeout=180,
    )
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        proc = rankbits(
            [
                "grid",
                "--results-dir",
                str(tmp_path),
                "--name",
                "gcluster",
                "--configs",
                "B-Q4",
                "--tasks",
                "sst2",
                "--model-sst2",
                "tiny-bert",
                "--max-steps",
                "3",
                "--ray-address",
                f"{host}:{port}",
                *TINY,
            ],
            data_dir=tiny_data,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows = summary(tmp_path / "gcluster")
        assert len(rows) == 1 and rows[0]["status"] == "completed"
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, timeout=120)


def test_ctrl_c_then_resume_keeps_every_finished_trial_once(tiny_data, tmp_path):
    args = [
        sys.executable,
        "-m",
        "search.cli",
        "grid",
        "--results-dir",
        str(tmp_path),
        "--name",
        "gint",
        "--configs",
        "B-FP,B-Q4",
        "--tasks",
        "sst2",
        "--seeds",
        "0,1",
        "--model-sst2",
        "tiny-bert",
        "--max-steps",
        "20",
        *TINY,
    ]
    driver = subprocess.Popen(
        args, env=env(tiny_data), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    root = tmp_path / "gint"
    deadline = time.time() + 300
    while time.time() < deadline and not ((root / "experiment_summary.csv").exists() and summary(root)):
        time.sleep(0.5)
    driver.send_signal(signal.SIGINT)
    try:
        out, _ = driver.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        driver.kill()
        pytest.fail("the grid did not stop on Ctrl-C")
    assert driver.returncode == 130, out[-3000:]  # the interrupt's status, and the hint the README promises
    assert "interrupted; completed trials are kept, rerun with --resume to finish" in out
    rows = summary(root)
    finished = {r["trial_id"]: r["accuracy"] for r in rows if r["status"] == "completed"}
    assert finished
    interrupted = [r for r in rows if r["status"] == "interrupted"]
    assert interrupted and not [r for r in rows if r["status"] == "stopped"], rows
    for r in interrupted:  # blanks, not zeros, for what it never measured
        assert r["trainable_params"] == r["train_time_s"] == r["weight_memory_mb"] == "", r
        assert "--resume" in r["error"]
    left = 4 - len(finished)
    # resume as the README writes it: the name alone, every setting read from experiment.json
    proc = rankbits(
        ["grid", "--results-dir", str(tmp_path), "--name", "gint", "--resume"],
        data_dir=tiny_data,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"4 trials ({left} to run)" in proc.stdout and f"({left}/{left})" in proc.stdout, proc.stdout[
        -3000:
    ]
    after = summary(root)
    assert len(after) == 4 and all(r["status"] == "completed" for r in after)
    assert len({(r["config_id"], r["seed"]) for r in after}) == 4
    for trial_id, accuracy in finished.items():
        assert [r["accuracy"] for r in after if r["trial_id"] == trial_id] == [accuracy]


FAKE_WANDB = {
    "__init__.py": """
import os
from pathlib import Path


class _Config(dict):
    def update(self, data=None, allow_val_change=False, **kw):
        dict.update(self, data or {})

    def __setattr__(self, key, value):
        self[key] = value


config = _Config()


class _Run:
    config = config

    def log(self, *args, **kwargs):
        pass

    def finish(self):
        pass


def init(*args, **kwargs):  # records whether the logging actor could read the key, never the key itself
    Path(os.environ["FAKE_WANDB_SEEN"]).write_text("key" if os.environ.get("WANDB_API_KEY") else "no key")
    return _Run()


def log(*args, **kwargs):
    pass


def finish():
    pass
""",
    "util.py": "from json import dumps as json_dumps_safer\n",
    "wandb_run.py": "class Run:\n    pass\n",
    "sdk/__init__.py": "",
    "sdk/data_types/__init__.py": "",
    "sdk/data_types/base_types/__init__.py": "",
    "sdk/data_types/base_types/wb_value.py": "class WBValue:\n    pass\n",
    "sdk/data_types/image.py": "class Image:\n    pass\n",
    "sdk/data_types/video.py": "class Video:\n    pass\n",
}
"""A stand-in for the wandb package (not installed here): enough for Ray's WandbLoggerCallback to start its
logging actor, which is where Ray put the key into a runtime environment."""


def test_tokens_from_dotenv_never_reach_logs_or_results(tiny_data, tmp_path):
    import tempfile

    secret = "wandb-secret-token-0123456789abcdef"
    hf_secret = "hf_secretTOKEN9876543210"
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"WANDB_API_KEY={secret}\nHF_TOKEN={hf_secret}\n")
    fake = tmp_path / "fake"
    for name, text in FAKE_WANDB.items():
        (fake / "wandb" / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / "wandb" / name).write_text(text)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rb", dir="/tmp"))  # short: Ray's socket paths have a length limit
    seen = tmp_path / "wandb-seen.txt"
    pythonpath = os.pathsep.join(p for p in (str(fake), os.environ.get("PYTHONPATH", "")) if p)
    proc = rankbits(
        [
            "grid",
            "--results-dir",
            str(tmp_path / "results"),
            "--name",
            "gsecret",
            "--configs",
            "B-Q4",
            "--tasks",
            "sst2",
            "--model-sst2",
            "tiny-bert",
            "--max-steps",
            "3",
            *TINY,
        ],
        data_dir=tiny_data,
        timeout=600,
        cwd=tmp_path,
        RANKBITS_ENV_FILE=str(dotenv),
        PYTHONPATH=pythonpath,
        RAY_TMPDIR=str(ray_tmp),
        FAKE_WANDB_SEEN=str(seen),
    )
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert seen.read_text() == "key"  # W&B's logging actor still reads the key (from the inherited env)
        assert secret not in proc.stdout + proc.stderr and hf_secret not in proc.stdout + proc.stderr
        files = [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
        ray_files = [p for p in ray_tmp.rglob("*") if p.is_file() and not p.is_symlink()]
        assert files and any(
            p.name.startswith("runtime_env") for p in ray_files
        )  # Ray's session logs are read
        for path in files + ray_files:
            data = path.read_bytes()
            assert secret.encode() not in data and hf_secret.encode() not in data, path
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
