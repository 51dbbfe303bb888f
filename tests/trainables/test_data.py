import pytest

from trainables import data, models
from trainables.config import ModelConfig, TaskConfig
from trainables.errors import ConfigError


def test_missing_files_are_named(tmp_path):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(ConfigError, match="lacks sst2/dev.tsv for task sst2"):
        data.load_raw(TaskConfig(name="sst2", data_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="wikitext-2/wiki.valid.tokens, wikitext-2/wiki.test.tokens"):
        data.load_raw(TaskConfig(name="wikitext2", data_dir=str(tmp_path)))


def test_real_sst2_files_load(shared_data):
    raw = data.load_raw(TaskConfig(name="sst2", data_dir=str(shared_data)))
    assert len(raw.train_texts) == 67349 and len(raw.eval_texts) == 872
    assert sum(raw.eval_labels) == 444


def test_wikitext_without_train_split_trains_on_valid_and_says_so(tiny_data):
    raw = data.load_raw(TaskConfig(name="wikitext2", data_dir=str(tiny_data)))
    assert "fine-tuned on valid, perplexity on test" in raw.data_note


def test_blocks_and_batches(tiny_data):
    tok = models.load_tokenizer(ModelConfig(name="tiny-llama"))
    raw = data.load_raw(TaskConfig(name="wikitext2", data_dir=str(tiny_data)))
    td = data.prepare(
        raw,
        TaskConfig(name="wikitext2"),
        tok,
        seq_len=32,
        batch_size=4,
        seed=0,
        examples_needed=None,
        eval_examples=None,
        eval_tokens=256,
    )
    assert all(len(b) == 32 for b in td.train.ids) and len(td.eval_ids) == 8
    batch = next(td.train.iterate())
    assert batch["input_ids"].shape == (4, 32) and (batch["labels"] == batch["input_ids"]).all()


def test_sst2_subset_is_seeded(tiny_data):
    tok = models.load_tokenizer(ModelConfig(name="tiny-bert"))
    raw = data.load_raw(TaskConfig(name="sst2", data_dir=str(tiny_data)))
    a = data.prepare(raw, TaskConfig(name="sst2"), tok, 64, 8, 1, 40, 10, 0)
    b = data.prepare(raw, TaskConfig(name="sst2"), tok, 64, 8, 1, 40, 10, 0)
    assert a.train.ids == b.train.ids and len(a.train) == 40 and len(a.eval_ids) == 10
    batch = next(a.train.iterate())
    assert batch["labels"].shape == (8,) and batch["attention_mask"].sum() > 0
