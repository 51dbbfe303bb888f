"""lm: language modelling on your own text, with WikiText-2's token-level perplexity."""

from __future__ import annotations

import pytest

from trainables import data
from trainables.checks import preflight
from trainables.config import TaskConfig, TrialConfig
from trainables.errors import ConfigError
from trainables.tasks import get_task
from trainables.tasks.lm import join_rows, split_text


def test_plain_text_files_and_a_held_out_end(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i} of the corpus\n" for i in range(100)), encoding="utf-8")
    raw = data.load_raw(TaskConfig(name="lm", data=str(corpus), eval_fraction=0.1))
    train, held = raw.train_texts[0], raw.eval_texts[0]
    assert train + held == corpus.read_text() and train.endswith("\n")
    assert held.startswith("line 9") and 0.08 < len(held) / len(train + held) < 0.12
    assert raw.train_labels is None and raw.label_names is None
    assert "perplexity on its last 0.1" in raw.data_note


def test_split_text_refuses_an_empty_part():
    with pytest.raises(ConfigError, match="leaves one part empty"):
        split_text("x\n", 0.5)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"", "is empty"),
        (b" \n\n  \n", "is empty"),
        (b"caf\xe9 latin-1\n", "is not UTF-8 text"),
    ],
)
def test_bad_files_are_one_config_error_at_preflight(tmp_path, content, message):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    cfg = TrialConfig.from_dict(
        {"task": {"name": "lm", "data": str(path), "eval_fraction": 0.1}, "model": {"name": "tiny-llama"}}
    )
    with pytest.raises(ConfigError, match=message) as info:
        preflight(cfg)
    assert "\n" not in str(info.value)


def test_hub_rows_join_as_released_or_one_per_line(monkeypatch):
    assert join_rows([" = A = \n", "", " text . \n"]) == " = A = \n text . \n"
    assert join_rows(["first document", "second"]) == "first document\nsecond\n"
    import datasets

    parts = {
        "train": datasets.Dataset.from_dict({"content": ["alpha beta", "gamma"]}),
        "validation": datasets.Dataset.from_dict({"content": ["delta"]}),
    }
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.DatasetDict(parts))
    raw = get_task("lm").load_raw(TaskConfig(name="lm", data="someone/corpus", text_column="content"))
    assert raw.train_texts == ["alpha beta\ngamma\n"] and raw.eval_texts == ["delta\n"]
    with pytest.raises(ConfigError, match="no column 'text'; its columns: content"):
        get_task("lm").load_raw(TaskConfig(name="lm", data="someone/corpus2"))


def _score_without_training(task_section: dict, model: str, eval_tokens: int, seq_len: int) -> tuple:
    """(perplexity, mean NLL, eval blocks) of the untrained model on the task's evaluation blocks."""
    from trainables import models
    from trainables.tasks import head_of

    cfg = TrialConfig.from_dict(
        {
            "task": task_section,
            "model": {"name": model},
            "training": {"seq_len": seq_len, "eval_tokens": eval_tokens, "eval_batch_size": 4},
        }
    )
    spec = get_task(cfg.task.name)
    tokenizer = models.load_tokenizer(cfg.model)
    raw = spec.load_raw(cfg.task)
    td = spec.prepare(raw, cfg.task, tokenizer, seq_len, 4, 0, None, None, eval_tokens)
    model_ = models.load_model(cfg.model, head_of(cfg.task), tokenizer).eval()
    import torch

    with torch.no_grad():
        scores = spec.score(model_, td, 4, torch.device("cpu"))
    return scores.value, scores.loss, td.eval_ids, td.train.ids


def test_wikitext_files_read_through_lm_score_exactly_as_wikitext2(tiny_data):
    wiki = _score_without_training({"name": "wikitext2", "data_dir": str(tiny_data)}, "tiny-llama", 512, 32)
    own = _score_without_training(
        {
            "name": "lm",
            "data": str(tiny_data / "wikitext-2" / "wiki.valid.tokens"),
            "eval_data": str(tiny_data / "wikitext-2" / "wiki.test.tokens"),
        },
        "tiny-llama",
        512,
        32,
    )
    assert own[2] == wiki[2] and own[3] == wiki[3]  # the same blocks, training and evaluation
    assert own[0] == wiki[0] and own[1] == wiki[1]


def test_lm_trains_with_fit(tmp_path, tiny_data):
    from trainables.loop import fit

    cfg = TrialConfig.from_dict(
        {
            "task": {
                "name": "lm",
                "data": str(tiny_data / "wikitext-2" / "wiki.valid.tokens"),
                "eval_fraction": 0.2,
            },
            "model": {"name": "tiny-llama"},
            "training": {"max_steps": 3, "batch_size": 4, "seq_len": 32, "eval_tokens": 256},
        }
    )
    preflight(cfg)
    result = fit(cfg)
    assert result.status.value == "completed", result.error
    assert result.metric_name == "perplexity" and result.perplexity > 1
    assert result.perplexity_convention == "joined" and result.num_classes is None


@pytest.mark.slow
def test_real_wikitext_through_lm_matches_wikitext2_on_smollm2(shared_data):
    """Issue 14's check: WikiText-2 valid / test read through lm as plain text give wikitext2's perplexity
    (SmolLM2-135M, no training, the first 2,048 test tokens in 256-token blocks, convention joined)."""
    wiki = _score_without_training(
        {"name": "wikitext2", "data_dir": str(shared_data)}, "smollm2-135m", 2048, 256
    )
    own = _score_without_training(
        {
            "name": "lm",
            "data": str(shared_data / "wikitext-2" / "wiki.valid.tokens"),
            "eval_data": str(shared_data / "wikitext-2" / "wiki.test.tokens"),
        },
        "smollm2-135m",
        2048,
        256,
    )
    assert own[2] == wiki[2]
    assert own[0] == pytest.approx(wiki[0], rel=1e-6) and abs(wiki[0] - 31.83) < 0.01
