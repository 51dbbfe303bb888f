import pytest

from trainables import data, models
from trainables.config import ModelConfig, TaskConfig, TrialConfig
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


WIKI_LIKE = (
    " \n = Heading = \n \n the cat sat on the mat . \n the dog ran to the park . \n \n = = Sub = = \n \n"
)


def _wiki_task(tmp_path, text, repeat=40):
    (tmp_path / "wikitext-2").mkdir(parents=True, exist_ok=True)
    for name in ("wiki.valid.tokens", "wiki.test.tokens"):
        (tmp_path / "wikitext-2" / name).write_text(text * repeat)
    return data.load_raw(TaskConfig(name="wikitext2", data_dir=str(tmp_path)))


@pytest.mark.parametrize("convention", ["joined", "lines"])
def test_wikitext_blocks_follow_the_perplexity_convention(tmp_path, convention):
    """`joined` (default) tokenizes the text as released, blank lines included, for training and evaluation
    blocks alike; `lines` drops blank lines (rankbits' old way, issue 13 item 6)."""
    tok = models.load_tokenizer(ModelConfig(name="tiny-llama"))
    raw = _wiki_task(tmp_path, WIKI_LIKE)
    text = raw.eval_texts[0]
    task = TaskConfig(name="wikitext2", perplexity_convention=convention)
    td = data.prepare(raw, task, tok, 32, 4, 0, None, None, eval_tokens=256)
    if convention == "joined":
        expected = tok(text, add_special_tokens=False)["input_ids"]
    else:
        kept = "".join(line for line in text.splitlines(keepends=True) if line.strip())
        expected = tok(kept, add_special_tokens=False)["input_ids"]
    train = [i for block in td.train.ids for i in block]
    assert train == expected[: len(train)] and len(expected) - len(train) < 32
    assert [i for block in td.eval_ids for i in block] == expected[:256]
    assert TaskConfig().perplexity_convention == "joined"


def test_result_names_its_perplexity_convention():
    from trainables.result import TrialResult

    lines = TrialConfig.from_dict({"task": {"name": "wikitext2", "perplexity_convention": "lines"}})
    assert TrialResult.of(lines).perplexity_convention == "lines"
    assert (
        TrialResult.of(TrialConfig.from_dict({"task": {"name": "wikitext2"}})).perplexity_convention
        == "joined"
    )
    assert TrialResult.of(TrialConfig()).perplexity_convention == ""  # SST-2: no perplexity
    with pytest.raises(ConfigError, match="task.perplexity_convention: 'words'; choose one of joined, lines"):
        TaskConfig(name="wikitext2", perplexity_convention="words")
