"""Shared CLI helpers: atomic result files."""

import os
import stat

from search.common import atomic_write_json


def test_result_files_get_the_mode_of_a_plain_open_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "all_results.json", [{"a": 1}])
        with open(tmp_path / "plain.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "all_results.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644
