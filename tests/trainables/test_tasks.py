"""The task registry: every task-dependent choice comes from `trainables.tasks`, so a made-up task registered
in this file alone validates, appears in the CLI, is predicted by the memory model and trains with `fit()`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest

from trainables.config import TaskConfig, TrialConfig
from trainables.errors import ConfigError
from trainables.tasks import TASKS, ClassificationTask, get_task, head_of, register, unregister

REPO = Path(__file__).resolve().parents[2]
WORDS = ["red apple", "green leaf", "blue sky"]


def toy_raw() -> Any:
    from trainables.data import RawTask

    texts = [f"{w} {i}" for i in range(40) for w in WORDS]
    labels = [i % 3 for i in range(len(texts))]
    return RawTask(texts, labels, texts[:12], labels[:12], "toy colours", "memory", ["blue", "green", "red"])


@pytest.fixture
def toy_task():
    """A three-class task defined here and nowhere else (row shape: at most 12 tokens)."""

    @register
    class Colours(ClassificationTask):
        name = "toycolours"
        title = "Toy colours"
        description = "three made-up colour classes, accuracy"
        metrics: ClassVar[dict[str, str]] = {"accuracy": "max", "macro_f1": "max"}
        training: ClassVar[dict[str, Any]] = {"lr": 3e-3, "batch_size": 6, "seq_len": 16, "max_steps": 4}
        model = "tiny-bert"

        def label_names(self, cfg: TaskConfig) -> list[str]:
            return ["blue", "green", "red"]

        def load_raw(self, cfg: TaskConfig) -> Any:
            return toy_raw()

        def peak_row_tokens(self, cfg: TaskConfig, seq_len: int) -> int:
            return min(seq_len, 12)

    yield get_task("toycolours")
    unregister("toycolours")


def test_shipped_tasks_are_registered_with_heads_metrics_and_defaults():
    assert list(TASKS)[:4] == ["sst2", "wikitext2", "textcls", "lm"]
    assert get_task("sst2").metric == "accuracy" and get_task("sst2").direction == "max"
    assert get_task("wikitext2").metric == "perplexity" and get_task("wikitext2").direction == "min"
    assert head_of("sst2").num_labels == 2 and head_of("wikitext2").causal
    assert [n for n, s in TASKS.items() if s.in_default_grid] == ["sst2", "wikitext2"]
    assert get_task("textcls").own_data and get_task("lm").own_data


def test_old_names_are_derived_from_the_registry(toy_task):
    from search import export_cmd, pareto_cmd
    from spaces import grid
    from trainables import config, data, memory

    assert "toycolours" in config.TASKS  # read when asked: a task registered later is there
    assert grid.TASK_MODELS["sst2"] == "minilm-l6" and grid.TASK_TRAINING["wikitext2"]["seq_len"] == 256
    shipped = {"sst2": "accuracy", "wikitext2": "perplexity", "textcls": "accuracy", "lm": "perplexity"}
    assert {k: pareto_cmd.TASK_METRIC[k] for k in shipped} == shipped
    assert export_cmd.TASK_OBJECTIVE["wikitext2"] == "perplexity:min"
    assert memory.SST2_PEAK_TOKENS == 63 and data.SST2_FILES == ("sst2/train.tsv", "sst2/dev.tsv")


def test_unknown_task_names_the_registered_ones():
    with pytest.raises(ConfigError, match="unknown task 'nope'; choose one of sst2, wikitext2, textcls, lm"):
        TaskConfig(name="nope")


def test_shipped_tasks_refuse_own_data_fields():
    with pytest.raises(ConfigError, match="task.data: task sst2 reads its own data; .* textcls"):
        TaskConfig(name="sst2", data="train.csv")


def test_register_refuses_bad_names():
    class Bad(ClassificationTask):
        name = "my-task"

    with pytest.raises(ValueError, match="Python identifier"):
        register(Bad)


def test_a_made_up_task_validates_and_is_in_every_cli_choice(toy_task):
    from search import cli, common, grid_cmd

    cfg = TrialConfig.from_dict({"task": {"name": "toycolours"}, "model": {"name": "tiny-bert"}})
    assert head_of(cfg.task).num_labels == 3
    assert common.parse_tasks("sst2,toycolours") == ["sst2", "toycolours"]
    parser = cli.build_parser(["grid"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    grid = sub.choices["grid"]
    args = grid.parse_args(["--tasks", "toycolours", "--configs", "B-FP", "--model-toycolours", "tiny-bert"])
    assert grid_cmd.task_models(args)["toycolours"] == "tiny-bert"
    run_parser = cli.build_parser(["run"])
    run = next(a for a in run_parser._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    assert "toycolours (three made-up colour classes, accuracy)" in " ".join(run.format_help().split())
    cells = grid_cmd.build_cells(args)
    assert [c.task.name for c in cells] == ["toycolours"]
    assert cells[0].training.batch_size == 6 and cells[0].training.seq_len == 16  # the spec's defaults


def test_a_made_up_task_gets_its_row_shape_and_head_in_the_memory_model(toy_task):
    from trainables.memory import peak_row_tokens
    from trainables.predict import arch_of, predict_peak

    cfg = TrialConfig.from_dict(
        {"task": {"name": "toycolours"}, "model": {"name": "tiny-bert"}, "training": {"seq_len": 64}}
    )
    assert peak_row_tokens(cfg) == 12
    arch = arch_of(cfg)
    assert not arch.causal and arch.head_params == 64 * 3 + 3  # the classifier: hidden 64 -> 3 classes
    assert predict_peak(cfg).total > 0


def test_a_made_up_task_trains_with_fit_and_records_its_metrics(toy_task):
    from trainables.checks import preflight
    from trainables.loop import fit

    cfg = TrialConfig.from_dict(
        {
            "task": {"name": "toycolours"},
            "model": {"name": "tiny-bert"},
            "training": dict(toy_task.training, log_every=1, eval_batch_size=4),
        }
    )
    preflight(cfg)
    result = fit(cfg)
    assert result.status.value == "completed", result.error
    assert result.metric_name == "accuracy" and 0 <= result.accuracy <= 1
    assert result.macro_f1 is not None and 0 <= result.macro_f1 <= 1  # three classes: macro-F1 too
    assert result.num_classes == 3 and result.label_names == ["blue", "green", "red"]
    assert result.perplexity_convention == "" and result.data_note == "toy colours"


TASK_BRANCH = re.compile(r"""(task|name|\.task)\s*[!=]=\s*["'](sst2|wikitext2|textcls|lm)["']""")


def test_no_code_outside_the_task_modules_branches_on_a_task_name():
    offenders = []
    for package in ("trainables", "spaces", "search", "analysis", "benchmarks"):
        for path in (REPO / package).rglob("*.py"):
            if "tasks" in path.relative_to(REPO).parts[:2]:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if TASK_BRANCH.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
