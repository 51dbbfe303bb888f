"""`trainables.arch_config` reads the same ArchSpec from a config.json as the meta-device reference builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers as tf

from trainables.arch_config import arch_from_config, config_view
from trainables.config import ModelConfig
from trainables.memory import arch_from_model
from trainables.models import load_config, meta_model, resolve
from trainables.tasks import Head

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "llama": tf.LlamaConfig(
        vocab_size=260,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
    ),
    "llama-bias-headdim": tf.LlamaConfig(
        vocab_size=260,
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        head_dim=24,
        intermediate_size=96,
        attention_bias=True,
        mlp_bias=True,
        tie_word_embeddings=True,
    ),
    "gpt2": tf.GPT2Config(vocab_size=260, n_embd=64, n_layer=2, n_head=2, n_positions=512),
    "gpt2-inner": tf.GPT2Config(vocab_size=260, n_embd=64, n_layer=2, n_head=2, n_inner=192, attn_pdrop=0.0),
    "gpt_neox": tf.GPTNeoXConfig(
        vocab_size=260, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128
    ),
    "gpt_neox-rotary-half": tf.GPTNeoXConfig(
        vocab_size=260,
        hidden_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        tie_word_embeddings=True,
    ),
    "bert": tf.BertConfig(
        vocab_size=260, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
    ),
    "distilbert": tf.DistilBertConfig(vocab_size=260, dim=64, n_layers=2, n_heads=2, hidden_dim=128),
    "roberta": tf.RobertaConfig(
        vocab_size=260, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
    ),
}
CAUSAL = {"llama", "llama-bias-headdim", "gpt2", "gpt2-inner", "gpt_neox", "gpt_neox-rotary-half"}
HEADS = [Head("causal_lm"), Head("classification", 2), Head("classification", 5)]


def _cases() -> list[tuple[str, bool, Head]]:
    return [
        (name, minimal, head)
        for name in TINY
        for minimal in (True, False)
        for head in HEADS
        if head.causal is False or name in CAUSAL
    ]


def _reference(folder: Path, head: Head):
    return arch_from_model(meta_model(ModelConfig(name=str(folder)), head), causal=head.causal)


@pytest.mark.parametrize(("name", "minimal", "head"), _cases())
def test_same_archspec_as_meta_model(tmp_path: Path, name: str, minimal: bool, head: Head) -> None:
    config = TINY[name]
    if minimal:
        config.save_pretrained(tmp_path)  # transformers writes only what differs from its defaults
    else:
        (tmp_path / "config.json").write_text(config.to_json_string(use_diff=False))
    raw = json.loads((tmp_path / "config.json").read_text())
    fast = arch_from_config(raw, head.causal, head.num_labels)
    assert fast is not None
    assert fast == _reference(tmp_path, head)


@pytest.mark.parametrize(
    "folder", ["benchmarks/configs/llama-2-7b-shape", "benchmarks/configs/llama-3.2-1b-shape", "minilm-l6"]
)
def test_same_archspec_on_real_configs(folder: str) -> None:
    cfg = ModelConfig(name=folder if folder == "minilm-l6" else str(ROOT / folder))
    if folder == "minilm-l6":
        if resolve(cfg).kind != "local":
            pytest.skip("minilm-l6 is not installed (make models)")
    raw = json.loads((Path(resolve(cfg).source) / "config.json").read_text())
    for head in (Head("causal_lm"), Head("classification", 2)):
        if raw["model_type"] == "bert" and head.causal:
            continue
        expected = arch_from_model(meta_model(cfg, head), causal=head.causal)
        assert arch_from_config(raw, head.causal, head.num_labels) == expected


def test_config_view_bounds_like_the_transformers_config(tmp_path: Path) -> None:
    for name in ("llama", "gpt2", "bert", "roberta", "distilbert"):
        TINY[name].save_pretrained(tmp_path / name)
        raw = json.loads((tmp_path / name / "config.json").read_text())
        view, real = config_view(raw), load_config(ModelConfig(name=str(tmp_path / name)))
        from trainables.checks import position_limit

        assert position_limit(view) == position_limit(real), name
        assert view.num_labels == real.num_labels


def test_unread_settings_fall_back_to_the_meta_model() -> None:
    assert arch_from_config({"model_type": "mistral", "hidden_size": 64}, True, 0) is None
    gpt2 = json.loads(tf.GPT2Config(add_cross_attention=True).to_json_string())
    assert arch_from_config(gpt2, True, 0) is None
    bert = json.loads(tf.BertConfig().to_json_string())
    assert arch_from_config(bert, True, 0) is None  # a BERT causal LM is not read here
    bert["position_embedding_type"] = "relative_key"
    assert arch_from_config(bert, False, 2) is None
    neox = json.loads(tf.GPTNeoXConfig().to_json_string())
    neox["rotary_emb_base_pct"] = 0.5  # a setting no reader knows: not guessed
    assert arch_from_config(neox, True, 0) is None
