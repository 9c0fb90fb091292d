"""APPO: asynchronous PPO with V-trace and the IMPACT ratio, as a LightningModule (docs/spec.md §5).

A collector process (``AsyncRolloutDataModule``) steps the envs with a slightly stale policy copy
while this module trains; one ``training_step`` takes the next rollout from the ring, replays some
of the K most recent ones, and publishes the new weights with a version counter.
"""

from __future__ import annotations

import random
import time
from collections import deque

import torch

from unilab.algos.actor_critic_base import ActorCriticAlgorithm, check_trace_lambda
from unilab.algos.losses import clipped_surrogate_loss, clipped_value_loss, gaussian_kl
from unilab.algos.targets import vtrace
from unilab.data.async_rollout import AsyncRolloutDataModule
from unilab.data.record import Rollout
from unilab.data.rollout import mean_metrics


class APPO(ActorCriticAlgorithm):
    """Asynchronous proximal policy optimisation with an asymmetric actor-critic."""

    algo_name = "appo"
    kl_sample_size = 1024  # states on which a single-update step measures its KL for the adaptive lr

    def __init__(
        self,
        observation_dims: dict[str, int],
        num_actions: int,
        vtrace_lambda: float = 0.95,
        replay_pool_size: int = 4,
        replays_per_step: int = 1,
        learner_threads: int = 1,
        lr_factor: float = 1.1,
        kl_band: tuple[float, float] = (1 / 1.2, 1.2),
        num_learning_epochs: int = 1,
        num_mini_batches: int = 2,
        **kwargs,
    ) -> None:
        """
        Args:
            observation_dims: Size of each observation group (linked from the data module).
            num_actions: Action size (linked from the data module).
            vtrace_lambda: Trace-cutting lambda inside V-trace's c_t (1.0 gives plain n-step V-trace).
            replay_pool_size: The K most recent rollouts kept for replay (the new one included).
            replays_per_step: Older rollouts from the pool trained on with each new one (counted as reuse).
            learner_threads: Torch threads of the learner while the collector runs (the rest go to physics).
            lr_factor: Factor by which the adaptive schedule divides or multiplies lr (gentler than PPO's
                1.5: APPO adapts after every learner step).
            kl_band: (low, high) multiples of ``desired_kl``: a step's KL above high divides lr, below low
                multiplies (narrower than PPO's (0.5, 2)).
            num_learning_epochs: Passes over each step's data (the new rollout plus its replays).
            num_mini_batches: Minibatches per pass. One pass in one minibatch folds the target pass into
                the gradient pass (a third less learner work) and adapts the lr by the KL of the step.
            **kwargs: The other actor-critic settings of ``ActorCriticAlgorithm`` (network, optimiser,
                clip, loss weights, observation groups), at their defaults.
        """
        check_trace_lambda("vtrace_lambda", vtrace_lambda)
        if learner_threads < 1:
            raise ValueError(f"model.learner_threads must be >= 1, got {learner_threads}")
        if not 0 <= replays_per_step < replay_pool_size:
            raise ValueError(
                f"model.replays_per_step must be in [0, replay_pool_size - 1] = [0, {replay_pool_size - 1}], "
                f"got {replays_per_step}"
            )
        super().__init__(
            observation_dims,
            num_actions,
            lr_factor=lr_factor,
            kl_band=kl_band,
            num_learning_epochs=num_learning_epochs,
            num_mini_batches=num_mini_batches,
            **kwargs,
        )
        self.register_buffer("rollouts_reused", torch.zeros((), dtype=torch.int64))
        self.pool: deque[Rollout] = deque(maxlen=replay_pool_size)
        self.version = 0
        self._previous_threads = torch.get_num_threads()
        self._last_step_end: float | None = None

    # Collector lifecycle -------------------------------------------------------------------------
    @property
    def datamodule(self) -> AsyncRolloutDataModule:
        datamodule = self.trainer.datamodule
        if not isinstance(datamodule, AsyncRolloutDataModule):
            raise TypeError(
                f"APPO needs data: unilab.data.async_rollout.AsyncRolloutDataModule, got {type(datamodule)}"
            )
        return datamodule

    def on_fit_start(self) -> None:
        if self.trainer.world_size > 1:
            raise RuntimeError("APPO runs one learner and one collector; use PPO for multi-process (DDP) training")
        self.check_data(self.datamodule)

    def check_data(self, datamodule) -> None:
        """Fail before the fit when a step's rows cannot be split into ``num_mini_batches`` equal minibatches."""
        rows = datamodule.batch_size * (1 + self.hparams.replays_per_step)
        if rows % self.hparams.num_mini_batches:
            raise ValueError(
                f"data.horizon * data.num_envs * (1 + model.replays_per_step) = {rows} is not divisible by "
                f"model.num_mini_batches = {self.hparams.num_mini_batches}"
            )

    def on_train_start(self) -> None:
        self._previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.hparams.learner_threads)
        learner_buffers = self.hparams.replay_pool_size + 1
        self.datamodule.start_collector(self.policy, self.policy.critic_group, learner_buffers)
        self.version = self.datamodule.collector.publish(self.policy)
        self._last_step_end = time.perf_counter()

    def on_validation_start(self) -> None:
        if self.trainer.training and self.datamodule.collector is not None:
            self.datamodule.collector.set_paused(True)

    def on_validation_end(self) -> None:
        if self.trainer.training and self.datamodule.collector is not None:
            self.datamodule.collector.set_paused(False)
            self._last_step_end = time.perf_counter()

    def on_train_end(self) -> None:
        self.datamodule.stop_collector()
        torch.set_num_threads(self._previous_threads)

    # Learner step ----------------------------------------------------------------------------------
    def training_step(self, rollout: Rollout, batch_idx: int) -> None:
        started = time.perf_counter()
        hp = self.hparams
        optimizer = self.optimizers()
        self.pool.append(rollout)
        replays = random.sample(list(self.pool)[:-1], min(hp.replays_per_step, len(self.pool) - 1))
        self.rollouts_reused += len(replays)
        used = [rollout, *replays]
        lags = [self.version - r.version for r in used]
        data = self._join(used)
        if hp.num_learning_epochs == 1 and hp.num_mini_batches == 1:
            stats = self._single_update(data, optimizer)
        else:
            stats = self._minibatch_updates(data, optimizer)
        self._fold_observations(rollout)
        self.version = self.datamodule.collector.publish(self.policy)

        # Logging
        now = time.perf_counter()
        wall = now - self._last_step_end
        self._last_step_end = now
        counters = self.datamodule.collector.counters()
        logs = stats | rollout.metrics | self._iteration_logs(optimizer, rollout.env_steps)
        logs |= {
            "policy/lag_mean": sum(lags) / len(lags),
            "policy/lag_max": float(max(lags)),
            "perf/env_steps_per_second": rollout.env_steps / wall,
            "perf/collector_env_steps_per_second": rollout.env_steps / max(rollout.collect_seconds, 1e-9),
            "perf/learner_wait_fraction": min(rollout.wait_seconds / wall, 1.0),
            "perf/update_seconds": now - started,
            "data/rollouts_received": float(counters["read"]),
            "data/rollouts_dropped": float(counters["dropped"]),
            "data/rollouts_reused": float(self.rollouts_reused),
        }
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=1)
        self._log_progress(logs)

    def _single_update(self, data: dict[str, torch.Tensor], optimizer) -> dict[str, float]:
        """One gradient step on all the data; its forward pass also gives the V-trace targets.

        Before the step the policy *is* the target policy, so the one forward pass with gradients
        serves both (a third less work than a separate target pass). The adaptive lr reads the KL
        between the policy before and after the step, measured on a random subset of the states.
        """
        hp = self.hparams
        obs = self._flat_obs(data)
        actions = data["actions"].reshape(-1, data["actions"].shape[-1])
        log_prob, entropy, values, dist = self.policy.evaluate_actions(obs, actions)
        shape = data["rewards"].shape
        with torch.no_grad():
            returns, advantages = self._vtrace(data, log_prob.detach().view(shape), values.detach().view(shape))
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        # IMPACT: ratio pi / max(pi_behaviour, pi_target), clipped
        anchor = torch.maximum(data["log_prob"].flatten(), log_prob.detach())
        surrogate = clipped_surrogate_loss(log_prob, anchor, advantages.flatten(), hp.clip_param)
        value_loss = clipped_value_loss(values, values.detach(), returns.flatten(), hp.clip_param)
        stats = self._actor_critic_step(optimizer, surrogate, value_loss, entropy.mean())
        with torch.no_grad():
            subset = torch.randperm(actions.shape[0], device=actions.device)[: self.kl_sample_size]
            new_mean = self.policy.action_mean({name: value[subset] for name, value in obs.items()})
            kl = float(gaussian_kl(dist.mean[subset], dist.stddev[0], new_mean, self.policy.log_std.exp()))
        self._adapt_learning_rate(optimizer, kl)
        return stats | {"policy/kl": kl}

    def _minibatch_updates(self, data: dict[str, torch.Tensor], optimizer) -> dict[str, float]:
        """``num_learning_epochs`` passes of ``num_mini_batches`` steps against targets computed first.

        The adaptive lr reads, before each step, the KL between the target policy and the current one.
        """
        hp = self.hparams
        obs = self._flat_obs(data)
        actions = data["actions"].reshape(-1, data["actions"].shape[-1])
        shape = data["rewards"].shape
        with torch.no_grad():  # the target policy: the weights before this learner step
            dist = self.policy.distribution(obs)
            target_log_prob = dist.log_prob(actions).sum(-1)
            target_values = self.policy.value(obs)
            returns, advantages = self._vtrace(data, target_log_prob.view(shape), target_values.view(shape))
            advantages = advantages.flatten()
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            anchor = torch.maximum(data["log_prob"].flatten(), target_log_prob)
            target_mean, target_std = dist.mean, dist.stddev[0]
        returns = returns.flatten()
        steps: list[dict[str, float]] = []
        for idx in self._minibatches(advantages.shape[0], advantages.device):
            log_prob, entropy, values, dist = self.policy.evaluate_actions(
                {name: value[idx] for name, value in obs.items()}, actions[idx]
            )
            with torch.no_grad():
                kl = float(gaussian_kl(target_mean[idx], target_std, dist.mean, dist.stddev))
            self._adapt_learning_rate(optimizer, kl)
            # IMPACT: ratio pi / max(pi_behaviour, pi_target), clipped
            surrogate = clipped_surrogate_loss(log_prob, anchor[idx], advantages[idx], hp.clip_param)
            value_loss = clipped_value_loss(values, target_values[idx], returns[idx], hp.clip_param)
            steps.append(self._actor_critic_step(optimizer, surrogate, value_loss, entropy.mean()))
            steps[-1]["policy/kl"] = kl
        return mean_metrics(steps)

    def _join(self, rollouts: list[Rollout]) -> dict[str, torch.Tensor]:
        """The rollouts side by side as one (T, k * N, ...) batch on the learner's device."""
        keys = [f"obs/{name}" for name in self.policy.input_groups]
        keys += ["actions", "log_prob", "rewards", "terminated", "dones", "final_obs"]
        joined = {key: torch.cat([r.tensors[key] for r in rollouts], dim=1).to(self.device) for key in keys}
        joined["last_obs"] = torch.cat([r.last_obs for r in rollouts]).to(self.device)
        return joined

    def _flat_obs(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: data[f"obs/{name}"].flatten(0, 1) for name in self.policy.input_groups}

    @torch.no_grad()
    def _vtrace(
        self, data: dict[str, torch.Tensor], target_log_prob: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """V-trace returns and advantages, (T, k * N), bootstrapped with the current critic."""
        hp, terminated, dones = self.hparams, data["terminated"], data["dones"]
        next_values = self._next_values(values, data["last_obs"], data["final_obs"], dones & ~terminated)
        return vtrace(
            data["rewards"], values, next_values, terminated, dones, target_log_prob - data["log_prob"],
            hp.gamma, hp.vtrace_lambda,
        )  # fmt: skip

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        # Checkpoints written before the target pass was folded into the policy carry a target copy.
        state = checkpoint.get("state_dict", {})
        for key in [key for key in state if key.startswith("target_policy.")]:
            del state[key]
