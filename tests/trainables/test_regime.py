"""The QLoRA training regime: compute dtype, gradient checkpointing on every architecture, int8 semantics."""

import pytest
import torch
from torch import nn

from trainables import devices, loop
from trainables.config import QuantizationConfig, TrialConfig
from trainables.devices import resolve_compute_dtype
from trainables.errors import ConfigError
from trainables.quantize import convert_linear
from trainables.result import TrialStatus


def _byte_tokenizer_folder(folder, with_cls):
    from trainables.models import byte_tokenizer

    byte_tokenizer(with_cls=with_cls).save_pretrained(folder)


def _tiny_folder(root, kind):
    """A 2-layer random model folder of an architecture the tiny presets do not cover."""
    from transformers import (
        AutoModel,
        DistilBertConfig,
        GPTNeoXConfig,
        RobertaConfig,
    )

    folder = root / kind
    if (folder / "config.json").exists():
        return folder
    common = {"vocab_size": 260, "pad_token_id": 256}
    if kind == "distilbert":
        config = DistilBertConfig(dim=64, hidden_dim=128, n_layers=2, n_heads=2, **common)
    elif kind == "roberta":
        config = RobertaConfig(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            max_position_embeddings=300,
            **common,
        )
    else:
        config = GPTNeoXConfig(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=512,
            bos_token_id=258,
            eos_token_id=259,
            **common,
        )
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    _byte_tokenizer_folder(folder, with_cls=kind != "gpt-neox")
    return folder


ARCHS = [
    ("tiny-bert", "sst2"),
    ("distilbert", "sst2"),
    ("roberta", "sst2"),
    ("tiny-llama", "wikitext2"),
    ("tiny-gpt2", "wikitext2"),
    ("gpt-neox", "wikitext2"),
]


def _cfg(data_dir, model, task, **sections):
    base = {
        "task": {"name": task, "data_dir": str(data_dir)},
        "model": {"name": model},
        "training": {
            "max_steps": 3,
            "batch_size": 4,
            "seq_len": 32,
            "lr": 3e-3,
            "log_every": 1,
            "eval_tokens": 256,
            "eval_examples": 16,
            "compute_dtype": "bfloat16",
            "gradient_checkpointing": True,
        },
    }
    for key, value in sections.items():
        base.setdefault(key, {}).update(value)
    return TrialConfig.from_dict(base)


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.mark.parametrize("model,task", ARCHS)
@pytest.mark.parametrize(
    "quant", [{"default_bits": 4}, {"default_bits": 4, "layer_bits": {0: 8, 1: 16}}], ids=["nf4", "mixed"]
)
def test_every_architecture_trains_with_checkpointing(tiny_data, model_root, model, task, quant):
    name = model if model.startswith("tiny-") else str(_tiny_folder(model_root, model))
    cfg = _cfg(tiny_data, name, task, quantization=quant)
    prepared = loop.prepare(cfg)
    base = prepared.model.base_model.model
    assert getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing
    frozen = {
        n: p.dtype
        for n, p in prepared.model.named_parameters()
        if not p.requires_grad and p.is_floating_point()
    }
    assert frozen and all(d == torch.bfloat16 for d in frozen.values()), {
        n: d for n, d in frozen.items() if d != torch.bfloat16
    }
    trainable = [p.dtype for p in prepared.model.parameters() if p.requires_grad]
    assert trainable and all(d == torch.float32 for d in trainable)
    loop.train(prepared)
    loop.evaluate(prepared)
    result = prepared.result
    assert result.compute_dtype == "bfloat16" and result.gradient_checkpointing is True
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in result.loss_curve)
    assert (result.accuracy if task == "sst2" else result.perplexity) is not None


def test_checkpointing_gives_the_same_gradients(tiny_data):
    """Recomputation changes memory, not the function: one step's adapter gradients match without it."""
    grads = {}
    for gc in (False, True):
        cfg = _cfg(
            tiny_data,
            "tiny-llama",
            "wikitext2",
            quantization={"default_bits": 16},
            training={"compute_dtype": "float32", "gradient_checkpointing": gc},
            adapter={"dropout": 0.0},
        )
        p = loop.prepare(cfg)
        p.model.train()
        batch = next(p.task_data.train.iterate())
        p.model(**batch).loss.backward()
        grads[gc] = torch.cat([q.grad.flatten() for q in p.model.parameters() if q.grad is not None])
    assert torch.allclose(grads[False], grads[True], atol=1e-6)


def test_adalora_reallocates_ranks_with_checkpointing(tiny_data):
    cfg = _cfg(
        tiny_data,
        "tiny-llama",
        "wikitext2",
        quantization={"default_bits": 4},
        adapter={"method": "adalora", "init_r": 8, "target_r": 2, "tinit": 2, "tfinal": 2, "deltaT": 1},
        training={"max_steps": 12, "lr": 1e-2},
    )
    result = loop.fit(cfg)
    assert result.status is TrialStatus.COMPLETED, result.error
    assert result.gradient_checkpointing is True
    assert result.total_rank < result.initial_total_rank


def test_float32_compute_reproduces_the_old_regime(tiny_data):
    cfg = _cfg(
        tiny_data,
        "tiny-bert",
        "sst2",
        quantization={"default_bits": 16},
        training={"compute_dtype": "float32", "gradient_checkpointing": False},
    )
    p = loop.prepare(cfg)
    emb = p.model.base_model.model.bert.embeddings.word_embeddings.weight
    assert emb.dtype == torch.float32
    block_weights = {m.weight.dtype for m in p.model.modules() if type(m).__name__ == "CastLinear"}
    assert block_weights == {torch.bfloat16}  # quantization.half_dtype when the compute dtype is float32


# --- compute dtype resolution ---------------------------------------------------------------------------------


def test_auto_compute_dtype_per_device(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert resolve_compute_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert resolve_compute_dtype("auto", "cpu") == "float32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_compute_dtype("auto", "cuda") == "float16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_compute_dtype("auto", "cuda") == "bfloat16"
    monkeypatch.setattr(devices, "mps_available", lambda: True)
    monkeypatch.setattr(devices, "_mps_runs_bf16", lambda: False)
    assert resolve_compute_dtype("auto", "mps") == "float16"
    monkeypatch.setattr(devices, "_mps_runs_bf16", lambda: True)
    assert resolve_compute_dtype("auto", "mps") == "bfloat16"
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    assert resolve_compute_dtype("auto", "mps") == "bfloat16"  # predicting for a Mac from elsewhere
    assert resolve_compute_dtype("float16", "cpu") == "float16"


def test_cpu_bf16_flag_is_read_from_cpuinfo(monkeypatch, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n")
    real_path = devices.Path
    monkeypatch.setattr(devices, "Path", lambda p: real_path(info) if p == "/proc/cpuinfo" else real_path(p))
    monkeypatch.setattr(devices.sys, "platform", "linux")
    devices.cpu_has_native_bf16.cache_clear()
    try:
        assert devices.cpu_has_native_bf16()
        info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_vnni\n")
        devices.cpu_has_native_bf16.cache_clear()
        assert not devices.cpu_has_native_bf16()
    finally:
        devices.cpu_has_native_bf16.cache_clear()


def test_bad_compute_dtype_is_refused():
    with pytest.raises(ConfigError, match="training.compute_dtype: 'fp8'"):
        TrialConfig.from_dict({"training": {"compute_dtype": "fp8"}})


# --- the scored forward is the trained forward, per precision ------------------------------------------------


@pytest.mark.parametrize("bits", [4, 8, 16, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_train_and_eval_mode_compute_the_same_function(bits, dtype):
    torch.manual_seed(0)
    lin = nn.Linear(128, 64)
    layer = convert_linear(lin, bits, QuantizationConfig(), torch.device("cpu"), dtype)
    x = torch.randn(8, 128, dtype=dtype)
    x[:, 3] *= 40.0  # an outlier feature: LLM.int8() without its outlier threshold would round it coarsely
    layer.train()
    trained = layer(x)
    layer.eval()
    scored = layer(x)
    assert torch.equal(trained, scored)
    if bits == 8:  # weight-only int8: the error is the weight's rounding alone
        ref = nn.functional.linear(x.float(), lin.weight, lin.bias)
        rel = ((trained.float() - ref).norm() / ref.norm()).item()
        assert rel < (0.01 if dtype == torch.float32 else 0.02)


def test_int8_keeps_no_dequantized_weight_for_backward():
    torch.manual_seed(0)
    layer = convert_linear(nn.Linear(512, 512), 8, QuantizationConfig(), torch.device("cpu"), torch.float32)
    x = torch.randn(4, 512, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        layer(x).sum().backward()
    assert not any(t.dtype == torch.float32 and t.shape == (512, 512) for t in saved)
    assert x.grad is not None and torch.isfinite(x.grad).all()
