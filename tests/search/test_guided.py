"""Guided Pareto search without Ray: warm-start allocations as points, their order in the queue, the screen's
front and file, and the refusals."""

from __future__ import annotations

import argparse

import optuna
import pandas as pd
import pytest

from search import guided
from search.guided import (
    Candidate,
    GuidedOptions,
    _prefix_bytes,
    budget_fractions,
    point_config,
    screen_frame,
    warm_start_points,
)
from search.resources import DeviceInfo
from search.searcher import build_searcher, make_space
from spaces.pareto import grid_points
from trainables import allocation
from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.memory import ArchSpec, arch_for
from trainables.screen import FIDELITY, ScreenScore
from trainables.sensitivity import BlockSensitivity, SensitivityTable

optuna.logging.set_verbosity(optuna.logging.ERROR)

DEVICE = DeviceInfo("cpu", 64_000.0, 2)
OBJ = {"perplexity": "min", "peak_memory_mb": "min"}


def base_cfg(**training) -> TrialConfig:
    return TrialConfig.from_dict(
        {
            "task": {"name": "wikitext2"},
            "model": {"name": "tiny-llama"},
            "training": {
                "max_steps": 3,
                "seq_len": 32,
                "batch_size": 4,
                "compute_dtype": "float32",
                **training,
            },
        }
    )


def table_of(savings: list[float]) -> SensitivityTable:
    """A made-up table: block i loses `savings[i]` nats of KL going from 8 to 4 bits."""
    blocks = [BlockSensitivity(index=i, kl={4: s + 0.001, 8: 0.001}) for i, s in enumerate(savings)]
    return SensitivityTable("m", "wikitext2", "k", {}, "note", [], blocks, 100, 0.0)


def arch_of(widths: list[int]) -> ArchSpec:
    """Blocks of one 64-wide linear with `widths[i]` outputs (equal widths: equal bytes at every width)."""
    linears = tuple(((("proj", w, 64, False),)) for w in widths)
    return ArchSpec(len(widths), 64, 128, 4, 100, True, linears, 6400, 0)


def test_budget_fractions_spread_from_all_low_to_all_high():
    assert budget_fractions(0) == [] and budget_fractions(1) == [0.5]
    assert budget_fractions(3) == [0.0, 0.5, 1.0]
    assert budget_fractions(5) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_warm_start_points_are_the_allocations_at_each_budget_with_equal_blocks():
    savings = [0.03, 0.9, 0.1, 0.5, 0.02, 0.7]
    table, arch, base = table_of(savings), arch_of([64] * 6), base_cfg()
    order = table.ranking()
    assert order == [1, 5, 3, 2, 0, 4]
    points = warm_start_points(table, arch, base, 4, "cpu")
    assert [w.n_high for w in points] == [0, 2, 4, 6]
    for w in points:
        assert w.exact  # equal block costs: the knapsack's optimum is a prefix of the order
        alloc = allocation.allocate_bits(table, arch, base.quantization, w.budget_bytes, 4, [4, 8])
        assert w.allocation == alloc.choices
        assert w.allocation == [8 if i in order[: w.n_high] else 4 for i in range(6)]
        for space in ("full", "reduced"):  # the enqueued point builds exactly that allocation
            cfg = point_config(w.point, base, 6, space, order)
            assert cfg.quantization.bits_per_layer(6) == w.allocation
            assert cfg.adapter.method == "lora" and cfg.adapter.ranks_per_layer(6) == [guided.WARM_RANK] * 6


def test_a_non_prefix_allocation_maps_to_the_largest_top_k_set_within_its_budget():
    # block 0 is the most sensitive but 4x the bytes: half the way, the knapsack prefers blocks 1-4
    savings = [1.0, 0.9, 0.8, 0.1, 0.1, 0.05]
    table, arch, base = table_of(savings), arch_of([256, 64, 64, 64, 64, 64]), base_cfg()
    order = table.ranking()
    (w,) = warm_start_points(table, arch, base, 1, "cpu")
    assert not w.exact
    assert sorted(i for i, b in enumerate(w.allocation) if b == 8) != sorted(order[: w.n_high])
    lo = allocation.block_weight_bytes(arch, 4, base.quantization, 4)
    hi = allocation.block_weight_bytes(arch, 8, base.quantization, 4)
    fixed = arch.other_bytes(4)
    budget = w.budget_bytes
    assert _prefix_bytes(order, w.n_high, lo, hi, fixed) <= budget + 1
    assert _prefix_bytes(order, w.n_high + 1, lo, hi, fixed) > budget


@pytest.fixture
def patched_table(monkeypatch):
    table = table_of([0.2, 0.6])  # tiny-llama's two blocks: block 1 first
    monkeypatch.setattr(guided, "sensitivity_table", lambda base, quiet=False: table)
    return table


def _plan(options, tmp_path, before=None, base=None, budget_mb=None):
    base = base or base_cfg()
    return guided.plan(
        options,
        base=base,
        num_layers=2,
        arch=arch_for(base),
        device_kind="cpu",
        budget_mb=budget_mb,
        objectives=OBJ,
        methods=["lora", "adalora"],
        root=tmp_path,
        fresh=True,
        seed=0,
        before=before,
    )


def _searcher(points, order, space):
    base = base_cfg()
    return build_searcher(
        space=make_space(
            base=base.to_dict(),
            num_layers=2,
            budget_mb=None,
            device=DEVICE,
            concurrency=1,
            arch=arch_for(base),
            objectives=list(OBJ),
            search_space=space,
            order=order,
        ),
        objectives=OBJ,
        sampler="random",
        seed=0,
        storage=optuna.storages.InMemoryStorage(),
        study_name="s",
        points_to_evaluate=points,
    )


def test_warm_start_points_are_enqueued_after_the_grid_and_before_the_sampler(patched_table, tmp_path):
    grid = grid_points(2)
    plan = _plan(GuidedOptions(warm_start=3), tmp_path, before=grid)
    assert plan.order == [1, 0]
    # budgets all-4 / middle / all-8: all-4-bit LoRA r=8 is the grid's B-Q4, enqueued once
    assert [w.n_high for w in plan.warm] == [1, 2]
    searcher = _searcher([*grid, *plan.points], plan.order, "full")
    configs = [searcher.suggest(f"t{i}") for i in range(len(grid) + 3)]
    trials = [TrialConfig.from_dict(c["trial"]) for c in configs]
    assert [t.config_id for t in trials[:6]] == ["B-FP", "B-Q4", "B-Ada", "Joint-1", "Joint-2", "Joint-3"]
    assert [t.quantization.bits_per_layer(2) for t in trials[6:8]] == [[4, 8], [8, 8]]
    assert [w.allocation for w in plan.warm] == [[4, 8], [8, 8]]


def test_warm_starts_predicted_over_the_memory_budget_are_left_out(patched_table, tmp_path):
    from trainables.predict import predicted_peak_mb

    base = base_cfg()
    every = _plan(GuidedOptions(warm_start=3, space="reduced"), tmp_path)
    peaks = [predicted_peak_mb(point_config(p, base, 2, "reduced", [1, 0]), "cpu") for p in every.points]
    assert peaks == sorted(peaks) and len(set(peaks)) == 3  # more 8-bit blocks, more weight bytes
    budget = (peaks[1] + peaks[2]) / 2
    kept = _plan(GuidedOptions(warm_start=3, space="reduced"), tmp_path, budget_mb=budget)
    assert kept.points == every.points[:2]


def test_reduced_space_search_starts_with_the_allocations(patched_table, tmp_path):
    plan = _plan(GuidedOptions(warm_start=2, space="reduced"), tmp_path)
    assert [w.n_high for w in plan.warm] == [0, 2]
    searcher = _searcher(plan.points, plan.order, "reduced")
    first = [TrialConfig.from_dict(searcher.suggest(f"t{i}")["trial"]) for i in range(3)]
    assert [c.quantization.bits_per_layer(2) for c in first[:2]] == [w.allocation for w in plan.warm]
    assert first[0].config_id == "B-Q4"
    params = searcher._ot_study.trials[2].params  # the sampler's own proposal: reduced parameters only
    assert "placement" not in params and "low_bits" not in params


def test_a_resumed_study_gets_the_order_but_no_points(patched_table, tmp_path):
    base = base_cfg()
    plan = guided.plan(
        GuidedOptions(warm_start=2, space="reduced", screen=2),
        base=base,
        num_layers=2,
        arch=arch_for(base),
        device_kind="cpu",
        budget_mb=None,
        objectives=OBJ,
        methods=["lora"],
        root=tmp_path,
        fresh=False,
        seed=0,
    )
    assert plan.order == [1, 0] and plan.points == [] and plan.screened is None


def _candidate(bits, value, peak):
    score = ScreenScore(FIDELITY, "perplexity", value, 1.0, 4, 1.0, 0.1)
    cfg = base_cfg().with_overrides({"quantization.layer_bits": dict(enumerate(bits))})
    return Candidate({"n_high": bits.count(8)}, cfg, bits, [8, 8], peak, {"weight_memory_mb": 1.0}, score)


def test_screen_frame_keeps_the_candidates_no_other_beats_on_metric_and_predicted_peak():
    cands = [
        _candidate([4, 4], 40.0, 100.0),  # cheapest
        _candidate([8, 4], 38.0, 110.0),  # better, dearer
        _candidate([4, 8], 39.0, 115.0),  # dominated by [8, 4]
        _candidate([8, 8], 37.0, 120.0),  # best, dearest
    ]
    frame = screen_frame(cands, OBJ)
    assert list(frame["non_dominated"]) == [True, True, False, True]
    assert set(frame["fidelity"]) == {FIDELITY}
    assert list(frame["bits_per_layer"]) == ["4 4", "8 4", "4 8", "8 8"]
    # an objective the screen cannot judge (time) is left out rather than guessed
    with_time = screen_frame(cands, {**OBJ, "train_time_s": "min"})
    assert list(with_time["non_dominated"]) == [True, True, False, True]


def test_screen_on_tiny_llama_writes_screen_csv_and_enqueues_the_survivors(
    patched_table, tiny_data, tmp_path
):
    base = base_cfg(device="cpu").with_overrides({"task.data_dir": str(tiny_data)})
    plan = _plan(
        GuidedOptions(warm_start=1, space="reduced", screen=2, screen_examples=2), tmp_path, base=base
    )
    frame = pd.read_csv(tmp_path / "screen.csv")
    assert len(frame) == 2 and set(frame["fidelity"]) == {FIDELITY}
    assert (frame["eval_rows"] == 2).all() and (frame["perplexity"] > 1).all()
    kept = [p for p, keep in zip(frame["params"], frame["non_dominated"]) if keep]
    assert len(kept) >= 1
    assert len(plan.points) == 1 + len(kept)  # the warm start first, then the survivors
    assert plan.points[0] == plan.warm[0].point
    # no screened candidate repeats the warm-start point (it is enqueued anyway)
    import json

    def key(point):
        return guided._key(point_config(point, base, 2, "reduced", plan.order))

    assert all(key(json.loads(p)) != key(plan.warm[0].point) for p in frame["params"])


def _args(**over):
    values = {"warm_start": 0, "space": "full", "screen": 0, "screen_examples": 16, **over}
    return argparse.Namespace(**values)


def test_options_and_refusals_are_one_line():
    assert guided.options_of(_args(warm_start=2)).needs_order
    assert guided.options_of(_args(space="reduced")).needs_order
    assert not guided.options_of(_args()).needs_order
    for bad, match in (
        (_args(warm_start=-1), "--warm-start -1"),
        (_args(space="tiny"), "--space 'tiny'"),
        (_args(screen=-2), "--screen -2"),
        (_args(screen_examples=0), "--screen-examples 0"),
    ):
        with pytest.raises(ConfigError, match=match):
            guided.options_of(bad)
    with pytest.raises(ConfigError, match="accuracy is meaningless before training") as info:
        guided.check(GuidedOptions(screen=4), "sst2", enqueue_grid=False)
    assert "\n" not in str(info.value)
    guided.check(GuidedOptions(screen=4), "wikitext2", enqueue_grid=False)
    with pytest.raises(ConfigError, match="--enqueue-grid needs --space full"):
        guided.check(GuidedOptions(space="reduced"), "wikitext2", enqueue_grid=True)


def _parsed(argv):
    from search import cli

    args = cli.build_parser(argv).parse_args(argv)
    args.given = cli.given_flags(argv)
    return args


def test_resume_restores_the_guided_flags_and_old_folders_keep_the_defaults(tmp_path):
    import json

    from search import grid_cmd, pareto_cmd, results_io
    from search.common import adopt_spec

    recorded = {"warm_start": 4, "space": "reduced", "screen": 8, "screen_examples": 12}
    spec = {"kind": "pareto", "task": "wikitext2", "model": "tiny-llama", "trials": 6, "guided": recorded}
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "experiment.json").write_text(json.dumps(spec))
    args = _parsed(["pareto", "--results-dir", str(tmp_path), "--name", "p", "--resume"])
    adopt_spec(args, grid_cmd.root_of(args), pareto_cmd.PARETO_FLAGS)
    assert guided.options_of(args).to_dict() == recorded
    bad = _parsed(["pareto", "--results-dir", str(tmp_path), "--name", "p", "--resume", "--space", "full"])
    with pytest.raises(ConfigError, match="--space 'full'"):
        adopt_spec(bad, grid_cmd.root_of(bad), pareto_cmd.PARETO_FLAGS)
    # a folder written before the guided flags existed resumes with the defaults (the full space, unchanged)
    old = {k: v for k, v in spec.items() if k != "guided"}
    (tmp_path / "p" / "experiment.json").write_text(json.dumps(old))
    args = _parsed(["pareto", "--results-dir", str(tmp_path), "--name", "p", "--resume"])
    adopt_spec(args, grid_cmd.root_of(args), pareto_cmd.PARETO_FLAGS)
    assert guided.options_of(args) == GuidedOptions()
    assert "guided" in results_io.ADDED_LATER
