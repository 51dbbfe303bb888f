"""The fine-tuning trial: config, data, models, quantization, adapters, memory, the training loop, the trainable."""

import os

# oneDNN, torch's CPU backend for bfloat16 matmuls, keeps one primitive per input shape in a cache of 1024. With
# SST-2's padding to the longest sentence of each batch, every new length adds entries, and the process kept ~380 MB
# more after 300 steps (minilm-l6 B-Ada, 1 thread: peak 1304 MB with the cache, 927 MB without, 335 tokens/s both).
# The 16-bit configs measured 13-20% above the memory model while the quantized ones did not. Set before any
# primitive exists (the value is read once); a value the user set is kept. MPS and CUDA do not use oneDNN.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: `from trainables import load_exported`, imported lazily
    if name == "load_exported":
        from trainables.export import load_exported

        return load_exported
    raise AttributeError(f"module 'trainables' has no attribute {name!r}")
