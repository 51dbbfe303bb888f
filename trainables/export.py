"""An exported trial: a self-contained folder with the PEFT adapter and everything that rebuilds its quantized base.

    DIR/
      rankbits_export.json   ExportRecord: model id / folder (+ revision), per-layer bits, quant type, double quant,
                             16-bit dtype, compute dtype, the trial's full config, metrics and library versions
      adapter/               the PEFT adapter as the trial saved it (`PeftModel.from_pretrained` loads it)
      README.md              the Python lines that load it
      merged/                (with --merge) the adapter merged into a 16-bit copy of the base (transformers folder)

`load_exported(DIR)` rebuilds the base exactly as the trial trained it (same loader, same per-layer bitsandbytes
layers, same compute dtype) and attaches the adapter: (model, tokenizer) ready for inference or further training.
`evaluate_exported` re-scores it on the trial's own evaluation sample, the check `rankbits export` runs.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from trainables.config import TrialConfig
from trainables.errors import ConfigError

EXPORT_FILE = "rankbits_export.json"
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
FORMAT_VERSION = 1
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ExportRecord:
    """What `load_exported` needs to rebuild the trained model, and what the trial measured."""

    model: str
    """The model as the trial named it: preset, hub id or folder."""
    model_source: str
    """Where its weights came from: a folder or a hub id."""
    revision: str | None
    """The hub commit the config was read at, when known (None for folders and presets)."""
    task: str
    bits_per_layer: list[int]
    """Weight bits of each transformer block (4 = NF4 / FP4, 8 = int8, 16, 32)."""
    quant_type: str
    double_quant: bool
    half_dtype: str
    """What 16-bit blocks were stored in."""
    compute_dtype: str
    """The dtype the trial computed in (`float32` for trials made before the compute dtype existed)."""
    seed: int
    """Seeds the loader, which matters for the tiny presets (random weights) and untrained heads."""
    config: dict[str, Any]
    """The trial's full TrialConfig (`TrialConfig.from_dict` rebuilds it)."""
    result: dict[str, Any]
    """The trial's TrialResult: accuracy / perplexity, eval loss, memory, time, ranks."""
    versions: dict[str, str]
    trial_id: str | None = None
    source: str | None = None
    """The results folder the trial was exported from."""
    checks: dict[str, Any] = field(default_factory=dict)
    """Re-evaluations made at export: {"adapter": {...}, "merged": {...}} with metric, trial value, difference."""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(
                f"export record: compute_dtype {self.compute_dtype!r}; one of {', '.join(COMPUTE_DTYPES)}"
            )
        if not self.bits_per_layer:
            raise ConfigError("export record: bits_per_layer is empty; the trial did not finish loading")
        TrialConfig.from_dict(self.config)

    @property
    def trial_config(self) -> TrialConfig:
        return TrialConfig.from_dict(self.config)

    @property
    def metric_name(self) -> str:
        from trainables.tasks import get_task

        return get_task(self.task).metric

    @property
    def metric(self) -> float | None:
        return self.result.get(self.metric_name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportRecord:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


def recorded_compute_dtype(config: dict[str, Any], result: dict[str, Any]) -> str:
    """The concrete dtype a trial computed in: the result's resolved `compute_dtype`, else a concrete
    `training.compute_dtype` of its config, else float32 (trials made before the setting existed)."""
    for value in (result.get("compute_dtype"), (config.get("training") or {}).get("compute_dtype")):
        if value in COMPUTE_DTYPES:
            return str(value)
    return "float32"


def make_record(
    config: dict[str, Any], result: dict[str, Any], trial_id: str | None = None, source: str | None = None
) -> ExportRecord:
    """The export record of a completed trial (its config and result dicts as the results folder holds them).

    Raises ConfigError when the trial did not complete."""
    from trainables import models

    status = result.get("status")
    if status != "completed":
        raise ConfigError(
            f"trial {trial_id or ''} has status {status!r}: only completed trials can be exported"
        )
    cfg = TrialConfig.from_dict(config)
    resolved = models.resolve(cfg.model)
    bits = list(result.get("bits_per_layer") or [])
    return ExportRecord(
        model=cfg.model.name,
        model_source=resolved.source if resolved.kind != "tiny" else resolved.name,
        revision=_revision(cfg) if resolved.kind == "hub" else None,
        task=cfg.task.name,
        bits_per_layer=bits,
        quant_type=cfg.quantization.quant_type,
        double_quant=cfg.quantization.double_quant,
        half_dtype=cfg.quantization.half_dtype,
        compute_dtype=recorded_compute_dtype(config, result),
        seed=cfg.training.seed,
        config=cfg.to_dict(),
        result=dict(result),
        versions=dict(result.get("versions") or {}),
        trial_id=trial_id,
        source=source,
    )


def _revision(cfg: TrialConfig) -> str | None:
    try:
        from trainables.models import load_config

        return getattr(load_config(cfg.model), "_commit_hash", None)
    except ConfigError:
        return None


def write_export(out: str | Path, record: ExportRecord, adapter_dir: str | Path) -> Path:
    """Write DIR/ (adapter copy, record, README). `out` must not exist or be empty: nothing is overwritten.

    Raises ConfigError for a non-empty `out` or a missing adapter folder."""
    out = Path(out)
    adapter_dir = Path(adapter_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(
            f"--out {str(out)!r} exists and is not empty; choose a new folder (nothing is overwritten)"
        )
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ConfigError(
            f"trial adapter {str(adapter_dir)!r} is missing (no adapter_config.json); cannot export"
        )
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(adapter_dir, out / ADAPTER_DIR)
    name_base_model(out / ADAPTER_DIR / "adapter_config.json", record.model_source)
    save_record(out, record)
    (out / "README.md").write_text(readme_text(out, record))
    return out


def name_base_model(config_path: Path, source: str) -> None:
    """Fill PEFT's `base_model_name_or_path` in a copied adapter_config.json when the trial left it empty (rankbits
    builds the base itself), so `AutoPeftModel*.from_pretrained(adapter)` finds the base: set when `source` is a
    transformers folder (it has config.json) or a hub id; a tiny preset or a GGUF package is not loadable that way."""
    folder = Path(source)
    loadable = (folder / "config.json").is_file() or ("/" in source and not folder.exists())
    config = json.loads(config_path.read_text())
    if config.get("base_model_name_or_path") or not loadable:
        return
    config["base_model_name_or_path"] = source
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def save_record(out: str | Path, record: ExportRecord) -> None:
    path = Path(out) / EXPORT_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=2, default=str) + "\n")
    tmp.replace(path)


def read_record(folder: str | Path) -> ExportRecord:
    """The record of an exported folder; ConfigError when the folder is not one."""
    path = Path(folder) / EXPORT_FILE
    if not path.is_file():
        raise ConfigError(
            f"{str(folder)!r} is not a rankbits export (no {EXPORT_FILE}); run `rankbits export`"
        )
    try:
        return ExportRecord.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ConfigError(f"{str(path)!r}: unreadable export record ({exc})") from None


def readme_text(out: Path, record: ExportRecord) -> str:
    metric = record.metric
    shown = f"{metric:.4f}" if isinstance(metric, float) else str(metric)
    bits = ",".join(map(str, record.bits_per_layer))
    revision = f" @ {record.revision}" if record.revision else ""
    return f"""# rankbits export: {record.config.get("config_id") or "custom"} on {record.task}

- base model: `{record.model}` ({record.model_source}{revision})
- bits per block: `{bits}` (4-bit type {record.quant_type}, double quant {record.double_quant}, 16-bit as
  {record.half_dtype}); compute dtype {record.compute_dtype}
- adapter: `adapter/` (PEFT); the trial's {record.metric_name}: {shown} (trial {record.trial_id or "-"})

Load it (with the rankbits repository on the Python path):

```python
from trainables import load_exported

model, tokenizer = load_exported("{out}")              # inference (eval mode)
model, tokenizer = load_exported("{out}", trainable=True)  # continue training the adapter
```

With `--merge`, `merged/` holds the adapter merged into a 16-bit copy of the base: a plain transformers folder
(`AutoModelFor...from_pretrained("{out}/merged")`, no rankbits or PEFT needed; its metric at export is in
`{EXPORT_FILE}`). `adapter/` is a PEFT adapter; on a base quantized otherwise than above it will not reproduce the
trial's numbers exactly.

`{EXPORT_FILE}` holds the full trial config, its metrics and the library versions it ran with.
"""


# --- rebuilding ------------------------------------------------------------------------------------------------


def rebuild_base(record: ExportRecord, device: Any) -> tuple[Any, Any]:
    """(quantized base model, tokenizer) exactly as the trial built them before attaching its adapter: the same
    loader and seed, the same per-layer bitsandbytes layers, the recorded compute dtype."""
    from trainables import models
    from trainables.quantize import base_load_dtype, quantize_model

    cfg = record.trial_config
    from trainables.devices import torch_dtype  # noqa: I001 - lazy: no torch at import

    dtype = torch_dtype(record.compute_dtype)
    tokenizer = models.load_tokenizer(cfg.model)
    load_dtype = base_load_dtype(record.bits_per_layer, cfg.quantization, dtype)  # as loop.prepare loads
    model = models.load_model(cfg.model, _head(record), tokenizer, seed=cfg.training.seed, dtype=load_dtype)
    _, blocks = models.find_blocks(model)
    if len(blocks) != len(record.bits_per_layer):
        raise ConfigError(
            f"model {cfg.model.name!r} now has {len(blocks)} blocks but the export recorded "
            f"{len(record.bits_per_layer)}; the base model changed since the trial"
        )
    qcfg = cfg.quantization
    qcfg.layer_bits = dict(enumerate(record.bits_per_layer))
    quantize_model(model, blocks, qcfg, device, dtype)
    return model, tokenizer


def _head(record: ExportRecord) -> Any:
    """The head the trial trained: its task's kind with the classes its result recorded (a classification task
    reading your data need not find that data again to rebuild the model)."""
    from trainables.tasks import Head, get_task, head_of

    spec = get_task(record.task)
    classes = record.result.get("num_classes")
    if spec.head_kind == "classification" and classes:
        return Head(spec.head_kind, int(classes))
    return head_of(record.trial_config.task)


def load_exported(folder: str | Path, device: str = "auto", trainable: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) of an exported trial: the quantized base rebuilt as trained, with the adapter attached.

    `device`: auto / cpu / cuda / mps (ConfigError when not available). `trainable=True` leaves the adapter
    trainable (train mode); otherwise the model is in eval mode for inference. Raises ConfigError when `folder` is
    not an export or its base model cannot be found."""
    from peft import PeftModel

    from trainables.devices import pick_device

    folder = Path(folder)
    record = read_record(folder)
    dev = pick_device(device)
    model, tokenizer = rebuild_base(record, dev)
    from trainables import adapters, models

    if trainable and record.trial_config.training.gradient_checkpointing:
        models.enable_gradient_checkpointing(model)  # train on as the trial trained
    with warnings.catch_warnings():
        # AdaLoRA checkpoints keep their pruned ranks as `...lora_E` keys, which PEFT applies while loading the
        # weights but warns about first; the export check shows the model is the trained one.
        warnings.filterwarnings("ignore", message="The following rank_pattern keys", category=RuntimeWarning)
        model = PeftModel.from_pretrained(model, str(folder / ADAPTER_DIR), is_trainable=trainable)
    model.to(dev)
    # as the trial had them: adapter weights and a trained head in float32, AdaLoRA's ranknum in the compute dtype
    from trainables.devices import torch_dtype  # noqa: I001 - lazy: no torch at import

    adapters.set_dtypes(model, torch_dtype(record.compute_dtype))
    if trainable:
        model.train()
    else:
        model.eval()
    return model, tokenizer


def evaluate_model(
    model: Any, tokenizer: Any, record: ExportRecord, data_dir: str | None = None
) -> tuple[float, float]:
    """(accuracy or perplexity, mean task loss) of `model` on the trial's own evaluation sample (the same
    examples / tokens, batch size and code as the trial's final evaluation). ConfigError when data is missing."""
    from trainables import data
    from trainables.loop import score

    cfg = record.trial_config
    if data_dir is not None:
        cfg = cfg.with_overrides({"task.data_dir": data_dir})
    t = cfg.training
    raw = data.load_raw(cfg.task)
    task_data = data.prepare(
        raw,
        cfg.task,
        tokenizer,
        t.seq_len,
        t.batch_size,
        t.seed,
        t.batch_size,
        t.eval_examples,
        t.eval_tokens,
    )
    device = next(p.device for p in model.parameters())
    return score(SimpleNamespace(model=model, task_data=task_data, cfg=cfg, device=device))  # type: ignore[arg-type]


def evaluate_exported(
    folder: str | Path, data_dir: str | None = None, device: str = "auto"
) -> tuple[float, float]:
    """Load an export with `load_exported` and score it as the trial was scored: (metric, mean task loss)."""
    record = read_record(folder)
    model, tokenizer = load_exported(folder, device=device)
    return evaluate_model(model, tokenizer, record, data_dir)


# --- merging ---------------------------------------------------------------------------------------------------


def _dense_weight(layer: Any) -> Any:
    """float32 copy of a block layer's weight (out_features, in_features): bitsandbytes 4 / 8-bit dequantized."""
    from peft.utils.integrations import dequantize_bnb_weight

    weight = layer.weight
    if weight.__class__.__name__ in ("Params4bit", "Int8Params"):
        return dequantize_bnb_weight(weight, state=getattr(layer, "state", None)).float()
    return weight.detach().float()


def _replace(model: Any, name: str, weight: Any, bias: Any, dtype: Any) -> None:
    import torch

    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device)
    linear.weight = torch.nn.Parameter(weight.to(dtype), requires_grad=False)
    if bias is not None:
        linear.bias = torch.nn.Parameter(bias.detach().to(dtype), requires_grad=False)
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, linear)


def _delta_weight(module: Any, adapter: str) -> Any:
    """The (out_features, in_features) float32 update a LoRA / AdaLoRA layer adds, as its forward computes it
    (PEFT's bitsandbytes AdaLoRA layers have no `get_delta_weight`)."""
    lora_e = getattr(module, "lora_E", None)
    if lora_e is not None and adapter in lora_e:
        a, b, e = module.lora_A[adapter], module.lora_B[adapter], lora_e[adapter]
        return (
            (b.float() @ (a.float() * e.float())) * module.scaling[adapter] / (module.ranknum[adapter] + 1e-5)
        )
    return module.get_delta_weight(adapter).float()


def merge_16bit(model: Any, dtype_name: str = "bfloat16") -> Any:
    """A plain transformers model in 16 bits: each adapted layer's base weight dequantized (bitsandbytes 4 / 8-bit)
    or upcast, plus its LoRA delta; every other quantized block layer dequantized; the trained head kept.

    Merges into dequantized weights, not back into 4-bit ones (which would quantize the sum again and change the
    outputs). Modifies `model` in place; returns the unwrapped model."""
    from peft.tuners.lora import LoraLayer

    from trainables.devices import torch_dtype  # noqa: I001 - lazy: no torch at import

    dtype = torch_dtype(dtype_name)
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            base = module.get_base_layer()
            dense = _dense_weight(base)
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    dense = dense + _delta_weight(module, adapter)
            _replace(model, name, dense, base.bias, dtype)
    plain = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    for name, module in list(plain.named_modules()):
        if module.__class__.__name__ in ("Linear4bit", "Linear8bitLt", "CastLinear", "HalfLinear"):
            _replace(plain, name, _dense_weight(module), module.bias, dtype)
    return plain.to(dtype)


def write_merged(folder: str | Path, model: Any, tokenizer: Any) -> tuple[Path, Any]:
    """Merge (see `merge_16bit`; `model` is changed in place) and save a transformers folder DIR/merged, with the
    tokenizer when it can be saved. Returns (that folder, the merged model)."""
    target = Path(folder) / MERGED_DIR
    merged = merge_16bit(model)
    merged.save_pretrained(str(target))
    try:
        tokenizer.save_pretrained(str(target))
    except (AttributeError, NotImplementedError, OSError, TypeError, ValueError):
        pass
    return target, merged
