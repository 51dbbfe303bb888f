"""TrialConfig and its parts: typed dataclasses, validated at construction, round-tripping to plain dicts.

A trial is fully described by a `TrialConfig`; the Ray trainable receives `TrialConfig.to_dict()` and rebuilds it
with `TrialConfig.from_dict`. Every field has a default, experiment files and `--set key=value` only override.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from dataclasses import dataclass, field
from typing import Any

from trainables.errors import ConfigError
from trainables.precisions import PRECISIONS, bit_widths

BIT_WIDTHS = bit_widths()
"""The built-in bit widths (`trainables.precisions`); validation reads the live registry."""
METHODS = ("lora", "adalora")
HALF_DTYPES = ("bfloat16", "float16")
CRITICAL = ("rule", "sensitivity")
"""`quantization.critical` values: where the grid's Joint-2 / Joint-3 put their 8-bit blocks."""
DEVICES = ("auto", "cpu", "cuda", "mps")
COMPUTE_DTYPES = ("auto", "bfloat16", "float16", "float32")
"""`training.compute_dtype` values; `trainables.devices.resolve_compute_dtype` says what `auto` means where."""
PERPLEXITY_CONVENTIONS = {
    "joined": "WikiText-2 tokenized as released (blank lines and line breaks kept), cut into blocks",
    "lines": "WikiText-2 tokenized line by line, blank lines dropped, cut into blocks",
}
"""How the WikiText-2 text becomes blocks, for training and perplexity alike. `joined` is the common definition:
the text as released, one string, cut into non-overlapping blocks (the transformers perplexity guide's method);
`lines` was rankbits' own before, kept to reproduce older results. SmolLM2-135M, first 2,048 test tokens,
256-token blocks: 31.83 joined, 32.80 lines (and 34.57 with the hub rows joined by blank lines, as the guide's
code does)."""


MAX_SEED = 2**32 - 1
"""The largest seed numpy's and torch's generators accept (`numpy.random.seed`: 0 <= seed < 2**32)."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _int_keys(mapping: dict[Any, Any] | None, name: str) -> dict[int, int]:
    """Coerce a {layer_index: value} map whose keys may be strings (JSON, Tune configs) to ints."""
    out: dict[int, int] = {}
    for key, value in (mapping or {}).items():
        try:
            index, val = int(key), int(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{name}: entry {key!r}: {value!r} is not an integer layer index mapped to an integer; "
                "use e.g. {0: 8, 5: 8}"
            ) from None
        _require(index >= 0, f"{name}: layer index {index} is negative; layers count from 0")
        out[index] = val
    return dict(sorted(out.items()))


@dataclass
class TaskConfig:
    name: str = "sst2"
    """A registered task (`trainables.tasks.TASKS`): `sst2` (sentence classification, accuracy), `wikitext2`
    (language modelling, perplexity), `textcls` (your classification data, accuracy) or `lm` (your text,
    perplexity)."""
    data_dir: str | None = None
    """Local data root holding `sst2/{train,dev}.tsv` and `wikitext-2/wiki.*.tokens`; None: `RANKBITS_DATA_DIR`
    if set, else the Hugging Face hub."""
    train_examples: int | None = None
    """Use only the first N training examples (classification) or blocks (language modelling); None: all."""
    perplexity_convention: str = "joined"
    """Language modelling: how the text becomes training and evaluation blocks, `joined` or `lines` (see
    `PERPLEXITY_CONVENTIONS`); every result names it."""
    data: str | None = None
    """textcls / lm: the training data: a `.csv`, `.tsv` or `.jsonl` file (textcls), a plain-text file (lm), or a
    Hugging Face hub dataset id (both). A path that exists is stored absolute (trials run in other folders)."""
    eval_data: str | None = None
    """textcls / lm: a file with the evaluation data, in the format of `data`."""
    eval_fraction: float | None = None
    """textcls / lm: hold this share of `data` out for evaluation instead of `eval_data` (textcls: a random
    subset drawn with a fixed seed, the same for every training seed; lm: the end of the text)."""
    text_column: str = "text"
    """textcls / lm (hub, tables): the column holding the text."""
    label_column: str = "label"
    """textcls: the column holding the label (any strings or integers; ids are the labels sorted, numerically
    when all are integers)."""
    dataset_config: str | None = None
    """Hub dataset: its configuration name (the second argument of `datasets.load_dataset`)."""
    eval_split: str | None = None
    """Hub dataset: the evaluation split when neither `eval_data` nor `eval_fraction` is given; None:
    `validation`."""

    def __post_init__(self) -> None:
        from trainables.tasks import get_task

        spec = get_task(self.name)
        _require(
            self.train_examples is None or self.train_examples > 0,
            f"task.train_examples: {self.train_examples} must be a positive number or None (all)",
        )
        _require(
            self.perplexity_convention in PERPLEXITY_CONVENTIONS,
            f"task.perplexity_convention: {self.perplexity_convention!r}; choose one of "
            f"{', '.join(PERPLEXITY_CONVENTIONS)}",
        )
        spec.validate(self)


@dataclass
class ModelConfig:
    name: str = "minilm-l6"
    """Offline preset (`minilm-l6`, `smollm2-135m`, `tiny-bert`, `tiny-llama`, `tiny-gpt2`), hub id or local folder."""
    cache_dir: str | None = None
    """Where converted models (the SmolLM2 GGUF) are cached; None: `RANKBITS_CACHE_DIR` or ~/.cache/rankbits."""

    def __post_init__(self) -> None:
        _require(bool(self.name), "model.name: empty; give a preset, a hub id or a local folder")


@dataclass
class QuantizationConfig:
    default_bits: int = 32
    """Bit width of every transformer block's linear layers unless `layer_bits` says otherwise, one of
    `trainables.precisions.PRECISIONS`: 4 = NF4 (bitsandbytes Linear4bit), 8 = int8 (Linear8bitLt), 16 = half
    precision, 32 = float32."""
    layer_bits: dict[int, int] = field(default_factory=dict)
    """Per-layer override {block_index: bits}."""
    double_quant: bool = True
    """4-bit: quantize the absmax constants again (QLoRA double quantization, ~0.37 bits per weight saved)."""
    quant_type: str = "nf4"
    """4-bit data type: `nf4` or `fp4`."""
    half_dtype: str = "bfloat16"
    """What 16 bits means when `training.compute_dtype` is float32: `bfloat16` (default: safest on MPS and CPU) or
    `float16`. With a 16-bit compute dtype, 16-bit blocks hold their weights in the compute dtype."""
    critical: str = "rule"
    """Grid configs Joint-2 / Joint-3: which blocks get 8 bits. `rule`: the first and last ceil(L/12) blocks
    (`spaces.grid.critical_layers`); `sensitivity`: as many blocks, the most sensitive by the measured table
    (`trainables.sensitivity`). Recorded with the trial; `layer_bits` holds the resulting bits."""

    def __post_init__(self) -> None:
        self.layer_bits = _int_keys(self.layer_bits, "quantization.layer_bits")
        for where, bits in [("default_bits", self.default_bits)] + [
            (f"layer_bits[{i}]", b) for i, b in self.layer_bits.items()
        ]:
            _require(
                bits in PRECISIONS,
                f"quantization.{where}: bit width {bits} is not supported; choose one of "
                f"{', '.join(map(str, bit_widths()))}",
            )
        _require(
            self.quant_type in ("nf4", "fp4"), f"quantization.quant_type: {self.quant_type!r}; use nf4 or fp4"
        )
        _require(
            self.half_dtype in HALF_DTYPES,
            f"quantization.half_dtype: {self.half_dtype!r}; use bfloat16 or float16",
        )
        _require(
            self.critical in CRITICAL,
            f"quantization.critical: {self.critical!r}; choose one of {', '.join(CRITICAL)}",
        )

    def check_method(self, method: str) -> None:
        """ConfigError when a precision in use has no PEFT layer for adapter `method` (`Precision.adalora`)."""
        if method != "adalora":
            return
        for bits in sorted({self.default_bits, *self.layer_bits.values()}):
            _require(
                PRECISIONS[bits].adalora,
                f"quantization: {PRECISIONS[bits].label} ({bits}-bit) weights have no PEFT AdaLoRA layer; "
                "use adapter.method=lora or another bit width",
            )

    def bits_per_layer(self, num_layers: int) -> list[int]:
        """The bit width of each of `num_layers` blocks; rejects a map naming a layer the model lacks."""
        extra = [i for i in self.layer_bits if i >= num_layers]
        if extra:
            raise ConfigError(
                f"quantization.layer_bits names layer {extra[0]} but the model has {num_layers} layers "
                f"(0-{num_layers - 1})"
            )
        return [self.layer_bits.get(i, self.default_bits) for i in range(num_layers)]


@dataclass
class AdapterConfig:
    method: str = "lora"
    """`lora` (fixed ranks, per-layer ranks allowed) or `adalora` (ranks pruned from init_r towards target_r)."""
    r: int = 8
    """LoRA rank of every target module unless `layer_ranks` says otherwise."""
    alpha: float = 16.0
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.05
    target_modules: list[str] | None = None
    """Module name suffixes to adapt (e.g. ["query", "value"]); None: every linear layer inside the blocks."""
    layer_ranks: dict[int, int] = field(default_factory=dict)
    """LoRA: per-layer rank {block_index: r}; a rank of 0 leaves that block without adapters."""
    init_r: int = 12
    """AdaLoRA: starting rank of every module."""
    target_r: int = 4
    """AdaLoRA: average rank the budget is pruned to."""
    tinit: int | None = None
    """AdaLoRA: warm-up steps before pruning; None: 10% of the training steps."""
    tfinal: int | None = None
    """AdaLoRA: final steps with the budget frozen; None: 20% of the training steps."""
    deltaT: int | None = None
    """AdaLoRA: steps between budget allocations; None: about 1% of the steps (at least 1)."""
    orth_reg_weight: float = 0.5
    """AdaLoRA: weight of the orthogonality regulariser on P and Q."""
    beta1: float = 0.85
    beta2: float = 0.85

    def __post_init__(self) -> None:
        _require(
            self.method in METHODS, f"adapter.method: unknown method {self.method!r}; choose lora or adalora"
        )
        self.layer_ranks = _int_keys(self.layer_ranks, "adapter.layer_ranks")
        _require(self.r > 0, f"adapter.r: rank {self.r} must be > 0")
        for i, r in self.layer_ranks.items():
            _require(
                r >= 0, f"adapter.layer_ranks[{i}]: rank {r} must be >= 0 (0 = no adapter on that layer)"
            )
        _require(self.alpha > 0, f"adapter.alpha: {self.alpha} must be > 0")
        _require(0.0 <= self.dropout < 1.0, f"adapter.dropout: {self.dropout} must be in [0, 1)")
        _require(self.init_r > 0, f"adapter.init_r: rank {self.init_r} must be > 0")
        _require(self.target_r > 0, f"adapter.target_r: rank {self.target_r} must be > 0")
        _require(
            self.target_r <= self.init_r,
            f"adapter.target_r: {self.target_r} is above init_r {self.init_r}; AdaLoRA only prunes ranks",
        )
        if self.method == "adalora":
            _require(
                not self.layer_ranks,
                "adapter.layer_ranks: per-layer ranks are for method lora; AdaLoRA allocates ranks itself",
            )
        for name in ("tinit", "tfinal"):
            value = getattr(self, name)
            _require(value is None or value >= 0, f"adapter.{name}: {value} must be >= 0")
        _require(self.deltaT is None or self.deltaT > 0, f"adapter.deltaT: {self.deltaT} must be > 0")
        if self.target_modules is not None:
            _require(
                bool(self.target_modules) and all(isinstance(t, str) and t for t in self.target_modules),
                f"adapter.target_modules: {self.target_modules!r}; give module names like query,value",
            )

    def ranks_per_layer(self, num_layers: int) -> list[int]:
        """LoRA rank of each block (AdaLoRA: init_r everywhere)."""
        if self.method == "adalora":
            return [self.init_r] * num_layers
        extra = [i for i in self.layer_ranks if i >= num_layers]
        if extra:
            raise ConfigError(
                f"adapter.layer_ranks names layer {extra[0]} but the model has {num_layers} layers "
                f"(0-{num_layers - 1})"
            )
        return [self.layer_ranks.get(i, self.r) for i in range(num_layers)]

    def schedule(self, total_steps: int) -> tuple[int, int, int]:
        """AdaLoRA (tinit, tfinal, deltaT) for a run of `total_steps`, filling the None defaults."""
        tinit = self.tinit if self.tinit is not None else max(1, total_steps // 10)
        tfinal = self.tfinal if self.tfinal is not None else max(1, total_steps // 5)
        delta = self.deltaT if self.deltaT is not None else max(1, total_steps // 100)
        _require(
            tinit + tfinal < total_steps,
            f"adapter: tinit {tinit} + tfinal {tfinal} must be below the {total_steps} training steps "
            "(AdaLoRA needs steps in between to prune)",
        )
        return tinit, tfinal, delta


@dataclass
class TrainingConfig:
    lr: float = 5e-4
    batch_size: int = 16
    max_steps: int = 200
    """Optimizer steps; ignored when `epochs` is set."""
    epochs: float | None = None
    """Train for this many passes over the training set instead of `max_steps`."""
    seq_len: int = 128
    """SST-2: truncation length; WikiText-2: block length."""
    warmup_ratio: float = 0.06
    """Share of the steps with linear warm-up; the rest decays linearly to 0."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_examples: int | None = None
    """SST-2: evaluate on the first N dev examples; None: all 872."""
    eval_tokens: int = 32768
    """WikiText-2: evaluate perplexity over (at most) this many test tokens."""
    eval_batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    """`auto` picks mps, then cuda, then cpu."""
    threads: int | None = None
    """torch intra-op threads; None: leave torch's default (the Tune trainable sets it from its CPU share)."""
    memory_fraction: float | None = None
    """MPS / CUDA: cap this process at this fraction of the device memory so an oversized trial fails cleanly."""
    log_every: int = 10
    """Report progress every N steps."""
    eval_every: int | None = None
    """Also evaluate every N steps and report the task metric (for early-stopping schedulers such as ASHA)."""
    compute_dtype: str = "auto"
    """dtype of activations, bitsandbytes compute, 16-bit blocks and every frozen floating weight outside the
    quantized layers (embeddings, norms, LM head): `bfloat16`, `float16`, `float32`, or `auto` (bfloat16 on CUDA,
    on MPS where the chip runs it, on CPUs with native bf16; else float16 on accelerators, float32 on CPU; see
    `trainables/devices.py`). Trainable weights and optimizer state stay float32. float32 reproduces results
    made before this setting existed."""
    gradient_checkpointing: bool = True
    """Recompute each block's activations in the backward pass instead of keeping them (transformers'
    `gradient_checkpointing_enable(use_reentrant=False)`): less memory, about a third more time."""
    divergence_factor: float | None = 2.0
    """A run whose mean task loss over its last tenth of steps ends above this many times its first step's loss
    gets status `diverged` (kept off Pareto fronts; see `trainables.divergence`); None: never."""

    def __post_init__(self) -> None:
        _require(self.lr > 0, f"training.lr: {self.lr} must be > 0")
        _require(
            0 <= self.seed <= MAX_SEED,
            f"training.seed: {self.seed} must be between 0 and 2**32 - 1 (numpy's range)",
        )
        _require(self.batch_size > 0, f"training.batch_size: {self.batch_size} must be > 0")
        _require(self.max_steps > 0, f"training.max_steps: {self.max_steps} must be > 0")
        _require(
            self.epochs is None or self.epochs > 0, f"training.epochs: {self.epochs} must be > 0 or None"
        )
        _require(self.seq_len >= 8, f"training.seq_len: {self.seq_len} must be >= 8")
        _require(0 <= self.warmup_ratio < 1, f"training.warmup_ratio: {self.warmup_ratio} must be in [0, 1)")
        _require(self.weight_decay >= 0, f"training.weight_decay: {self.weight_decay} must be >= 0")
        _require(self.max_grad_norm > 0, f"training.max_grad_norm: {self.max_grad_norm} must be > 0")
        _require(
            self.eval_examples is None or self.eval_examples > 0,
            f"training.eval_examples: {self.eval_examples} must be > 0 or None (all)",
        )
        _require(self.eval_tokens > 0, f"training.eval_tokens: {self.eval_tokens} must be > 0")
        _require(self.eval_batch_size > 0, f"training.eval_batch_size: {self.eval_batch_size} must be > 0")
        _require(
            self.device in DEVICES, f"training.device: {self.device!r}; choose one of {', '.join(DEVICES)}"
        )
        _require(self.threads is None or self.threads > 0, f"training.threads: {self.threads} must be > 0")
        _require(
            self.memory_fraction is None or 0 < self.memory_fraction <= 2,
            f"training.memory_fraction: {self.memory_fraction} must be in (0, 2]",
        )
        _require(self.log_every > 0, f"training.log_every: {self.log_every} must be > 0")
        _require(
            self.eval_every is None or self.eval_every > 0,
            f"training.eval_every: {self.eval_every} must be > 0",
        )
        _require(
            self.compute_dtype in COMPUTE_DTYPES,
            f"training.compute_dtype: {self.compute_dtype!r}; choose one of {', '.join(COMPUTE_DTYPES)}",
        )
        _require(
            self.divergence_factor is None or self.divergence_factor > 1,
            f"training.divergence_factor: {self.divergence_factor} must be > 1 or None (never flag)",
        )


SECTIONS: dict[str, type] = {
    "task": TaskConfig,
    "model": ModelConfig,
    "quantization": QuantizationConfig,
    "adapter": AdapterConfig,
    "training": TrainingConfig,
}


@dataclass
class TrialConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    config_id: str | None = None
    """Grid id (`B-FP`, ...) or None for a searched configuration."""

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _section_from_dict(cls, value, name))
            elif not isinstance(value, cls):
                raise ConfigError(f"{name}: expected a {cls.__name__} or a dict, got {type(value).__name__}")
        self.quantization.check_method(self.adapter.method)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (layer maps keep int keys; JSON turns them into strings, `from_dict` undoes it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        unknown = sorted(set(data) - set(SECTIONS) - {"config_id"})
        if unknown:
            raise ConfigError(f"unknown config section {unknown[0]!r}; allowed: {', '.join(SECTIONS)}")
        kwargs: dict[str, Any] = {
            name: _section_from_dict(section, data.get(name) or {}, name)
            for name, section in SECTIONS.items()
        }
        return cls(config_id=data.get("config_id"), **kwargs)

    def with_overrides(self, assignments: list[str] | dict[str, Any]) -> TrialConfig:
        """A copy with `section.field=value` (or an unambiguous bare `field=value`) assignments applied."""
        data = self.to_dict()
        items = (
            assignments.items()
            if isinstance(assignments, dict)
            else [_split_assignment(a) for a in assignments]
        )
        for key, raw in items:
            section, name = resolve_key(key)
            hint = _field_types(SECTIONS[section])[name]
            data[section][name] = parse_value(raw, hint, f"{section}.{name}") if isinstance(raw, str) else raw
        return TrialConfig.from_dict(data)


NOT_IN_CONFIG_KEY = (
    "config_id",
    "training.seed",
    "training.threads",
    "training.memory_fraction",
    "training.log_every",
    "training.eval_every",
    "model.cache_dir",
    "task.data_dir",
)
"""What `config_key` leaves out: the grid label (`config_id`: the same settings under another name are the same
configuration), the training seed (seeds are repeats of one configuration), and the harness- and recording-only
fields: torch threads and the memory cap (set per trial from its resource share), how often progress is logged
and the task metric reported (`eval_every`, for ASHA), where converted models are cached and where the data files
lie (`data_dir`: the same data under another path). Everything else (task, model, bits, adapter, training
schedule, device, compute dtype, checkpointing, ...) is part of the key."""


@functools.cache
def _default_dict() -> dict[str, Any]:
    return TrialConfig().to_dict()  # read only


def config_key(cfg: TrialConfig) -> str:
    """A short stable id of the trial's settings without the seed: 12 hex digits of the SHA-1 of its JSON.

    Hashed: `cfg.to_dict()` less `NOT_IN_CONFIG_KEY` and less every field equal to its dataclass default (so a
    setting added in a later version, left at its default, keeps the keys of older results), as sorted-key
    compact JSON. Two trials have the same key exactly when they differ at most in those fields: several seeds of
    one configuration share it, and analysis pools them by it (`analysis.seeds`)."""
    import hashlib

    data = cfg.to_dict()
    defaults = _default_dict()
    for dotted in NOT_IN_CONFIG_KEY:
        section, _, name = dotted.partition(".")
        if name:
            data[section].pop(name, None)
        else:
            data.pop(section, None)
    kept: dict[str, Any] = {}
    for section, values in data.items():
        changed = {k: v for k, v in values.items() if v != defaults[section].get(k)}
        if changed:
            kept[section] = changed
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _section_from_dict(cls: type, data: dict[str, Any], section: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{section}: expected a mapping of fields, got {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{section}.{unknown[0]}: no such setting; {section} has {', '.join(sorted(names))}"
        )
    hints = _field_types(cls)
    values = {}
    for key, value in data.items():
        values[key] = _check_type(value, hints[key], f"{section}.{key}")
    return cls(**values)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _split_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    _require(bool(sep) and bool(key.strip()), f"--set {text!r}: expected key=value, e.g. training.lr=1e-4")
    return key.strip(), value.strip()


def resolve_key(key: str) -> tuple[str, str]:
    """`training.lr` -> ("training", "lr"); a bare `lr` is accepted when only one section has that field."""
    if "." in key:
        section, _, name = key.partition(".")
        _require(
            section in SECTIONS, f"--set {key}: unknown section {section!r}; use one of {', '.join(SECTIONS)}"
        )
        names = [f.name for f in dataclasses.fields(SECTIONS[section])]
        _require(name in names, f"--set {key}: {section} has no setting {name!r}; it has {', '.join(names)}")
        return section, name
    owners = [s for s, cls in SECTIONS.items() if key in {f.name for f in dataclasses.fields(cls)}]
    _require(bool(owners), f"--set {key}: no such setting; use section.field, e.g. training.lr or adapter.r")
    _require(
        len(owners) == 1, f"--set {key}: ambiguous, it is in {' and '.join(owners)}; write section.{key}"
    )
    return owners[0], key


def _base_types(hint: Any) -> tuple[Any, bool]:
    """(non-None type, whether None is allowed) of a hint like `int | None`."""
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else hint), True
    return hint, False


def parse_value(raw: str, hint: Any, where: str) -> Any:
    """Parse a `--set` string for a field of type `hint`."""
    base, nullable = _base_types(hint)
    text = raw.strip()
    if nullable and text.lower() in ("none", "null", ""):
        return None
    origin = typing.get_origin(base)
    try:
        if base is bool:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        if base is str:
            return text
        if origin is dict:
            if text.startswith("{"):
                return {int(k): int(v) for k, v in json.loads(text).items()}
            pairs = [p.split(":") for p in text.split(",") if p]
            return {int(k): int(v) for k, v in pairs}
        if origin is list:
            if text.startswith("["):
                return [str(x) for x in json.loads(text)]
            return [p.strip() for p in text.split(",") if p.strip()]
    except (ValueError, TypeError, json.JSONDecodeError):
        pass
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(
        base, "a map like 0:8,5:8" if origin is dict else "a list like query,value"
    )
    raise ConfigError(f"--set {where}={raw}: wrong type, expected {expected}")


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Reject values of the wrong type coming from dicts (Tune configs, JSON files); ints are fine for floats."""
    base, nullable = _base_types(hint)
    if value is None:
        _require(nullable, f"{where}: None is not allowed here")
        return None
    origin = typing.get_origin(base)
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, float),
        str: isinstance(value, str),
    }.get(base)
    if ok is None:
        ok = (
            isinstance(value, dict)
            if origin is dict
            else isinstance(value, (list, tuple))
            if origin is list
            else True
        )
        if origin is list and ok:
            value = list(value)
    _require(bool(ok), f"{where}: {value!r} has the wrong type ({type(value).__name__}); expected {base}")
    return value


def __getattr__(name: str) -> Any:
    """`TASKS`: the registered task names (`trainables.tasks.TASKS`), read when asked (the registry imports this
    module, so it cannot be read at import time)."""
    if name == "TASKS":
        from trainables.tasks import task_names

        return task_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
