"""SST-2 (GLUE): binary sentence sentiment, accuracy on the 872-sentence dev set.

Local: `<root>/sst2/{train,dev}.tsv` (GLUE TSV, header `sentence<TAB>label`); hub: `nyu-mll/glue` sst2
(train / validation).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, ClassVar

from trainables.config import TaskConfig
from trainables.data import RawTask, data_root, hub_dataset
from trainables.errors import ConfigError
from trainables.tasks import register
from trainables.tasks.base import ClassificationTask

FILES = ("sst2/train.tsv", "sst2/dev.tsv")
LABELS = ("0", "1")
"""Label ids as the GLUE TSV writes them: 0 negative, 1 positive."""
PEAK_TOKENS = 63
"""Batches are padded to their longest row: the longest of 300 SST-2 batches of 16 is 63 MiniLM tokens (seed 0;
the longest sentence is about 66)."""


@register
class SST2(ClassificationTask):
    name = "sst2"
    title = "SST-2"
    description = "GLUE SST-2 sentiment, accuracy"
    training: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 16, "seq_len": 128, "max_steps": 300}
    model = "minilm-l6"
    in_default_grid = True
    local_files = FILES

    def label_names(self, cfg: TaskConfig) -> list[str]:
        return list(LABELS)

    def load_raw(self, cfg: TaskConfig) -> RawTask:
        root = data_root(cfg)
        if root is not None:
            self.check_data(cfg)
            tr, trl = read_tsv(root / FILES[0])
            ev, evl = read_tsv(root / FILES[1])
            return RawTask(tr, trl, ev, evl, "SST-2 train / dev (local GLUE TSV)", str(root), list(LABELS))
        ds = hub_dataset(self.name, "nyu-mll/glue", "sst2")
        return RawTask(
            list(ds["train"]["sentence"]),
            list(ds["train"]["label"]),
            list(ds["validation"]["sentence"]),
            list(ds["validation"]["label"]),
            "SST-2 train / validation (hub)",
            "hub:nyu-mll/glue",
            list(LABELS),
        )

    def peak_row_tokens(self, cfg: TaskConfig, seq_len: int) -> int:
        return min(seq_len, PEAK_TOKENS)


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    """(sentences, labels) of a GLUE SST-2 TSV; ConfigError for another header or a label other than 0 / 1."""
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
            if label not in LABELS:  # an id past the 2-label head would fail deep inside the loss
                raise ConfigError(
                    f"{path}: line {line} has label {label!r}; SST-2 labels are 0 (negative) or 1 (positive)"
                )
            texts.append(row[0].strip())
            labels.append(int(label))
    return texts, labels
