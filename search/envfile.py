"""`.env` reading (WANDB_API_KEY, HF_TOKEN, ...) and redaction, so tokens never reach logs or results files."""

from __future__ import annotations

import os
from pathlib import Path

from trainables.results_folder import SECRET_KEYS as SECRET_KEYS  # redaction lives with the results writer
from trainables.results_folder import redact as redact
from trainables.results_folder import secret_values as secret_values


def load_env(path: str | Path = ".env") -> list[str]:
    """Read KEY=VALUE lines into os.environ without overriding what is already set. Returns the keys read."""
    file = Path(os.environ.get("RANKBITS_ENV_FILE", path))
    if not file.is_file():
        return []
    keys = []
    for line in file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip().strip('"').strip("'")
        if key and key not in os.environ:
            os.environ[key] = value
        keys.append(key)
    return keys
