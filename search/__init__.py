"""The search side of rankbits: the `rankbits` CLI, Ray Tune set-up, results folders.

Hand-off to Tune and Optuna (see `search.handoff`): `restore_tuner(results_dir)` is `tune.Tuner.restore` with the
trainable rankbits runs; `load_study(results_dir)` is a Pareto search's Optuna study.
"""

from search.handoff import load_study, restore_tuner

__all__ = ["load_study", "restore_tuner"]
