"""`rankbits pareto --reeval-seeds N`: fronts that survive seeds.

After the search's own trials, every point of its single-seed front (completed, every objective measured; the
search trains all its trials on one seed) is trained again on seeds seed+1 .. seed+N: the same `TrialConfig` with
`training.seed` changed and nothing else (the harness's per-trial threads and memory cap are planned afresh, as for
any trial). These trials run through the grid's resumable launcher (`search.launch.run_cells`) as a further Tune
experiment of the same results folder (`tune-reeval/`, `trainables.results_folder.REEVAL_DIR`), never through the
Optuna study (they are not proposals). A cell is a (config_key, seed) pair: one already in the folder is not run
again, so an interrupted re-evaluation resumes (the saved Tune experiment is restored, as `grid --resume` does) and
a later, larger N or a grown front adds only the missing cells (in `tune-reeval-2/`, ...).

Then the front is recomputed on means over seeds (`analysis.seeds`: configurations with at least two seeds),
written to `pareto_means.csv` and printed as `mean ± std` with the pairs whose order is within noise.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from search.common import SpecFlag
from trainables.config import TrialConfig, config_key

REEVAL_FLAG = SpecFlag("reeval_seeds", lambda s: s["reeval_seeds"], must_match=False)
"""`--reeval-seeds` in experiment.json: `--resume` restores it; a different N given again extends (like
`--trials`), so it is not compared either (`search.results_io.NOT_COMPARED`)."""


def reeval_seeds(text: str) -> int:
    """argparse type of `--reeval-seeds`: an integer >= 0 (0: off)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give the number of further seeds, e.g. 2 (0 turns re-evaluation off)"
        )
    return value


def add_reeval_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reeval-seeds",
        type=reeval_seeds,
        default=0,
        metavar="N",
        help="after the search, train every front point again on seeds seed+1..seed+N and report the front on "
        "means (mean ± std per objective, pairs within noise marked) in pareto_means.csv; 0: off",
    )


def reeval_key(cfg: TrialConfig) -> str:
    """A re-evaluation cell's identity: the configuration without its seed, and the seed."""
    return f"{config_key(cfg)}|s{cfg.training.seed}"


def reeval_cells(configs: list[TrialConfig], n: int) -> list[TrialConfig]:
    """For each config, copies on seeds seed+1 .. seed+n: only `training.seed` changes (and the per-trial threads
    and memory cap the trainable fills in from its resources are cleared, to be planned afresh; they are not part
    of the configuration, see `trainables.config.NOT_IN_CONFIG_KEY`). Configs with the same key are re-run once;
    order: config by config, seed by seed."""
    cells: dict[str, TrialConfig] = {}
    for cfg in configs:
        for k in range(1, n + 1):
            cell = cfg.with_overrides(
                {
                    "training.seed": cfg.training.seed + k,
                    "training.threads": None,
                    "training.memory_fraction": None,
                }
            )
            cells.setdefault(reeval_key(cell), cell)
    return list(cells.values())


def front_configs(entries: list[dict[str, Any]], objectives: dict[str, str]) -> list[TrialConfig]:
    """The TrialConfigs of the single-seed Pareto front of `entries` (all_results.json entries: the search's own
    trials), best-first by the first objective (`analysis.pareto.pareto_front`: completed trials with every
    objective; infeasible, failed and stopped ones never)."""
    from analysis.pareto import pareto_front
    from analysis.results import apply_dtypes
    from search import results_io

    if not entries:
        return []
    import pandas as pd

    frame = apply_dtypes(pd.DataFrame(results_io.rows(entries)))
    front = pareto_front(frame, objectives)
    by_id = {str(e["trial_id"]): e for e in entries}
    return [TrialConfig.from_dict(by_id[str(t)]["config"]) for t in front["trial_id"]]


def run_reeval(args: argparse.Namespace, root: Path, objectives: dict[str, str]) -> list[TrialConfig]:
    """Train the missing re-evaluation cells of the search in `root` (module docstring); returns every cell."""
    from ray import tune

    from search import results_io
    from search.launch import CellRun, run_cells
    from search.resources import detect_device, resolve_harness
    from search.tuner import init_ray
    from trainables.results_folder import next_reeval_dir, reeval_dirs

    configs = front_configs(results_io.collect(root, reeval=False), objectives)
    cells = reeval_cells(configs, args.reeval_seeds)
    if not cells:
        return []
    seeds = sorted({c.training.seed for c in cells})
    print(
        f"\nrankbits: re-evaluating the {len(configs)} front point{'s' if len(configs) != 1 else ''} on "
        f"seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))}",
        flush=True,
    )
    device = detect_device(args.device_memory_gb)
    harness = resolve_harness(device, args.trial_process, args.reuse_workers, args.mmap_threshold)
    use_memory = init_ray(device, args.ray_address)  # the search's Ray (already up) or a fresh one
    saved = [d for d in reeval_dirs(root) if ".incomplete-" not in d.name]
    path = saved[-1] if saved else next_reeval_dir(root)
    run = CellRun(device, harness, use_memory, path, reeval_key, None, resume=True)
    restored = path.exists() and tune.Tuner.can_restore(str(path.resolve()))
    run_cells(args, root, cells, run)  # continues an interrupted re-evaluation (or starts the first)
    if restored:  # cells the restored experiment never had (a larger N, a grown front) run as a new one
        tried = {reeval_key(TrialConfig.from_dict(e["config"])) for e in results_io.collect(root)}
        missing = [c for c in cells if reeval_key(c) not in tried]
        if missing:
            run_cells(args, root, missing, run._replace(path=next_reeval_dir(root)))
    return cells


def report_means(root: Path, objectives: dict[str, str]) -> Any:
    """Write `pareto_means.csv` (the front on means, `analysis.seeds.seed_front`) and print it as `mean ± std`
    with the pairs within noise; returns the `SeedFront` (None when no configuration has two seeds)."""
    from analysis import load_results
    from analysis.report import means_text
    from analysis.seeds import seed_front
    from search.common import atomic_write_text
    from trainables.results_folder import PARETO_MEANS_FILE

    seeds = seed_front(load_results(root), objectives)
    if seeds is None:
        print("\nno front point has a completed re-evaluation: no front on means")
        return None
    atomic_write_text(root / PARETO_MEANS_FILE, seeds.front.to_csv(index=False))
    print()
    print(means_text(seeds, objectives))
    print(f"front on means: {root / PARETO_MEANS_FILE}")
    return seeds
