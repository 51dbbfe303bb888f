"""Every bad input is refused before training starts: exit code 2, one line naming the value, no traceback."""

import pytest
from cli_helpers import rankbits

pytestmark = [pytest.mark.slow, pytest.mark.ray]

CASES = [
    (
        ["run", "--config", "B-FP9", "--model", "tiny-bert"],
        "unknown config id 'B-FP9'; choose one of B-FP, B-Q4",
    ),
    (["grid", "--configs", "B-FP,nope", "--model-sst2", "tiny-bert"], "unknown config id 'nope'"),
    (["run", "--task", "mnli", "--model", "tiny-bert"], "unknown task 'mnli'; choose one of sst2, wikitext2"),
    (["grid", "--tasks", "sst2,qqp"], "unknown task 'qqp'"),
    (["pareto", "--model", "tiny-bert", "--objectives", "accuracy:max,speed:min"], "speed"),
    (["pareto", "--model", "tiny-bert", "--objectives", "accuracy:up"], "up"),
    (["run", "--model", "tiny-bert", "--set", "quantization.default_bits=3"], "bit width 3 is not supported"),
    (
        ["run", "--model", "tiny-bert", "--set", "quantization.layer_bits=9:8"],
        "names layer 9 but the model has 2 layers",
    ),
    (["run", "--model", "tiny-bert", "--set", "adapter.r=0"], "rank 0 must be > 0"),
    (
        ["run", "--model", "tiny-bert", "--set", "adapter.method=adalora", "--set", "adapter.target_r=16"],
        "target_r: 16 is above init_r 12",
    ),
    (["run", "--model", "tiny-bert", "--set", "training.warp=1"], "training has no setting 'warp'"),
    (["run", "--model", "tiny-bert", "--set", "training.batch_size=many"], "wrong type, expected an integer"),
    (["run", "--model", "nobody/missing-model"], "cannot be found offline: download it into a folder"),
    (
        ["pareto", "--model", "tiny-bert", "--memory-budget-mb", "1"],
        "below the smallest feasible configuration",
    ),
    (["pareto", "--model", "tiny-bert", "--storage", "notaurl"], "--storage 'notaurl': not a database URL"),
    (["pareto", "--model", "tiny-bert", "--storage", "nosuchdb://x/y"], "cannot open it"),
    (["pareto", "--model", "tiny-bert", "--seed", "-5"], "a seed must be between 0 and 2**32 - 1"),
    (["grid", "--model-sst2", "tiny-bert", "--seeds", "0,0"], "seed 0 is given twice"),
    (["run", "--model", "tiny-bert", "--set", "training.seed=-1"], "training.seed: -1 must be between 0"),
    (
        ["sensitivity", "--model", "tiny-llama", "--task", "wikitext2", "--seq-len", "100000"],
        "--seq-len 100000: model 'tiny-llama' takes at most 512 tokens",
    ),
    (
        ["sensitivity", "--model", "tiny-bert", "--plot", "no/such/folder/x.png"],
        "--plot 'no/such/folder/x.png': its folder does not exist",
    ),
    (
        ["grid", "--model-sst2", "tiny-bert", "--ray-address", "127.0.0.1:1"],
        "--ray-address '127.0.0.1:1': nothing",
    ),
    (["analyze", ".", "."], "results folder '.' is given twice"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a[:3]) for a, _ in CASES])
def test_bad_input_is_one_clear_line(tiny_data, tmp_path, args, message):
    proc = rankbits(args + ["--data-dir", str(tiny_data)] if args[0] != "analyze" else args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr
    assert message in lines[-1]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("trial_result.json"))


def test_data_folder_missing_files_names_them(tmp_path):
    (tmp_path / "data" / "sst2").mkdir(parents=True)
    proc = rankbits(["run", "--model", "tiny-bert", "--data-dir", str(tmp_path / "data")], cwd=tmp_path)
    assert proc.returncode == 2 and "lacks sst2/train.tsv, sst2/dev.tsv" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_results_folder_with_another_experiment_is_refused(tiny_data, tmp_path):
    root = tmp_path / "results" / "exp"
    root.mkdir(parents=True)
    (root / "experiment.json").write_text('{"kind": "pareto", "task": "sst2"}')
    proc = rankbits(
        [
            "grid",
            "--configs",
            "B-FP",
            "--tasks",
            "sst2",
            "--model-sst2",
            "tiny-bert",
            "--name",
            "exp",
            "--results-dir",
            str(tmp_path / "results"),
            "--data-dir",
            str(tiny_data),
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "already holds a different experiment" in proc.stderr
    assert "--overwrite" in proc.stderr and (root / "experiment.json").read_text().startswith(
        '{"kind": "pareto"'
    )
