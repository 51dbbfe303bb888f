"""Progress lines and the terminal table name trials usefully (no Ray run)."""

from types import SimpleNamespace

from search.results_io import table_text
from search.tuner import ProgressCallback, plan_progress, trial_label
from spaces.grid import grid_config
from trainables.config import TrialConfig
from trainables.records import flatten
from trainables.result import TrialResult, TrialStatus


def search_trial(number: int) -> SimpleNamespace:
    base = TrialConfig.from_dict({"task": {"name": "sst2"}, "model": {"name": "tiny-bert"}})
    cfg = base.with_overrides(
        {
            "quantization.default_bits": 4,
            "quantization.layer_bits": "0:8",
            "adapter.r": 8,
            "adapter.layer_ranks": "1:16",
        }
    )
    return SimpleNamespace(
        trial_id=f"abcde_{number:05d}", config={"cell": {"trial": cfg.to_dict(), "study_trial": number}}
    )


def test_search_trials_are_named_by_study_number_bits_and_ranks():
    assert trial_label(search_trial(7)) == "#7 lora bits 4 (0:8) r 8 (1:16)"
    assert trial_label(search_trial(8)) != trial_label(search_trial(7))


def test_grid_trials_are_named_by_config_task_and_seed():
    cfg = grid_config("B-Q4", "sst2", "tiny-bert", 2, seed=1)
    trial = SimpleNamespace(trial_id="abcde_00003", config={"cell": {"trial": cfg.to_dict()}})
    assert trial_label(trial) == "B-Q4-sst2-s1"


def test_a_resumed_run_counts_only_the_trials_it_trains(capsys):
    callback = ProgressCallback(3)  # as pickled by the first run of 3 trials
    plan_progress(2)  # the resume has 2 left
    callback.setup()
    trial = search_trial(1)
    trial.last_result = {"accuracy": 0.5, "peak_memory_mb": 10.0}
    callback.on_trial_complete(0, [], trial)
    callback.on_trial_complete(0, [], trial)
    out = capsys.readouterr().out
    assert "(1/2)" in out and "(2/2)" in out and "/3)" not in out


def test_terminal_table_shows_trial_id_bits_and_ranks():
    cfg = grid_config("Joint-2", "sst2", "tiny-bert", 2)
    result = TrialResult.of(
        cfg, status=TrialStatus.COMPLETED, bits_per_layer=[8, 4], ranks_per_layer=[4.0, 16.0]
    )
    text = table_text([flatten("abcde_00004", cfg, result)])
    head, row = text.splitlines()
    assert head.split()[0] == "trial" and "bits" in head and "ranks" in head
    assert "abcde_00004" in row and "8,4" in row and "4,16" in row
