"""lm: language modelling on your own text: perplexity with the same token-level definition as WikiText-2.

Training text (`task.data`): a plain UTF-8 text file, or a Hugging Face hub dataset id whose `task.text_column`
rows are joined into one text (as released when every row keeps its line break, as the WikiText rows do; else
one row per line). Evaluation text: `task.eval_data` (a text file), else the last `task.eval_fraction` of the
training text (cut at a line break), else the hub dataset's `task.eval_split` (default `validation`). Both are cut
into `training.seq_len`-token blocks by `task.perplexity_convention` exactly as WikiText-2 is, so WikiText-2's
valid / test files read through `lm` give WikiText-2's perplexity. A missing, non-UTF-8 or empty file is one
ConfigError line at pre-flight.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from trainables.config import TaskConfig
from trainables.data import RawTask, file_stamp, hub_dataset, local_path, read_text_file
from trainables.errors import ConfigError
from trainables.tasks import register
from trainables.tasks.base import LanguageModelTask


@register
class LanguageModelling(LanguageModelTask):
    name = "lm"
    title = "language modelling (your text)"
    description = "your plain-text corpus or hub dataset text column, perplexity"
    training: ClassVar[dict[str, Any]] = {"lr": 2e-4, "batch_size": 4, "seq_len": 256, "max_steps": 200}
    model = "smollm2-135m"
    own_data = True

    def check_data(self, cfg: TaskConfig) -> None:
        self.load_raw(cfg)

    def load_raw(self, cfg: TaskConfig) -> RawTask:
        self.require_data(cfg)
        return _load(
            file_stamp(str(cfg.data)),
            file_stamp(cfg.eval_data) if cfg.eval_data is not None else None,
            cfg.eval_fraction,
            cfg.text_column,
            cfg.dataset_config,
            cfg.eval_split,
        )


@functools.lru_cache(maxsize=4)
def _load(
    stamped: tuple[str, int, int],
    eval_stamped: tuple[str, int, int] | None,
    eval_fraction: float | None,
    text_column: str,
    dataset_config: str | None,
    eval_split: str | None,
) -> RawTask:
    data, eval_data = stamped[0], eval_stamped[0] if eval_stamped is not None else None
    path = local_path(data)
    want_eval = eval_data is None and eval_fraction is None
    if path is not None:
        train, where, hub_eval = read_text_file(path, "task.data"), str(path), None
    else:
        train, hub_eval = _hub(data, dataset_config, eval_split, text_column, want_eval)
        where = f"hub:{data}"
    if eval_data is not None:
        eval_path = local_path(eval_data)
        if eval_path is None:
            raise ConfigError(f"task.eval_data: {eval_data!r} is not a file; give a plain-text file")
        held, eval_where = read_text_file(eval_path, "task.eval_data"), str(eval_path)
    elif eval_fraction is not None:
        train, held = split_text(train, eval_fraction)
        eval_where = f"its last {eval_fraction:g}"
    elif hub_eval is not None:
        held, eval_where = hub_eval
    else:
        raise ConfigError("task.eval_data: no evaluation text; give --eval-data FILE or --eval-fraction 0.1")
    note = f"lm: fine-tuned on {where}, perplexity on {eval_where}"
    return RawTask([train], None, [held], None, note, where)


def split_text(text: str, fraction: float) -> tuple[str, str]:
    """(first part, last `fraction` of the characters), cut after the line break nearest before the cut point
    (at the point itself when there is none); ConfigError when either part would hold no text."""
    point = int(len(text) * (1 - fraction))
    cut = text.rfind("\n", 0, point) + 1 or point
    head, tail = text[:cut], text[cut:]
    if not head.strip() or not tail.strip():
        raise ConfigError(
            f"task.eval_fraction: {fraction} of this text leaves one part empty; give more text or another fraction"
        )
    return head, tail


def join_rows(rows: list[str]) -> str:
    """Rows of a hub text column as one text: concatenated when every non-empty row ends with a line break (the
    WikiText rows, as released), else one row per line."""
    if all(r.endswith("\n") for r in rows if r):
        return "".join(rows)
    return "\n".join(rows) + "\n"


def _hub(
    dataset: str, config: str | None, eval_split: str | None, text_column: str, want_eval: bool
) -> tuple[str, tuple[str, str] | None]:
    ds = hub_dataset("lm", dataset, config)
    split = eval_split or "validation"
    for name in ("train", split) if want_eval else ("train",):
        if name not in ds:
            raise ConfigError(
                f"task.data: hub dataset {dataset!r} has no split {name!r}; its splits: {', '.join(ds)}; "
                + ("give --eval-fraction 0.1 or task.eval_split" if name == split else "use another dataset")
            )
    if text_column not in ds["train"].column_names:
        raise ConfigError(
            f"task.data: hub dataset {dataset!r} has no column {text_column!r}; its columns: "
            f"{', '.join(ds['train'].column_names)}; name the right one with --text-column"
        )
    train = join_rows([str(t) for t in ds["train"][text_column]])
    if not want_eval:
        return train, None
    return train, (join_rows([str(t) for t in ds[split][text_column]]), f"hub split {split}")
