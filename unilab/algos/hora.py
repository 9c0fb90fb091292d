"""HORA student distillation as a LightningModule (docs/spec.md §5).

A frozen HORA teacher (PPO or APPO run with ``--profile hora``) gives the extrinsics latent z from
privileged observations; the student's adaptation module predicts z from the 30-frame
proprioceptive history and is trained with MSE(z_student, z_teacher). The student's own z drives
its actor (a copy of the teacher's) during collection (DAgger-like), so it learns on the states it
visits. With ``action_loss_weight`` > 0 that actor is fine-tuned too, towards the teacher's (clipped)
actions on those states: the teacher's latent carries the object's position, which the history shows
only in part, and the actor learns to act on what the student can know (docs/results.md, "Why the
student drops the cylinder").
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import nn

from unilab.algos.base import PolicyAlgorithm, actor_critic_from, check_groups, check_optimizer
from unilab.data.record import Rollout
from unilab.data.rollout import ManifestRequest
from unilab.models.actor_critic import ActorCritic
from unilab.models.hora import AdaptationModule
from unilab.models.normalizer import RunningNormalizer
from unilab.tasks.base import ACTION_LIMIT
from unilab.user_errors import refuse_invalid

TEACHER_FAMILIES = ("ppo", "appo")
log = logging.getLogger(__name__)


@dataclass
class TeacherSource:
    """Where the frozen teacher comes from: a checkpoint file, or a ``hora_<algo_family>`` run (``unilab.runs``).

    Attributes:
        checkpoint_path: A teacher checkpoint file; when set, the run selectors below are ignored.
        algo_family: ``ppo`` or ``appo``: which HORA teacher runs to look in.
        run: ``-1`` (the newest run of this task and simulator) or a run folder name.
        checkpoint: ``last``, ``best`` or an epoch number N.
        log_root: Folder holding the runs (default: ``unilab.runs.log_root()``).
    """

    checkpoint_path: str | None = None
    algo_family: str = "ppo"
    run: str = "-1"
    checkpoint: str = "last"
    log_root: str | None = None

    def resolve(self, task_name: str, sim: str) -> Path:
        """The checkpoint file, or a FileNotFoundError naming what was looked for."""
        from unilab import runs
        from unilab.tasks import get_task

        if self.checkpoint_path:
            path = Path(self.checkpoint_path)
            if not path.is_file():
                raise FileNotFoundError(f"teacher checkpoint {path} does not exist (model.teacher.checkpoint_path)")
            return path
        if self.algo_family not in TEACHER_FAMILIES:
            raise ValueError(f"model.teacher.algo_family must be one of {TEACHER_FAMILIES}, got {self.algo_family!r}")
        algo = runs.run_algo(self.algo_family, "hora")
        root = runs.log_root() if self.log_root is None else Path(self.log_root)
        try:
            run = runs.find_run(algo, get_task(task_name).__name__, sim, str(self.run), root)
            return runs.checkpoint_file(run, self.checkpoint)
        except runs.RunError as error:
            raise FileNotFoundError(
                f"no HORA teacher to distil: looked for run {self.run!r}, checkpoint {self.checkpoint!r} of "
                f"{root}/{algo}/ for task {task_name} on {sim}: {error}. Train one with "
                f"`train --algo {self.algo_family} --task {task_name} --sim {sim} --profile hora`, "
                "or set model.teacher.checkpoint_path"
            ) from None


TEACHER_HPARAMS = (
    "observation_dims", "num_actions", "actor_hidden_dims", "critic_hidden_dims", "activation", "init_std",
    "actor_group", "critic_group", "privileged_group", "latent_dim", "encoder_hidden_dims",
)  # fmt: skip
"""What ``actor_critic_from`` needs to rebuild a teacher; a student checkpoint keeps them."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_teacher(path: Path, observation_dims: dict[str, int], num_actions: int) -> ActorCritic:
    """The teacher's ``ActorCritic``, frozen, after checking it is a HORA teacher for this observation layout."""
    return load_teacher_and_hparams(path, observation_dims, num_actions)[0]


def load_teacher_and_hparams(
    path: Path, observation_dims: dict[str, int], num_actions: int
) -> tuple[ActorCritic, dict]:
    """:func:`load_teacher`, plus the architecture (``TEACHER_HPARAMS``) a student checkpoint keeps."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    hparams = checkpoint.get("hyper_parameters", {})
    teacher = teacher_from_hparams(hparams, observation_dims, num_actions, str(path))
    prefix = "policy."
    state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    teacher.load_state_dict(state)
    return teacher, {key: hparams.get(key) for key in TEACHER_HPARAMS}


def teacher_from_hparams(hparams: dict, observation_dims: dict[str, int], num_actions: int, origin: str) -> ActorCritic:
    """A frozen teacher of the architecture ``hparams`` describe (weights still to load), checked against the env."""
    saved = {"observation_dims": hparams.get("observation_dims"), "num_actions": hparams.get("num_actions")}
    expected = {"observation_dims": dict(observation_dims), "num_actions": num_actions}
    if saved != expected:
        raise ValueError(
            f"teacher {origin} was trained on observation layout {saved}, but this env has {expected}; "
            "distil from a teacher of the same task and observation settings"
        )
    if not hparams.get("privileged_group"):
        raise ValueError(f"teacher {origin} has no privileged encoder; train it with --profile hora")
    return actor_critic_from(hparams).eval().requires_grad_(False)


class Student(nn.Module):
    """Adaptation module (history -> z) and the actor z drives: a copy of the frozen teacher's actor, reading the
    teacher's normalised actor obs. The copy stays frozen unless ``train_actor`` (then it is fine-tuned)."""

    def __init__(
        self,
        teacher: ActorCritic,
        history_group: str,
        frames: int,
        frame_dim: int,
        channels: int,
        train_actor: bool = False,
    ) -> None:
        super().__init__()
        self.teacher = teacher
        self.history_group = history_group
        self.history_normalizer = RunningNormalizer(frame_dim)
        self.adaptation = AdaptationModule(frames, frame_dim, teacher.latent_dim, channels)
        self.actor = copy.deepcopy(teacher.actor).requires_grad_(train_actor)

    def latent(self, history: torch.Tensor) -> torch.Tensor:
        frames, frame_dim = self.adaptation.frames, self.adaptation.frame_dim
        return self.adaptation(self.history_normalizer(history.reshape(-1, frames, frame_dim)))

    def actions_from(self, obs: dict[str, torch.Tensor], latent: torch.Tensor) -> torch.Tensor:
        """The student actor's mean actions for the teacher's actor obs in ``obs`` and a given ``latent``."""
        return self.actor(self.teacher.actor_input(obs, latent))

    def action_mean(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.actions_from(obs, self.latent(obs[self.history_group]))

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The rollout loop's actor contract: the student's mean actions (DAgger-style, no noise, no log-prob)."""
        mean = self.action_mean(obs)
        return {"actions": mean, "action_mean": mean}


def add_student_actor(state: dict[str, torch.Tensor], prefix: str = "student.") -> bool:
    """Give a student state dict saved before the student had its own actor (it drove the teacher's) that actor;
    True if it was such a state dict."""
    if any(key.startswith(f"{prefix}actor.") for key in state):
        return False
    teachers = f"{prefix}teacher.actor."
    for key in [key for key in state if key.startswith(teachers)]:
        state[f"{prefix}actor.{key[len(teachers) :]}"] = state[key]
    return True


class StudentExport(nn.Module):
    """What a robot runs: (current actor observation, 30-frame history) -> action."""

    def __init__(self, student: Student) -> None:
        super().__init__()
        self.student = student

    def forward(self, obs: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        obs_group = {self.student.teacher.actor_group: obs}
        return self.student.actions_from(obs_group, self.student.latent(history))


class HoraDistill(PolicyAlgorithm):
    """Distil a HORA teacher's extrinsics latent into a student that reads proprioceptive history."""

    algo_name = "hora_distill"

    def __init__(
        self,
        observation_dims: dict[str, int],
        num_actions: int,
        teacher: TeacherSource = TeacherSource(),
        history_group: str = "proprio_hist",
        history_frames: int = 30,
        channels: int = 32,
        optimizer: OptimizerCallable = torch.optim.Adam,
        num_learning_epochs: int = 1,
        num_mini_batches: int = 4,
        action_loss_weight: float = 1.0,
    ) -> None:
        """
        Args:
            observation_dims: Size of each observation group (linked from the data module).
            num_actions: Action size (linked from the data module).
            teacher: The frozen HORA teacher (a checkpoint path, or algo family + run + checkpoint).
            history_group: Observation group holding the flattened proprioceptive history.
            history_frames: Frames in that history (its size must be a multiple).
            channels: Width of the adaptation module's per-step embedding and convolutions.
            optimizer: Optimiser factory for the adaptation module (docs/spec.md §5: Adam, lr 3e-4).
            num_learning_epochs: Passes over each rollout.
            num_mini_batches: Minibatches per pass.
            action_loss_weight: Weight of MSE(student actions, teacher's clipped actions) beside the latent
                MSE; > 0 also fine-tunes the student's copy of the actor, 0 keeps the teacher's actor frozen
                (HORA as published). 1.0: docs/results.md, "Why the student drops the cylinder".
        """
        super().__init__()
        check_groups(observation_dims, history_group)
        refuse_invalid(
            [
                ("history_frames", history_frames, history_frames >= 17, ">= 17"),
                ("channels", channels, channels >= 1, ">= 1"),
                ("num_learning_epochs", num_learning_epochs, num_learning_epochs >= 1, ">= 1"),
                ("num_mini_batches", num_mini_batches, num_mini_batches >= 1, ">= 1"),
                ("action_loss_weight", action_loss_weight, 0 <= action_loss_weight < math.inf, ">= 0 and finite"),
            ]
        )
        check_optimizer(optimizer)
        if observation_dims[history_group] % history_frames:
            raise ValueError(
                f"{history_group} has {observation_dims[history_group]} values, not a multiple of "
                f"model.history_frames = {history_frames}"
            )
        self.save_hyperparameters(ignore=["optimizer"])
        self.automatic_optimization = False
        self.teacher_source = teacher if isinstance(teacher, TeacherSource) else TeacherSource(**teacher)
        self.optimizer_factory = optimizer
        self.student: Student | None = None
        self.teacher_path: Path | None = None
        self.teacher_record: dict | None = None
        """Path, sha256 and architecture of the teacher, saved in every checkpoint of the student."""
        self.restoring_from: str | None = None
        """The checkpoint this module will be restored from (set by the CLI before the run starts)."""
        self._latent_errors: list[torch.Tensor] = []

    # The teacher is loaded in ``setup``: the env (task, simulator) is known, checkpoint weights are not yet restored.
    # A student checkpoint already holds its teacher (weights in the state_dict, architecture in ``unilab.teacher``),
    # so evaluating or resuming one needs no teacher run: only a new distillation resolves ``model.teacher``.
    def setup(self, stage: str) -> None:
        if self.student is not None:
            return
        env = self.trainer.datamodule.env
        hp = self.hparams
        saved = self._saved_teacher(self.restoring_from or self.trainer.ckpt_path)
        if saved is not None:
            self.teacher_record = saved
            self.teacher_path = Path(saved["path"])
            teacher = teacher_from_hparams(saved["hparams"], hp.observation_dims, hp.num_actions, saved["path"])
        else:
            self.teacher_path = self.teacher_source.resolve(env.task_name, env.sim)
            teacher, hparams = load_teacher_and_hparams(self.teacher_path, hp.observation_dims, hp.num_actions)
            self.teacher_record = {"path": str(self.teacher_path), "sha256": file_sha256(self.teacher_path)}
            self.teacher_record["hparams"] = hparams
        frame_dim = hp.observation_dims[hp.history_group] // hp.history_frames
        train_actor = hp.action_loss_weight > 0
        self.student = Student(teacher, hp.history_group, hp.history_frames, frame_dim, hp.channels, train_actor)
        self.student.to(self.device)

    @property
    def policy(self) -> ActorCritic:
        return self.student.teacher

    def configure_optimizers(self):
        actor = [*self.student.actor.parameters()] if self.hparams.action_loss_weight > 0 else []
        return self.optimizer_factory([*self.student.adaptation.parameters(), *actor])

    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        self.check_data(datamodule)
        datamodule.set_actor(self.student, self.device, bootstrap_group=None)

    def training_step(self, rollout: Rollout, batch_idx: int) -> None:
        started = time.perf_counter()
        hp = self.hparams
        optimizer = self.optimizers()
        obs = {name: value.flatten(0, 1) for name, value in rollout.obs.items()}
        history, actor_obs = obs[hp.history_group], obs[self.policy.actor_group]
        weight = hp.action_loss_weight
        with torch.no_grad():
            target = self.policy.latent(obs)
            if weight > 0:
                target_actions = self.policy.action_mean(obs, latent=target).clamp(-ACTION_LIMIT, ACTION_LIMIT)
        batch_size = history.shape[0]
        minibatch = batch_size // hp.num_mini_batches
        losses, action_losses = [], []
        # MSE(z_student, z_teacher) (+ weight x MSE(student actions, the teacher's clipped actions))
        for _ in range(hp.num_learning_epochs):
            permutation = torch.randperm(batch_size, device=history.device)
            for start in range(0, batch_size, minibatch):
                idx = permutation[start : start + minibatch]
                latent = self.student.latent(history[idx])
                loss = (latent - target[idx]).square().mean()
                losses.append(loss.item())
                if weight > 0:
                    actions = self.student.actions_from({self.policy.actor_group: actor_obs[idx]}, latent)
                    action_loss = (actions - target_actions[idx]).square().mean()
                    action_losses.append(action_loss.item())
                    loss = loss + weight * action_loss
                optimizer.zero_grad()
                self.manual_backward(loss)
                optimizer.step()
        # The normaliser rule of every algorithm (unilab.data.collector): the rollout's frames, once, after the update
        self.student.history_normalizer.update(history.reshape(-1, self.student.adaptation.frame_dim))
        update_seconds = time.perf_counter() - started
        self.env_steps += rollout.env_steps
        self.iteration += 1
        logs = dict(rollout.metrics)
        logs |= {
            "distill/latent_mse": sum(losses) / len(losses),
            "distill/latent_mse_first": losses[0],
            "perf/collect_seconds": rollout.collect_seconds,
            "perf/update_seconds": update_seconds,
            "perf/env_steps_per_second": rollout.env_steps / (rollout.collect_seconds + update_seconds),
            "perf/env_steps": float(self.env_steps),
        }
        if action_losses:
            logs["distill/action_mse"] = sum(action_losses) / len(action_losses)
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=1)
        self._log_progress(logs)

    # Evaluation: the student acts; the latent error against the teacher is reported too -------------------
    def action_mean(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        latent = self.student.latent(obs[self.hparams.history_group])
        self._latent_errors.append((latent - self.policy.latent(obs)).square().mean(dim=-1))
        return self.student.actions_from(obs, latent)

    def _evaluate(self, request: ManifestRequest) -> dict:
        self._latent_errors = []
        result = super()._evaluate(request)
        result["overall"]["latent_mse"] = float(torch.cat(self._latent_errors).mean())
        result["teacher_checkpoint"] = str(self.teacher_path)
        result["teacher_sha256"] = self.teacher_record["sha256"]
        return result

    def export_inputs(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        frames = self.hparams.history_frames
        history = obs[self.hparams.history_group]
        return {"obs": obs[self.policy.actor_group], "history": history.reshape(history.shape[0], frames, -1)}

    def deterministic_actor(self) -> nn.Module:
        return StudentExport(self.student)

    @staticmethod
    def _saved_teacher(ckpt_path: str | None) -> dict | None:
        """The teacher record of a student checkpoint being restored (None: no checkpoint, or an older one)."""
        if not ckpt_path or not Path(ckpt_path).is_file():
            return None
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
        record = checkpoint.get("unilab", {}).get("teacher")
        return record if isinstance(record, dict) and "hparams" in record else None

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if add_student_actor(checkpoint.get("state_dict", {})) and self.hparams.action_loss_weight > 0:
            # Called before the optimiser is built: a resumed older student goes on as it was trained
            log.warning("this student was trained with its teacher's actor frozen and goes on so: action_loss_weight 0")
            self.hparams.action_loss_weight = 0.0
            self.student.actor.requires_grad_(False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["unilab"]["teacher"] = dict(self.teacher_record)
