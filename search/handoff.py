"""Hand a results folder over to Ray Tune and Optuna's own tools.

    from search import restore_tuner, load_study

    tuner = restore_tuner("results/pareto")      # tune.Tuner.restore with rankbits' trainable
    grid = tuner.get_results()                   # a ResultGrid: trial configs, last results, folders
    study = load_study("results/pareto")         # the search's Optuna study (objectives named, trials linked)

`Tuner.restore` needs the trainable the experiment was run with; for rankbits that is always
`search.tuner.trial_trainable()` (the one trainable, `trainables.trainable.train_trial`, with per-trial resources),
which `restore_tuner` passes. Ray is not started here: `tuner.get_results()` works without it; `tuner.fit()` starts a
local Ray as Tune does (or call `search.tuner.init_ray` first for rankbits' resources).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from trainables.errors import ConfigError


def restore_tuner(
    results_dir: str | os.PathLike[str],
    *,
    resume_unfinished: bool = True,
    resume_errored: bool = False,
    restart_errored: bool = False,
) -> Any:
    """The `ray.tune.Tuner` of a rankbits results folder (`results/<name>`, from `rankbits grid` or `pareto`),
    restored with the trainable it was run with. A folder extended by later runs holds several Tune experiments
    (`tune/`, `tune-2/`, ...): the latest restorable one is taken. Keyword arguments are `Tuner.restore`'s.

    Raises ConfigError when the folder holds no restorable Tune experiment."""
    from ray import tune

    from search.results_io import tune_dirs
    from search.tuner import trial_trainable

    root = Path(results_dir)
    saved = [
        d
        for d in tune_dirs(root)
        if ".incomplete-" not in d.name and tune.Tuner.can_restore(str(d.resolve()))
    ]
    if not saved:
        raise ConfigError(
            f"results folder {str(root)!r} holds no restorable Tune experiment (tune/ with Tune's saved state); "
            "give a results/<name> folder written by rankbits grid or rankbits pareto"
        )
    return tune.Tuner.restore(
        str(saved[-1].resolve()),
        trial_trainable(),
        resume_unfinished=resume_unfinished,
        resume_errored=resume_errored,
        restart_errored=restart_errored,
    )


def load_study(results_dir: str | os.PathLike[str]) -> Any:
    """The `optuna.Study` of a `rankbits pareto` results folder: the storage its experiment.json names (or the
    folder's study.db), the study named after the folder. Each trial's user attributes link it to Tune
    (`tune_trial_id`, `trial_dir`, `adapter_dir`); `study.metric_names` are the objectives.

    Raises ConfigError for a folder that is not a Pareto search or whose study cannot be found."""
    import optuna

    root = Path(results_dir)
    spec_file = root / "experiment.json"
    try:
        spec = json.loads(spec_file.read_text())
    except (OSError, ValueError):
        spec = None
    if not isinstance(spec, dict) or spec.get("kind") != "pareto":
        raise ConfigError(
            f"results folder {str(root)!r} is not a Pareto search (no experiment.json of kind pareto); "
            "give a folder written by rankbits pareto"
        )
    if not spec.get("storage") and not (root / "study.db").is_file():
        raise ConfigError(f"results folder {str(root)!r} has no study.db; the search stored no trial yet")
    storage = spec.get("storage") or f"sqlite:///{(root / 'study.db').resolve()}"
    try:
        return optuna.load_study(study_name=root.resolve().name, storage=storage)
    except KeyError as exc:
        raise ConfigError(
            f"{storage}: holds no study named {root.resolve().name!r}; give the results folder the search wrote"
        ) from exc
