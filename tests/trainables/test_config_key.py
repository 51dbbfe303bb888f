"""`config_key`: a configuration's identity without its seed (issue 15 item 5: analysis keeps seeds apart from
configs). The same settings on another seed, under another grid label or with other harness-only fields share the
key; any setting that changes what is trained changes it. Every trial's row carries it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from analysis import load_results
from search import results_io
from spaces.grid import grid_config
from trainables.config import NOT_IN_CONFIG_KEY, TrialConfig, config_key
from trainables.records import flatten
from trainables.result import TrialResult


def base(**training: object) -> TrialConfig:
    return TrialConfig.from_dict(
        {
            "task": {"name": "sst2"},
            "model": {"name": "tiny-bert"},
            "quantization": {"default_bits": 4, "layer_bits": {0: 8}},
            "adapter": {"r": 4, "layer_ranks": {1: 8}},
            "training": {"max_steps": 5, **training},
        }
    )


def test_same_settings_on_another_seed_share_the_key() -> None:
    key = config_key(base(seed=0))
    assert len(key) == 12 and int(key, 16) >= 0
    assert config_key(base(seed=1)) == key
    assert config_key(base(seed=0).with_overrides({"training.seed": 7})) == key


def test_every_trained_setting_changes_the_key() -> None:
    key = config_key(base())
    changed = [
        base().with_overrides({"quantization.layer_bits": {0: 4, 1: 8}}),
        base().with_overrides({"quantization.default_bits": 8}),
        base().with_overrides({"adapter.layer_ranks": {1: 4}}),
        base().with_overrides({"adapter.r": 8}),
        base(max_steps=6),
        base(lr=1e-3),
        base().with_overrides({"model.name": "tiny-llama", "task.name": "wikitext2"}),
        base().with_overrides({"training.compute_dtype": "float32"}),
    ]
    keys = [config_key(c) for c in changed]
    assert key not in keys and len(set(keys)) == len(keys)


def test_grid_label_and_harness_fields_do_not_matter() -> None:
    key = config_key(base())
    labelled = TrialConfig.from_dict({**base().to_dict(), "config_id": "Joint-2"})
    assert config_key(labelled) == key
    harness = base(threads=3, memory_fraction=0.5, log_every=1, eval_every=2).with_overrides(
        {"model.cache_dir": "/tmp/x", "task.data_dir": "/data/elsewhere"}
    )
    assert config_key(harness) == key
    assert set(NOT_IN_CONFIG_KEY) >= {"config_id", "training.seed", "training.threads", "task.data_dir"}


def test_key_survives_a_json_round_trip_and_is_the_same_for_a_grid_config_on_any_seed() -> None:
    cfg = base(seed=3)
    again = TrialConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))  # layer maps come back with str keys
    assert config_key(again) == config_key(cfg)
    a, b = (
        grid_config("Joint-2", "sst2", "tiny-bert", 2, seed=0),
        grid_config("Joint-2", "sst2", "tiny-bert", 2, seed=1),
    )
    assert (
        config_key(a) == config_key(b) != config_key(grid_config("Joint-1", "sst2", "tiny-bert", 2, seed=0))
    )


def test_every_row_carries_the_key_and_old_summaries_get_it_on_load(tmp_path: Path) -> None:
    cfgs = [base(seed=0), base(seed=1), base(seed=0).with_overrides({"adapter.r": 2})]
    entries = [
        {
            "trial_id": f"abcde_0000{i}",
            "config": c.to_dict(),
            "result": TrialResult.of(c, accuracy=0.7).to_dict(),
        }
        for i, c in enumerate(cfgs)
    ]
    rows = [flatten(e["trial_id"], c, TrialResult.from_dict(e["result"])) for e, c in zip(entries, cfgs)]
    assert [r["config_key"] for r in rows] == [config_key(c) for c in cfgs]
    root = tmp_path / "old"
    root.mkdir()
    old_header = [c for c in rows[0] if c != "config_key"]  # a summary written before the column existed
    with (root / "experiment_summary.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=old_header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (root / "all_results.json").write_text(json.dumps(entries))
    df = load_results(root)
    assert list(df["config_key"]) == [config_key(c) for c in cfgs]
    assert df["config_key"].iloc[0] == df["config_key"].iloc[1] != df["config_key"].iloc[2]
    assert "config_key" in results_io.csv_text(rows).splitlines()[0].split(",")
