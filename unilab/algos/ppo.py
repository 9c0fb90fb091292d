"""PPO as a LightningModule with manual optimisation (docs/spec.md §5).

One ``training_step`` is one PPO iteration: the batch is a full rollout from the
RolloutDataModule; the module computes GAE targets from it with its critic and runs epochs x
minibatches of clipped-surrogate updates.
"""

from __future__ import annotations

import contextlib
import time

import torch

from unilab.algos.actor_critic_base import ActorCriticAlgorithm, check_trace_lambda
from unilab.algos.losses import clipped_surrogate_loss, clipped_value_loss, gaussian_kl
from unilab.algos.targets import gae
from unilab.data.record import Rollout
from unilab.data.rollout import mean_metrics


class PPO(ActorCriticAlgorithm):
    """Proximal policy optimisation with an asymmetric actor-critic."""

    algo_name = "ppo"

    def __init__(self, observation_dims: dict[str, int], num_actions: int, gae_lambda: float = 0.95, **kwargs) -> None:
        """
        Args:
            observation_dims: Size of each observation group (linked from the data module).
            num_actions: Action size (linked from the data module).
            gae_lambda: GAE lambda.
            **kwargs: The actor-critic settings of ``ActorCriticAlgorithm`` (network, optimiser, lr rule,
                clip, loss weights, epochs x minibatches, observation groups), at their defaults.
        """
        check_trace_lambda("gae_lambda", gae_lambda)
        super().__init__(observation_dims, num_actions, **kwargs)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.trainer.datamodule.set_actor(self.policy, self.device, self.policy.critic_group)

    def training_step(self, rollout: Rollout, batch_idx: int) -> None:
        started = time.perf_counter()
        optimizer = self.optimizers()
        hp = self.hparams
        obs = {name: value.flatten(0, 1) for name, value in rollout.obs.items()}
        actions, action_mean = rollout.actions.flatten(0, 1), rollout.action_mean.flatten(0, 1)
        log_prob_old = rollout.log_prob.flatten()
        with torch.no_grad():  # the acting policy: the weights and statistics the rollout was collected with
            action_std = self.policy.log_std.exp().detach().clone()
            values = self.policy.value(obs).view_as(rollout.rewards)
            next_values = self._next_values(values, rollout.last_obs, rollout.final_obs, rollout.truncated)
        advantages, returns = gae(
            rollout.rewards, values, next_values, rollout.terminated, rollout.dones, hp.gamma, hp.gae_lambda
        )
        values_old, advantages, returns = values.flatten(), advantages.flatten(), returns.flatten()
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        steps: list[dict[str, float]] = []

        # Policy update: epochs x minibatches. Under DDP, gradients and KL are averaged over ranks
        # explicitly (one all-reduce per minibatch), so every rank takes the same step.
        with self._no_automatic_gradient_sync():
            for idx in self._minibatches(len(rollout), advantages.device):
                minibatch = {name: value[idx] for name, value in obs.items()}
                log_prob, entropy, values, dist = self.policy.evaluate_actions(minibatch, actions[idx])
                with torch.no_grad():
                    kl = self._mean_over_ranks(gaussian_kl(action_mean[idx], action_std, dist.mean, dist.stddev))
                self._adapt_learning_rate(optimizer, kl)
                surrogate = clipped_surrogate_loss(log_prob, log_prob_old[idx], advantages[idx], hp.clip_param)
                value_loss = clipped_value_loss(values, values_old[idx], returns[idx], hp.clip_param)
                steps.append(self._actor_critic_step(optimizer, surrogate, value_loss, entropy.mean()))
                steps[-1]["policy/kl"] = kl

        self._fold_observations(rollout)

        # Logging
        update_seconds = time.perf_counter() - started
        world = self.trainer.world_size
        logs = mean_metrics(steps) | rollout.metrics | self._iteration_logs(optimizer, rollout.env_steps * world)
        logs["perf/collect_seconds"] = rollout.collect_seconds
        logs["perf/update_seconds"] = update_seconds
        logs["perf/env_steps_per_second"] = rollout.env_steps * world / (rollout.collect_seconds + update_seconds)
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=1, sync_dist=False)
        self._log_progress(logs)

    # Multi-rank helpers (no-ops on one process) ---------------------------------------------------
    def _no_automatic_gradient_sync(self):
        block = getattr(self.trainer.strategy, "block_backward_sync", None)
        return block() if block is not None and self.trainer.world_size > 1 else contextlib.nullcontext()

    def _mean_over_ranks(self, value: torch.Tensor) -> float:
        if self.trainer.world_size > 1:
            value = self.trainer.strategy.reduce(value.detach().clone(), reduce_op="mean")
        return float(value)
