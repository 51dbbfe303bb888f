import pytest
import torch
from torch import nn

from trainables import models
from trainables.config import ModelConfig, QuantizationConfig
from trainables.quantize import HalfLinear, convert_linear, formula_bytes, layer_bytes, quantize_model

CPU = torch.device("cpu")


@pytest.mark.parametrize("bits", [4, 8, 16, 32])
@pytest.mark.parametrize("shape,bias", [((128, 64), False), ((96, 320), True), ((1536, 384), False)])
def test_layer_bytes_match_the_formula_exactly(bits, shape, bias):
    torch.manual_seed(0)
    lin = nn.Linear(shape[1], shape[0], bias=bias)
    q = convert_linear(lin, bits, QuantizationConfig(), CPU)
    assert layer_bytes(q) == formula_bytes(bits, shape[0], shape[1], bias=bias)


def test_nf4_double_quant_is_about_4_13_bits_per_weight():
    lin = nn.Linear(2048, 2048, bias=False)
    _, scaling = layer_bytes(convert_linear(lin, 4, QuantizationConfig(), CPU))
    assert 8 * scaling / lin.weight.numel() == pytest.approx(4.127, abs=0.001)
    _, plain = layer_bytes(convert_linear(lin, 4, QuantizationConfig(double_quant=False), CPU))
    assert 8 * plain / lin.weight.numel() == pytest.approx(4.5, abs=0.001)


@pytest.mark.parametrize("bits,tol", [(32, 1e-6), (16, 0.02), (8, 0.05), (4, 0.3)])
def test_converted_layers_compute_close_to_the_original(bits, tol):
    torch.manual_seed(0)
    lin = nn.Linear(256, 128)
    x = torch.randn(4, 256)
    ref = lin(x)
    q = convert_linear(lin, bits, QuantizationConfig(), CPU)
    q.eval()
    out = q(x)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max().item() < tol * ref.abs().max().item() + 1e-4


def test_4bit_layer_keeps_its_layout_in_eval_mode():
    q = convert_linear(nn.Linear(64, 64), 4, QuantizationConfig(), CPU)
    shape = tuple(q.weight.shape)
    q.eval()
    q(torch.randn(2, 64))
    assert tuple(q.weight.shape) == shape and q.support_avx512bf16_for_cpu is False


def _loaded(name, task="sst2"):
    mc = ModelConfig(name=name)
    tok = models.load_tokenizer(mc)
    model = models.load_model(mc, task, tok)
    prefix, blocks = models.find_blocks(model)
    return model, prefix, blocks


def test_per_layer_map_lands_on_the_right_modules():
    import bitsandbytes as bnb

    model, prefix, blocks = _loaded("tiny-bert")
    report = quantize_model(model, blocks, QuantizationConfig(default_bits=4, layer_bits={1: 8}), CPU)
    assert prefix == "bert.encoder.layer" and report.bits_per_layer == [4, 8]
    kinds0 = {type(m) for m in blocks[0].modules() if isinstance(m, nn.Linear)}
    kinds1 = {type(m) for m in blocks[1].modules() if isinstance(m, nn.Linear)}
    from trainables.int8 import Int8Linear

    assert kinds0 == {bnb.nn.Linear4bit} and kinds1 == {Int8Linear}
    assert issubclass(Int8Linear, bnb.nn.Linear8bitLt)  # PEFT picks its 8-bit LoRA layer by this class
    assert type(model.classifier) is nn.Linear and model.classifier.weight.dtype == torch.float32
    assert model.bert.embeddings.word_embeddings.weight.dtype == torch.float32
    assert model.is_loaded_in_4bit and model.is_loaded_in_8bit


def test_total_weight_bytes_count_every_tensor_once():
    model, _, blocks = _loaded("tiny-llama", "wikitext2")
    before = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    report = quantize_model(model, blocks, QuantizationConfig(default_bits=16), CPU)
    block_linear = sum(layer.n_weights for layer in report.layers)
    assert report.weight_bytes == before - block_linear * 2  # 16-bit halves exactly the block linears
    assert all(isinstance(m, HalfLinear) for b in blocks for m in b.modules() if isinstance(m, nn.Linear))


def test_gpt2_conv1d_layers_become_quantized_linears():
    import bitsandbytes as bnb
    from transformers.pytorch_utils import Conv1D

    ids = torch.randint(0, 256, (2, 16))
    model, prefix, blocks = _loaded("tiny-gpt2", "wikitext2")
    model.eval()  # no dropout
    ref = model(input_ids=ids).logits
    quantize_model(model, blocks, QuantizationConfig(default_bits=32), CPU)  # Conv1D -> Linear, exact
    assert torch.allclose(model(input_ids=ids).logits, ref, atol=1e-5)
    assert not any(isinstance(m, Conv1D) for m in blocks.modules())

    model, prefix, blocks = _loaded("tiny-gpt2", "wikitext2")
    model.eval()
    quantize_model(model, blocks, QuantizationConfig(default_bits=8), CPU)
    assert prefix == "transformer.h" and isinstance(blocks[0].attn.c_attn, bnb.nn.Linear8bitLt)
    out = model(input_ids=ids).logits
    assert (out - ref).norm() / ref.norm() < 0.1
