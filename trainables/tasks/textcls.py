"""textcls: your own text classification data: accuracy, and macro-F1 when there are more than two classes.

Training data (`task.data`): a `.csv`, `.tsv` (tab-separated, quotes taken literally as in GLUE) or `.jsonl` file
with a header / keys naming `task.text_column` and `task.label_column`, or a Hugging Face hub dataset id (its
`train` split). Evaluation data: `task.eval_data` (a file in the same format), else `task.eval_fraction` of the
training rows (drawn with a fixed seed: the same rows whatever `training.seed`), else the hub dataset's
`task.eval_split` (default `validation`).

Labels may be any strings or integers: the ids are the training labels sorted (numerically when all are integers,
so `0` / `1` stay 0 / 1); the result records the names in id order (`label_names`) and `num_classes`. Texts are
stripped of surrounding whitespace. Every problem with the data (not found, not UTF-8, empty, unparsable, a
missing column, a row without a label, a single class, an evaluation label never seen in training) is one
ConfigError line at pre-flight, before any training.
"""

from __future__ import annotations

import csv
import functools
import random
from pathlib import Path
from typing import Any, ClassVar

from trainables.config import TaskConfig
from trainables.data import RawTask, file_stamp, hub_dataset, local_path
from trainables.errors import ConfigError
from trainables.tasks import register
from trainables.tasks.base import ClassificationTask

SPLIT_SEED = 0
"""Seed of the `eval_fraction` hold-out draw (fixed: every training seed is scored on the same rows)."""
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@register
class TextClassification(ClassificationTask):
    name = "textcls"
    title = "text classification (your data)"
    description = (
        "your CSV / TSV / JSONL or hub text-classification data, accuracy (+ macro-F1 above 2 classes)"
    )
    metrics: ClassVar[dict[str, str]] = {"accuracy": "max", "macro_f1": "max"}
    training: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 16, "seq_len": 128, "max_steps": 300}
    model = "minilm-l6"
    own_data = True

    def check_data(self, cfg: TaskConfig) -> None:
        self.load_raw(cfg)

    def label_names(self, cfg: TaskConfig) -> list[str]:
        return list(self.load_raw(cfg).label_names or [])

    def load_raw(self, cfg: TaskConfig) -> RawTask:
        self.require_data(cfg)
        return _load(
            file_stamp(str(cfg.data)),
            file_stamp(cfg.eval_data) if cfg.eval_data is not None else None,
            cfg.eval_fraction,
            cfg.text_column,
            cfg.label_column,
            cfg.dataset_config,
            cfg.eval_split,
        )


@functools.lru_cache(maxsize=8)
def _load(
    data: tuple[str, int, int],
    eval_data: tuple[str, int, int] | None,
    eval_fraction: float | None,
    text_column: str,
    label_column: str,
    dataset_config: str | None,
    eval_split: str | None,
) -> RawTask:
    source = data[0]
    path = local_path(source)
    if path is not None:
        texts, labels = read_table(path, text_column, label_column, "task.data")
        where, hub_eval = str(path), None
    else:
        want_eval = eval_data is None and eval_fraction is None
        texts, labels, hub_eval = _hub(
            source, dataset_config, eval_split, text_column, label_column, want_eval
        )
        where = f"hub:{source}"
    if eval_data is not None:
        eval_path = local_path(eval_data[0])
        if eval_path is None:
            raise ConfigError(
                f"task.eval_data: {eval_data[0]!r} is not a file; give a .csv, .tsv or .jsonl file"
            )
        ev_texts, ev_labels = read_table(eval_path, text_column, label_column, "task.eval_data")
        eval_where = str(eval_path)
    elif eval_fraction is not None:
        order = list(range(len(texts)))
        random.Random(SPLIT_SEED).shuffle(order)
        held = set(order[: max(1, round(len(texts) * eval_fraction))])
        if len(held) >= len(texts):
            raise ConfigError(
                f"task.eval_fraction: {eval_fraction} of {len(texts)} rows leaves none to train on; "
                "give more rows or a smaller fraction"
            )
        ev_texts = [t for i, t in enumerate(texts) if i in held]
        ev_labels = [x for i, x in enumerate(labels) if i in held]
        texts = [t for i, t in enumerate(texts) if i not in held]
        labels = [x for i, x in enumerate(labels) if i not in held]
        eval_where = f"{eval_fraction:g} of it held out"
    elif hub_eval is not None:
        ev_texts, ev_labels, eval_where = hub_eval
    else:
        raise ConfigError("task.eval_data: no evaluation data; give --eval-data FILE or --eval-fraction 0.1")
    names = label_order(labels, label_column)
    ids = {name: i for i, name in enumerate(names)}
    unknown = sorted({x for x in ev_labels if x not in ids})
    if unknown:
        raise ConfigError(
            f"task.eval_data: label {unknown[0]!r} is not among the training labels ({', '.join(names)}); "
            "the model cannot predict a class it never saw"
        )
    note = (
        f"textcls: {len(texts)} training / {len(ev_texts)} evaluation examples, {len(names)} classes; "
        f"train {where}, evaluate on {eval_where}"
    )
    return RawTask(texts, [ids[x] for x in labels], ev_texts, [ids[x] for x in ev_labels], note, where, names)


def label_order(labels: list[str], column: str) -> list[str]:
    """The distinct labels sorted (numerically when every one is an integer); ConfigError for fewer than two."""
    distinct = set(labels)
    if len(distinct) < 2:
        only = next(iter(distinct), "")
        raise ConfigError(
            f"task.label_column: column {column!r} holds one class ({only!r}) in the training data; "
            "classification needs at least two"
        )
    if all(_is_int(x) for x in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_table(path: Path, text_column: str, label_column: str, what: str) -> tuple[list[str], list[str]]:
    """(texts, labels as strings) of a `.csv`, `.tsv` or `.jsonl` file; ConfigError (naming `what`) when it is
    missing, not UTF-8, empty, unparsable, lacks a column or has a row without a label."""
    import pandas as pd

    if not path.is_file():
        raise ConfigError(f"{what}: {str(path)!r} not found; give an existing .csv, .tsv or .jsonl file")
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"{what}: {str(path)!r}: unknown format {path.suffix or '(no ending)'!r}; use .csv, .tsv or .jsonl"
        )
    try:
        if kind == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False, encoding="utf-8")
        else:
            frame = pd.read_csv(
                path,
                sep="\t" if kind == "tsv" else ",",
                quoting=csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL,
                dtype=str,
                keep_default_na=False,
                encoding="utf-8",
            )
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what}: {str(path)!r} is not UTF-8 text (byte {first_bad_byte(path, exc.start)}); convert it to UTF-8"
        ) from None
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{what}: {str(path)!r} is empty; give a file with a header and rows") from None
    except ValueError as exc:  # pandas' ParserError is a ValueError, as are broken JSON lines
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ConfigError(f"{what}: {str(path)!r} cannot be read as {kind}: {first}") from None
    for column, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
        if column not in frame.columns:
            raise ConfigError(
                f"{what}: {str(path)!r} has no column {column!r}; its columns: "
                f"{', '.join(map(str, frame.columns))}; name the right one with {flag}"
            )
    if frame.empty:
        raise ConfigError(f"{what}: {str(path)!r} has a header but no rows")
    line = 2 if kind != "jsonl" else 1  # the first data row's line number in the file
    texts, labels = frame[text_column], frame[label_column]
    for i, (text, label) in enumerate(zip(texts, labels)):
        if _missing(label):
            raise ConfigError(
                f"{what}: {str(path)!r} line {i + line} has no {label_column!r} value; every row needs a label"
            )
        if _missing(text):
            raise ConfigError(f"{what}: {str(path)!r} line {i + line} has no {text_column!r} value")
    return [str(t).strip() for t in texts], [_label_text(x) for x in labels]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or str(value).strip() == ""


def _label_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _hub(
    dataset: str,
    config: str | None,
    eval_split: str | None,
    text_column: str,
    label_column: str,
    want_eval: bool,
) -> tuple[list[str], list[str], tuple[list[str], list[str], str] | None]:
    """(train texts, train labels, (eval texts, eval labels, description) or None unless `want_eval`) of a hub
    dataset."""
    ds = hub_dataset("textcls", dataset, config)
    split = eval_split or "validation"
    for name in ("train", split) if want_eval else ("train",):
        if name not in ds:
            raise ConfigError(
                f"task.data: hub dataset {dataset!r} has no split {name!r}; its splits: {', '.join(ds)}; "
                + ("give --eval-fraction 0.1 or task.eval_split" if name == split else "use another dataset")
            )
    for column, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
        if column not in ds["train"].column_names:
            raise ConfigError(
                f"task.data: hub dataset {dataset!r} has no column {column!r}; its columns: "
                f"{', '.join(ds['train'].column_names)}; name the right one with {flag}"
            )

    def rows(name: str) -> tuple[list[str], list[str]]:
        part = ds[name]
        return [str(t).strip() for t in part[text_column]], [_label_text(x) for x in part[label_column]]

    texts, labels = rows("train")
    return texts, labels, ((*rows(split), f"hub split {split}") if want_eval else None)


def first_bad_byte(path: Path, fallback: int) -> int:
    """The offset of the first byte of `path` that is not UTF-8 (pandas reports it within its read chunk)."""
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    except OSError:
        pass
    return fallback
