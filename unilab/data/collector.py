"""The one rollout loop, for every algorithm: step the env with an actor and fill a rollout record.

PPO and the HORA student run it in the training process (``RolloutDataModule``); APPO runs the same
loop in its collector process (``unilab.data.async_rollout``), which only decides where it runs.

Two rules hold for every algorithm:
- Observation normalisers are never updated here. The learner folds each rollout's observations in
  once, after its update on that rollout (``ActorCriticAlgorithm._fold_observations``): a rollout is
  then acted on, and its targets computed, with one set of statistics, and a collector process (which
  cannot write the learner's statistics) needs nothing else.
- Time-outs are bootstrapped by the learner's critic from what this loop keeps: the bootstrap group's
  observation where a time-out cut an episode (``final_obs``) and after the last step (``last_obs``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import torch

from unilab.data.record import ACTOR_FIELDS, RolloutLayout
from unilab.tasks.base import InHandRotationEnv

Obs = dict[str, torch.Tensor]


class Actor(Protocol):
    """What the loop needs from an algorithm's acting policy."""

    def act(self, obs: Obs, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Actions for a batch of observations (no grad) under ``"actions"``, plus the other fields of
        ``ACTOR_FIELDS`` the algorithm trains from; random draws come from ``generator``."""


class RolloutCollector:
    """A persistent env, its current observation, a seeded sampling generator and the loop that fills records."""

    def __init__(self, env: InHandRotationEnv, layout: RolloutLayout, seed: int) -> None:
        if (layout.num_envs, layout.obs_dims) != (env.num_envs, env.observation_dims):
            raise ValueError(f"rollout layout {layout} does not fit the env ({env.num_envs} envs)")
        self.env, self.layout, self.seed = env, layout, seed
        self.generator = torch.Generator()
        self.obs: Obs | None = None

    def start(self) -> None:
        """Reset every env and the sampling generator from the seed."""
        self.obs = self.env.reset(seed=self.seed)
        self.generator.manual_seed(self.seed)

    @torch.no_grad()
    def collect(
        self,
        actor: Actor,
        into: dict[str, torch.Tensor],
        device: torch.device = torch.device("cpu"),
        on_step: Callable[[], None] | None = None,
    ) -> dict[str, float]:
        """Fill ``into`` (a ``layout.allocate()`` record) with the next ``horizon`` steps; returns the env metrics."""
        if self.obs is None:
            raise RuntimeError("RolloutCollector.start() was not called")
        started = time.perf_counter()
        group, env, obs = self.layout.bootstrap_group, self.env, self.obs
        for t in range(self.layout.horizon):
            for name, value in obs.items():
                into[f"obs/{name}"][t].copy_(value)
            acted = actor.act(
                {name: value.to(device, non_blocking=True) for name, value in obs.items()}, self.generator
            )
            step = env.step(acted["actions"])
            for name in ACTOR_FIELDS:
                if name in acted:
                    into[name][t].copy_(acted[name])
            into["rewards"][t].copy_(step.reward)
            into["terminated"][t].copy_(step.terminated)
            into["dones"][t].copy_(step.terminated | step.truncated)
            if group is not None and step.truncated.any():
                into["final_obs"][t][step.truncated] = step.final_obs[group][step.truncated]
            obs = step.obs
            if on_step is not None:
                on_step()
        if group is not None:
            into["last_obs"].copy_(obs[group])
        self.obs = obs
        into["collect_seconds"][0] = time.perf_counter() - started
        return env.pop_metrics()
