"""One run per results folder: a second run is refused naming the first; a crashed run leaves no stale lock."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from cli_helpers import env

from search import cli
from search.lock import folder_lock, lock_path
from trainables.errors import ConfigError

pytestmark = pytest.mark.ray  # runs grid / pareto (Ray) in some tests

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from search.lock import folder_lock
    with folder_lock(Path(sys.argv[1])):
        print("held", flush=True)
        time.sleep(120)
    """
)


@pytest.fixture
def holder(tmp_path):
    """A process holding results/g, as a running grid would."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "g")], stdout=subprocess.PIPE, text=True, env=env()
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


TINY_GRID = ["--configs", "B-FP", "--tasks", "sst2", "--model-sst2", "tiny-bert", "--max-steps", "1"]


@pytest.mark.parametrize(
    "command", [["grid", *TINY_GRID], ["pareto", "--model", "tiny-bert", "--max-steps", "1"]]
)
def test_second_run_on_a_folder_in_use_is_refused_naming_the_running_process(
    holder, tmp_path, capsys, command
):
    argv = [command[0], "--results-dir", str(tmp_path), "--name", "g", *command[1:]]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"process {holder.pid} " in err and "another --name" in err
    assert not (tmp_path / "g").exists()  # nothing was written


def test_a_killed_run_leaves_no_stale_lock(holder, tmp_path):
    with pytest.raises(ConfigError, match=str(holder.pid)):
        with folder_lock(tmp_path / "g"):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with folder_lock(tmp_path / "g") as path:  # the kernel released the dead process's lock
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert path == lock_path(tmp_path / "g") and path.parent == tmp_path


def test_the_lock_is_released_when_the_run_ends(tmp_path):
    with folder_lock(tmp_path / "g"):
        pass
    with folder_lock(tmp_path / "g"):
        pass


def test_a_run_refused_before_writing_leaves_no_lock_file_and_no_results_parent(tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["pareto", "--results-dir", str(results), "--name", "p", "--model", "tiny-bert", "--trials", "0"]
    assert cli.main(argv) == 2
    assert "--trials 0" in capsys.readouterr().err
    assert not results.exists()


def test_a_run_that_wrote_its_folder_keeps_the_lock_record(tmp_path):
    with folder_lock(tmp_path / "g") as path:
        (tmp_path / "g").mkdir()
    assert json.loads(path.read_text())["pid"] == os.getpid()
