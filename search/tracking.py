"""Ray's W&B logger without the API key in a Ray runtime environment.

Ray's `WandbLoggerCallback` starts its logging actor with `runtime_env={"env_vars": {"WANDB_API_KEY": key}}`, and
Ray writes runtime environments in plain text to its session logs (the key was found 5 times in
`runtime_env_agent.log`, world-readable, kept after the run). Here the actor gets no runtime environment; it reads
the key as the trials do: from the environment its local Ray inherited from the driver (`init_ray` reads .env
before Ray starts), or else from the .env file, whose path (not its content) it is given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray
from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor
from ray.air.util.node import _force_on_current_node

from search.envfile import load_env

ENV_FILE_KWARG = "_rankbits_env_file"


class EnvFileLoggingActor(_WandbLoggingActor):
    """Ray's W&B logging actor that reads the API key from the .env file when its environment lacks it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        env_file = kwargs.pop(ENV_FILE_KWARG, None)
        if env_file:
            load_env(env_file)
        super().__init__(*args, **kwargs)


class SecretFreeWandbCallback(WandbLoggerCallback):
    """`WandbLoggerCallback` whose logging actors carry no secret in their runtime environment."""

    def _start_logging_actor(self, trial: Any, exclude_results: list[str], **wandb_init_kwargs: Any) -> None:
        if (
            not self._remote_logger_class
        ):  # Ray's own would add runtime_env={"env_vars": {WANDB_API_KEY: ...}}
            options: dict[str, Any] = dict(_force_on_current_node())  # type: ignore[arg-type]
            self._remote_logger_class = ray.remote(  # type: ignore[assignment]
                num_cpus=0, **options, max_restarts=-1, max_task_retries=-1
            )(EnvFileLoggingActor)
        env_file = str(Path(os.environ.get("RANKBITS_ENV_FILE", ".env")).resolve())
        super()._start_logging_actor(
            trial, exclude_results, **wandb_init_kwargs, **{ENV_FILE_KWARG: env_file}
        )
