"""Process-wide settings the trial package makes at import."""

import os
import subprocess
import sys


def test_onednn_primitive_cache_is_off_unless_the_user_set_it() -> None:
    code = "import trainables, os; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "0"
    env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = "64"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "64"
