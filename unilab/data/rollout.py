"""RolloutDataModule: PPO's and the HORA student's rollouts, collected in the training process.

One dataset item is one iteration: ``horizon`` steps of every env, collected by the one rollout loop
(``unilab.data.collector``) with the actor the algorithm handed over, into one preallocated record
(``unilab.data.record``) that the algorithm trains from before the next one is collected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from unilab.data.collector import Actor, RolloutCollector
from unilab.data.record import Rollout, RolloutLayout
from unilab.tasks.base import InHandRotationEnv

EnvFactory = Callable[[int], InHandRotationEnv]


@dataclass
class ManifestRequest:
    """One evaluation run: ``episodes`` deterministic episodes from ``seed``."""

    episodes: int
    seed: int


class RolloutDataset(IterableDataset):
    """Yields ``iterations`` rollouts per epoch from a data module's ``next_rollout`` (in process or from a ring)."""

    def __init__(self, datamodule: L.LightningDataModule, iterations: int) -> None:
        self.datamodule = datamodule
        self.iterations = iterations

    def __iter__(self) -> Iterator[Rollout]:
        for _ in range(self.iterations):
            yield self.datamodule.next_rollout()

    def __len__(self) -> int:
        return self.iterations


def require_positive(**sizes: int) -> None:
    """Fail fast on a data-module size below 1, naming the config key."""
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"data.{name} must be >= 1, got {value}")


class EnvDataModule(L.LightningDataModule):
    """What every rollout data module shares: the env factory, the rollout sizes, the evaluation manifests.

    ``local_envs`` is how many envs this process builds (``None``: all ``num_envs``); a module whose envs
    live in another process builds one, for the sizes it links and the grasp-cache check.
    """

    local_envs: int | None = None

    def __init__(
        self,
        env: EnvFactory,
        num_envs: int = 256,
        horizon: int = 8,
        iterations_per_epoch: int = 50,
        seed: int = 0,
        val_episodes: int = 16,
        test_episodes: int = 64,
        eval_seed: int = 12345,
    ) -> None:
        """
        Args:
            env: The task (class path + init args), built with ``num_envs`` envs.
            num_envs: Parallel environments on this rank.
            horizon: Control steps per env per rollout.
            iterations_per_epoch: Iterations (rollout + update) in one Lightning epoch.
            seed: Base seed of the envs; rank r uses ``seed + r``.
            val_episodes: Episodes of the short manifest run by ``validate`` (and during ``fit``).
            test_episodes: Episodes of the full manifest run by ``test`` / ``eval``.
            eval_seed: Seed of the evaluation manifests (fixed, so runs are comparable).
        """
        require_positive(num_envs=num_envs, horizon=horizon, iterations_per_epoch=iterations_per_epoch)
        super().__init__()
        self.env_factory = env
        self.num_envs, self.horizon, self.seed = num_envs, horizon, seed
        self.iterations_per_epoch = iterations_per_epoch
        self.env = env(self.local_envs or num_envs)
        # Resolve the grasp caches now: a missing, corrupt or mismatched cache stops the command before
        # any run folder or collector process exists (and a missing one is collected once, here).
        self.env.load_grasps(num_envs, horizon * iterations_per_epoch)
        self.val_episodes, self.test_episodes, self.eval_seed = val_episodes, test_episodes, eval_seed
        self._eval_envs: dict[int, InHandRotationEnv] = {}

    @property
    def batch_size(self) -> int:
        """Env-steps of one rollout: ``horizon`` x ``num_envs``."""
        return self.horizon * self.num_envs

    # Values other components link to
    @property
    def observation_dims(self) -> dict[str, int]:
        return self.env.observation_dims

    @property
    def num_actions(self) -> int:
        return self.env.num_actions

    def evaluation_env(self, episodes: int) -> InHandRotationEnv:
        """An env with one slot per manifest episode (built once per size)."""
        if episodes not in self._eval_envs:
            self._eval_envs[episodes] = self.env_factory(episodes)
        return self._eval_envs[episodes]

    def val_dataloader(self) -> DataLoader:
        return in_process_loader([ManifestRequest(self.val_episodes, self.eval_seed)])

    def test_dataloader(self) -> DataLoader:
        return in_process_loader([ManifestRequest(self.test_episodes, self.eval_seed)])

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()  # the test manifest, every step kept


class RolloutDataModule(EnvDataModule):
    """Owns the vectorised env and its collector; the algorithm hands over its actor in ``on_fit_start``."""

    collector: RolloutCollector | None = None
    record: dict[str, torch.Tensor] | None = None
    _actor: Actor | None = None
    _device = torch.device("cpu")

    def set_actor(self, actor: Actor, device: torch.device, bootstrap_group: str | None) -> None:
        """Hand over the acting policy, the device it acts on and the group its critic reads (None: no critic).

        The first call resets the envs from ``seed + rank``; later calls (a new fit) continue from where
        the envs are.
        """
        self._actor, self._device = actor, device
        layout = RolloutLayout(
            self.horizon, self.env.num_envs, self.observation_dims, self.num_actions, bootstrap_group
        )
        if self.collector is None:
            rank = self.trainer.global_rank if self.trainer is not None else 0
            self.collector = RolloutCollector(self.env, layout, seed=self.seed + rank)
            self.collector.start()
        self.collector.layout = layout
        self.record = layout.allocate()

    def next_rollout(self) -> Rollout:
        if self._actor is None:
            raise RuntimeError("no actor: the algorithm must call datamodule.set_actor() in on_fit_start")
        metrics = self.collector.collect(self._actor, self.record, self._device)
        return Rollout(self.record, metrics)

    def train_dataloader(self) -> DataLoader:
        return in_process_loader(RolloutDataset(self, self.iterations_per_epoch))


def in_process_loader(items: IterableDataset | list) -> DataLoader:
    """Yield the items one at a time, in this process (envs and collectors are never copied to workers)."""
    return DataLoader(items, batch_size=None, num_workers=0)


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per-key mean over several metric dicts (rollouts, optimiser steps); a key counts where present."""
    keys = {key for row in rows for key in row}
    return {key: sum(row[key] for row in rows if key in row) / sum(key in row for row in rows) for key in keys}
