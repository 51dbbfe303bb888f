"""`rankbits sensitivity`, `rankbits allocate` and `grid --critical sensitivity` on tiny models."""

from __future__ import annotations

import json

import pytest

from search import sensitivity_cmd
from search.cli import build_parser, main
from spaces.grid import critical_layers, grid_config

pytestmark = pytest.mark.ray  # runs grid / pareto (Ray) in some tests

SMALL = ["--examples", "4", "--seq-len", "32", "--grad-examples", "2"]


def test_bad_model_is_one_line_exit_2(capsys):
    assert main(["sensitivity", "--model", "/no/such/model-folder", "--task", "wikitext2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rankbits sensitivity: error: model '/no/such/model-folder'") and "\n" not in err
    assert main(["allocate", "--model", "tiny-llama", "--task", "wikitext2"]) == 2
    assert "give --weight-budget-mb" in capsys.readouterr().err
    assert main(["sensitivity", "--model", "tiny-llama", "--task", "mnli"]) == 2
    assert "--task 'mnli': unknown task" in capsys.readouterr().err
    assert main(["sensitivity", "--model", "tiny-llama", "--bits", "4,x"]) == 2
    assert "--bits '4,x'" in capsys.readouterr().err


def test_table_json_plot_and_cache(tiny_data, tmp_path, capsys):
    args = [
        "sensitivity",
        "--model",
        "tiny-llama",
        "--task",
        "wikitext2",
        "--data-dir",
        str(tiny_data),
        *SMALL,
    ]
    plot = tmp_path / "sens.png"
    assert main([*args, "--json", "--plot", str(plot), "--no-cache"]) == 0
    out = capsys.readouterr()
    data = json.loads(out.out)
    assert [b["index"] for b in data["blocks"]] == [0, 1] and data["kinds"] == ["attention", "mlp"]
    assert all(b["kl"]["4"] > b["kl"]["8"] > 0 for b in data["blocks"])
    assert "measured in" in out.err and plot.stat().st_size > 1000
    assert main(args) == 0
    out = capsys.readouterr()
    assert "from the cache" in out.err
    assert "most sensitive first:" in out.out and "attention_kl4" in out.out


def test_allocate_prints_set_lines_and_refuses_too_small_budgets(tiny_data, capsys):
    base = ["allocate", "--model", "tiny-llama", "--task", "wikitext2", "--data-dir", str(tiny_data), *SMALL]
    assert main([*base, "--weight-budget-mb", "1000", "--param-budget", "grid", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "--set quantization.layer_bits=0:8,1:8" in out  # a large budget: everything at 8 bits
    assert "--set adapter.method=lora --set adapter.layer_ranks=" in out
    assert main([*base, "--weight-budget-mb", "0.01", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "rankbits allocate: error: --weight-budget-mb 0.01: below the smallest this model takes"
    )
    assert "\n" not in err  # refused before any measuring


def test_critical_sensitivity_places_the_8_bit_blocks_on_the_ranking():
    ranking = [3, 2, 4, 1, 0, 5]
    rule = grid_config("Joint-2", "sst2", "minilm-l6", 6)
    measured = grid_config("Joint-3", "sst2", "minilm-l6", 6, ranking=ranking)
    assert rule.quantization.layer_bits == {0: 8, 5: 8} and rule.quantization.critical == "rule"
    assert (
        measured.quantization.layer_bits == {2: 8, 3: 8} and measured.quantization.critical == "sensitivity"
    )
    assert len(critical_layers(30, list(range(29, -1, -1)))) == len(critical_layers(30)) == 6
    with pytest.raises(Exception, match="not an order of the model's 6 blocks"):
        critical_layers(6, [0, 1])


def test_grid_cells_use_the_measured_order(monkeypatch, tiny_data):
    from search.grid_cmd import build_cells

    calls = []

    def fake_ranking(cfg):
        calls.append(cfg.config_id)
        return [4, 1, 2, 3, 0, 5]

    monkeypatch.setattr(sensitivity_cmd, "sensitivity_ranking", fake_ranking)
    argv = ["grid", "--tasks", "sst2", "--configs", "B-Q4,Joint-2,Joint-3", "--data-dir", str(tiny_data)]
    for extra in (["--critical", "sensitivity"], ["--set", "quantization.critical=sensitivity"]):
        calls.clear()
        cells = build_cells(build_parser([*argv, *extra]).parse_args([*argv, *extra]))
        bits = {c.config_id: c.quantization.layer_bits for c in cells}
        assert bits == {"B-Q4": {}, "Joint-2": {1: 8, 4: 8}, "Joint-3": {1: 8, 4: 8}}
        assert calls == ["Joint-2", "Joint-3"]
    cells = build_cells(build_parser(argv).parse_args(argv))
    assert {c.config_id: c.quantization.layer_bits for c in cells}["Joint-2"] == {0: 8, 5: 8}


def test_grid_critical_sensitivity_measures_end_to_end(tiny_data):
    """Without a cached table the grid measures it (tiny-llama: 2 blocks, both critical by count)."""
    from search.grid_cmd import build_cells

    sensitivity_cmd._RANKINGS.clear()
    argv = [
        "grid",
        "--tasks",
        "wikitext2",
        "--model-wikitext2",
        "tiny-llama",
        "--configs",
        "Joint-2",
        "--critical",
        "sensitivity",
        "--data-dir",
        str(tiny_data),
    ]
    (cell,) = build_cells(build_parser(argv).parse_args(argv))
    assert cell.quantization.critical == "sensitivity" and cell.quantization.layer_bits == {0: 8, 1: 8}
    assert len(sensitivity_cmd._RANKINGS) == 1


def test_run_places_joint_3_by_the_measured_order(monkeypatch, tiny_data):
    from search.run_cmd import build_config

    monkeypatch.setattr(sensitivity_cmd, "sensitivity_ranking", lambda cfg: [5, 2, 0, 1, 3, 4])
    argv = [
        "run",
        "--config",
        "Joint-3",
        "--task",
        "sst2",
        "--model",
        "minilm-l6",
        "--data-dir",
        str(tiny_data),
    ]
    argv += ["--set", "quantization.critical=sensitivity"]
    cfg = build_config(build_parser(argv).parse_args(argv))
    assert cfg.quantization.layer_bits == {2: 8, 5: 8} and cfg.quantization.critical == "sensitivity"
