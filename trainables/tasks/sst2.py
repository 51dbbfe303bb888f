"""SST-2 (GLUE): binary sentence sentiment, accuracy on the 872-sentence dev set.

Local: `<root>/sst2/{train,dev}.tsv` (GLUE TSV, header `sentence<TAB>label`); hub: `nyu-mll/glue` sst2
(train / validation).
"""

from __future__ import annotations

from typing import Any, ClassVar

from trainables.config import TaskConfig
from trainables.data import RawTask, data_root, hub_dataset, read_sst2_tsv
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
            tr, trl = read_sst2_tsv(root / FILES[0])
            ev, evl = read_sst2_tsv(root / FILES[1])
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
