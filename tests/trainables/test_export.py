"""Exported trials: the record, the rebuild through `load_exported`, the re-evaluation and the 16-bit merge."""

from __future__ import annotations

import json

import pytest
import torch

from trainables import export
from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.loop import fit

TINY_TRAINING = {
    "max_steps": 4,
    "batch_size": 4,
    "seq_len": 32,
    "eval_examples": 16,
    "eval_tokens": 512,
    "log_every": 2,
    "lr": 5e-3,
}


def _cfg(tiny_data, task: str, model: str, bits: int, method: str = "lora") -> TrialConfig:
    return TrialConfig.from_dict(
        {
            "config_id": "test",
            "task": {"name": task, "data_dir": str(tiny_data)},
            "model": {"name": model},
            "quantization": {"default_bits": bits},
            "adapter": {"method": method, "tinit": 1, "tfinal": 1, "deltaT": 1},
            "training": TINY_TRAINING,
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data):
    """A 4-bit LoRA trial on tiny-llama / WikiText-2 with its adapter, exported."""
    root = tmp_path_factory.mktemp("trained")
    cfg = _cfg(tiny_data, "wikitext2", "tiny-llama", 4)
    result = fit(cfg, adapter_dir=root / "adapter")
    assert result.status.value == "completed", result.error
    record = export.make_record(cfg.to_dict(), result.to_dict(), trial_id="t1", source=str(root))
    out = export.write_export(root / "export", record, root / "adapter")
    return cfg, result, out


def test_load_exported_reproduces_the_trials_perplexity(trained):
    cfg, result, out = trained
    record = export.read_record(out)
    assert record.bits_per_layer == [4, 4] and record.quant_type == "nf4" and record.double_quant
    assert record.compute_dtype == "float32" and record.metric == result.perplexity
    model, tokenizer = export.load_exported(out, device="cpu")
    assert not model.training
    value, loss = export.evaluate_model(model, tokenizer, record)
    assert value == pytest.approx(result.perplexity, rel=1e-4)
    assert loss == pytest.approx(result.eval_loss, rel=1e-5)


def test_load_exported_trainable_leaves_only_the_adapter_trainable(trained):
    _, _, out = trained
    model, _ = export.load_exported(out, device="cpu", trainable=True)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert model.training and names and all("lora_" in n for n in names)


def test_merged_16bit_weights_are_the_dequantized_base_plus_the_lora_delta(trained):
    from peft.tuners.lora import LoraLayer
    from peft.utils.integrations import dequantize_bnb_weight

    _, _, out = trained
    model, _ = export.load_exported(out, device="cpu")
    name, layer = next((n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer))
    base = layer.get_base_layer()
    delta = layer.get_delta_weight("default").float()
    assert delta.abs().max() > 0  # trained: B is no longer zero
    expected = dequantize_bnb_weight(base.weight, state=None).float() + delta
    merged = export.merge_16bit(model)
    key = name.removeprefix("base_model.model.")
    weight = merged.get_submodule(key).weight
    assert weight.dtype == torch.bfloat16
    # 16-bit rounding only (bfloat16 keeps 8 bits of mantissa): no second 4-bit quantization of the sum
    torch.testing.assert_close(weight.float(), expected, rtol=2**-8, atol=1e-6)
    assert not any(m.__class__.__name__ in ("Linear4bit", "Linear8bitLt") for m in merged.modules())


def test_merge_handles_adalora_on_8bit_layers(tiny_data, tmp_path):
    cfg = _cfg(tiny_data, "sst2", "tiny-bert", 8, method="adalora")
    result = fit(cfg, adapter_dir=tmp_path / "adapter")
    assert result.status.value == "completed", result.error
    out = export.write_export(
        tmp_path / "export", export.make_record(cfg.to_dict(), result.to_dict()), tmp_path / "adapter"
    )
    record = export.read_record(out)
    model, tokenizer = export.load_exported(out, device="cpu")
    assert export.evaluate_model(model, tokenizer, record)[1] == pytest.approx(result.eval_loss, rel=1e-5)
    merged = export.merge_16bit(model)
    value, loss = export.evaluate_model(merged, tokenizer, record)
    assert loss == pytest.approx(result.eval_loss, rel=0.02)


def test_compute_dtype_comes_from_the_result_then_the_config_else_float32():
    assert export.recorded_compute_dtype({"training": {}}, {}) == "float32"  # records made before the setting
    assert export.recorded_compute_dtype({"training": {"compute_dtype": "auto"}}, {}) == "float32"
    assert export.recorded_compute_dtype({"training": {"compute_dtype": "float16"}}, {}) == "float16"
    assert (
        export.recorded_compute_dtype({"training": {"compute_dtype": "auto"}}, {"compute_dtype": "bfloat16"})
        == "bfloat16"
    )


def test_only_completed_trials_export(trained):
    cfg, result, _ = trained
    failed = dict(result.to_dict(), status="failed", error="out of memory")
    with pytest.raises(ConfigError, match="only completed trials"):
        export.make_record(cfg.to_dict(), failed, trial_id="t9")


def test_write_export_never_overwrites(trained, tmp_path):
    _, _, out = trained
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        export.write_export(target, export.read_record(out), out / export.ADAPTER_DIR)
    assert (target / "keep.txt").read_text() == "mine" and not (target / export.EXPORT_FILE).exists()


def test_read_record_of_a_plain_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="not a rankbits export"):
        export.read_record(tmp_path)


def test_load_exported_is_importable_from_trainables(trained):
    from trainables import load_exported

    assert load_exported is export.load_exported
    record = json.loads((trained[2] / export.EXPORT_FILE).read_text())
    assert record["config"]["model"]["name"] == "tiny-llama" and record["trial_id"] == "t1"


def test_the_trials_predicted_peak_is_predict_peak(trained):
    from trainables.predict import predicted_peak_mb

    cfg, result, _ = trained
    assert result.predicted_peak_mb == round(predicted_peak_mb(cfg, "cpu"), 1)


@pytest.mark.parametrize(
    "source, expected",
    [("folder", "folder"), ("org/model-id", "org/model-id"), ("tiny-bert", None), ("gguf-package", None)],
)
def test_the_copied_adapter_names_a_loadable_base(tmp_path, source, expected):
    """PEFT's `base_model_name_or_path` is filled for a transformers folder or a hub id, so
    `AutoPeftModel*.from_pretrained(adapter)` finds the base; a preset name or a folder without config.json is
    not loadable that way and stays empty."""
    import json

    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "config.json").write_text("{}")
    (tmp_path / "gguf-package").mkdir()
    config = tmp_path / "adapter_config.json"
    config.write_text(json.dumps({"base_model_name_or_path": None, "r": 8}))
    src = str(tmp_path / source) if source in ("folder", "gguf-package") else source
    export.name_base_model(config, src)
    saved = json.loads(config.read_text())
    assert saved["base_model_name_or_path"] == (src if expected else None) and saved["r"] == 8
