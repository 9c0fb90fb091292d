"""APPO: asynchronous PPO with V-trace and the IMPACT ratio, as a LightningModule (TASKS.md §5).

A collector process (``AsyncRolloutDataModule``) steps the envs with a slightly stale policy copy
while this module trains; one ``training_step`` takes the next rollout from the ring, replays some
of the K most recent ones, and publishes the new weights with a version counter.
"""

from __future__ import annotations

import copy
import random
import time
from collections import deque
from collections.abc import Sequence

import torch
from lightning.pytorch.cli import OptimizerCallable

from unilab.algos.base import PolicyAlgorithm, check_groups
from unilab.algos.losses import adaptive_learning_rate, clipped_surrogate_loss, clipped_value_loss, gaussian_kl
from unilab.algos.vtrace import vtrace
from unilab.data.async_rollout import AsyncRolloutDataModule, Rollout


class APPO(PolicyAlgorithm):
    """Asynchronous proximal policy optimisation with an asymmetric actor-critic."""

    algo_name = "appo"

    def __init__(
        self,
        observation_dims: dict[str, int],
        num_actions: int,
        actor_hidden_dims: Sequence[int] = (512, 256, 128),
        critic_hidden_dims: Sequence[int] = (512, 256, 128),
        activation: str = "elu",
        init_std: float = 1.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        schedule: str = "adaptive",
        desired_kl: float = 0.02,
        lr_bounds: tuple[float, float] = (1e-5, 1e-2),
        gamma: float = 0.99,
        vtrace_lambda: float = 0.95,
        clip_param: float = 0.2,
        value_loss_coef: float = 4.0,
        entropy_coef: float = 0.01,
        num_learning_epochs: int = 1,
        num_mini_batches: int = 2,
        replay_pool_size: int = 4,
        replays_per_step: int = 1,
        max_grad_norm: float = 1.0,
        learner_threads: int = 1,
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
            optimizer: Optimiser factory (e.g. ``torch.optim.Adam`` with ``lr``); its lr is the initial one.
            schedule: ``adaptive`` (KL-driven, x/÷ 1.1 outside [target/1.2, 1.2 target]) or ``fixed``.
            desired_kl: KL target of the adaptive schedule.
            lr_bounds: Bounds of the adaptive learning rate.
            gamma: Discount factor.
            vtrace_lambda: Trace-cutting lambda inside V-trace's c_t (1.0 gives plain n-step V-trace).
            clip_param: Ratio and value clip.
            value_loss_coef: Weight of the value loss.
            entropy_coef: Weight of the entropy bonus.
            num_learning_epochs: Passes over each step's data (the new rollout plus its replays).
            num_mini_batches: Minibatches per pass.
            replay_pool_size: The K most recent rollouts kept for replay (the new one included).
            replays_per_step: Older rollouts from the pool trained on with each new one (counted as reuse).
            max_grad_norm: Gradient-norm clip.
            learner_threads: Torch threads of the learner while the collector runs (the rest go to physics).
            actor_group: Observation group the actor reads.
            critic_group: Observation group the critic reads.
            privileged_group: HORA teacher (``--profile hora``): group encoded into the extrinsics latent z
                that the actor reads besides its own group; runs log under ``logs/hora_appo/``.
            latent_dim: Size of z.
            encoder_hidden_dims: Widths of the privileged encoder MLP.
        """
        super().__init__()
        if schedule not in ("adaptive", "fixed"):
            raise ValueError(f"model.schedule must be 'adaptive' or 'fixed', got {schedule!r}")
        check_groups(observation_dims, actor_group, critic_group, *([privileged_group] if privileged_group else []))
        if num_learning_epochs < 1 or num_mini_batches < 1 or learner_threads < 1:
            raise ValueError("model.num_learning_epochs, num_mini_batches and learner_threads must be >= 1")
        if not 0 <= replays_per_step < replay_pool_size:
            raise ValueError(
                f"model.replays_per_step must be in [0, replay_pool_size - 1] = [0, {replay_pool_size - 1}], "
                f"got {replays_per_step}"
            )
        self.save_hyperparameters(ignore=["optimizer"])
        self.automatic_optimization = False
        self._init_policy()
        self.target_policy = copy.deepcopy(self.policy).requires_grad_(False)
        self.optimizer_factory = optimizer
        self.register_buffer("rollouts_reused", torch.zeros((), dtype=torch.int64))
        self.pool: deque[Rollout] = deque(maxlen=replay_pool_size)
        self.version = 0
        self._previous_threads = torch.get_num_threads()
        self._last_step_end: float | None = None

    def configure_optimizers(self):
        return self.optimizer_factory(self.policy.parameters())

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
        if self.datamodule.batch_size * (1 + self.hparams.replays_per_step) % self.hparams.num_mini_batches:
            raise ValueError("horizon * num_envs * (1 + replays_per_step) must be divisible by model.num_mini_batches")

    def on_train_start(self) -> None:
        self._previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.hparams.learner_threads)
        self.datamodule.start_collector(self.policy, learner_buffers=self.hparams.replay_pool_size + 1)
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
        self.policy.update_normalizers({name: value.to(self.device) for name, value in rollout.obs.items()})
        self.pool.append(rollout)
        replays = random.sample(list(self.pool)[:-1], min(hp.replays_per_step, len(self.pool) - 1))
        self.rollouts_reused += len(replays)
        used = [rollout, *replays]
        lags = [self.version - r.version for r in used]

        # Targets: V-trace under the target policy (the weights published last, one update old)
        self.target_policy.load_state_dict(self.policy.state_dict())
        data = self._concat([self._targets(r) for r in used])
        advantages = data["advantages"]
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        batch_size = advantages.shape[0]
        minibatch = batch_size // hp.num_mini_batches
        stats = {"loss/surrogate": 0.0, "loss/value": 0.0, "loss/entropy": 0.0, "policy/kl": 0.0}
        updates = 0

        # Policy update
        for _ in range(hp.num_learning_epochs):
            permutation = torch.randperm(batch_size, device=advantages.device)
            for start in range(0, batch_size, minibatch):
                idx = permutation[start : start + minibatch]
                obs = {name: data[f"obs/{name}"][idx] for name in self.policy.input_groups}
                log_prob, entropy, values, dist = self.policy.evaluate(obs, data["actions"][idx])
                with torch.no_grad():
                    kl = float(gaussian_kl(data["target_mean"][idx], data["target_std"], dist.mean, dist.stddev))
                if hp.schedule == "adaptive":
                    lr = adaptive_learning_rate(
                        optimizer.param_groups[0]["lr"], kl, hp.desired_kl, hp.lr_bounds, 1.1, 1.2, 1 / 1.2
                    )
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                # IMPACT: ratio pi / max(pi_behaviour, pi_target), clipped
                anchor = torch.maximum(data["log_prob"][idx], data["target_log_prob"][idx])
                surrogate = clipped_surrogate_loss(log_prob, anchor, advantages[idx], hp.clip_param)
                value_loss = clipped_value_loss(values, data["values"][idx], data["returns"][idx], hp.clip_param)
                loss = surrogate + hp.value_loss_coef * value_loss - hp.entropy_coef * entropy.mean()
                optimizer.zero_grad()
                self.manual_backward(loss)
                self.clip_gradients(optimizer, gradient_clip_val=hp.max_grad_norm, gradient_clip_algorithm="norm")
                optimizer.step()
                stats["loss/surrogate"] += surrogate.item()
                stats["loss/value"] += value_loss.item()
                stats["loss/entropy"] += entropy.mean().item()
                stats["policy/kl"] += kl
                updates += 1
        self.version = self.datamodule.collector.publish(self.policy)

        # Logging
        now = time.perf_counter()
        wall = now - self._last_step_end
        self._last_step_end = now
        self.env_steps += rollout.env_steps
        self.iteration += 1
        counters = self.datamodule.collector.ring.counters()
        logs = {key: value / updates for key, value in stats.items()}
        logs |= rollout.metrics
        logs |= {
            "policy/learning_rate": optimizer.param_groups[0]["lr"],
            "policy/action_std": self.policy.log_std.exp().mean().item(),
            "policy/lag_mean": sum(lags) / len(lags),
            "policy/lag_max": float(max(lags)),
            "perf/env_steps_per_second": rollout.env_steps / wall,
            "perf/collector_env_steps_per_second": rollout.env_steps / max(rollout.collect_seconds, 1e-9),
            "perf/learner_wait_fraction": min(rollout.wait_seconds / wall, 1.0),
            "perf/update_seconds": now - started,
            "perf/env_steps": float(self.env_steps),
            "data/rollouts_received": float(counters["read"]),
            "data/rollouts_dropped": float(counters["dropped"]),
            "data/rollouts_reused": float(self.rollouts_reused),
        }
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=1)
        self._log_progress(logs)

    @torch.no_grad()
    def _targets(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """Flattened training data of one rollout with V-trace targets under the target policy."""
        hp = self.hparams
        to = lambda x: x.to(self.device)  # noqa: E731
        obs = {name: to(rollout.tensors[f"obs/{name}"]) for name in self.policy.input_groups}
        actions = to(rollout.actions)
        dist = self.target_policy.distribution(obs)
        target_log_prob = dist.log_prob(actions).sum(-1)
        critic = {hp.critic_group: obs[hp.critic_group]}
        values = self.target_policy.value(critic)
        terminated, dones = to(rollout.terminated), to(rollout.dones)
        next_values = torch.empty_like(values)
        next_values[:-1] = values[1:]
        next_values[-1] = self.target_policy.value({hp.critic_group: to(rollout.last_critic_obs)})
        truncated = dones & ~terminated
        if truncated.any():
            final = {hp.critic_group: to(rollout.truncated_critic_obs)[truncated]}
            next_values[truncated] = self.target_policy.value(final)
        log_prob = to(rollout.log_prob)
        returns, advantages = vtrace(
            to(rollout.rewards), values, next_values, terminated, dones, target_log_prob - log_prob,
            hp.gamma, hp.vtrace_lambda,
        )  # fmt: skip
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
        return {
            **{f"obs/{name}": flat(value) for name, value in obs.items()},
            "actions": flat(actions),
            "log_prob": flat(log_prob),
            "target_log_prob": flat(target_log_prob),
            "target_mean": flat(dist.mean),
            "target_std": dist.stddev[0, 0],
            "values": flat(values),
            "returns": flat(returns),
            "advantages": flat(advantages),
        }

    @staticmethod
    def _concat(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        joined = {key: torch.cat([part[key] for part in parts]) for key in parts[0] if key != "target_std"}
        joined["target_std"] = parts[0]["target_std"]
        return joined
