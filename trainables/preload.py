"""What the template process of forked trials imports before it forks them (`trainables.forked`): the libraries and
the model code a trial uses, so that every forked child starts with them loaded. Importing this module is the work;
it allocates no tensors, so the children's heaps start as a fresh process's would."""

from __future__ import annotations

import importlib

from trainables.precisions import preload_modules
from trainables.quiet import quiet_libraries

MODULES = (
    *preload_modules(),  # what each weight precision needs (bitsandbytes for 4 / 8-bit)
    "datasets",
    "evaluate",
    "peft",
    "transformers",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "transformers.models.bert.modeling_bert",  # MiniLM, tiny-bert
    "transformers.models.gpt2.modeling_gpt2",  # GPT-2 style presets
    "transformers.models.llama.modeling_llama",  # SmolLM2, tiny-llama
    "trainables.adapters",
    "trainables.data",
    "trainables.loop",
    "trainables.memory",
    "trainables.metrics",
    "trainables.models",
    "trainables.quantize",
)


def warm() -> None:
    quiet_libraries()  # before bitsandbytes' import-time notices
    for name in MODULES:
        importlib.import_module(name)


warm()
