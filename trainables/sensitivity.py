"""Measured layer sensitivity: the damage of quantizing one block (or one module kind of a block) alone, and a
rank-importance signal per block, on a calibration sample of the task's training data.

**Damage** is the mean KL divergence KL(p_ref || p_q) in nats per predicted distribution (per token for a causal
LM, per sentence for SST-2) between the unquantized model (every weight in the compute dtype, which is float32 on
CPUs without native bfloat16) and the same model with only that block's linear layers converted by the project's
own `quantize.convert_linear` to `bits` (4 = NF4 with the grid's settings, 8 = the weight-only int8 layer). KL
rather than the rise in eval loss because it needs no labels (the same code for both tasks), compares the whole
output distribution rather than the probability of one token, is zero exactly when nothing changed and never
negative, and is far smoother on a small sample: a loss delta is a difference of two noisy means that can change
sign, a KL is a mean of non-negative per-token terms (mlx-optiq ranks layers by the same kind of output divergence;
LQ-LoRA's and HAWQ's second-order view make the KL's quadratic term, the Fisher, the natural local measure).

Blocks are converted one at a time in place and restored (no reload). Blocks before the one measured are replayed
from the reference pass's recorded outputs (their input is unchanged), so each measurement costs only the blocks
from it onward plus the head.

**Rank importance** of a block: from the task loss's gradient with respect to the block's adaptable weights (the
LoRA targets, `adapter.target_modules`) on the first `grad_examples` calibration examples, one example at a time:
`importance` = ||mean gradient||_F^2 summed over the block's targets, `fisher` = the mean per-example squared
gradient norm (the trace of the empirical Fisher restricted to those weights), and `spectrum[k-1]` = the sum over
the block's targets of the k-th squared singular value of the mean gradient. By Eckart-Young, a rank-r update
captures at most sum_{k<=r} spectrum[k-1] of the first-order loss decrease a full gradient step would give
(`gain(r)`); `allocation.allocate_ranks` maximizes the summed gain (LoRA-GA, Wang et al. 2024, initialises LoRA
from the same SVD of the gradient).

The table is cached as JSON under `<cache dir>/sensitivity/`, keyed by a hash of the model, task, data source,
calibration sample and settings (`cache_key`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainables.config import TrialConfig
from trainables.errors import ConfigError

FORMAT_VERSION = 1
"""Bumped when the measurement changes meaning; part of the cache key."""
KINDS = ("attention", "mlp")
"""Module kinds told apart inside a block: a linear layer whose dotted name has a part containing `attn` or
`attention` is attention (Llama `self_attn.q_proj`, BERT `attention.output.dense`, GPT-2 `attn.c_proj`), every
other one is MLP (`mlp.gate_proj`, BERT `intermediate.dense` / `output.dense`, GPT-2 `mlp.c_fc`)."""
DEFAULT_SAMPLE = {"wikitext2": (4, 128, 4), "sst2": (64, 128, 16)}
"""Per task: (calibration examples, tokens per example, gradient examples). Sized so one run with module kinds
takes minutes on 2 CPU cores: WikiText-2 on smollm2-135m is 4 blocks of 128 tokens (512 predicted tokens, about 2
s per measurement, 180 measurements for 30 blocks x (whole, attention, MLP) x (4, 8)); SST-2 on minilm-l6 is 64
sentences (under a second each)."""
FORWARD_ROWS = 4
"""Calibration examples per forward pass (bounds the reference log-probabilities held per batch)."""
Progress = Callable[[int, int, str], None]
"""Called with (measurements done, measurements in all, what was just measured)."""


@dataclass(frozen=True)
class SensitivitySettings:
    """How the sensitivity is measured; every field is part of the cache key."""

    examples: int | None = None
    """Calibration examples (WikiText-2 blocks or SST-2 sentences); None: `DEFAULT_SAMPLE` for the task."""
    seq_len: int | None = None
    """Tokens per WikiText-2 block / SST-2 truncation; None: `DEFAULT_SAMPLE`."""
    grad_examples: int | None = None
    """Examples (the first of the calibration sample) for the gradient signals; None: `DEFAULT_SAMPLE`; 0: skip."""
    seed: int = 0
    """Which examples: a seeded random draw from the task's training split (WikiText-2's valid split when the
    train split is absent). Another seed is another calibration sample."""
    bits: tuple[int, ...] = (4, 8)
    """Bit widths measured; 4 and 8 are the bitsandbytes layers, 16 and 32 storage casts."""
    by_kind: bool = True
    """Also measure attention and MLP separately (when a block has both)."""
    max_rank: int = 64
    """Singular values kept per block in `spectrum`."""

    def __post_init__(self) -> None:
        for name in ("examples", "seq_len"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"sensitivity {name}: {value} must be > 0")
        if self.seq_len is not None and self.seq_len < 8:
            raise ConfigError(f"sensitivity seq_len: {self.seq_len} must be >= 8")
        if self.grad_examples is not None and self.grad_examples < 0:
            raise ConfigError(f"sensitivity grad_examples: {self.grad_examples} must be >= 0")
        if not self.bits or any(b not in (4, 8, 16, 32) for b in self.bits):
            raise ConfigError(f"sensitivity bits: {list(self.bits)}; choose among 4, 8, 16, 32")
        if self.max_rank <= 0:
            raise ConfigError(f"sensitivity max_rank: {self.max_rank} must be > 0")
        object.__setattr__(self, "bits", tuple(sorted(set(int(b) for b in self.bits))))

    def resolved(self, task: str) -> SensitivitySettings:
        """These settings with the task's defaults filled in."""
        examples, seq_len, grad = DEFAULT_SAMPLE.get(task, DEFAULT_SAMPLE["sst2"])
        return dataclasses.replace(
            self,
            examples=self.examples or examples,
            seq_len=self.seq_len or seq_len,
            grad_examples=grad
            if self.grad_examples is None
            else min(self.grad_examples, self.examples or examples),
        )


@dataclass(frozen=True)
class BlockSensitivity:
    """One block's row of the table."""

    index: int
    kl: dict[int, float]
    """bits -> mean KL (nats per predicted distribution) with the whole block at that width, the rest unquantized."""
    kind_kl: dict[str, dict[int, float]] = field(default_factory=dict)
    """kind (`KINDS`) -> bits -> mean KL with only that kind of the block quantized; empty without kinds."""
    importance: float | None = None
    """||mean gradient||_F^2 of the task loss over the block's adaptable weights; None when not measured."""
    fisher: float | None = None
    """Mean per-example squared gradient norm over the same weights (empirical Fisher trace)."""
    spectrum: list[float] = field(default_factory=list)
    """Squared singular values of the mean gradient, summed over the block's targets, largest first."""

    def gain(self, rank: int) -> float:
        """Gradient energy a rank-`rank` update captures: sum of the first `rank` entries of `spectrum` (the rest
        of `importance` beyond the kept values when `rank` exceeds them)."""
        if rank <= 0 or not self.spectrum:
            return 0.0
        if rank >= len(self.spectrum):
            return float(self.importance if self.importance is not None else sum(self.spectrum))
        return float(sum(self.spectrum[:rank]))


@dataclass(frozen=True)
class SensitivityTable:
    """The measured sensitivity of every block of one model on one task's calibration sample."""

    model: str
    task: str
    key: str
    """The cache key (hash of model, task, data and settings)."""
    settings: dict[str, Any]
    """The resolved `SensitivitySettings` as a dict, plus the compute dtype and device."""
    data_note: str
    kinds: list[str]
    """Module kinds measured separately (empty when the blocks hold one kind or kinds were off)."""
    blocks: list[BlockSensitivity]
    tokens: int
    """Predicted distributions the KL is averaged over (tokens for a causal LM, sentences for SST-2)."""
    seconds: float

    @property
    def bits(self) -> list[int]:
        return sorted(self.blocks[0].kl) if self.blocks else []

    def damage_avoided(self, low: int = 4, high: int = 8) -> list[float]:
        """Per block: KL at `low` bits minus KL at `high` bits (what putting the block at `high` saves)."""
        self._need(low, high)
        return [b.kl[low] - b.kl[high] for b in self.blocks]

    def ranking(self, low: int = 4, high: int = 8) -> list[int]:
        """Block indices, most sensitive first: by `damage_avoided(low, high)`, ties by index."""
        saved = self.damage_avoided(low, high)
        return sorted(range(len(saved)), key=lambda i: (-saved[i], i))

    def most_sensitive(self, count: int, low: int = 4, high: int = 8) -> list[int]:
        """The `count` most sensitive blocks, in index order."""
        return sorted(self.ranking(low, high)[:count])

    def _need(self, *bits: int) -> None:
        missing = [b for b in bits if b not in self.bits]
        if missing:
            raise ConfigError(
                f"the sensitivity table measured bits {self.bits}, not {missing[0]}; measure with --bits "
                f"{','.join(map(str, sorted(set(self.bits) | set(bits))))}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensitivityTable:
        blocks = [
            BlockSensitivity(
                index=int(b["index"]),
                kl={int(k): float(v) for k, v in b["kl"].items()},
                kind_kl={
                    kind: {int(k): float(v) for k, v in row.items()} for kind, row in b["kind_kl"].items()
                },
                importance=b.get("importance"),
                fisher=b.get("fisher"),
                spectrum=[float(x) for x in b.get("spectrum", [])],
            )
            for b in data["blocks"]
        ]
        return cls(**{**data, "blocks": blocks})

    def frame(self) -> Any:
        """One row per block: `kl{bits}`, `{kind}_kl{bits}`, `importance`, `fisher`, `rank` (1 = most sensitive)
        as a pandas DataFrame indexed by block."""
        import pandas as pd

        rows = []
        for b in self.blocks:
            row: dict[str, Any] = {"block": b.index}
            row.update({f"kl{bits}": v for bits, v in b.kl.items()})
            for kind, values in b.kind_kl.items():
                row.update({f"{kind}_kl{bits}": v for bits, v in values.items()})
            row["importance"] = b.importance
            row["fisher"] = b.fisher
            rows.append(row)
        df = pd.DataFrame(rows).set_index("block")
        if len(self.bits) >= 2:
            order = self.ranking(self.bits[0], self.bits[1])
            df["rank"] = [order.index(i) + 1 for i in range(len(self.blocks))]
        return df


# --- module kinds and block swapping ----------------------------------------------------------------------------


def kind_of(name: str) -> str:
    """`attention` or `mlp` for a linear layer's dotted name inside a block (see `KINDS`)."""
    return "attention" if any("attn" in part or "attention" in part for part in name.split(".")) else "mlp"


def block_linears(block: nn.Module) -> list[str]:
    """Dotted names of the linear layers (Linear or GPT-2 Conv1D) inside a block."""
    from trainables.quantize import is_linear_like

    return [name for name, mod in block.named_modules() if name and is_linear_like(mod)]


def swap_in(
    block: nn.Module,
    names: list[str],
    bits: int,
    qcfg: Any,
    device: torch.device,
    compute_dtype: torch.dtype,
) -> dict[str, nn.Module]:
    """Replace the named linear layers of `block` by `bits`-wide copies (`quantize.convert_linear`; the originals'
    weights are not modified) and return the originals for `restore`."""
    from trainables.quantize import convert_linear

    originals = {}
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = block.get_submodule(parent_name) if parent_name else block
        original = getattr(parent, child)
        setattr(parent, child, convert_linear(original, bits, qcfg, device, compute_dtype))
        originals[name] = original
    return originals


def restore(block: nn.Module, originals: dict[str, nn.Module]) -> None:
    """Put the layers `swap_in` returned back in place."""
    for name, original in originals.items():
        parent_name, _, child = name.rpartition(".")
        parent = block.get_submodule(parent_name) if parent_name else block
        setattr(parent, child, original)


class _Replay(nn.Module):
    """Stands in for a block before the measured one: returns that block's recorded reference output."""

    def __init__(self) -> None:
        super().__init__()
        self.value: Any = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.value


# --- the measurement ---------------------------------------------------------------------------------------------


def _calibration(cfg: TrialConfig, tokenizer: Any, s: SensitivitySettings) -> tuple[list[Any], str]:
    """(list of collated batches of at most FORWARD_ROWS examples, data note) of the seeded calibration sample."""
    from trainables import data

    raw = data.load_raw(cfg.task)
    assert s.examples is not None and s.seq_len is not None
    # SST-2: prepare draws `examples` sentences by the seed (only those are tokenized); WikiText-2: all blocks.
    td = data.prepare(raw, cfg.task, tokenizer, s.seq_len, s.examples, s.seed, s.examples, 1, s.seq_len)
    pool = td.train
    if len(pool) < s.examples:
        raise ConfigError(
            f"sensitivity: the {cfg.task.name} training data has {len(pool)} examples of {s.seq_len} tokens, "
            f"fewer than the {s.examples} asked; lower --examples"
        )
    chosen = random.Random(s.seed).sample(range(len(pool)), s.examples)
    causal = _causal(cfg)
    batches = []
    for start in range(0, len(chosen), FORWARD_ROWS):
        part = chosen[start : start + FORWARD_ROWS]
        labels = None if pool.labels is None else [pool.labels[i] for i in part]
        batches.append(data.collate([pool.ids[i] for i in part], labels, pool.pad_id, causal))
    return batches, td.data_note


def _causal(cfg: TrialConfig) -> bool:
    """Whether the task's model is a causal LM (KL per predicted token) rather than a classifier (per row)."""
    from trainables.tasks import get_task

    return get_task(cfg.task.name).head_kind == "causal_lm"


def _log_probs(model: nn.Module, batch: dict[str, torch.Tensor], causal: bool) -> torch.Tensor:
    """(predicted distributions, classes) float32 log-probabilities: every real token (causal) or sentence."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    if causal:
        logits = logits[batch["attention_mask"].bool()]
    return torch.log_softmax(logits, dim=-1)


def _kl_sum(ref: torch.Tensor, other: torch.Tensor) -> float:
    """Summed KL(ref || other) over rows of log-probabilities (nats)."""
    return float((ref.exp() * (ref - other)).sum())


def cache_key(cfg: TrialConfig, s: SensitivitySettings, device: str, compute: str) -> str:
    """sha256 (hex) of everything the table depends on: model (name and where it loads from), task and its data
    source, the calibration settings, the 4-bit settings and the compute dtype / device."""
    from trainables import data, models

    resolved = models.resolve(cfg.model)
    root = data.data_root(cfg.task)
    identity = {
        "version": FORMAT_VERSION,
        "model": [resolved.name, resolved.source, resolved.kind],
        "task": cfg.task.name,
        "data": str(root.resolve()) if root is not None else "hub",
        "convention": cfg.task.perplexity_convention,
        "train_examples": cfg.task.train_examples,
        "settings": dataclasses.asdict(s),
        "quant": [cfg.quantization.quant_type, cfg.quantization.double_quant, cfg.quantization.half_dtype],
        "targets": cfg.adapter.target_modules,
        "model_seed": None if _causal(cfg) else cfg.training.seed,  # the random classification head
        "compute": [device, compute],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def cache_path(cfg: TrialConfig, key: str) -> Path:
    """Where the table for `key` is cached: `<models.cache_root>/sensitivity/<model>-<task>-<key[:16]>.json`."""
    from trainables import models

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(cfg.model.name).name or "model")
    return models.cache_root(cfg.model) / "sensitivity" / f"{safe}-{cfg.task.name}-{key[:16]}.json"


def load_or_measure(
    cfg: TrialConfig,
    settings: SensitivitySettings | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> tuple[SensitivityTable, bool]:
    """(table, whether it came from the cache): the cached table for these settings (without module kinds, a
    cached table with them serves too: its block rows are the same measurement), else `measure_sensitivity`
    (written to the cache). Raises ConfigError as `measure_sensitivity` does."""
    from trainables.devices import pick_device, resolve_compute_dtype

    s = (settings or SensitivitySettings()).resolved(cfg.task.name)
    device = pick_device(cfg.training.device)
    compute = resolve_compute_dtype(cfg.training.compute_dtype, device.type)
    path = cache_path(cfg, cache_key(cfg, s, device.type, compute))
    supersets = [s] if s.by_kind else [s, dataclasses.replace(s, by_kind=True)]
    for candidate in supersets if use_cache else []:
        found = cache_path(cfg, cache_key(cfg, candidate, device.type, compute))
        if found.is_file():
            try:
                return SensitivityTable.from_dict(json.loads(found.read_text())), True
            except (ValueError, KeyError, TypeError):
                pass  # an unreadable or older file is measured again and replaced
    table = measure_sensitivity(cfg, s, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table.to_dict(), indent=1) + "\n")
    tmp.replace(path)
    return table, False


def measure_sensitivity(
    cfg: TrialConfig, settings: SensitivitySettings | None = None, progress: Progress | None = None
) -> SensitivityTable:
    """Measure the table for `cfg`'s model and task (quantization settings: `cfg.quantization`'s quant_type,
    double_quant and half_dtype; device and compute dtype: `cfg.training`; adaptable weights:
    `cfg.adapter.target_modules`). Loads the model once; needs about the memory of one forward pass of
    FORWARD_ROWS examples plus the reference log-probabilities (smollm2-135m: 4 x 128 tokens x 49,152 x 4 bytes =
    100 MB per batch). Raises ConfigError for a model or data that cannot be loaded, or too small a data split."""
    from trainables import models
    from trainables.devices import pick_device, resolve_compute_dtype, torch_dtype
    from trainables.loop import seed_everything
    from trainables.quiet import quiet_libraries

    quiet_libraries()
    s = (settings or SensitivitySettings()).resolved(cfg.task.name)
    device = pick_device(cfg.training.device)
    compute = resolve_compute_dtype(cfg.training.compute_dtype, device.type)
    dtype = torch_dtype(compute)
    start = time.perf_counter()
    seed_everything(cfg.training.seed)
    tokenizer = models.load_tokenizer(cfg.model)
    batches, note = _calibration(cfg, tokenizer, s)
    model = models.load_model(cfg.model, cfg.task, tokenizer, seed=cfg.training.seed, dtype=dtype)
    model.to(device).eval()
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    _, blocks = models.find_blocks(model)
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    causal = _causal(cfg)

    names = [block_linears(block) for block in blocks]
    kinds = sorted({kind_of(n) for n in names[0]}, key=KINDS.index) if s.by_kind else []
    kinds = kinds if len(kinds) > 1 else []
    units: list[tuple[str | None, int]] = [(None, b) for b in s.bits] + [
        (k, b) for k in kinds for b in s.bits
    ]
    total = len(blocks) * len(units)

    # Reference pass: log-probabilities and every block's output, per batch.
    outputs: list[list[Any]] = [[None] * len(batches) for _ in blocks]
    current = {"batch": 0}

    def recorder(index: int) -> Any:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            outputs[index][current["batch"]] = output

        return hook

    handles = [block.register_forward_hook(recorder(i)) for i, block in enumerate(blocks)]
    references = []
    with torch.no_grad():
        for b, batch in enumerate(batches):
            current["batch"] = b
            references.append(_log_probs(model, batch, causal))
    for h in handles:
        h.remove()
    tokens = sum(r.shape[0] for r in references)

    rows: list[dict[str, Any]] = [{"kl": {}, "kind_kl": {k: {} for k in kinds}} for _ in blocks]
    done = 0
    replays = [_Replay() for _ in blocks]
    for i, block in enumerate(blocks):
        originals_blocks = [blocks[j] for j in range(i)]
        for j in range(i):
            blocks[j] = replays[j]
        try:
            for kind, bits in units:
                chosen = [n for n in names[i] if kind is None or kind_of(n) == kind]
                swapped = swap_in(block, chosen, bits, cfg.quantization, device, dtype)
                kl_sum = 0.0
                with torch.no_grad():
                    for b, batch in enumerate(batches):
                        for j in range(i):
                            replays[j].value = outputs[j][b]
                        kl_sum += _kl_sum(references[b], _log_probs(model, batch, causal))
                restore(block, swapped)
                del swapped
                value = max(0.0, kl_sum / tokens)
                if kind is None:
                    rows[i]["kl"][bits] = value
                else:
                    rows[i]["kind_kl"][kind][bits] = value
                done += 1
                if progress is not None:
                    progress(done, total, f"block {i} {kind or 'all'} {bits}-bit: KL {value:.3g}")
        finally:
            for j, original in enumerate(originals_blocks):
                blocks[j] = original
    outputs.clear()  # the recorded block outputs and reference log-probabilities go before the gradients
    references.clear()

    grads = _gradient_signals(model, blocks, names, batches, cfg, s)
    table_blocks = [
        BlockSensitivity(index=i, kl=row["kl"], kind_kl=row["kind_kl"], **grads[i])
        for i, row in enumerate(rows)
    ]
    return SensitivityTable(
        model=cfg.model.name,
        task=cfg.task.name,
        key=cache_key(cfg, s, device.type, compute),
        settings={
            **dataclasses.asdict(s),
            "bits": list(s.bits),
            "device": device.type,
            "compute_dtype": compute,
        },
        data_note=note,
        kinds=kinds,
        blocks=table_blocks,
        tokens=tokens,
        seconds=round(time.perf_counter() - start, 1),
    )


def _gradient_signals(
    model: nn.Module,
    blocks: nn.ModuleList,
    names: list[list[str]],
    batches: list[dict[str, torch.Tensor]],
    cfg: TrialConfig,
    s: SensitivitySettings,
) -> list[dict[str, Any]]:
    """Per block {importance, fisher, spectrum} from per-example gradients of the task loss (see module doc)."""
    from trainables.adapters import target_names

    empty: dict[str, Any] = {"importance": None, "fisher": None, "spectrum": []}
    if not s.grad_examples:
        return [dict(empty) for _ in blocks]
    targets = target_names("", names, cfg.adapter)  # ".{i}.{name}"
    weights: list[list[nn.Parameter]] = []
    for i, block in enumerate(blocks):
        chosen = [t.split(".", 2)[2] for t in targets[i]]
        weights.append([block.get_submodule(n).weight for n in chosen])
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in weights:
        for w in layer:
            w.requires_grad_(True)
    examples = [
        {k: v[r : r + 1] for k, v in batch.items()}
        for batch in batches
        for r in range(batch["input_ids"].shape[0])
    ][: s.grad_examples]
    sums = [[torch.zeros_like(w) for w in layer] for layer in weights]
    fisher = [0.0] * len(blocks)
    model.eval()  # no dropout: the gradient of the function being quantized
    for example in examples:
        loss = model(**example).loss  # collate gave the labels: next tokens (causal) or the class
        loss.backward()
        for i, layer in enumerate(weights):
            for w, acc in zip(layer, sums[i]):
                if w.grad is not None:
                    g = w.grad.float()
                    fisher[i] += float(g.pow(2).sum())
                    acc += g
                    w.grad = None
    for layer in weights:
        for w in layer:
            w.requires_grad_(False)
    out = []
    n = len(examples)
    for i, layer in enumerate(sums):
        spectrum = torch.zeros(s.max_rank, dtype=torch.float64)
        importance = 0.0
        for acc in layer:
            mean = (acc / n).double()
            importance += float(mean.pow(2).sum())
            sv2 = torch.linalg.svdvals(mean).pow(2)[: s.max_rank]
            spectrum[: sv2.numel()] += sv2
        out.append({"importance": importance, "fisher": fisher[i] / n, "spectrum": spectrum.tolist()})
    return out
