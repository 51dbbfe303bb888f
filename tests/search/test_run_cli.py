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
    saved = json.loads((out / "result.json").read_text())
    assert saved["config"]["config_id"] == "Joint-2" and saved["result"]["status"] == "completed"
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
