"""Command line: ``python -m unilab fit|validate|test|predict|collect --config <yaml>``.

``fit`` and friends are LightningCLI subcommands. ``collect`` runs grasp collection for a task
(configs/<algo>/<task>_grasp/<sim>.yaml) and writes a cache file with its sidecar.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path

import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from unilab.data.rollout import EnvFactory
from unilab.sim.mujoco import default_num_threads

log = logging.getLogger("unilab")
LOG_ROOT = "logs"


class UnilabCLI(LightningCLI):
    """LightningCLI with observation sizes linked from the env and runs under logs/<algo>/<Task>/."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.observation_dims", "model.init_args.observation_dims", apply_on="instantiate")
        parser.link_arguments("data.num_actions", "model.init_args.num_actions", apply_on="instantiate")
        parser.link_arguments("model.init_args.gamma", "data.init_args.gamma")
        parser.link_arguments("model.init_args.gae_lambda", "data.init_args.gae_lambda")

    def instantiate_trainer(self, **kwargs):
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = default_logger(self.model, self.datamodule)
        callbacks = trainer_config.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, list) else [callbacks]
        wants_checkpoints = trainer_config.get("enable_checkpointing") is not False
        if wants_checkpoints and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            kwargs["callbacks"] = callbacks + default_checkpoints()
        return super().instantiate_trainer(**kwargs)


def run_name(sim: str) -> str:
    return f"{datetime.now().strftime('%Y%m%d_%H%M%S')}_{sim}"


def default_logger(model: LightningModule, datamodule: LightningDataModule) -> TensorBoardLogger:
    """TensorBoard logger writing to logs/<algo>/<TaskClass>/<timestamp>_<sim>/."""
    env = datamodule.env
    algo = getattr(model, "algo_name", type(model).__name__.lower())
    return TensorBoardLogger(save_dir=LOG_ROOT, name=f"{algo}/{type(env).__name__}", version=run_name(env.sim))


def default_checkpoints() -> list[ModelCheckpoint]:
    """``last.ckpt`` after every epoch and a kept ``epoch_<N>.ckpt`` every 10 epochs."""
    return [
        ModelCheckpoint(save_last=True, save_top_k=0, every_n_epochs=1),
        ModelCheckpoint(filename="epoch_{epoch}", save_top_k=-1, every_n_epochs=10, auto_insert_metric_name=False),
    ]


def collect(
    env: EnvFactory,
    count: int = 50000,
    num_envs: int = 256,
    output: str | None = None,
    seed: int = 0,
) -> Path:
    """Collect ``count`` grasps for ``env`` and write ``<prefix>_<count>.npy`` + sidecar atomically.

    Args:
        env: The rotation task whose scene and grasp criteria are used.
        count: Grasps to accept.
        num_envs: Parallel candidate envs.
        output: Output file (default: the task's cache folder and name).
        seed: Seed of the pose perturbations.
    """
    from unilab.tasks.grasp import ProgressBar

    task = env(1)
    task.rng = __import__("numpy").random.default_rng(seed)
    path = Path(output) if output else task.cache_source.directory() / task.generated_cache_name(count)
    with ProgressBar(count, f"{task.task_name}_grasp") as bar:
        task.write_grasp_cache(path, count, num_envs=num_envs, progress=bar.update)
    stats = task.last_collection_stats
    print(
        f"wrote {count} grasps to {path} (acceptance {100 * stats.acceptance_rate:.2f}%, "
        f"{stats.grasps_per_second:.1f} grasps/s)"
    )
    return path


def collect_main(args: list[str]) -> Path:
    parser = ArgumentParser(prog="python -m unilab collect", description=collect.__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(collect)
    config = parser.parse_args(args)
    init = parser.instantiate(config)
    return collect(**{k: v for k, v in vars(init).items() if k != "config"})


def main(args: list[str] | None = None) -> UnilabCLI | Path:
    """Entry point of ``python -m unilab``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(default_num_threads())
    argv = sys.argv[1:] if args is None else list(args)
    if argv and argv[0] == "collect":
        return collect_main(argv[1:])
    return UnilabCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        trainer_defaults={"log_every_n_steps": 1},
        save_config_kwargs={"overwrite": True},
        args=args,
    )
