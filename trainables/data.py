"""SST-2 and WikiText-2: hub datasets or local files -> tokenized, batched tensors.

Local layout (as in `../shared/data`): `<root>/sst2/{train,dev}.tsv` (GLUE TSV, header `sentence<TAB>label`) and
`<root>/wikitext-2/wiki.{train,valid,test}.tokens` (the tokenized WikiText-2 v1 release). The root comes from
`task.data_dir`, else `RANKBITS_DATA_DIR`; with neither, the Hugging Face hub is used (`nyu-mll/glue` sst2,
`Salesforce/wikitext` wikitext-2-v1).

When the WikiText-2 train split is missing (the offline case), the model is fine-tuned on the validation split and
evaluated on the test split, and `data_note` says so. WikiText-2 becomes blocks by `task.perplexity_convention`
(default `joined`: the text as released, the common definition; see `config.PERPLEXITY_CONVENTIONS`).
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainables.config import PERPLEXITY_CONVENTIONS, TaskConfig
from trainables.errors import ConfigError

SST2_FILES = ("sst2/train.tsv", "sst2/dev.tsv")
WIKITEXT_FILES = ("wikitext-2/wiki.valid.tokens", "wikitext-2/wiki.test.tokens")
WIKITEXT_TRAIN = "wikitext-2/wiki.train.tokens"
SST2_LABELS = ("0", "1")


@dataclass
class RawTask:
    """Untokenized task data."""

    train_texts: list[str]
    train_labels: list[int] | None
    eval_texts: list[str]
    eval_labels: list[int] | None
    data_note: str
    source: str


def data_root(cfg: TaskConfig) -> Path | None:
    root = cfg.data_dir or os.environ.get("RANKBITS_DATA_DIR")
    return Path(root).expanduser() if root else None


def check_local(root: Path, task: str) -> None:
    """ConfigError naming every missing file, before any training starts."""
    needed = SST2_FILES if task == "sst2" else WIKITEXT_FILES
    if not root.is_dir():
        raise ConfigError(
            f"data dir {str(root)!r} does not exist; point --data-dir at a folder holding {', '.join(needed)}"
        )
    missing = [f for f in needed if not (root / f).is_file()]
    if missing:
        raise ConfigError(
            f"data dir {str(root)!r} lacks {', '.join(missing)} for task {task}; expected the layout "
            f"{', '.join(needed)} (see ../shared/data/README.md)"
        )


def read_sst2_tsv(path: Path) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["sentence", "label"]:
            raise ConfigError(f"{path}: expected a GLUE TSV with header 'sentence<TAB>label', got {header!r}")
        for line, row in enumerate(reader, start=2):
            if len(row) < 2:
                continue
            label = row[1].strip()
            if label not in SST2_LABELS:  # an id past the 2-label head would fail deep inside the loss
                raise ConfigError(
                    f"{path}: line {line} has label {label!r}; SST-2 labels are 0 (negative) or 1 (positive)"
                )
            texts.append(row[0].strip())
            labels.append(int(label))
    return texts, labels


def load_raw(cfg: TaskConfig) -> RawTask:
    root = data_root(cfg)
    if root is not None:
        check_local(root, cfg.name)
        if cfg.name == "sst2":
            tr, trl = read_sst2_tsv(root / SST2_FILES[0])
            ev, evl = read_sst2_tsv(root / SST2_FILES[1])
            return RawTask(tr, trl, ev, evl, "SST-2 train / dev (local GLUE TSV)", str(root))
        wiki = root / "wikitext-2"
        test = (wiki / "wiki.test.tokens").read_text(encoding="utf-8")
        if (root / WIKITEXT_TRAIN).is_file():
            train = (root / WIKITEXT_TRAIN).read_text(encoding="utf-8")
            note = "WikiText-2 v1: fine-tuned on train, perplexity on test"
        else:
            train = (wiki / "wiki.valid.tokens").read_text(encoding="utf-8")
            note = "WikiText-2 v1 (train split absent): fine-tuned on valid, perplexity on test"
        return RawTask([train], None, [test], None, note, str(root))
    return _load_hub(cfg)


def _load_hub(cfg: TaskConfig) -> RawTask:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a core dependency
        raise ConfigError("the hub data path needs the `datasets` package: pip install datasets") from exc
    hint = "the hub cannot be reached; pass --data-dir (or RANKBITS_DATA_DIR) with a local copy (see ../shared/data/README.md)"
    try:
        if cfg.name == "sst2":
            ds = datasets.load_dataset("nyu-mll/glue", "sst2")
            return RawTask(
                list(ds["train"]["sentence"]),
                list(ds["train"]["label"]),
                list(ds["validation"]["sentence"]),
                list(ds["validation"]["label"]),
                "SST-2 train / validation (hub)",
                "hub:nyu-mll/glue",
            )
        ds = datasets.load_dataset("Salesforce/wikitext", "wikitext-2-v1")
        return RawTask(
            ["".join(ds["train"]["text"])],
            None,
            ["".join(ds["test"]["text"])],
            None,
            "WikiText-2 v1: fine-tuned on train, perplexity on test (hub)",
            "hub:Salesforce/wikitext",
        )
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one clear line
        raise ConfigError(f"task {cfg.name}: {hint} ({exc.__class__.__name__})") from exc


# --- tokenized data -----------------------------------------------------------------------------------------


@dataclass
class Batches:
    """Training examples as token id lists (+ labels), served as padded batches in a seeded order."""

    ids: list[list[int]]
    labels: list[int] | None
    pad_id: int
    batch_size: int
    seed: int
    causal: bool

    def __len__(self) -> int:
        return len(self.ids)

    def steps_per_epoch(self) -> int:
        return max(1, len(self.ids) // self.batch_size)

    def iterate(self) -> Iterator[dict[str, torch.Tensor]]:
        """Endless stream of batches, reshuffled each epoch (drop_last)."""
        size = min(self.batch_size, len(self.ids))
        epoch = 0
        while True:
            order = list(range(len(self.ids)))
            random.Random(self.seed * 1000 + epoch).shuffle(order)
            for start in range(0, len(order) - size + 1, size):
                chosen = order[start : start + size]
                labels = [self.labels[i] for i in chosen] if self.labels is not None else None
                yield collate([self.ids[i] for i in chosen], labels, self.pad_id, self.causal)
            epoch += 1


def collate(
    seqs: list[list[int]], labels: list[int] | None, pad_id: int, causal: bool
) -> dict[str, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if causal:
        batch["labels"] = ids.masked_fill(mask == 0, -100)
    else:
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return batch


@dataclass
class TaskData:
    train: Batches
    eval_ids: list[list[int]]
    eval_labels: list[int] | None
    data_note: str
    source: str


def _tokenize(tokenizer: Any, texts: list[str], max_len: int) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=max_len, add_special_tokens=True)["input_ids"]


def _blocks(
    tokenizer: Any, text: str, seq_len: int, limit_tokens: int | None = None, convention: str = "joined"
) -> list[list[int]]:
    """Token ids of `text` cut into non-overlapping blocks of `seq_len` tokens (the last partial block dropped),
    at most `limit_tokens` tokens (rounded down to whole blocks, at least one block) when given.

    `convention` (see `PERPLEXITY_CONVENTIONS`): `joined` tokenizes the text as released, blank lines and line
    breaks included; `lines` tokenizes line by line and drops blank lines."""
    if convention not in PERPLEXITY_CONVENTIONS:
        raise ConfigError(
            f"task.perplexity_convention: {convention!r}; choose one of {', '.join(PERPLEXITY_CONVENTIONS)}"
        )
    need = None if limit_tokens is None else limit_tokens + seq_len
    ids = _joined_ids(tokenizer, text, need) if convention == "joined" else _line_ids(tokenizer, text, need)
    if limit_tokens is not None:
        ids = ids[: max(seq_len, limit_tokens - limit_tokens % seq_len)]
    return [ids[i : i + seq_len] for i in range(0, len(ids) - seq_len + 1, seq_len)]


def _joined_ids(tokenizer: Any, text: str, need: int | None) -> list[int]:
    """Ids of `text` tokenized as one string. With `need`, only a prefix ending at a line break is tokenized,
    grown until it gives `need` tokens: the tokens kept (at least one block short of the cut) are those of the
    whole text."""
    if need is None:
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    chars = 8 * need
    while True:
        cut = text.find("\n", chars)
        prefix = text if cut < 0 else text[: cut + 1]
        ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        if len(ids) >= need or len(prefix) == len(text):
            return ids
        chars *= 2


def _line_ids(tokenizer: Any, text: str, need: int | None) -> list[int]:
    ids: list[int] = []
    for line in text.splitlines(keepends=True):
        if line.strip():
            ids.extend(tokenizer(line, add_special_tokens=False)["input_ids"])
        if need is not None and len(ids) >= need:
            break
    return ids


def prepare(
    raw: RawTask,
    task: TaskConfig,
    tokenizer: Any,
    seq_len: int,
    batch_size: int,
    seed: int,
    examples_needed: int | None,
    eval_examples: int | None,
    eval_tokens: int,
) -> TaskData:
    """Tokenize what the run will use: a seeded subset of SST-2 training sentences, WikiText blocks, eval data."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if task.name == "sst2":
        assert raw.train_labels is not None and raw.eval_labels is not None
        order = list(range(len(raw.train_texts)))
        random.Random(seed).shuffle(order)
        if task.train_examples is not None:
            order = order[: task.train_examples]
        if examples_needed is not None:
            order = order[:examples_needed]
        train_ids = _tokenize(tokenizer, [raw.train_texts[i] for i in order], seq_len)
        train = Batches(train_ids, [raw.train_labels[i] for i in order], pad, batch_size, seed, causal=False)
        n_eval = eval_examples or len(raw.eval_texts)
        eval_ids = _tokenize(tokenizer, raw.eval_texts[:n_eval], seq_len)
        return TaskData(train, eval_ids, raw.eval_labels[:n_eval], raw.data_note, raw.source)
    convention = task.perplexity_convention
    blocks = _blocks(tokenizer, raw.train_texts[0], seq_len, convention=convention)
    if task.train_examples is not None:
        blocks = blocks[: task.train_examples]
    if not blocks:
        raise ConfigError(f"task wikitext2: training text is shorter than one block of {seq_len} tokens")
    train = Batches(blocks, None, pad, batch_size, seed, causal=True)
    eval_blocks = _blocks(
        tokenizer, raw.eval_texts[0], seq_len, limit_tokens=eval_tokens, convention=convention
    )
    return TaskData(train, eval_blocks, None, raw.data_note, raw.source)
