"""What every actor-critic algorithm module shares: evaluation, export, checkpoint layout, progress."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import lightning as L
import numpy as np
import torch

from unilab.algos.losses import KLAdaptiveLR
from unilab.data.record import Rollout
from unilab.data.rollout import ManifestRequest
from unilab.evaluation import evaluate
from unilab.models.actor_critic import ActorCritic, DeterministicActor
from unilab.prediction import record_trajectories
from unilab.user_errors import CheckpointError, refuse_invalid


def actor_critic_from(hparams: Mapping) -> ActorCritic:
    """The ``ActorCritic`` described by a PPO/APPO module's hyperparameters (also read from checkpoints)."""
    dims, privileged = hparams["observation_dims"], hparams.get("privileged_group")
    return ActorCritic(
        dims[hparams["actor_group"]],
        dims[hparams["critic_group"]],
        hparams["num_actions"],
        hparams["actor_hidden_dims"],
        hparams["critic_hidden_dims"],
        hparams["activation"],
        hparams["init_std"],
        hparams.get("actor_output_gain", 1.0),
        hparams["actor_group"],
        hparams["critic_group"],
        privileged,
        dims.get(privileged, 0),
        hparams.get("latent_dim", 9),
        hparams.get("encoder_hidden_dims", (256, 128)),
    )


def check_groups(observation_dims: dict[str, int], *groups: str) -> None:
    """Fail fast when an algorithm reads an observation group the env does not provide."""
    for name in groups:
        if name not in observation_dims:
            raise ValueError(f"observation group {name!r} not provided by the env; it has {sorted(observation_dims)}")


def check_actor_critic_hparams(
    observation_dims: dict[str, int],
    groups: tuple[str | None, ...],
    init_std: float,
    actor_output_gain: float,
    optimizer,
    schedule: str,
    desired_kl: float,
    lr_bounds: tuple[float, float],
    lr_factor: float,
    kl_band: tuple[float, float],
    gamma: float,
    trace_lambda: tuple[str, float],
    clip_param: float,
    value_loss_coef: float,
    entropy_coef: float,
    num_learning_epochs: int,
    num_mini_batches: int,
    max_grad_norm: float,
) -> None:
    """Refuse nonsense values before anything is built: each message names the setting and its valid range."""
    check_groups(observation_dims, *(group for group in groups if group))
    if schedule not in ("adaptive", "fixed"):
        raise ValueError(f"model.schedule must be 'adaptive' or 'fixed', got {schedule!r}")
    lambda_name, lambda_value = trace_lambda
    band = tuple(kl_band)
    checks = [
        ("init_std", init_std, init_std > 0, "> 0"),
        ("actor_output_gain", actor_output_gain, actor_output_gain > 0, "> 0"),
        ("desired_kl", desired_kl, desired_kl > 0, "> 0"),
        ("lr_factor", lr_factor, lr_factor > 1, "> 1"),
        ("kl_band", band, len(band) == 2 and 0 < band[0] <= 1 <= band[1], "(low, high), 0 < low <= 1 <= high"),
        ("num_learning_epochs", num_learning_epochs, num_learning_epochs >= 1, ">= 1"),
        ("num_mini_batches", num_mini_batches, num_mini_batches >= 1, ">= 1"),
        (
            "lr_bounds",
            tuple(lr_bounds),
            len(lr_bounds) == 2 and 0 < lr_bounds[0] <= lr_bounds[1],
            "(low, high), 0 < low <= high",
        ),
        ("gamma", gamma, 0 < gamma <= 1, "in (0, 1]"),
        (lambda_name, lambda_value, 0 <= lambda_value <= 1, "in [0, 1]"),
        ("clip_param", clip_param, clip_param > 0, "> 0"),
        ("value_loss_coef", value_loss_coef, value_loss_coef >= 0, ">= 0"),
        ("entropy_coef", entropy_coef, entropy_coef >= 0, ">= 0"),
        ("max_grad_norm", max_grad_norm, max_grad_norm > 0, "> 0"),
    ]
    refuse_invalid(checks)
    check_optimizer(optimizer)


def check_optimizer(optimizer) -> None:
    """The optimiser checks its own arguments (lr, betas, ...) when it is built: build one on a dummy."""
    try:
        optimizer([torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as error:
        raise ValueError(f"model.optimizer: {error}") from None


class PolicyAlgorithm(L.LightningModule):
    """Base of the modules that own an ``ActorCritic`` in ``self.policy`` (PPO, APPO, HORA teachers)."""

    algo_name = "policy"
    policy: ActorCritic

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("env_steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("iteration", torch.zeros((), dtype=torch.int64))
        self.test_result: dict | None = None
        self.recorded_observations: dict[str, torch.Tensor] | None = None

    def _init_policy(self) -> None:
        """Build ``self.policy`` from the saved hyperparameters; HORA teachers log under ``hora_<algo>``."""
        self.policy = actor_critic_from(self.hparams)
        if self.hparams.get("privileged_group"):
            self.algo_name = f"hora_{self.algo_name}"

    def check_data(self, datamodule) -> None:
        """Fail before the fit when the rollout cannot be split into ``num_mini_batches`` equal minibatches."""
        if datamodule.batch_size % self.hparams.num_mini_batches:
            raise ValueError(
                f"data.horizon * data.num_envs = {datamodule.batch_size} is not divisible by "
                f"model.num_mini_batches = {self.hparams.num_mini_batches}"
            )

    def _log_progress(self, logs: dict[str, float]) -> None:
        bar = {
            "it": float(self.iteration),
            "sps": logs["perf/env_steps_per_second"],
            "rew": logs.get("reward/rotate", float("nan")),
        }
        if "episode/length" in logs:
            bar["ep_len"] = logs["episode/length"]
            bar["rot"] = logs["episode/rotation_speed"]
        self.log_dict(bar, prog_bar=True, logger=False, on_step=True, on_epoch=False, batch_size=1)

    def _actor_critic_step(self, optimizer, surrogate, value_loss, entropy) -> dict[str, float]:
        """One clipped optimiser step on surrogate + c_v value - c_e entropy; returns the terms for logging."""
        hp = self.hparams
        loss = surrogate + hp.value_loss_coef * value_loss - hp.entropy_coef * entropy
        optimizer.zero_grad()
        self.manual_backward(loss)
        self._average_gradients_over_ranks()
        self.clip_gradients(optimizer, gradient_clip_val=hp.max_grad_norm, gradient_clip_algorithm="norm")
        optimizer.step()
        return {"loss/surrogate": surrogate.item(), "loss/value": value_loss.item(), "loss/entropy": entropy.item()}

    def _average_gradients_over_ranks(self) -> None:
        """Mean of the gradients over DDP ranks (a no-op on one process)."""
        world = self.trainer.world_size
        if world == 1:
            return
        for parameter in self.policy.parameters():
            if parameter.grad is not None:
                torch.distributed.all_reduce(parameter.grad)
                parameter.grad /= world

    # Evaluation ----------------------------------------------------------------------------------
    def action_mean(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Deterministic action of the deployed policy."""
        return self.policy.action_mean(obs)

    def export_inputs(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Inputs of the deployed policy (ONNX input name -> tensor), in ``deterministic_actor``'s order."""
        inputs = {"obs": obs[self.policy.actor_group]}
        if self.policy.privileged_group is not None:
            inputs["privileged"] = obs[self.policy.privileged_group]
        return inputs

    def _evaluate(self, request: ManifestRequest) -> dict:
        env = self.trainer.datamodule.evaluation_env(request.episodes)
        recorded: list[dict[str, torch.Tensor]] = []

        def act(obs: dict[str, torch.Tensor]) -> torch.Tensor:
            obs = {name: value.to(self.device) for name, value in obs.items()}
            if len(recorded) < 16:
                recorded.append({name: value[:16].cpu() for name, value in self.export_inputs(obs).items()})
            with self._deployed_precision():
                return self.action_mean(obs)

        result = evaluate(env, act, request.seed)
        self.recorded_observations = {name: torch.cat([r[name] for r in recorded]) for name in recorded[0]}
        return result

    def validation_step(self, request: ManifestRequest, batch_idx: int) -> None:
        overall = self._evaluate(request)["overall"]
        self.log_dict({f"eval/{name}": float(value) for name, value in overall.items()}, batch_size=1)

    def test_step(self, request: ManifestRequest, batch_idx: int) -> None:
        self.test_result = self._evaluate(request)
        overall = self.test_result["overall"]
        self.log_dict({f"test/{name}": float(value) for name, value in overall.items()}, batch_size=1)

    def predict_step(self, request: ManifestRequest, batch_idx: int) -> dict[str, np.ndarray]:
        """The manifest's episodes with every step kept (``unilab.prediction``); written to predictions.npz."""
        env = self.trainer.datamodule.evaluation_env(request.episodes)

        def act(obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            obs = {name: value.to(self.device) for name, value in obs.items()}
            with self._deployed_precision():
                return self.action_mean(obs), self.export_inputs(obs)

        return record_trajectories(env, act, request.seed)

    def _deployed_precision(self):
        """Evaluation and prediction act in float32, as the exported policy does, even under ``bf16-mixed``."""
        return torch.autocast(self.device.type, enabled=False)

    def deterministic_actor(self) -> torch.nn.Module:
        """The deployed policy as one module: ``export_inputs`` (in order) -> action means."""
        return DeterministicActor(self.policy)

    # Checkpoints ---------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["unilab"] = {
            "observation_dims": dict(self.hparams.observation_dims),
            "num_actions": self.hparams.num_actions,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("unilab", {})
        layout = {"observation_dims": dict(self.hparams.observation_dims), "num_actions": self.hparams.num_actions}
        for key, value in layout.items():
            if key in saved and saved[key] != value:
                raise CheckpointError(
                    f"checkpoint {key} {saved[key]} does not match this task's {value}; "
                    "it was trained on a different task or observation layout"
                )


class ActorCriticAlgorithm(PolicyAlgorithm):
    """What PPO and APPO share: the optimiser, the adaptive learning-rate rule, minibatches, iteration logs.

    Subclasses save their hyperparameters (which include those checked by ``check_actor_critic_hparams``)
    and then call :meth:`_setup_actor_critic`.
    """

    def _setup_actor_critic(self, optimizer) -> None:
        self.automatic_optimization = False
        self._init_policy()
        self.optimizer_factory = optimizer
        hp = self.hparams
        self.lr_rule = KLAdaptiveLR(hp.desired_kl, hp.lr_factor, tuple(hp.kl_band), tuple(hp.lr_bounds))

    def configure_optimizers(self):
        return self.optimizer_factory(self.policy.parameters())

    def on_fit_start(self) -> None:
        self.check_data(self.trainer.datamodule)
        if self.trainer.world_size > 1:  # every rank starts from the same (initial or restored) statistics
            for normalizer in self.policy.normalizers():
                normalizer.mark_synchronised()

    def _fold_observations(self, rollout: Rollout) -> None:
        """The normaliser rule of every algorithm (``unilab.data.collector``): fold a rollout's observations
        in once, after the update on it; under DDP every rank then merges all ranks' rollouts, so all ranks
        act on the same statistics."""
        self.policy.update_normalizers({name: value.to(self.device) for name, value in rollout.obs.items()})
        if self.trainer.world_size > 1:
            for normalizer in self.policy.normalizers():
                normalizer.merge_over_ranks(self.all_gather)

    @torch.no_grad()
    def _next_values(
        self, values: torch.Tensor, last_obs: torch.Tensor, final_obs: torch.Tensor, truncated: torch.Tensor
    ) -> torch.Tensor:
        """V(s_{t+1}) for every (T, N) step with the current critic, the one place time-outs are bootstrapped:
        the next step's value, V(``last_obs``) after the last step, V(``final_obs``) where a time-out cut the
        episode (terminated steps are masked by the targets)."""
        critic = self.policy.critic_group
        next_values = torch.empty_like(values)
        next_values[:-1] = values[1:]
        next_values[-1] = self.policy.value({critic: last_obs})
        if truncated.any():
            next_values[truncated] = self.policy.value({critic: final_obs[truncated]})
        return next_values

    def _adapt_learning_rate(self, optimizer, kl: float) -> None:
        """Apply the KL rule (``schedule: adaptive``) to every parameter group."""
        if self.hparams.schedule != "adaptive":
            return
        lr = self.lr_rule(optimizer.param_groups[0]["lr"], kl)
        for group in optimizer.param_groups:
            group["lr"] = lr

    def _minibatches(self, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
        """Row indices of ``num_learning_epochs`` shuffled passes of ``num_mini_batches`` equal minibatches."""
        minibatch = batch_size // self.hparams.num_mini_batches
        for _ in range(self.hparams.num_learning_epochs):
            permutation = torch.randperm(batch_size, device=device)
            for start in range(0, batch_size, minibatch):
                yield permutation[start : start + minibatch]

    def _iteration_logs(self, optimizer, env_steps: int) -> dict[str, float]:
        """Count ``env_steps`` and one iteration; the figures every actor-critic algorithm logs."""
        self.env_steps += env_steps
        self.iteration += 1
        return {
            "policy/learning_rate": optimizer.param_groups[0]["lr"],
            "policy/action_std": self.policy.log_std.exp().mean().item(),
            "perf/env_steps": float(self.env_steps),
        }
