"""What every module that owns an actor-critic policy shares: evaluation, export, checkpoint layout, progress."""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
import numpy as np
import torch

from unilab.data.rollout import ManifestRequest
from unilab.evaluation import evaluate
from unilab.models.actor_critic import ActorCritic, DeterministicActor
from unilab.prediction import record_trajectories
from unilab.user_errors import CheckpointError


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
