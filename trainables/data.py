"""Task data plumbing shared by every task: local roots and files, hub loading, tokenizing, blocks, batches.

What each task reads lives in its module under `trainables/tasks/` (`sst2.py`: `<root>/sst2/{train,dev}.tsv`,
`wikitext2.py`: `<root>/wikitext-2/wiki.*.tokens`, `textcls.py` / `lm.py`: the user's files or hub dataset). The
root of the shipped tasks' files comes from `task.data_dir`, else `RANKBITS_DATA_DIR`; with neither, the Hugging
Face hub is used. `load_raw`, `prepare` and `check_local` dispatch to the task's spec (`trainables.tasks`).
Language-model text becomes blocks by `task.perplexity_convention` (default `joined`: the text as released, the
common definition; see `config.PERPLEXITY_CONVENTIONS`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.config import PERPLEXITY_CONVENTIONS, TaskConfig
from trainables.errors import ConfigError

if TYPE_CHECKING:
    import torch


@dataclass
class RawTask:
    """Untokenized task data."""

    train_texts: list[str]
    train_labels: list[int] | None
    eval_texts: list[str]
    eval_labels: list[int] | None
    data_note: str
    source: str
    label_names: list[str] | None = None
    """Classification: the class names in label-id order (id i is `label_names[i]`); None for a language model."""


def data_root(cfg: TaskConfig) -> Path | None:
    root = cfg.data_dir or os.environ.get("RANKBITS_DATA_DIR")
    return Path(root).expanduser() if root else None


def check_files(root: Path, needed: tuple[str, ...], task: str) -> None:
    """ConfigError naming every one of `needed` (paths relative to `root`) that is missing, before any training."""
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


def check_local(root: Path, task: str) -> None:
    """`check_files` with the files task `task` needs under a local root."""
    from trainables.tasks import get_task

    check_files(root, get_task(task).local_files, task)


LOCAL_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".json", ".txt", ".tokens", ".raw", ".text")
"""File endings that mark `task.data` as a local file even when it does not exist (then: not found)."""


def local_path(text: str) -> Path | None:
    """`text` as a local path when it names one (it exists, starts with `.`, `/` or `~`, or ends in one of
    `LOCAL_SUFFIXES`); None when it reads as a Hugging Face hub dataset id (`owner/name`)."""
    path = Path(text).expanduser()
    if path.exists() or text.startswith((".", "/", "~")) or path.suffix.lower() in LOCAL_SUFFIXES:
        return path
    return None


def file_stamp(text: str) -> tuple[str, int, int]:
    """(text, modification time in ns, size in bytes) of a local file, (text, 0, 0) for anything else: a cache
    key that changes when the file does."""
    path = local_path(text)
    if path is None or not path.is_file():
        return text, 0, 0
    stat = path.stat()
    return text, stat.st_mtime_ns, stat.st_size


def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of `path`; ConfigError (naming `what`, e.g. `task.data`) when it is missing, not a file,
    not UTF-8 or holds only whitespace."""
    if not path.is_file():
        raise ConfigError(f"{what}: {str(path)!r} not found; give an existing file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what}: {str(path)!r} is not UTF-8 text (byte {exc.start}); convert it to UTF-8"
        ) from None
    if not text.strip():
        raise ConfigError(f"{what}: {str(path)!r} is empty; give a file with text")
    return text


def hub_dataset(task: str, *args: Any, **kwargs: Any) -> Any:
    """`datasets.load_dataset(*args, **kwargs)`; any failure becomes one ConfigError line naming the task."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a core dependency
        raise ConfigError("the hub data path needs the `datasets` package: pip install datasets") from exc
    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one clear line
        hint = (
            "the hub cannot be reached; pass --data-dir (or RANKBITS_DATA_DIR) with a local copy "
            "(see ../shared/data/README.md)"
        )
        raise ConfigError(f"task {task}: {hint} ({exc.__class__.__name__})") from exc


def load_raw(cfg: TaskConfig) -> RawTask:
    """The task's untokenized data (`TaskSpec.load_raw`)."""
    from trainables.tasks import get_task

    return get_task(cfg.name).load_raw(cfg)


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
    import torch  # lazy: the task registry (and so CLI help) imports this module

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
    label_names: list[str] | None = None
    """Classification: class names in label-id order; None for a language model."""


def pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def tokenize(tokenizer: Any, texts: list[str], max_len: int) -> list[list[int]]:
    """Token ids of each text (special tokens added), truncated to `max_len`."""
    return tokenizer(texts, truncation=True, max_length=max_len, add_special_tokens=True)["input_ids"]


def blocks(
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


_tokenize = tokenize
_blocks = blocks


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
    """Tokenize what the run will use (`TaskSpec.prepare`: a seeded subset of the training sentences of a
    classification task, the blocks of a language-model task, and the evaluation data)."""
    from trainables.tasks import get_task

    return get_task(task.name).prepare(
        raw, task, tokenizer, seq_len, batch_size, seed, examples_needed, eval_examples, eval_tokens
    )


def __getattr__(name: str) -> Any:
    """Old names, read from the task modules (`SST2_FILES`, `WIKITEXT_FILES`, `read_sst2_tsv`, ...)."""
    sources: dict[str, Callable[[], Any]] = {
        "SST2_FILES": lambda: _task_module("sst2").FILES,
        "SST2_LABELS": lambda: _task_module("sst2").LABELS,
        "read_sst2_tsv": lambda: _task_module("sst2").read_tsv,
        "WIKITEXT_FILES": lambda: _task_module("wikitext2").FILES,
        "WIKITEXT_TRAIN": lambda: _task_module("wikitext2").TRAIN,
    }
    if name in sources:
        return sources[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _task_module(name: str) -> Any:
    import importlib

    return importlib.import_module(f"trainables.tasks.{name}")
