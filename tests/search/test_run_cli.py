import json

import pytest
from cli_helpers import TINY, rankbits

pytestmark = pytest.mark.slow


def test_run_writes_result_and_a_loadable_adapter(tiny_data, tmp_path):
    out = tmp_path / "run"
    proc = rankbits(
        [
            "run",
            "--config",
            "Joint-2",
            "--task",
            "sst2",
            "--model",
            "tiny-bert",
            "--max-steps",
            "6",
            "--output",
            str(out),
            *TINY,
        ],
        data_dir=tiny_data,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Joint-2 | sst2 | tiny-bert | seed 0 | completed" in proc.stdout
    assert "bits per layer  8,8" in proc.stdout  # 2 layers: both are "critical"
    # the same file name and format as in a Tune trial folder (there, result.json is Tune's own line format)
    assert not (out / "result.json").exists()
    saved = json.loads((out / "trial_result.json").read_text())
    assert saved["config"]["config_id"] == "Joint-2" and saved["result"]["status"] == "completed"
    assert saved["trial_id"] == "run"
    # tqdm bars: the steps with their total, then the evaluation (16 examples)
    assert "train: 100%" in proc.stderr and "6/6" in proc.stderr, proc.stderr[-2000:]
    assert "evaluate: 100%" in proc.stderr and "16/16" in proc.stderr
    assert (out / "adapter" / "adapter_config.json").exists()

    from peft import PeftModel

    from trainables import models
    from trainables.config import ModelConfig

    mc = ModelConfig(name="tiny-bert")
    base = models.load_model(mc, "sst2", models.load_tokenizer(mc))
    loaded = PeftModel.from_pretrained(base, str(out / "adapter"))
    assert any("lora_" in n for n, _ in loaded.named_parameters())

    again = rankbits(
        ["run", "--config", "Joint-2", "--model", "tiny-bert", "--output", str(out)], data_dir=tiny_data
    )
    assert again.returncode == 2 and "already holds a result" in again.stderr
