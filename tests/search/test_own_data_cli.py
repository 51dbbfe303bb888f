"""`rankbits run / grid / pareto / plan --task textcls|lm --data ...`: the own-data flags are `--set task.*`
shortcuts, and a bad file is one line (exit 2) before anything trains."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from cli_helpers import rankbits

from search import cli
from trainables.errors import ConfigError

pytestmark = pytest.mark.ray  # runs grid / pareto (Ray) in some tests

ROWS = [(f"{w} number {i}", w.split()[0]) for i in range(20) for w in ("cat sat", "dog ran", "owl flew")]


def parse(argv: list[str]) -> argparse.Namespace:
    args = cli.build_parser(argv).parse_args(argv)
    args.given = cli.given_flags(argv)
    return args


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    path.write_text("sentence,label\n" + "".join(f"{t},{y}\n" for t, y in ROWS), encoding="utf-8")
    return path


def test_run_flags_become_task_settings_with_absolute_paths(table, monkeypatch):
    from search.run_cmd import build_config

    monkeypatch.chdir(table.parent)
    argv = ["run", "--task", "textcls", "--data", "train.csv", "--eval-fraction", "0.25"]
    args = parse(argv + ["--text-column", "sentence", "--model", "tiny-bert", "--max-steps", "2"])
    cfg = build_config(args)
    assert cfg.task.data == str(table) and cfg.task.eval_fraction == 0.25
    assert cfg.task.text_column == "sentence" and cfg.task.label_column == "label"
    assert cfg.training.max_steps == 2 and cfg.model.name == "tiny-bert"


def test_run_takes_lm_flags(table):
    from search.run_cmd import build_config

    args = parse(["run", "--task", "lm", "--data", str(table.with_name("c.txt")), "--eval-fraction", "0.1"])
    table.with_name("c.txt").write_text("some text\n" * 50)
    args.model = "tiny-llama"
    cfg = build_config(args)
    assert cfg.task.name == "lm" and cfg.task.data == str(table.with_name("c.txt"))
    assert cfg.task.eval_fraction == 0.1 and cfg.task.eval_data is None


def test_a_missing_column_is_a_config_error_before_training(table):
    from search.run_cmd import build_config

    args = parse(
        ["run", "--task", "textcls", "--data", str(table), "--eval-fraction", "0.2", "--model", "tiny-bert"]
    )
    with pytest.raises(
        ConfigError, match="has no column 'text'; its columns: sentence, label; .*--text-column"
    ):
        build_config(args)


def test_grid_takes_own_data_and_a_model_per_task(table):
    from search.grid_cmd import build_cells, spec_of

    argv = ["grid", "--tasks", "textcls", "--configs", "B-FP,B-Q4", "--model-textcls", "tiny-bert"]
    args = parse(argv + ["--data", str(table), "--eval-fraction", "0.2", "--text-column", "sentence"])
    cells = build_cells(args)
    assert [c.config_id for c in cells] == ["B-FP", "B-Q4"]
    assert {c.task.data for c in cells} == {str(table)} and cells[0].training.batch_size == 16
    spec = spec_of(args)
    assert spec["models"]["textcls"] == "tiny-bert" and f"task.data={table}" in spec["overrides"]


def test_pareto_base_config_and_objectives_follow_the_task(table):
    from search.pareto_cmd import base_config, parse_task_objectives

    args = parse(
        [
            "pareto",
            "--task",
            "textcls",
            "--model",
            "tiny-bert",
            "--data",
            str(table),
            "--eval-fraction",
            "0.2",
        ]
    )
    from search.common import fold_task_data_flags

    fold_task_data_flags(args)
    base = base_config(args)
    assert base.task.name == "textcls" and base.task.data == str(table)
    assert parse_task_objectives(None, "textcls") == {"accuracy": "max", "peak_memory_mb": "min"}
    assert parse_task_objectives(None, "lm") == {"perplexity": "min", "peak_memory_mb": "min"}
    with pytest.raises(ConfigError, match="perplexity is not measured on textcls; use accuracy or macro_f1"):
        parse_task_objectives("perplexity:min", "textcls")


def test_plan_predicts_a_textcls_head_from_the_data(table):
    from search.plan_cmd import build_plan

    overrides = [f"task.data={table}", "task.eval_fraction=0.2", "task.text_column=sentence"]
    plan = build_plan("tiny-bert", "textcls", ["B-FP"], "cpu", None, overrides)
    assert plan.rows and plan.rows[0].total_mb > 0


def test_a_bad_file_exits_2_with_one_line(tmp_path):
    proc = rankbits(
        ["run", "--task", "textcls", "--data", str(tmp_path / "nope.csv"), "--eval-fraction", "0.1"]
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.csv' not found" in lines[0], proc.stderr


@pytest.mark.slow
def test_run_trains_textcls_and_lm_from_files(table, tmp_path, tiny_data):
    out = tmp_path / "cls"
    proc = rankbits(
        [
            "run",
            "--task",
            "textcls",
            "--data",
            str(table),
            "--eval-fraction",
            "0.25",
            "--text-column",
            "sentence",
        ]
        + ["--model", "tiny-bert", "--max-steps", "3", "--output", str(out), "--set", "training.seq_len=32"]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "trial_result.json").read_text())["result"]
    assert result["num_classes"] == 3 and result["label_names"] == ["cat", "dog", "owl"]
    assert result["macro_f1"] is not None and "macro-F1" in proc.stdout
    out = tmp_path / "lm"
    wiki = tiny_data / "wikitext-2"
    proc = rankbits(
        [
            "run",
            "--task",
            "lm",
            "--data",
            str(wiki / "wiki.valid.tokens"),
            "--eval-data",
            str(wiki / "wiki.test.tokens"),
        ]
        + ["--model", "tiny-llama", "--max-steps", "2", "--output", str(out)]
        + ["--set", "training.seq_len=32", "--set", "training.eval_tokens=256"]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "trial_result.json").read_text())["result"]
    assert result["metric_name"] == "perplexity" and result["perplexity"] > 1
