"""PPO as a LightningModule with manual optimisation (docs/spec.md §5).

One ``training_step`` is one PPO iteration: the batch is a full rollout from the
RolloutDataModule; the module computes GAE targets from it with its critic and runs epochs x
minibatches of clipped-surrogate updates.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

import torch
from lightning.pytorch.cli import OptimizerCallable

from unilab.algos.base import ActorCriticAlgorithm, check_actor_critic_hparams
from unilab.algos.losses import clipped_surrogate_loss, clipped_value_loss, gaussian_kl
from unilab.algos.targets import gae
from unilab.data.record import Rollout
from unilab.data.rollout import mean_metrics


class PPO(ActorCriticAlgorithm):
    """Proximal policy optimisation with an asymmetric actor-critic."""

    algo_name = "ppo"

    def __init__(
        self,
        observation_dims: dict[str, int],
        num_actions: int,
        actor_hidden_dims: Sequence[int] = (512, 256, 128),
        critic_hidden_dims: Sequence[int] = (512, 256, 128),
        activation: str = "elu",
        init_std: float = 1.0,
        actor_output_gain: float = 1.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        schedule: str = "adaptive",
        desired_kl: float = 0.02,
        lr_bounds: tuple[float, float] = (1e-5, 1e-2),
        lr_factor: float = 1.5,
        kl_band: tuple[float, float] = (0.5, 2.0),
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_param: float = 0.2,
        value_loss_coef: float = 4.0,
        entropy_coef: float = 0.01,
        num_learning_epochs: int = 5,
        num_mini_batches: int = 4,
        max_grad_norm: float = 1.0,
        actor_group: str = "policy",
        critic_group: str = "critic",
        privileged_group: str | None = None,
        latent_dim: int = 9,
        encoder_hidden_dims: Sequence[int] = (256, 128),
    ) -> None:
        """
        Args:
            observation_dims: Size of each observation group (linked from the data module).
            num_actions: Action size (linked from the data module).
            actor_hidden_dims: Actor MLP widths.
            critic_hidden_dims: Critic MLP widths.
            activation: Hidden activation (elu, relu, tanh, silu).
            init_std: Initial action standard deviation.
            actor_output_gain: Scale of the actor's initial output weights (its bias starts at zero unless 1.0,
                PyTorch's default initialisation); a small gain starts from near-zero mean actions.
            optimizer: Optimiser factory (e.g. ``torch.optim.Adam`` with ``lr``); its lr is the initial one.
            schedule: ``adaptive`` (KL-driven) or ``fixed``.
            desired_kl: KL target of the adaptive schedule.
            lr_bounds: Bounds of the adaptive learning rate.
            lr_factor: Factor by which the adaptive schedule divides or multiplies lr.
            kl_band: (low, high) multiples of ``desired_kl``: a step's KL above high divides lr, below low multiplies.
            gamma: Discount factor.
            gae_lambda: GAE lambda.
            clip_param: Ratio and value clip.
            value_loss_coef: Weight of the value loss.
            entropy_coef: Weight of the entropy bonus.
            num_learning_epochs: Passes over each rollout.
            num_mini_batches: Minibatches per pass; must divide horizon * num_envs.
            max_grad_norm: Gradient-norm clip.
            actor_group: Observation group the actor reads.
            critic_group: Observation group the critic reads.
            privileged_group: HORA teacher (``--profile hora``): group encoded into the extrinsics latent z
                that the actor reads besides its own group; runs log under ``logs/hora_ppo/``.
            latent_dim: Size of z.
            encoder_hidden_dims: Widths of the privileged encoder MLP.
        """
        super().__init__()
        check_actor_critic_hparams(
            observation_dims, (actor_group, critic_group, privileged_group), init_std, actor_output_gain, optimizer,
            schedule, desired_kl, lr_bounds, lr_factor, kl_band, gamma, ("gae_lambda", gae_lambda), clip_param,
            value_loss_coef, entropy_coef, num_learning_epochs, num_mini_batches, max_grad_norm,
        )  # fmt: skip
        self.save_hyperparameters(ignore=["optimizer"])
        self._setup_actor_critic(optimizer)

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
