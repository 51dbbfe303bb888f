"""WikiText-2 (v1, tokenized release): language modelling, perplexity on the test split.

Local: `<root>/wikitext-2/wiki.{train,valid,test}.tokens`; without the train split (the offline case) the model
is fine-tuned on the validation split and evaluated on the test split, and the result's `data_note` says so. Hub:
`Salesforce/wikitext` wikitext-2-v1 (rows joined as released: each row keeps its line break).
"""

from __future__ import annotations

from typing import Any, ClassVar

from trainables.config import TaskConfig
from trainables.data import RawTask, data_root, hub_dataset
from trainables.tasks import register
from trainables.tasks.base import LanguageModelTask

FILES = ("wikitext-2/wiki.valid.tokens", "wikitext-2/wiki.test.tokens")
TRAIN = "wikitext-2/wiki.train.tokens"


@register
class WikiText2(LanguageModelTask):
    name = "wikitext2"
    title = "WikiText-2"
    description = "WikiText-2 v1 language modelling, perplexity"
    training: ClassVar[dict[str, Any]] = {"lr": 2e-4, "batch_size": 4, "seq_len": 256, "max_steps": 200}
    model = "smollm2-135m"
    in_default_grid = True
    local_files = FILES

    def load_raw(self, cfg: TaskConfig) -> RawTask:
        root = data_root(cfg)
        if root is not None:
            self.check_data(cfg)
            test = (root / FILES[1]).read_text(encoding="utf-8")
            if (root / TRAIN).is_file():
                train = (root / TRAIN).read_text(encoding="utf-8")
                note = "WikiText-2 v1: fine-tuned on train, perplexity on test"
            else:
                train = (root / FILES[0]).read_text(encoding="utf-8")
                note = "WikiText-2 v1 (train split absent): fine-tuned on valid, perplexity on test"
            return RawTask([train], None, [test], None, note, str(root))
        ds = hub_dataset(self.name, "Salesforce/wikitext", "wikitext-2-v1")
        return RawTask(
            ["".join(ds["train"]["text"])],
            None,
            ["".join(ds["test"]["text"])],
            None,
            "WikiText-2 v1: fine-tuned on train, perplexity on test (hub)",
            "hub:Salesforce/wikitext",
        )
