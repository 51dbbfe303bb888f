from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis import cli, hypervolume, load_results, pareto_front
from analysis.report import ReportPaths, grid_table, key_table_text, write_frame_report, write_report
from trainables.errors import ConfigError

OBJ = {"accuracy": "max", "peak_memory_mb": "min"}


def test_write_report(grid_dir: Path, pareto_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    paths = write_report([grid_dir, pareto_dir], "accuracy:max,peak_memory_mb:min", out)
    assert isinstance(paths, ReportPaths)
    assert paths.report == out / "report.md"
    text = paths.report.read_text()
    for heading in ("## Grid configurations", "## Pareto set", "## Hypervolume", "## Plots"):
        assert heading in text
    for config in ("B-FP", "B-Q4", "B-Ada", "Joint-1", "Joint-2", "Joint-3"):
        assert f"| {config} |" in text
    assert "0.905 ± 0.007 (n=2)" in text  # B-FP accuracy over two seeds
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(p.name for p in paths.plots.values())
    for link in links:
        assert not Path(link).is_absolute()
        assert (out / link).stat().st_size > 2000
    assert "RuntimeError: worker died" in text  # failed trials listed

    front = pd.read_csv(paths.pareto_csv)
    df = load_results([grid_dir, pareto_dir])
    expected = pareto_front(df, OBJ)
    assert front["trial_id"].tolist() == expected["trial_id"].tolist()
    assert "bits_per_layer" in front.columns and "source" in front.columns

    hv = hypervolume(df[df["source"] == "pareto-sst2"], OBJ, _reference(text))
    assert f"{hv:.4g}" in text


def _reference(text: str) -> dict[str, float]:
    match = re.search(r"Reference point: accuracy = ([0-9.e+-]+), peak_memory_mb = ([0-9.e+-]+)", text)
    assert match
    return {"accuracy": float(match.group(1)), "peak_memory_mb": float(match.group(2))}


def test_grid_table_shape(grid_dir: Path) -> None:
    table = grid_table(load_results(grid_dir))
    assert table["config"].tolist() == ["B-FP", "B-Q4", "B-Ada", "Joint-1", "Joint-2", "Joint-3"]
    assert list(table.columns) == [
        "config",
        "method",
        "quantization",
        "LoRA strategy",
        "regime",
        "accuracy",
        "trainable %",
        "peak memory MB",
        "predicted MB",
        "weight memory MB",
        "train time s",
        "completed",
    ]
    row = table.set_index("config").loc["Joint-3"]
    assert row["accuracy"] == "0.870"  # one completed seed: no ± part
    assert row["completed"] == "1/2"
    methods = table.set_index("config")["method"].to_dict()
    assert methods == {
        "B-FP": "LoRA",
        "B-Q4": "QLoRA",
        "B-Ada": "AdaLoRA",
        "Joint-1": "AdaLoRA",
        "Joint-2": "AdaLoRA",
        "Joint-3": "LoRA",
    }
    assert table.set_index("config").loc["Joint-2", "quantization"] == "mixed 8/4"


def test_key_table_text(grid_dir: Path, pareto_dir: Path) -> None:
    grid_text = key_table_text(load_results(grid_dir))
    assert grid_text.startswith("Grid configurations")
    assert "Joint-2" in grid_text and "|" not in grid_text
    pareto_text = key_table_text(load_results(pareto_dir), {"accuracy": "max", "peak_memory_mb": "min"})
    assert pareto_text.startswith("Pareto set (accuracy:max,peak_memory_mb:min): 5 of 11 trials")


def test_report_with_default_objectives_on_perplexity(
    tmp_path: Path, make_results: Callable[..., Path], make_trial: Callable[..., Any]
) -> None:
    trials = [
        make_trial(f"lm{i}", task="wikitext2", accuracy=None, perplexity=30.0 - i, peak=500.0 + 100 * i)
        for i in range(4)
    ]
    folder = make_results(tmp_path, "lm", "pareto", trials)
    paths = write_report(folder, None, tmp_path / "out")
    text = paths.report.read_text()
    assert "Objectives: `perplexity:min,peak_memory_mb:min`" in text
    assert len(pd.read_csv(paths.pareto_csv)) == 4


def test_report_rejects_bad_input(grid_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown column 'f1'"):
        write_report(grid_dir, "f1:max", tmp_path / "out")
    with pytest.raises(ConfigError, match="'perplexity' has no values"):
        write_report(grid_dir, "perplexity:min", tmp_path / "out")
    with pytest.raises(ConfigError, match="does not exist"):
        write_report(tmp_path / "missing", None, tmp_path / "out")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rankbits")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    return parser


def test_analyze_subcommand(
    grid_dir: Path, pareto_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "analysis"
    args = _parser().parse_args(
        [
            "analyze",
            str(grid_dir),
            str(pareto_dir),
            "--objectives",
            "accuracy:max,peak_memory_mb:min",
            "--out",
            str(out),
        ]
    )
    assert args.handler is cli.run  # search/cli.py dispatches through args.handler
    assert args.handler(args) == 0
    assert (out / "report.md").exists() and (out / "pareto.csv").exists()
    printed = capsys.readouterr().out
    assert "Grid configurations" in printed and str(out / "report.md") in printed


def test_analyze_default_out_dir(pareto_dir: Path) -> None:
    args = _parser().parse_args(["analyze", str(pareto_dir)])
    assert args.objectives is None and args.out is None
    assert cli.run(args) == 0
    assert (pareto_dir / "analysis" / "report.md").exists()
    assert (pareto_dir / "analysis" / "pareto.csv").exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--objectives", "accuracy:up"], "direction 'up'"),
        (["--objectives", "memory:min"], "unknown column 'memory'"),
    ],
)
def test_analyze_bad_objectives(grid_dir: Path, argv: list[str], needle: str) -> None:
    args = _parser().parse_args(["analyze", str(grid_dir), *argv])
    with pytest.raises(ConfigError, match=needle):
        cli.run(args)


def test_analyze_missing_folder_and_main_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args(["analyze", str(tmp_path / "nope")])
    with pytest.raises(ConfigError, match="does not exist"):
        cli.run(args)
    assert cli.main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err


def test_grid_table_splits_by_source_when_several_grids(
    tmp_path: Path, make_results: Callable[..., Path], grid_trials: list[Any]
) -> None:
    a = make_results(tmp_path, "grid-a", "grid", grid_trials)
    b = make_results(tmp_path, "grid-b", "grid", grid_trials[:2])
    table = grid_table(load_results([a, b]))
    assert table[["config", "source"]].values.tolist()[:2] == [["B-FP", "grid-a"], ["B-FP", "grid-b"]]
    assert len(table) == 7


def test_merging_folders_with_different_steps_or_settings_warns(
    grid_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from analysis.report import mixed_settings

    same = load_results([grid_dir])
    assert mixed_settings(same) == []
    short = same.assign(source="grid-short", steps=same["steps"].where(same["status"] != "completed", 24))
    merged = pd.concat([same, short], ignore_index=True)
    warnings = mixed_settings(merged)
    assert len(warnings) == 1 and warnings[0].startswith("sst2: steps differs between folders")
    assert "grid-short: 24" in warnings[0] and "compare with care" in warnings[0]
    paths = write_frame_report(merged, None, tmp_path / "report")
    assert f"> **Warning:** {warnings[0]}" in paths.report.read_text()


def test_analyze_refuses_a_folder_given_twice(grid_dir: Path) -> None:
    args = _parser().parse_args(["analyze", str(grid_dir), str(grid_dir / ".." / grid_dir.name)])
    with pytest.raises(ConfigError, match="is given twice; give each folder once"):
        cli.run(args)


def test_analyze_writes_one_report_per_task(
    make_results: Any, make_trial: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sst2 = make_results(
        tmp_path, "cls", "grid", [make_trial("c1"), make_trial("c2", peak=800.0, accuracy=0.8)]
    )
    lm = [
        make_trial(f"l{i}", task="wikitext2", accuracy=None, perplexity=30.0 + i, peak=900.0 - 50 * i)
        for i in range(3)
    ]
    wt2 = make_results(tmp_path, "lm", "grid", lm)
    out = tmp_path / "both"
    assert cli.run(_parser().parse_args(["analyze", str(sst2), str(wt2), "--out", str(out)])) == 0
    assert len(pd.read_csv(out / "sst2" / "pareto.csv")) == 2
    assert len(pd.read_csv(out / "wikitext2" / "pareto.csv")) == 3  # its own front, by perplexity
    assert "perplexity:min" in (out / "wikitext2" / "report.md").read_text()
    assert "2 tasks (sst2, wikitext2)" in capsys.readouterr().out
    assert "(wikitext2/report.md)" in (out / "report.md").read_text()  # the index
    assert sorted(pd.read_csv(out / "pareto.csv")["task"]) == ["sst2"] * 2 + ["wikitext2"] * 3
