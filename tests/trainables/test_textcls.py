"""textcls: your own classification data from CSV / TSV / JSONL files or a hub dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainables import data
from trainables.checks import preflight
from trainables.config import TaskConfig, TrialConfig
from trainables.errors import ConfigError
from trainables.tasks import get_task, head_of
from trainables.tasks.textcls import label_order


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "sentence,label") -> Path:
    path.write_text(header + "\n" + "".join(f'"{t}",{y}\n' for t, y in rows), encoding="utf-8")
    return path


ROWS = [(f"{w} number {i}", w.split()[0]) for i in range(20) for w in ("cat sat", "dog ran", "owl flew")]


def task(**fields) -> TaskConfig:
    return TaskConfig(name="textcls", text_column="sentence", **fields)


def test_csv_string_labels_map_to_sorted_ids_and_a_fraction_is_held_out(tmp_path):
    path = write_csv(tmp_path / "train.csv", ROWS)
    raw = data.load_raw(task(data=str(path), eval_fraction=0.25))
    assert raw.label_names == ["cat", "dog", "owl"]
    assert len(raw.eval_texts) == 15 and len(raw.train_texts) == 45
    assert set(raw.eval_texts).isdisjoint(raw.train_texts)
    assert [raw.label_names[y] for y in raw.train_labels[:3]] == [t.split()[0] for t in raw.train_texts[:3]]
    again = data.load_raw(task(data=str(path), eval_fraction=0.25))
    assert again.eval_texts == raw.eval_texts  # fixed split seed
    assert head_of(task(data=str(path), eval_fraction=0.25)).num_labels == 3


def test_integer_labels_sort_numerically():
    assert label_order(["10", "2", "1", "2"], "label") == ["1", "2", "10"]
    assert label_order(["pos", "neg"], "label") == ["neg", "pos"]


def test_tsv_quotes_are_literal_and_jsonl_reads_its_keys(tmp_path):
    tsv = tmp_path / "train.tsv"
    tsv.write_text('sentence\tlabel\nhe said "hi\t1\nno quote here \t0\n', encoding="utf-8")
    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps({"sentence": s, "label": y}) for s, y in [("a b", 0), ("c d", 1)]) + "\n"
    )
    raw = data.load_raw(task(data=str(tsv), eval_data=str(jsonl)))
    assert raw.train_texts == ['he said "hi', "no quote here"] and raw.train_labels == [1, 0]
    assert raw.eval_texts == ["a b", "c d"] and raw.eval_labels == [0, 1]


def test_relative_paths_are_stored_absolute(tmp_path, monkeypatch):
    write_csv(tmp_path / "train.csv", ROWS)
    monkeypatch.chdir(tmp_path)
    cfg = task(data="train.csv", eval_fraction=0.1)
    assert cfg.data == str(tmp_path / "train.csv")


@pytest.mark.parametrize(
    ("content", "fields", "message"),
    [
        (None, {}, "task.data: .*missing.csv' not found"),
        (b"", {}, "is empty"),
        (b"sentence,label\n", {}, "has a header but no rows"),
        (b"sentence,label\n\xff\xfe bad,1\n", {}, r"is not UTF-8 text \(byte 15\)"),
        (
            b"text,label\na,1\nb,0\n",
            {},
            "has no column 'sentence'; its columns: text, label; .*--text-column",
        ),
        (b"sentence,label\na,1\nb,1\n", {}, "holds one class \\('1'\\).*at least two"),
        (b"sentence,label\na,1\nb,\n", {}, "line 3 has no 'label' value"),
        (b"sentence,label\na,1\nb,0\n", {"eval_fraction": None}, "no evaluation data; give --eval-data"),
    ],
)
def test_bad_files_are_one_config_error_at_preflight(tmp_path, content, fields, message):
    path = tmp_path / ("missing.csv" if content is None else "train.csv")
    if content is not None:
        path.write_bytes(content)
    settings = {"eval_fraction": 0.5} | fields
    cfg = TrialConfig.from_dict(
        {"task": {"name": "textcls", "data": str(path), "text_column": "sentence", **settings}}
        | {"model": {"name": "tiny-bert"}}
    )
    with pytest.raises(ConfigError, match=message) as info:
        preflight(cfg)
    assert "\n" not in str(info.value)


def test_eval_labels_must_be_training_labels_and_formats_must_be_known(tmp_path):
    train = write_csv(tmp_path / "train.csv", ROWS)
    dev = write_csv(tmp_path / "dev.csv", [("a fish", "fish"), ("a cat", "cat")])
    with pytest.raises(ConfigError, match="label 'fish' is not among the training labels"):
        data.load_raw(task(data=str(train), eval_data=str(dev)))
    odd = tmp_path / "train.xlsx"
    odd.write_text("x")
    with pytest.raises(ConfigError, match="unknown format '.xlsx'; use .csv, .tsv or .jsonl"):
        data.load_raw(task(data=str(odd), eval_fraction=0.1))


def test_config_checks_without_reading(tmp_path):
    with pytest.raises(ConfigError, match="task.eval_fraction: 1.5 must be in \\(0, 1\\)"):
        task(data="x.csv", eval_fraction=1.5)
    with pytest.raises(ConfigError, match="either task.eval_data .* or task.eval_fraction, not both"):
        task(data="x.csv", eval_data="y.csv", eval_fraction=0.1)
    cfg = TrialConfig.from_dict({"task": {"name": "textcls"}, "model": {"name": "tiny-bert"}})
    with pytest.raises(ConfigError, match="task.data: task textcls trains on your data; give --data FILE"):
        preflight(cfg)


def test_a_hub_dataset_reads_its_train_and_validation_splits(monkeypatch):
    import datasets

    parts = {
        "train": datasets.Dataset.from_dict({"text": ["good", "bad", "fine"], "label": [1, 0, 1]}),
        "validation": datasets.Dataset.from_dict({"text": ["ok"], "label": [1]}),
    }
    calls = []

    def fake_load(*args, **kwargs):
        calls.append(args)
        return datasets.DatasetDict(parts)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    raw = get_task("textcls").load_raw(TaskConfig(name="textcls", data="someone/reviews"))
    assert calls == [("someone/reviews", None)]
    assert raw.train_texts == ["good", "bad", "fine"] and raw.train_labels == [1, 0, 1]
    assert raw.eval_texts == ["ok"] and raw.source == "hub:someone/reviews"
    with pytest.raises(ConfigError, match="has no split 'test'; its splits: train, validation"):
        get_task("textcls").load_raw(TaskConfig(name="textcls", data="someone/reviews", eval_split="test"))


def _fit(task_section: dict, tiny_data) -> object:
    from trainables.loop import fit

    cfg = TrialConfig.from_dict(
        {
            "task": task_section,
            "model": {"name": "tiny-bert"},
            "training": {"max_steps": 6, "batch_size": 8, "seq_len": 48, "lr": 3e-3, "eval_examples": 40},
        }
    )
    preflight(cfg)
    return fit(cfg)


def test_sst2_files_read_through_textcls_score_exactly_as_sst2(tiny_data):
    """The same TSV, seed and steps: the same batches, the same model, the same accuracy and loss."""
    sst2 = _fit({"name": "sst2", "data_dir": str(tiny_data)}, tiny_data)
    own = _fit(
        {
            "name": "textcls",
            "data": str(tiny_data / "sst2" / "train.tsv"),
            "eval_data": str(tiny_data / "sst2" / "dev.tsv"),
            "text_column": "sentence",
        },
        tiny_data,
    )
    assert sst2.status.value == own.status.value == "completed", (sst2.error, own.error)
    assert own.accuracy == sst2.accuracy and own.eval_loss == sst2.eval_loss
    assert own.loss_curve == sst2.loss_curve
    assert own.num_classes == sst2.num_classes == 2 and own.label_names == ["0", "1"]
    assert own.macro_f1 is None  # two classes: accuracy only


def test_three_classes_record_macro_f1(tmp_path, tiny_data):
    path = write_csv(tmp_path / "train.csv", ROWS)
    result = _fit(
        {"name": "textcls", "data": str(path), "eval_fraction": 0.25, "text_column": "sentence"}, tiny_data
    )
    assert result.status.value == "completed", result.error
    assert result.num_classes == 3 and result.label_names == ["cat", "dog", "owl"]
    assert 0 <= result.macro_f1 <= 1 and "3 classes" in result.data_note
