"""What a task is: `TaskSpec`, the base of every task module, and the two families the tasks share.

A task module (`sst2.py`, `wikitext2.py`, `textcls.py`, `lm.py`) subclasses `ClassificationTask` or
`LanguageModelTask`, says where its data comes from (`load_raw`) and registers one instance
(`trainables.tasks.register`). Everything else (the model head, batching, the metric and its direction, the
default training settings and model preset, the memory model's row shape, CLI choices) is read off the spec.
Modelled on litgpt's `DataModule` (`litgpt/data/base.py`: one subclass per dataset in its own file).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from trainables.errors import ConfigError

if TYPE_CHECKING:
    from trainables.config import TaskConfig
    from trainables.data import RawTask, TaskData

HEADS = ("classification", "causal_lm")
"""Model heads a task can ask for: a sequence-classification head (transformers
`AutoModelForSequenceClassification`, PEFT `TaskType.SEQ_CLS`) or the causal-LM head (`AutoModelForCausalLM`,
`TaskType.CAUSAL_LM`)."""

OWN_DATA_FIELDS = ("data", "eval_data", "eval_fraction", "dataset_config", "eval_split")
"""TaskConfig fields that only tasks reading the user's data (`TaskSpec.own_data`) take."""

EvalProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Head:
    """The model head a configured task needs: `kind` (one of `HEADS`) and, for classification, the number of
    labels (the classifier's output width; 0 for a causal LM, whose logits span the vocabulary)."""

    kind: str
    num_labels: int = 0

    @property
    def causal(self) -> bool:
        return self.kind == "causal_lm"


class Scores(NamedTuple):
    """A final evaluation: the task's primary metric, the mean task loss (nats per example or per token) and any
    further metrics by result field name (e.g. `{"macro_f1": 0.71}`)."""

    value: float
    loss: float
    extra: dict[str, float]


class TaskSpec:
    """One task. Subclasses set the class attributes and implement `load_raw`; the families below implement
    batching and scoring."""

    name: ClassVar[str]
    """Registry key and `task.name` value: a Python identifier (it also names the `--model-<name>` grid flag)."""
    title: ClassVar[str]
    """Human name for help texts, e.g. `SST-2`."""
    description: ClassVar[str]
    """One line for `--task` help."""
    head_kind: ClassVar[str]
    """One of `HEADS`."""
    metrics: ClassVar[Mapping[str, str]]
    """{TrialResult field: "max" | "min"} the final evaluation fills; the first is the task metric (the default
    search objective, what ASHA and `export --best-under-mb` rank by)."""
    training: ClassVar[Mapping[str, Any]]
    """Default `training.*` settings of the research grid and the Pareto search for this task."""
    model: ClassVar[str]
    """Default model preset (`rankbits run / pareto --task`, `grid --model-<name>`)."""
    in_default_grid: ClassVar[bool] = False
    """Whether `rankbits grid` runs it without `--tasks`."""
    own_data: ClassVar[bool] = False
    """Whether it reads the user's data (`task.data`, `task.eval_data`, ...); tasks that don't refuse those."""
    local_files: ClassVar[tuple[str, ...]] = ()
    """Files it needs under a local data root (`task.data_dir` / `RANKBITS_DATA_DIR`), relative to it."""
    untrained_metric_meaningful: ClassVar[bool] = False
    """Whether the task metric of the model before any training step says something about a configuration
    (`trainables.screen`, `rankbits pareto --screen`): true for language modelling (the pretrained head scores
    the text, and quantization damage shows in perplexity), false for classification (a freshly initialised
    head gives chance accuracy whatever the weights)."""

    @property
    def metric(self) -> str:
        """The task metric (the first of `metrics`)."""
        return next(iter(self.metrics))

    @property
    def direction(self) -> str:
        return self.metrics[self.metric]

    def validate(self, cfg: TaskConfig) -> None:
        """Cheap checks at TaskConfig construction (no file is read); ConfigError naming the field. Tasks with
        `own_data` get the own-data fields checked (and existing paths made absolute); others refuse them."""
        if not self.own_data:
            for name in OWN_DATA_FIELDS:
                if getattr(cfg, name) is not None:
                    raise ConfigError(
                        f"task.{name}: task {self.name} reads its own data; your own data is task textcls "
                        "(classification) or lm (language modelling)"
                    )
            return
        if cfg.eval_fraction is not None:
            if not 0 < cfg.eval_fraction < 1:
                raise ConfigError(
                    f"task.eval_fraction: {cfg.eval_fraction} must be in (0, 1), e.g. 0.1 for a tenth"
                )
            if cfg.eval_data is not None:
                raise ConfigError(
                    "task.eval_fraction: give either task.eval_data (a file) or task.eval_fraction, not both"
                )
        for name in ("text_column", "label_column"):
            if not getattr(cfg, name):
                raise ConfigError(
                    f"task.{name}: empty; name the column, e.g. --{name.replace('_', '-')} text"
                )
        from trainables.data import local_path

        for name in ("data", "eval_data"):
            value = getattr(cfg, name)
            if value is not None:
                if not value.strip():
                    raise ConfigError(f"task.{name}: empty; give a file or a hub dataset id")
                path = local_path(value)
                if path is not None and path.exists():
                    setattr(cfg, name, str(path.resolve()))

    def require_data(self, cfg: TaskConfig) -> None:
        """ConfigError when an own-data task has no `task.data`."""
        if self.own_data and cfg.data is None:
            raise ConfigError(
                f"task.data: task {self.name} trains on your data; give --data FILE (or a hub dataset id) "
                "with --eval-data FILE or --eval-fraction 0.1"
            )

    def check_data(self, cfg: TaskConfig) -> None:
        """Pre-flight check of the task's data (before any training): ConfigError naming every missing file."""
        from trainables.data import check_files, data_root

        root = data_root(cfg)
        if root is not None:
            check_files(root, self.local_files, self.name)

    def head(self, cfg: TaskConfig | None = None) -> Head:
        """The head `cfg`'s model needs (classification tasks may read their labels from the data)."""
        raise NotImplementedError

    def load_raw(self, cfg: TaskConfig) -> RawTask:
        """Untokenized train and evaluation data; ConfigError when it cannot be read."""
        raise NotImplementedError

    def prepare(
        self,
        raw: RawTask,
        cfg: TaskConfig,
        tokenizer: Any,
        seq_len: int,
        batch_size: int,
        seed: int,
        examples_needed: int | None,
        eval_examples: int | None,
        eval_tokens: int,
    ) -> TaskData:
        """Tokenize what the run will use (see the families)."""
        raise NotImplementedError

    def score(
        self, model: Any, td: TaskData, batch_size: int, device: Any, progress: EvalProgressFn | None = None
    ) -> Scores:
        """The final evaluation on `td`'s evaluation data; `progress(done, total)` after each batch."""
        raise NotImplementedError

    def peak_row_tokens(self, cfg: TaskConfig, seq_len: int) -> int:
        """Tokens in the longest training row the memory model plans for (rows are padded to the batch's
        longest): `seq_len` unless the task knows its rows are shorter."""
        return seq_len

    def describe(self) -> str:
        return f"{self.name} ({self.description})"


def _to(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {k: v.to(device) for k, v in batch.items()}


class ClassificationTask(TaskSpec):
    """Sentence classification: texts truncated to `seq_len` tokens, a seeded subset of the training set in a
    seeded order, accuracy on the evaluation set (the first `eval_examples`)."""

    head_kind = "classification"
    metrics: ClassVar[Mapping[str, str]] = {"accuracy": "max"}

    def label_names(self, cfg: TaskConfig) -> list[str]:
        """The class names in label-id order (id i is `label_names[i]`)."""
        raise NotImplementedError

    def head(self, cfg: TaskConfig | None = None) -> Head:
        if cfg is None:
            from trainables.config import TaskConfig

            cfg = TaskConfig(name=self.name)
        return Head("classification", len(self.label_names(cfg)))

    def prepare(
        self,
        raw: RawTask,
        cfg: TaskConfig,
        tokenizer: Any,
        seq_len: int,
        batch_size: int,
        seed: int,
        examples_needed: int | None,
        eval_examples: int | None,
        eval_tokens: int,
    ) -> TaskData:
        from trainables.data import Batches, TaskData, pad_id, tokenize

        if raw.train_labels is None or raw.eval_labels is None:
            raise ConfigError(f"task {self.name}: the data has no labels")
        order = list(range(len(raw.train_texts)))
        random.Random(seed).shuffle(order)
        if cfg.train_examples is not None:
            order = order[: cfg.train_examples]
        if examples_needed is not None:
            order = order[:examples_needed]
        pad = pad_id(tokenizer)
        train_ids = tokenize(tokenizer, [raw.train_texts[i] for i in order], seq_len)
        train = Batches(train_ids, [raw.train_labels[i] for i in order], pad, batch_size, seed, causal=False)
        n_eval = eval_examples or len(raw.eval_texts)
        eval_ids = tokenize(tokenizer, raw.eval_texts[:n_eval], seq_len)
        return TaskData(train, eval_ids, raw.eval_labels[:n_eval], raw.data_note, raw.source, raw.label_names)

    def score(
        self, model: Any, td: TaskData, batch_size: int, device: Any, progress: EvalProgressFn | None = None
    ) -> Scores:
        """Accuracy and the mean cross-entropy per example; macro-F1 too when there are more than two classes."""
        import torch

        from trainables import metrics
        from trainables.data import collate

        if td.eval_labels is None:
            raise ConfigError(f"task {self.name}: the evaluation data has no labels")
        preds: list[int] = []
        loss_sum = 0.0
        pad = td.train.pad_id
        for i in range(0, len(td.eval_ids), batch_size):
            batch = _to(
                collate(td.eval_ids[i : i + batch_size], td.eval_labels[i : i + batch_size], pad, False),
                device,
            )
            labels = batch.pop("labels")  # the task loss alone (AdaLoRA adds its regulariser to a model loss)
            logits = model(**batch).logits.float()
            loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
            preds.extend(logits.argmax(-1).tolist())
            if progress is not None:
                progress(len(preds), len(td.eval_ids))
        extra = {}
        if td.label_names is not None and len(td.label_names) > 2:
            extra["macro_f1"] = metrics.macro_f1(preds, td.eval_labels)
        return Scores(metrics.accuracy(preds, td.eval_labels), loss_sum / max(1, len(td.eval_labels)), extra)


class LanguageModelTask(TaskSpec):
    """Causal language modelling: the text cut into blocks of `seq_len` tokens by `task.perplexity_convention`
    (`joined`: the text as one string, the common definition), perplexity over at most `eval_tokens` evaluation
    tokens: exp(summed token NLL / predicted tokens), each block predicting its tokens after the first."""

    head_kind = "causal_lm"
    metrics: ClassVar[Mapping[str, str]] = {"perplexity": "min"}
    untrained_metric_meaningful: ClassVar[bool] = True

    def head(self, cfg: TaskConfig | None = None) -> Head:
        return Head("causal_lm")

    def prepare(
        self,
        raw: RawTask,
        cfg: TaskConfig,
        tokenizer: Any,
        seq_len: int,
        batch_size: int,
        seed: int,
        examples_needed: int | None,
        eval_examples: int | None,
        eval_tokens: int,
    ) -> TaskData:
        from trainables.data import Batches, TaskData, blocks, pad_id

        convention = cfg.perplexity_convention
        train_blocks = blocks(tokenizer, raw.train_texts[0], seq_len, convention=convention)
        if cfg.train_examples is not None:
            train_blocks = train_blocks[: cfg.train_examples]
        if not train_blocks:
            raise ConfigError(
                f"task {self.name}: training text is shorter than one block of {seq_len} tokens; "
                "give more text or a smaller training.seq_len"
            )
        train = Batches(train_blocks, None, pad_id(tokenizer), batch_size, seed, causal=True)
        eval_blocks = blocks(
            tokenizer, raw.eval_texts[0], seq_len, limit_tokens=eval_tokens, convention=convention
        )
        if not eval_blocks:
            raise ConfigError(
                f"task {self.name}: evaluation text is shorter than one block of {seq_len} tokens; "
                "give more text or a smaller training.seq_len"
            )
        return TaskData(train, eval_blocks, None, raw.data_note, raw.source)

    def score(
        self, model: Any, td: TaskData, batch_size: int, device: Any, progress: EvalProgressFn | None = None
    ) -> Scores:
        """Perplexity and the mean token NLL (nats)."""
        import torch

        from trainables import metrics
        from trainables.data import collate

        nll_sums: list[float] = []
        counts: list[int] = []
        pad = td.train.pad_id
        for i in range(0, len(td.eval_ids), batch_size):
            batch = _to(collate(td.eval_ids[i : i + batch_size], None, pad, True), device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            shift_logits = logits[:, :-1].float()
            shift_labels = batch["labels"][:, 1:]
            nll = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)),
                shift_labels.reshape(-1),
                reduction="none",
                ignore_index=-100,
            ).view(shift_labels.shape)
            valid = shift_labels != -100
            nll_sums.extend((nll * valid).sum(1).tolist())
            counts.extend(valid.sum(1).tolist())
            if progress is not None:
                progress(len(counts), len(td.eval_ids))
        return Scores(metrics.perplexity(nll_sums, counts), sum(nll_sums) / max(1, sum(counts)), {})
