"""fit() in a child forked from the pre-imported template: same result, progress relayed, deaths reported."""

from __future__ import annotations

import multiprocessing
import signal

import pytest
from test_loop import tiny_cfg  # tests/trainables is on sys.path (pytest rootdir mode)

from trainables import forked, loop
from trainables.errors import TrialStopped
from trainables.result import TrialStatus

pytestmark = pytest.mark.skipif(not forked.available(), reason="needs fork (Linux)")


def test_forked_fit_gives_the_in_process_result_and_relays_progress(tiny_data, tmp_path):
    cfg = tiny_cfg(tiny_data, quantization={"default_bits": 4, "layer_bits": {0: 8}})
    rows: list[dict] = []
    result = forked.fit_forked(cfg, progress=rows.append, adapter_dir=tmp_path / "adapter")
    inline_rows: list[dict] = []
    inline = loop.fit(cfg, progress=inline_rows.append)
    assert result.status is TrialStatus.COMPLETED, result.error
    assert result.loss_curve == inline.loss_curve and result.accuracy == inline.accuracy
    assert result.weight_memory_mb == inline.weight_memory_mb and result.memory_measure == "cpu-rss-hwm"
    assert result.peak_memory_mb is not None and result.peak_memory_mb > 0

    def timeless(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]

    assert timeless(rows) == timeless(inline_rows) and len(rows) >= 3  # every progress row came through
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()  # written by the child
    assert not multiprocessing.active_children()


def test_a_child_killed_mid_trial_comes_back_as_a_failed_result_naming_the_signal(tiny_data):
    def kill_the_child(info: dict) -> None:
        for child in multiprocessing.active_children():
            if child.name.startswith("rankbits-trial"):
                child.kill()

    result = forked.fit_forked(tiny_cfg(tiny_data, training={"max_steps": 40}), progress=kill_the_child)
    assert result.status is TrialStatus.FAILED
    assert result.error.startswith("trial process killed by SIGKILL") and "out-of-memory" in result.error
    assert result.task == "sst2" and result.metric_name == "accuracy"


def test_a_stopped_trial_kills_its_child(tiny_data):
    class Stop(Exception):
        pass

    def stop(info: dict) -> None:  # what Tune does to a trial a scheduler stops: the report call raises
        raise Stop

    with pytest.raises(Stop):
        forked.fit_forked(tiny_cfg(tiny_data, training={"max_steps": 200}), progress=stop)
    assert not multiprocessing.active_children()


def test_death_reasons_are_one_line():
    assert forked.death_reason(-int(signal.SIGSEGV)) == "trial process killed by SIGSEGV"
    assert "exited with code 3" in forked.death_reason(3)


def test_a_stop_request_kills_the_child_between_reports(tiny_data):
    rows: list[dict] = []

    with pytest.raises(TrialStopped, match="stopped by the scheduler"):
        forked.fit_forked(
            tiny_cfg(tiny_data, training={"max_steps": 400, "log_every": 100}),
            progress=rows.append,
            stop_requested=lambda: True,  # asked at once: no progress row needs to arrive first
        )
    assert not rows and not multiprocessing.active_children()
