"""Keep library chatter (progress bars, deprecation notes, optional-kernel notices) out of trial output."""

from __future__ import annotations

import logging
import os
import sys
import warnings

QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def quiet_libraries() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in ("bitsandbytes", "transformers", "peft", "datasets", "evaluate", "filelock", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    if "transformers" not in sys.modules:
        # transformers reads TRANSFORMERS_VERBOSITY and the hub's progress-bar switch when it is imported; importing
        # it here only to set them costs seconds (`rankbits plan` never needs it)
        return
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
