"""The memory model's `ArchSpec` read straight from a `config.json`, for the families whose block shapes follow from
their config: Llama, GPT-2, GPT-NeoX, BERT, DistilBERT, RoBERTa.

Why: building the module tree on the meta device (`memory.arch_from_model(models.meta_model(...))`, the reference)
imports transformers' modeling code, about 2-3 s of a `rankbits plan` on this machine; reading the JSON costs
milliseconds. The meta-device path stays the reference: `tests/trainables/test_arch_config.py` checks that both give
the same ArchSpec for every family here, from a full and from a minimal (defaults left out) config.json. The
defaults below are transformers' own (its `*Config` classes, 5.x); a config with a setting this file does not model
(cross-attention, partial rotary dimensions, a model type not listed) returns None and the caller builds the meta
model instead. Which buffers a model registers depends on the transformers version, so `FAMILIES_CHECKED_WITH`
names the major version the layouts were checked against; another one falls back to the meta model too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

FAMILIES_CHECKED_WITH = "5."
"""transformers major version whose module layouts (parameters, buffers) the readers below reproduce."""

Linear = tuple[str, int, int, bool]
"""(name inside the block, out_features, in_features, has_bias), as `ArchSpec.block_linears` holds them."""

DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": None,
        "head_dim": None,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "rope_theta": 10000.0,
    },
    "gpt2": {
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "n_inner": None,
        "attn_pdrop": 0.1,
        "tie_word_embeddings": True,
        "add_cross_attention": False,
    },
    "gpt_neox": {
        "vocab_size": 50432,
        "hidden_size": 6144,
        "num_hidden_layers": 44,
        "num_attention_heads": 64,
        "intermediate_size": 24576,
        "rotary_pct": 0.25,
        "max_position_embeddings": 2048,
        "attention_dropout": 0.0,
        "attention_bias": True,
        "tie_word_embeddings": False,
        "rope_theta": 10000.0,
    },
    "bert": {
        "vocab_size": 30522,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "attention_probs_dropout_prob": 0.1,
        "is_decoder": False,
        "add_cross_attention": False,
    },
    "roberta": {
        "vocab_size": 50265,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "attention_probs_dropout_prob": 0.1,
        "pad_token_id": 1,
        "is_decoder": False,
        "add_cross_attention": False,
    },
    "distilbert": {
        "vocab_size": 30522,
        "max_position_embeddings": 512,
        "n_layers": 6,
        "n_heads": 12,
        "dim": 768,
        "hidden_dim": 3072,
        "attention_dropout": 0.1,
    },
}
"""Per model type: the fields the shapes depend on and transformers' default for each (5.x `*Config` classes)."""


def _rotary_fraction(c: dict[str, Any], default: float) -> float:
    """The share of each head's dimensions that rotary embeddings turn (transformers 5 keeps it in
    `rope_parameters`, older files at the top level)."""
    params = c.get("rope_parameters") or c.get("rope_scaling") or {}
    value = params.get("partial_rotary_factor") if isinstance(params, dict) else None
    return float(value if value is not None else c.get("partial_rotary_factor", default))


def _llama(c: dict[str, Any], causal: bool, num_labels: int) -> tuple[Any, ...]:
    h, i, heads = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"]
    kv = c["num_key_value_heads"] or heads
    head_dim = c["head_dim"] or h // heads
    ab, mb = bool(c["attention_bias"]), bool(c["mlp_bias"])
    block: tuple[Linear, ...] = (
        ("self_attn.q_proj", heads * head_dim, h, ab),
        ("self_attn.k_proj", kv * head_dim, h, ab),
        ("self_attn.v_proj", kv * head_dim, h, ab),
        ("self_attn.o_proj", h, heads * head_dim, ab),
        ("mlp.gate_proj", i, h, mb),
        ("mlp.up_proj", i, h, mb),
        ("mlp.down_proj", h, i, mb),
    )
    v = c["vocab_size"]
    other = v * h + c["num_hidden_layers"] * 2 * h + h  # embeddings, two RMSNorms per block, final norm
    head = 0
    if causal:
        other += 0 if c["tie_word_embeddings"] else v * h
    else:
        head = num_labels * h  # score, no bias
        other += head
    rotary = int(head_dim * _rotary_fraction(c, 1.0))
    fixed = 2 * ((rotary + 1) // 2) * 4  # rotary inv_freq and original_inv_freq, float32
    return block, other, fixed, head, h, i, heads


def _gpt2(c: dict[str, Any], causal: bool, num_labels: int) -> tuple[Any, ...] | None:
    if c["add_cross_attention"]:  # cross-attention layers in every block: not modelled here
        return None
    h, heads = c["n_embd"], c["n_head"]
    inner = c["n_inner"] or 4 * h
    block: tuple[Linear, ...] = (
        ("attn.c_attn", 3 * h, h, True),
        ("attn.c_proj", h, h, True),
        ("mlp.c_fc", inner, h, True),
        ("mlp.c_proj", h, inner, True),
    )
    v = c["vocab_size"]
    other = v * h + c["n_positions"] * h + c["n_layer"] * 4 * h + 2 * h  # wte, wpe, ln_1 / ln_2, ln_f
    head = 0
    if causal:
        other += 0 if c["tie_word_embeddings"] else v * h
    else:
        head = num_labels * h
        other += head
    return block, other, 0, head, h, inner, heads


def _gpt_neox(c: dict[str, Any], causal: bool, num_labels: int) -> tuple[Any, ...]:
    h, i, heads = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"]
    ab = bool(c["attention_bias"])
    block: tuple[Linear, ...] = (
        ("attention.query_key_value", 3 * h, h, ab),
        ("attention.dense", h, h, ab),
        ("mlp.dense_h_to_4h", i, h, True),
        ("mlp.dense_4h_to_h", h, i, True),
    )
    v = c["vocab_size"]
    other = v * h + c["num_hidden_layers"] * 4 * h + 2 * h  # embed_in, two LayerNorms per block, final norm
    head = 0
    if causal:
        other += 0 if c["tie_word_embeddings"] else v * h
    else:
        head = num_labels * h
        other += head
    rotary = int((h // heads) * _rotary_fraction(c, c["rotary_pct"]))
    fixed = 2 * ((rotary + 1) // 2) * 4  # inv_freq and original_inv_freq, float32
    return block, other, fixed, head, h, i, heads


def _bert_like(pooler: bool) -> Callable[[dict[str, Any], bool, int], tuple[Any, ...] | None]:
    def read(c: dict[str, Any], causal: bool, num_labels: int) -> tuple[Any, ...] | None:
        if causal or c["is_decoder"] or c["add_cross_attention"]:
            return None
        if c.get("position_embedding_type", "absolute") != "absolute":
            return None  # relative positions add distance embeddings to every layer: not modelled here
        h, i, heads = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"]
        block: tuple[Linear, ...] = (
            ("attention.self.query", h, h, True),
            ("attention.self.key", h, h, True),
            ("attention.self.value", h, h, True),
            ("attention.output.dense", h, h, True),
            ("intermediate.dense", i, h, True),
            ("output.dense", h, i, True),
        )
        p = c["max_position_embeddings"]
        other = (c["vocab_size"] + p + c["type_vocab_size"]) * h + 2 * h  # embeddings and their LayerNorm
        other += c["num_hidden_layers"] * 4 * h  # two LayerNorms per block
        if pooler:  # BERT: pooler dense + classifier
            head = num_labels * h + num_labels
            other += h * h + h + head
        else:  # RoBERTa: the classifier module holds dense + out_proj
            head = h * h + h + num_labels * h + num_labels
            other += head
        fixed = 2 * p * 8  # position_ids and token_type_ids, int64
        return block, other, fixed, head, h, i, heads

    return read


def _distilbert(c: dict[str, Any], causal: bool, num_labels: int) -> tuple[Any, ...] | None:
    if causal:
        return None
    h, hd, heads = c["dim"], c["hidden_dim"], c["n_heads"]
    block: tuple[Linear, ...] = (
        ("attention.q_lin", h, h, True),
        ("attention.k_lin", h, h, True),
        ("attention.v_lin", h, h, True),
        ("attention.out_lin", h, h, True),
        ("ffn.lin1", hd, h, True),
        ("ffn.lin2", h, hd, True),
    )
    p = c["max_position_embeddings"]
    other = (c["vocab_size"] + p) * h + 2 * h + c["n_layers"] * 4 * h
    head = num_labels * h + num_labels  # classifier (pre_classifier is not PEFT's modules_to_save)
    other += h * h + h + head
    # ArchSpec.intermediate as the reference reads it: DistilBertConfig has neither intermediate_size nor n_inner
    return block, other, p * 8, head, h, 4 * h, heads


READERS: dict[str, Callable[[dict[str, Any], bool, int], tuple[Any, ...] | None]] = {
    "llama": _llama,
    "gpt2": _gpt2,
    "gpt_neox": _gpt_neox,
    "bert": _bert_like(pooler=True),
    "roberta": _bert_like(pooler=False),
    "distilbert": _distilbert,
}
"""Model type -> reader: (block linears, other float elements, buffer bytes, head params, hidden, MLP width,
heads), or None for a setting it does not model."""

LAYERS = {"gpt2": "n_layer", "distilbert": "n_layers"}
DROPOUT = {
    "gpt2": "attn_pdrop",
    "bert": "attention_probs_dropout_prob",
    "roberta": "attention_probs_dropout_prob",
}
UNMODELLED = ("rotary_emb_base_pct",)


def _transformers_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers")
    except PackageNotFoundError:
        return None


def read_config_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path` (a model folder's config.json), or None when it is missing or not JSON."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def filled(raw: dict[str, Any]) -> dict[str, Any] | None:
    """`raw` with transformers' defaults for the shape fields it leaves out, or None when its model type has no
    reader here, it sets something the readers do not model, or the installed transformers is not the checked
    major version."""
    model_type = raw.get("model_type")
    if model_type not in READERS:
        return None
    installed = _transformers_version()
    if installed is None or not installed.startswith(FAMILIES_CHECKED_WITH):
        return None
    text = json.dumps(raw)
    if any(key in text for key in UNMODELLED):
        return None
    return {**DEFAULTS[model_type], **raw}


def config_view(raw: dict[str, Any]) -> SimpleNamespace | None:
    """A stand-in for the transformers config object, for the checks that read attributes off it
    (`checks.check_model_bounds`, the plan's position limit): the JSON's values over the family's defaults, and
    `num_labels` as transformers derives it (`id2label`'s size, else 2). None as for `filled`."""
    values = filled(raw)
    if values is None:
        return None
    id2label = values.get("id2label")
    values.setdefault("num_labels", len(id2label) if isinstance(id2label, dict) and id2label else 2)
    return SimpleNamespace(**values)


def arch_from_config(raw: dict[str, Any], causal: bool, num_labels: int) -> Any:
    """The `memory.ArchSpec` of the model `raw` (a config.json's object) describes, with a causal-LM head or a
    classification head of `num_labels` outputs; None when this module cannot read it exactly (see `filled`):
    then build it from the meta-device model (`memory.arch_from_model`)."""
    from trainables.memory import ArchSpec

    values = filled(raw)
    if values is None:
        return None
    model_type = values["model_type"]
    read = READERS[model_type](values, causal, num_labels)
    if read is None:
        return None
    block, other, fixed, head, hidden, inter, heads = read
    layers = values[LAYERS.get(model_type, "num_hidden_layers")]
    dropout = values.get(DROPOUT.get(model_type, "attention_dropout"))
    return ArchSpec(
        num_layers=int(layers),
        hidden=int(hidden),
        intermediate=int(inter),
        heads=int(heads),
        vocab=int(values["vocab_size"]),
        causal=causal,
        block_linears=tuple(block for _ in range(int(layers))),
        other_float_elements=int(other),
        other_fixed_bytes=int(fixed),
        head_params=0 if causal else int(head),
        gated_mlp=sum(1 for _, out_f, _, _ in block if out_f == int(inter)) >= 2,
        attn_dropout=isinstance(dropout, (int, float)) and dropout > 0,
    )
