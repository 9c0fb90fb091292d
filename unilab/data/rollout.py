"""RolloutDataModule: the only code that steps envs during training.

One dataset item is one iteration: ``horizon`` steps of every env collected with the acting policy
(no grad). The batch records what happened, with V(final_obs) of time-outs in ``next_values``; the
algorithm computes its own targets from it (``unilab.algos.targets``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from unilab.tasks.base import InHandRotationEnv

Obs = dict[str, torch.Tensor]
EnvFactory = Callable[[int], InHandRotationEnv]


class Policy(Protocol):
    """What the DataModule needs from an algorithm's acting policy."""

    def act(self, obs: Obs) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """(actions, log-prob, value, action mean); a policy without a critic returns None for the value
        (then nothing is bootstrapped and ``value`` is never called), one that is not trained on its own
        actions None for the log-prob."""

    def value(self, obs: Obs) -> torch.Tensor:
        """State value for a batch of observations."""

    def action_std(self) -> torch.Tensor:
        """Current per-action standard deviation."""

    def observe(self, obs: Obs) -> None:
        """See observations before acting (updates running normalisers)."""


@dataclass
class RolloutBatch:
    """One iteration of experience: per-sample fields flattened to (horizon * num_envs, ...), the
    step-ordered record the targets are computed from kept (horizon, num_envs)."""

    obs: Obs
    actions: torch.Tensor
    log_prob: torch.Tensor
    action_mean: torch.Tensor
    action_std: torch.Tensor
    values: torch.Tensor  # (T, N): V(s_t) when acting (zeros for a policy without a critic)
    next_values: torch.Tensor  # (T, N): V(s_{t+1}), or V(final_obs_t) where a time-out cut the episode
    rewards: torch.Tensor  # (T, N)
    terminated: torch.Tensor  # (T, N)
    dones: torch.Tensor  # (T, N): terminated or truncated
    env_steps: int = 0
    collect_seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.actions.shape[0]


@dataclass
class ManifestRequest:
    """One evaluation run: ``episodes`` deterministic episodes from ``seed``."""

    episodes: int
    seed: int


class RolloutStorage:
    """Preallocated (horizon, num_envs, ...) buffers for one iteration."""

    def __init__(self, horizon: int, num_envs: int, obs_dims: dict[str, int], num_actions: int) -> None:
        t, n = horizon, num_envs
        self.obs = {name: torch.zeros(t, n, dim) for name, dim in obs_dims.items()}
        self.actions = torch.zeros(t, n, num_actions)
        self.action_mean = torch.zeros(t, n, num_actions)
        self.log_prob = torch.zeros(t, n)
        self.values = torch.zeros(t, n)
        self.next_values = torch.zeros(t, n)
        self.bootstrap_values = torch.zeros(t, n)
        self.rewards = torch.zeros(t, n)
        self.terminated = torch.zeros(t, n, dtype=torch.bool)
        self.dones = torch.zeros(t, n, dtype=torch.bool)

    def batch(self, action_std: torch.Tensor) -> RolloutBatch:
        flat = lambda x: x.reshape(-1, *x.shape[2:]).clone()  # noqa: E731
        return RolloutBatch(
            obs={name: flat(value) for name, value in self.obs.items()},
            actions=flat(self.actions),
            log_prob=flat(self.log_prob),
            action_mean=flat(self.action_mean),
            action_std=action_std.detach().cpu().clone(),
            values=self.values.clone(),
            next_values=self.next_values.clone(),
            rewards=self.rewards.clone(),
            terminated=self.terminated.clone(),
            dones=self.dones.clone(),
        )


class RolloutCollector:
    """Steps the env with the policy and fills the storage (shared by PPO and distillation)."""

    def __init__(self, env: InHandRotationEnv, horizon: int) -> None:
        self.env = env
        self.horizon = horizon
        self.storage = RolloutStorage(horizon, env.num_envs, env.observation_dims, env.num_actions)
        self.obs: Obs | None = None

    def start(self, seed: int) -> None:
        self.obs = self.env.reset(seed=seed)

    @torch.no_grad()
    def collect(self, policy: Policy, device: torch.device) -> RolloutBatch:
        started = time.perf_counter()
        storage = self.storage
        to_device = lambda obs: {k: v.to(device, non_blocking=True) for k, v in obs.items()}  # noqa: E731
        for t in range(self.horizon):
            # Rollout
            for name, value in self.obs.items():
                storage.obs[name][t].copy_(value)
            device_obs = to_device(self.obs)
            policy.observe(device_obs)
            actions, log_prob, values, mean = policy.act(device_obs)
            step = self.env.step(actions)
            storage.actions[t].copy_(actions)
            storage.action_mean[t].copy_(mean)
            if log_prob is not None:
                storage.log_prob[t].copy_(log_prob)
            storage.rewards[t].copy_(step.reward)
            storage.terminated[t].copy_(step.terminated)
            storage.dones[t].copy_(step.terminated | step.truncated)
            if values is not None:
                storage.values[t].copy_(values)
                # Time-out bootstrap, the one place for every algorithm: V(final_obs) where a time-out cut the
                # episode, with the acting critic (APPO's learner re-evaluates the states it is given).
                if step.truncated.any():
                    ids = step.truncated.nonzero().flatten()
                    final = to_device({k: v[ids] for k, v in step.final_obs.items()})
                    storage.bootstrap_values[t, ids] = policy.value(final).cpu()
            self.obs = step.obs
        if values is not None:
            storage.next_values[:-1] = storage.values[1:]
            storage.next_values[-1] = policy.value(to_device(self.obs)).cpu()
            truncated = storage.dones & ~storage.terminated
            storage.next_values.copy_(torch.where(truncated, storage.bootstrap_values, storage.next_values))
        batch = storage.batch(policy.action_std())
        batch.env_steps = self.horizon * self.env.num_envs
        batch.collect_seconds = time.perf_counter() - started
        batch.metrics = self.env.pop_metrics()
        return batch


class RolloutDataset(IterableDataset):
    """Yields ``iterations`` rollout batches per epoch from a persistent collector."""

    def __init__(
        self, collector: RolloutCollector, policy_source: Callable[[], tuple[Policy, torch.device]], iterations: int
    ):
        self.collector = collector
        self.policy_source = policy_source
        self.iterations = iterations

    def __iter__(self) -> Iterator[RolloutBatch]:
        for _ in range(self.iterations):
            policy, device = self.policy_source()
            yield self.collector.collect(policy, device)

    def __len__(self) -> int:
        return self.iterations


def require_positive(**sizes: int) -> None:
    """Fail fast on a data-module size below 1, naming the config key."""
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"data.{name} must be >= 1, got {value}")


class EnvDataModule(L.LightningDataModule):
    """What every rollout data module shares: the env factory, the sizes it links, the evaluation manifests."""

    def __init__(
        self,
        env: EnvFactory,
        val_episodes: int,
        test_episodes: int,
        eval_seed: int,
        num_envs: int,
        training_envs: int,
        control_steps_per_epoch: int,
    ) -> None:
        super().__init__()
        self.env_factory = env
        self.env = env(num_envs)
        # Resolve the grasp caches now: a missing, corrupt or mismatched cache stops the command before
        # any run folder or collector process exists (and a missing one is collected once, here).
        self.env.load_grasps(training_envs, control_steps_per_epoch)
        self.val_episodes, self.test_episodes, self.eval_seed = val_episodes, test_episodes, eval_seed
        self._eval_envs: dict[int, InHandRotationEnv] = {}

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
    """Owns the vectorised env; the algorithm hands over its acting policy in ``on_fit_start``."""

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
            env: The task (class path + init args); built here with ``num_envs`` envs.
            num_envs: Parallel environments on this rank.
            horizon: Control steps per env per iteration.
            iterations_per_epoch: Iterations (rollout + update) in one Lightning epoch.
            seed: Base seed; rank r uses ``seed + r``.
            val_episodes: Episodes of the short manifest run by ``validate`` (and during ``fit``).
            test_episodes: Episodes of the full manifest run by ``test`` / ``eval``.
            eval_seed: Seed of the evaluation manifests (fixed, so runs are comparable).
        """
        require_positive(num_envs=num_envs, horizon=horizon, iterations_per_epoch=iterations_per_epoch)
        steps_per_epoch = horizon * iterations_per_epoch
        super().__init__(env, val_episodes, test_episodes, eval_seed, num_envs, num_envs, steps_per_epoch)
        self.horizon = horizon
        self.iterations_per_epoch = iterations_per_epoch
        self.seed = seed
        self.collector = RolloutCollector(self.env, horizon)
        self._policy: Policy | None = None
        self._device = torch.device("cpu")
        self._started = False

    @property
    def batch_size(self) -> int:
        return self.horizon * self.env.num_envs

    def set_policy(self, policy: Policy, device: torch.device) -> None:
        """Hand over the acting policy (and the device it acts on)."""
        self._policy, self._device = policy, device

    def _current_policy(self) -> tuple[Policy, torch.device]:
        if self._policy is None:
            raise RuntimeError("no acting policy: the algorithm must call datamodule.set_policy() in on_fit_start")
        return self._policy, self._device

    def setup(self, stage: str) -> None:
        if stage == "fit" and not self._started:
            rank = self.trainer.global_rank if self.trainer is not None else 0
            self.collector.start(seed=self.seed + rank)
            self._started = True

    def train_dataloader(self) -> DataLoader:
        return in_process_loader(RolloutDataset(self.collector, self._current_policy, self.iterations_per_epoch))


def in_process_loader(items: IterableDataset | list) -> DataLoader:
    """Yield the items one at a time, in this process (envs and collectors are never copied to workers)."""
    return DataLoader(items, batch_size=None, num_workers=0)


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per-key mean over several metric dicts (rollouts, optimiser steps); a key counts where present."""
    keys = {key for row in rows for key in row}
    return {key: sum(row[key] for row in rows if key in row) / sum(key in row for row in rows) for key in keys}
