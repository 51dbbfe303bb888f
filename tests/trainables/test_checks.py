"""Settings the model's config bounds are refused before loading (issue 13 item 5)."""

import pytest
from transformers import BertConfig, RobertaConfig

from trainables.checks import check_model_bounds, position_limit, preflight
from trainables.config import TrialConfig
from trainables.errors import ConfigError


def cfg(data_dir, model, task, **training):
    return TrialConfig.from_dict(
        {
            "task": {"name": task, "data_dir": str(data_dir)},
            "model": {"name": model},
            "training": {"batch_size": 1, "eval_tokens": 2048, **training},
        }
    )


def test_block_longer_than_the_position_table_is_refused(tiny_data):
    with pytest.raises(ConfigError) as err:
        preflight(cfg(tiny_data, "tiny-gpt2", "wikitext2", seq_len=1024))
    assert str(err.value) == (
        "training.seq_len: 1024 tokens is above the 512 that model 'tiny-gpt2' takes (config n_positions, its "
        "position table size); use training.seq_len <= 512"
    )
    assert preflight(cfg(tiny_data, "tiny-gpt2", "wikitext2", seq_len=512)) == 2


@pytest.mark.parametrize(
    "model,task,needle",
    [
        ("tiny-llama", "wikitext2", "config max_position_embeddings, its context it was trained for"),
        ("tiny-bert", "sst2", "config max_position_embeddings, its position table size"),
    ],
)
def test_rotary_and_encoder_models_are_bounded_too(tiny_data, model, task, needle):
    with pytest.raises(ConfigError, match=f"training.seq_len: 513 tokens is above the 512.*{needle}"):
        preflight(cfg(tiny_data, model, task, seq_len=513))


def test_roberta_positions_start_after_the_padding_index():
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == (
        "max_position_embeddings",
        512,
        False,
    )


def test_a_classification_head_with_other_labels_is_refused_for_sst2(tiny_data):
    three = BertConfig(architectures=["BertForSequenceClassification"], num_labels=3)
    with pytest.raises(ConfigError, match="BertForSequenceClassification head has 3 labels, SST-2 needs 2"):
        check_model_bounds(cfg(tiny_data, "tiny-bert", "sst2"), three)
    check_model_bounds(
        cfg(tiny_data, "tiny-bert", "sst2"), BertConfig(architectures=["BertModel"], num_labels=3)
    )
    check_model_bounds(cfg(tiny_data, "tiny-bert", "wikitext2"), three)


def test_sst2_labels_outside_the_two_classes_are_refused(tmp_path):
    from tests.conftest import write_tiny_data
    from trainables import data
    from trainables.config import TaskConfig

    root = write_tiny_data(tmp_path)
    dev = root / "sst2" / "dev.tsv"
    dev.write_text(dev.read_text().replace("\t1\n", "\t2\n", 1))
    with pytest.raises(ConfigError, match=r"dev.tsv: line \d+ has label '2'; SST-2 labels are 0 .* or 1"):
        data.load_raw(TaskConfig(name="sst2", data_dir=str(root)))


def test_target_modules_the_model_lacks_are_refused_before_loading(tiny_data):
    bad = cfg(tiny_data, "tiny-llama", "wikitext2").with_overrides({"adapter.target_modules": ["query"]})
    with pytest.raises(
        ConfigError, match=r"adapter.target_modules: \['query'\] matches no linear layer.*q_proj"
    ):
        preflight(bad)
    preflight(bad.with_overrides({"adapter.target_modules": ["q_proj", "v_proj"]}))
