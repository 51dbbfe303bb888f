"""`rankbits plan`: the predicted peak by part from the model's config, the fit, the largest batch / sequence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import env

from search import plan_cmd
from search.cli import main
from trainables.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
LLAMA_1B = REPO / "benchmarks" / "configs" / "llama-3.2-1b-shape"
LLAMA_7B = REPO / "benchmarks" / "configs" / "llama-2-7b-shape"
REFERENCE = REPO.parent / "shared" / "reference" / "cuda-h200-standard-path-llama1b-2026-11-29.jsonl"


def _plan(**kw):
    args = dict(
        model="tiny-llama", task="wikitext2", config_ids=["B-FP", "B-Q4"], device="cpu", budget_mb=None
    )
    args.update(kw)
    return plan_cmd.build_plan(**args)


def test_rows_are_the_one_prediction_the_grid_and_trials_use():
    from search.grid_cmd import predicted_mb
    from trainables.config import TrialConfig
    from trainables.trainable import predicted_peak_mb

    plan = _plan()
    assert [r.config_id for r in plan.rows] == ["B-FP", "B-Q4"]
    for row in plan.rows:
        cfg = TrialConfig.from_dict(row.extra["config"])
        assert row.total_mb == pytest.approx(predicted_mb(cfg, "cpu"), abs=0.05)
        assert row.total_mb == pytest.approx(predicted_peak_mb(cfg, "cpu"), abs=0.05)
        assert list(row.parts_mb)[0] == "weights" and sum(row.parts_mb.values()) == pytest.approx(
            row.total_mb, abs=0.5
        )
    assert plan.rows[1].parts_mb["weights"] < plan.rows[0].parts_mb["weights"]  # 4-bit below 16-bit


def test_largest_batch_and_sequence_are_the_edge_of_the_budget():
    from trainables.config import TrialConfig
    from trainables.predict import predicted_peak_mb

    budget = 400.0
    (row,) = _plan(config_ids=["B-Q4"], budget_mb=budget).rows
    cfg = TrialConfig.from_dict(row.extra["config"])
    assert row.fits == (row.total_mb <= budget)
    b = row.max_batch_size
    assert b is not None and b >= 1
    assert predicted_peak_mb(cfg.with_overrides({"training.batch_size": b}), "cpu") <= budget
    assert predicted_peak_mb(cfg.with_overrides({"training.batch_size": b + 1}), "cpu") > budget
    s = row.max_seq_len
    assert s is not None and 8 <= s
    assert predicted_peak_mb(cfg.with_overrides({"training.seq_len": s}), "cpu") <= budget
    if s < 512:  # tiny-llama's max positions
        assert predicted_peak_mb(cfg.with_overrides({"training.seq_len": s + 1}), "cpu") > budget


def test_a_budget_below_the_weights_fits_nothing():
    (row,) = _plan(config_ids=["B-FP"], budget_mb=1.0).rows
    assert row.fits is False and row.max_batch_size == 0 and row.max_seq_len == 0


def test_alternatives_in_set_give_one_row_per_combination():
    plan = _plan(config_ids=["B-Q4"], overrides=["training.batch_size=2|8", "seq_len=64|128", "adapter.r=4"])
    got = [(r.batch_size, r.seq_len) for r in plan.rows]
    assert got == [(2, 64), (2, 128), (8, 64), (8, 128)]
    assert plan.rows[0].settings == {"training.batch_size": "2", "training.seq_len": "64"}
    acts = [r.parts_mb["activations"] + r.parts_mb["logits"] for r in plan.rows]
    assert acts[0] < acts[1] < acts[3] and acts[0] < acts[2]
    assert all(r.extra["config"]["adapter"]["r"] == 4 for r in plan.rows)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["training.batch_size"], "expected key=value"),
        (["training.nope=1|2"], "no setting"),
        (["lr=1|"], "empty"),
    ],
)
def test_bad_set_is_a_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        plan_cmd.split_variants(overrides)


def test_unreadable_model_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "no-such-architecture", "hidden_size": 8}')
    assert main(["plan", "--model", str(bad), "--task", "wikitext2", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "Traceback" not in err[0]
    assert main(["plan", "--model", str(tmp_path / "missing"), "--device", "cpu"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_json_output_and_a_config_json_path(capsys):
    code = main(
        ["plan", "--model", str(LLAMA_1B / "config.json"), "--task", "wikitext2", "--config", "B-Q4",
         "--device", "cuda", "--memory-gb", "16", "--json"]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["device"] == "cuda" and out["budget_mb"] == 16 * 1024 and out["model"] == str(LLAMA_1B)
    (row,) = out["rows"]
    assert row["config_id"] == "B-Q4" and row["fits"] in (True, False) and row["max_batch_size"] >= 0
    assert set(row["parts_mb"]) >= {"weights", "adapters", "optimizer", "activations", "overhead"}


def _reference_peaks() -> dict[tuple[int, bool], float]:
    if not REFERENCE.is_file():
        pytest.skip("../shared/reference is not beside the repository")
    rows = [json.loads(line) for line in REFERENCE.read_text().splitlines() if line.strip()]
    return {
        (r["bits"], r["grad_ckpt"]): r["peak_alloc_mb"]
        for r in rows
        if r.get("shape") == "llama1b" and r.get("dtype") == "torch.bfloat16"
    }


@pytest.mark.parametrize("checkpointing", [False, True])
def test_llama1b_plan_is_within_10pct_of_the_measured_standard_path(checkpointing, capsys):
    """B-Q4 / B-FP, CUDA, batch 4 x 256, bfloat16 compute, with and without gradient checkpointing, against the
    H200 measurements of the standard transformers + PEFT + bitsandbytes path (needs the memory model of issue 12)."""
    measured = _reference_peaks()
    code = main(
        ["plan", "--model", str(LLAMA_1B), "--task", "wikitext2", "--config", "B-Q4,B-FP", "--device", "cuda",
         "--memory-gb", "140", "--json", "--set", "training.batch_size=4", "--set", "training.seq_len=256",
         "--set", "training.compute_dtype=bfloat16",
         "--set", f"training.gradient_checkpointing={str(checkpointing).lower()}"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = {r["config_id"]: r for r in json.loads(captured.out)["rows"]}
    for config_id, bits in (("B-Q4", 4), ("B-FP", 16)):
        predicted, actual = rows[config_id]["total_mb"], measured[(bits, checkpointing)]
        assert abs(predicted - actual) <= 0.10 * actual, (config_id, checkpointing, predicted, actual)


@pytest.mark.slow
def test_plan_on_a_7b_config_imports_neither_ray_nor_optuna_nor_transformers():
    """The 7B answer is read from config.json (`trainables.arch_config`): transformers' modeling code, PEFT and
    bitsandbytes are seconds of imports on a small machine and are not needed for a prediction."""
    code = (
        "import argparse, sys\n"
        "from search import plan_cmd\n"
        "p = argparse.ArgumentParser(); s = p.add_subparsers()\n"
        "plan_cmd.register(s)\n"
        f"a = p.parse_args(['plan', '--model', {str(LLAMA_7B)!r}, '--task', 'wikitext2', '--json'])\n"
        "a.handler(a)\n"
        "heavy = ('ray', 'optuna', 'pandas', 'transformers', 'peft', 'bitsandbytes')\n"
        "print('HEAVY', [m for m in heavy if m in sys.modules])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env(), cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stdout
    rows = json.loads(proc.stdout.split("HEAVY")[0])["rows"]
    assert len(rows) == 6 and rows[0]["parts_mb"]["weights"] > 10_000  # 6.7B parameters in 16 bits


@pytest.mark.slow
def test_measure_trains_each_row_and_reports_beside_the_prediction(tiny_data, capsys, monkeypatch):
    monkeypatch.setenv("RANKBITS_DATA_DIR", str(tiny_data))
    code = main(
        ["plan", "--model", "tiny-bert", "--task", "sst2", "--config", "B-Q4", "--device", "cpu", "--json",
         "--measure", "2", "--set", "training.batch_size=4", "--set", "training.eval_examples=8",
         "--mmap-threshold", "256K"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out)
    (row,) = out["rows"]
    assert row["measure_error"] is None and row["measured_mb"] > 0 and "measured_error_pct" in row
    assert out["measure"] == ("cpu-live" if sys.platform.startswith("linux") else "cpu")
    assert "default allocator" not in captured.err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mmap threshold is Linux only")
def test_a_default_allocator_measure_says_how_to_measure_live_tensors(capsys, monkeypatch):
    from search import plan_cmd

    monkeypatch.delenv("RANKBITS_MMAP_THRESHOLD", raising=False)
    monkeypatch.setattr(plan_cmd, "measure_row", lambda row, steps, device, threshold: (100.0, None))
    argv = ["plan", "--model", "tiny-gpt2", "--task", "wikitext2", "--config", "B-Q4", "--device", "cpu"]
    assert main([*argv, "--measure", "1"]) == 0
    assert plan_cmd.RATCHET_HINT in capsys.readouterr().err
    assert main([*argv, "--measure", "1", "--mmap-threshold", "256K"]) == 0
    assert "default allocator" not in capsys.readouterr().err


def _plan_json(capsys, *extra: str) -> dict:
    argv = ["plan", "--model", "tiny-gpt2", "--task", "wikitext2", "--device", "cpu", "--memory-gb", "8"]
    assert main([*argv, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mmap threshold is Linux only")
def test_mmap_threshold_plans_for_the_live_tensor_measure(capsys, monkeypatch):
    monkeypatch.delenv("RANKBITS_MMAP_THRESHOLD", raising=False)
    default = _plan_json(capsys)
    live = _plan_json(capsys, "--mmap-threshold", "256K")
    assert (default["measure"], live["measure"]) == ("cpu", "cpu-live")
    for a, b in zip(default["rows"], live["rows"]):
        assert a["parts_mb"]["weights"] == b["parts_mb"]["weights"]  # only the measure's constants differ
        assert a["parts_mb"]["activations"] != b["parts_mb"]["activations"]
    monkeypatch.setenv("RANKBITS_MMAP_THRESHOLD", "262144")
    assert (
        _plan_json(capsys)["measure"] == "cpu-live"
    )  # the environment's default, as grid and pareto read it
    assert main(["plan", "--model", "tiny-gpt2", "--mmap-threshold", "lots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--mmap-threshold 'lots'" in err[0]


def test_a_sequence_longer_than_the_model_takes_is_refused_as_run_refuses_it():
    with pytest.raises(ConfigError, match="training.seq_len: 1024 tokens is above the 512"):
        _plan(model="tiny-gpt2", overrides=["training.seq_len=1024"])


def test_measure_warnings_name_a_short_padded_measure_and_rows_off_by_a_quarter():
    from search.plan_cmd import Plan, PlanRow, measure_warnings

    def row(config_id, measured, total=100.0):
        return PlanRow(config_id, {"training.batch_size": "8"}, 8, 64, {}, total, None, None, None, measured)

    plan = Plan(
        "tiny-bert", "sst2", "cpu", None, [row("B-FP", 110.0), row("B-Q4", 180.0), row("Joint-1", None)]
    )
    lines = measure_warnings(plan, 10)
    assert "--measure 10: sst2 pads each batch" in lines[0]
    assert len(lines) == 2 and lines[1].startswith(
        "B-Q4 training.batch_size=8 measured +80% from its prediction"
    )
    assert measure_warnings(Plan("tiny-llama", "wikitext2", "cpu", None, [row("B-FP", 110.0)]), 10) == []
