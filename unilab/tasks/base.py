"""InHandRotationEnv: the vectorised in-hand rotation env over any SimBackend (docs/spec.md §1).

All envs advance together; observations, rewards, terminations and resets are torch operations
over the batch. Observations come as named groups (``policy``, ``critic``, ...) so a teacher and
a student select different groups.
"""

from __future__ import annotations

import logging
import math
from typing import ClassVar, NamedTuple

import numpy as np
import torch

from unilab import caches
from unilab.sim import contiguous_assignment, make_backend
from unilab.sim.hand_spec import HandSpec
from unilab.sim.scene import ObjectSpec, PhysicsOptions, SceneLayout, build_scene
from unilab.tasks import rewards as R
from unilab.tasks.env_metrics import EnvMetrics
from unilab.tasks.grasp_cache import GraspCacheMixin
from unilab.tasks.randomization import DomainRandomization, Randomizer
from unilab.user_errors import refuse_invalid

log = logging.getLogger(__name__)
ROTATE_LIMIT = 0.5
ACTION_LIMIT = 1.0  # actions are clipped to +-ACTION_LIMIT before they move the joint targets
MAX_JOINT_SPEED = 100.0  # rad/s: far above any servo-driven finger motion
MAX_OBJECT_SPEED = 5.0  # m/s: a dropped object reaches about 3.5 m/s after falling 0.6 m


class EnvStep(NamedTuple):
    """What one ``step`` returns. ``final_obs`` holds the pre-reset observation of envs that ended."""

    obs: dict[str, torch.Tensor]
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_obs: dict[str, torch.Tensor]
    kinematics: dict[str, torch.Tensor]
    """Per-env quantities of this step before any reset: ``omega_z``, ``linvel``, ``torque``, ``qvel`` and
    ``state`` (hand joints in actuator order, object xyz, object quat wxyz: a grasp-cache row)."""


class InHandRotationEnv(GraspCacheMixin):
    """Rotate an object about world +z with a hand; subclasses fix the hand, object and terms."""

    task_name: ClassVar[str]
    hand: ClassVar[HandSpec]
    frames: ClassVar[int] = 3
    policy_frames: ClassVar[int] = 3  # frames the actor reads (the last ones of the history)
    frame_clip: ClassVar[float | None] = None  # frames are clipped to +-frame_clip when set
    """Frames stacked in the ``policy`` group."""

    def __init__(
        self,
        num_envs: int,
        obj: ObjectSpec,
        physics: PhysicsOptions,
        reward_weights: dict[str, float],
        cache_source: caches.CacheSource,
        cache_name: str,
        sim: str = "mujoco",
        num_threads: int | None = None,
        episode_length: int = 400,
        action_scale: float = 1.0 / 24.0,
        joint_noise: float = 0.02,
        object_scales: tuple[float, ...] = (1.0,),
        target_limit_scale: float = 1.0,
        domain_randomization: DomainRandomization = DomainRandomization(),
        seed: int = 0,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        positive = [s > 0 and math.isfinite(s) for s in object_scales]
        refuse_invalid(
            [
                ("episode_length", episode_length, episode_length >= 1, ">= 1 (control steps)"),
                ("action_scale", action_scale, 0 < action_scale < math.inf, "> 0 and finite (rad per unit action)"),
                ("joint_noise", joint_noise, 0 <= joint_noise < math.inf, ">= 0 and finite"),
                ("scale_list", list(object_scales), all(positive), "object scales > 0"),
            ],
            prefix="env.",
        )
        unknown = set(reward_weights) - set(self.reward_term_names())
        if unknown:
            raise ValueError(f"unknown reward terms {sorted(unknown)}; valid: {self.reward_term_names()}")
        self.num_envs = num_envs
        self.obj = obj
        self.physics = physics
        self.ctrl_dt = physics.ctrl_dt
        self.sim = sim
        self.reward_weights = dict(reward_weights)
        self.episode_length = episode_length
        self.action_scale = action_scale
        self.joint_noise = joint_noise
        self.object_scales = tuple(object_scales)
        self.cache_source = cache_source
        self.cache_name = cache_name
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)

        movable_com = domain_randomization.object_com
        self.specs = [
            build_scene(self.hand, obj, physics, scale, visuals=False, movable_object_com=movable_com)
            for scale in self.object_scales
        ]
        self.models = [spec.compile() for spec in self.specs]
        self.layout = SceneLayout.from_model(self.models[0], self.hand)
        object_force = domain_randomization.object_force
        self.backend = make_backend(
            sim, self.models, num_envs, physics.substeps, num_threads, object_force, specs=self.specs
        )
        self.env_scale = torch.as_tensor(contiguous_assignment(num_envs, len(self.object_scales)))
        self.num_actions = self.hand.num_joints
        joint_range = torch.as_tensor(self.layout.joint_range, dtype=torch.float32)
        center, half = joint_range.mean(dim=1), (joint_range[:, 1] - joint_range[:, 0]) / 2
        self.joint_lower, self.joint_upper = joint_range[:, 0], joint_range[:, 1]
        self.target_lower = center - half * target_limit_scale
        self.target_upper = center + half * target_limit_scale
        self.object_anchor = torch.tensor(obj.pos, dtype=torch.float32)
        self._allocate_buffers()
        self.randomizer = Randomizer(
            domain_randomization,
            self.backend,
            torch.as_tensor(self.layout.kp, dtype=torch.float32),
            torch.as_tensor(self.layout.kd, dtype=torch.float32),
            obj.mass,
            self.ctrl_dt,
            self.generator,
        )
        self.kp, self.kd = self.randomizer.kp, self.randomizer.kd  # the gains each env runs with
        self.grasps: torch.Tensor | None = None

    # Layout ------------------------------------------------------------------------------------
    @classmethod
    def reward_term_names(cls) -> tuple[str, ...]:
        # "drop" (1 on the step the object is lost) is off unless weighted: no default weights carry it.
        return ("rotate", "object_linvel", "pose", "torque", "work", "drop")

    @property
    def frame_dim(self) -> int:
        return 2 * self.num_actions + 3

    @property
    def observation_dims(self) -> dict[str, int]:
        """Size of each observation group."""
        return {"policy": self.frames * self.frame_dim, "critic": self.frames * self.frame_dim + self.privileged_dim}

    @property
    def privileged_dim(self) -> int:
        return 3 + 3 + 4 + 3 * len(self.hand.fingertip_bodies)

    def _allocate_buffers(self) -> None:
        n, j = self.num_envs, self.num_actions
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float32)  # noqa: E731
        self.qpos, self.qvel = zeros(n, j), zeros(n, j)
        self.object_pos, self.object_quat = zeros(n, 3), zeros(n, 4)
        self.prev_object_pos, self.prev_object_quat = zeros(n, 3), zeros(n, 4)
        self.reset_object_pos = zeros(n, 3)
        self.object_linvel, self.object_angvel = zeros(n, 3), zeros(n, 3)
        self.tip_pos = zeros(n, len(self.hand.fingertip_bodies), 3)
        self.targets, self.reset_qpos = zeros(n, j), zeros(n, j)
        self.torque = zeros(n, j)
        self.state_row = zeros(n, j + 7)  # hand joints, object xyz, object quat wxyz (EnvStep.kinematics)
        self.history = zeros(n, self.frames, self.frame_dim)
        # episode_step counts towards the time-out (spread out at the first reset); steps_since_reset
        # is what an episode really lasted, for the statistics.
        self.episode_step = torch.zeros(n, dtype=torch.long)
        self.steps_since_reset = torch.zeros(n, dtype=torch.long)
        self.episode_rotation = zeros(n)
        self._ctrl = np.zeros((n, j))
        self.metrics = EnvMetrics(self.object_scales)
        self.nan_resets = 0
        self.last_breakdowns = torch.zeros(n, dtype=torch.bool)
        """(N,) envs whose physics broke down in the last step (reset and counted in ``nan_resets``)."""

    # Reset -------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, spread_episodes: bool = True) -> dict[str, torch.Tensor]:
        """Reset every env from the grasp cache.

        With ``spread_episodes`` the time-out counters start uniformly in [0, length) so episode
        ends are spread out (training); evaluation starts every episode at step 0.
        """
        if seed is not None:
            self.generator.manual_seed(seed)
            self.rng = np.random.default_rng(seed)
        if self.grasps is None:
            self.load_grasps()
        all_envs = torch.arange(self.num_envs)
        self._reset_envs(all_envs)
        if spread_episodes:
            spread = torch.randint(0, self.episode_length, (self.num_envs,), generator=self.generator)
            self.episode_step.copy_(spread)
        return self.observations()

    def _reset_envs(self, env_ids: torch.Tensor) -> None:
        if len(env_ids) == 0:
            return
        scale = self.env_scale[env_ids]
        draw = torch.rand(len(env_ids), generator=self.generator)
        rows = self.grasps[self.grasp_offsets[scale] + (draw * self.grasp_counts[scale]).long()]
        j = self.num_actions
        ids = env_ids.numpy()
        qpos = np.zeros((len(ids), self.backend.qpos.shape[1]))
        qpos[:, self.layout.hand_qpos] = rows[:, :j].numpy()
        qpos[:, self.layout.object_qpos : self.layout.object_qpos + 7] = rows[:, j:].numpy()
        self.backend.reset(ids, qpos, np.zeros((len(ids), self.backend.qvel.shape[1])))
        self.targets[env_ids] = rows[:, :j]
        self.reset_qpos[env_ids] = rows[:, :j]
        self.episode_step[env_ids] = 0
        self.steps_since_reset[env_ids] = 0
        self.episode_rotation[env_ids] = 0.0
        self._read_state(env_ids)
        self.prev_object_pos[env_ids] = self.object_pos[env_ids]
        self.reset_object_pos[env_ids] = self.object_pos[env_ids]
        self.prev_object_quat[env_ids] = self.object_quat[env_ids]
        self.object_linvel[env_ids] = 0.0
        self.object_angvel[env_ids] = 0.0
        self.randomize(env_ids)
        self.history[env_ids] = self._frame(env_ids, noise=True).unsqueeze(1)

    def update_sensors(self) -> None:
        """Per-step sensor processing after the physics step (none by default)."""

    def randomize(self, env_ids: torch.Tensor) -> None:
        """Reset-time domain randomisation of ``env_ids`` (the enabled terms)."""
        self.randomizer.apply(env_ids)

    def external_object_force(self) -> np.ndarray | None:
        """(N, 3) world-frame force on the object for the coming step, or ``None``."""
        return self.randomizer.step_force()

    # State readout -----------------------------------------------------------------------------
    def _read_state(self, env_ids: torch.Tensor | None = None) -> None:
        qpos = torch.from_numpy(self.backend.qpos)
        qvel = torch.from_numpy(self.backend.qvel)
        sensors = torch.from_numpy(self.backend.sensordata)
        o = self.layout.object_qpos
        index = slice(None) if env_ids is None else env_ids
        self.qpos[index] = qpos[index][:, self.layout.hand_qpos].float()
        self.qvel[index] = qvel[index][:, self.layout.hand_qvel].float()
        self.object_pos[index] = qpos[index, o : o + 3].float()
        self.object_quat[index] = qpos[index, o + 3 : o + 7].float()
        self.tip_pos[index] = sensors[index][:, self.layout.tip_pos].float()

    def normalized_joints(self, env_ids: torch.Tensor | slice) -> torch.Tensor:
        """Joint positions mapped from the joint range to [-1, 1]."""
        return 2.0 * (self.qpos[env_ids] - self.joint_lower) / (self.joint_upper - self.joint_lower) - 1.0

    def _frame(self, env_ids: torch.Tensor | slice, noise: bool) -> torch.Tensor:
        """One observation frame: [normalised joints (+noise), targets, object position - anchor]."""
        joints = self.normalized_joints(env_ids)
        if noise and self.joint_noise > 0:
            joints = joints + (torch.rand(joints.shape, generator=self.generator) * 2 - 1) * self.joint_noise
        return torch.cat([joints, self.targets[env_ids], self.object_pos[env_ids] - self.object_anchor], dim=-1)

    def deployed_channels(self) -> list[dict]:
        """The frame channels after joints and targets, as a robot-side runner must provide them (policy.json)."""
        return [
            {
                "name": "object_position",
                "size": 3,
                "enters_as": "m: object position minus object_anchor (world frame)",
                "object_anchor": self.object_anchor.tolist(),
            }
        ]

    def privileged(self) -> torch.Tensor:
        """Critic-only extras: object linear/angular velocity, orientation, fingertips relative to object."""
        tips = (self.tip_pos - self.object_pos[:, None, :]).flatten(1)
        return torch.cat([self.object_linvel, self.object_angvel, self.object_quat, tips], dim=-1)

    def observations(self) -> dict[str, torch.Tensor]:
        policy = self.history.flatten(1)
        return {"policy": policy, "critic": torch.cat([policy, self.privileged()], dim=-1)}

    # Step --------------------------------------------------------------------------------------
    def reward_terms(self) -> dict[str, torch.Tensor]:
        torque = self.torque
        return {
            "rotate": R.rotate(self.object_angvel, ROTATE_LIMIT),
            "object_linvel": R.object_linvel_penalty(self.object_linvel),
            "pose": R.pose_penalty(self.qpos, self.reset_qpos),
            "torque": R.torque_penalty(torque, limit=0.5),
            "work": R.work_penalty(torque, self.qvel),
        }

    def blown_up(self) -> torch.Tensor:
        """(N,) True where the physics exploded while staying finite (absurd joint or object speeds).

        Such a step's work and torque penalties reach 1e19 and would swamp every return in the batch,
        so it is handled like a NaN: zero reward, reset, counted in ``env/nan_resets``.
        """
        too_fast_joints = self.qvel.abs().amax(dim=1) > MAX_JOINT_SPEED
        too_fast_object = self.object_linvel.norm(dim=1) > MAX_OBJECT_SPEED
        return too_fast_joints | too_fast_object | ~torch.isfinite(self.object_linvel).all(1)

    def dropped(self) -> torch.Tensor:
        """(N,) True where the object is lost (task-specific)."""
        raise NotImplementedError

    def step(self, actions: torch.Tensor) -> EnvStep:
        """Apply delta-position actions in [-1, 1], advance one control step, auto-reset ended envs."""
        if tuple(actions.shape) != (self.num_envs, self.num_actions):
            raise ValueError(
                f"actions must have shape (num_envs, num_actions) = {(self.num_envs, self.num_actions)}, "
                f"got {tuple(actions.shape)}"
            )
        actions = actions.detach().to("cpu", torch.float32).clamp(-ACTION_LIMIT, ACTION_LIMIT)
        torch.clamp(self.targets + actions * self.action_scale, self.target_lower, self.target_upper, out=self.targets)
        np.copyto(self._ctrl, self.targets.numpy())
        self.backend.step(self._ctrl, self.external_object_force())

        # Kinematics (finite differences over ctrl_dt)
        self.prev_object_pos.copy_(self.object_pos)
        self.prev_object_quat.copy_(self.object_quat)
        self._read_state()
        self.update_sensors()
        self.object_linvel = R.linear_velocity(self.object_pos, self.prev_object_pos, self.ctrl_dt)
        self.object_angvel = R.angular_velocity(self.object_quat, self.prev_object_quat, self.ctrl_dt)
        self.torque = R.pd_torque(self.kp, self.kd, self.targets, self.qpos, self.qvel)

        # Rewards: sum_i w_i * term_i, times ctrl_dt
        lost = self.dropped()
        terms = self.reward_terms() | {"drop": lost.float()}
        reward = torch.zeros(self.num_envs)
        for name, weight in self.reward_weights.items():
            reward += weight * terms[name]
        reward *= self.ctrl_dt

        # NaN guard: a non-finite state or reward resets that env and is counted
        state_ok = torch.isfinite(self.qpos).all(1) & torch.isfinite(self.object_pos).all(1)
        bad = ~(state_ok & torch.isfinite(reward)) | torch.from_numpy(self.backend.diverged) | self.blown_up()
        self.last_breakdowns = bad
        if bad.any():
            self.nan_resets += int(bad.sum())
            reward = torch.where(bad, torch.zeros_like(reward), reward)
            self._sanitize(bad)

        # Termination and truncation
        self.episode_step += 1
        self.steps_since_reset += 1
        self.episode_rotation += self.object_angvel[:, 2] * self.ctrl_dt
        dropped = lost | bad
        truncated = (self.episode_step >= self.episode_length) & ~dropped
        done = dropped | truncated

        # Observations before reset (kept as final_obs), then auto-reset
        self.history = torch.roll(self.history, shifts=-1, dims=1)
        self.history[:, -1] = self._frame(slice(None), noise=True)
        obs = final_obs = self.observations()
        kinematics = {"omega_z": self.object_angvel[:, 2], "linvel": self.object_linvel, "torque": self.torque}
        kinematics["qvel"] = self.qvel.clone()
        kinematics["state"] = torch.cat([self.qpos, self.object_pos, self.object_quat], dim=-1, out=self.state_row)
        done_ids = done.nonzero().flatten()
        if len(done_ids):
            # resets write in place: keep what the ended episodes saw
            final_obs = {name: value.clone() for name, value in final_obs.items()}
            kinematics = {name: value.clone() for name, value in kinematics.items()}
            self._record_episodes(done_ids, dropped)
            self._reset_envs(done_ids)
            obs = self.observations()
        good = ~bad  # diverged envs carry meaningless finite differences: keep them out of the means
        step_means = {"reward/total": reward.mean().item()}
        if good.any():  # a step in which every env broke down has no term to average
            step_means |= {f"reward/{k}": v[good].mean().item() for k, v in terms.items()}
        self.metrics.add_step(step_means)
        return EnvStep(obs, reward, dropped, truncated, final_obs, kinematics)

    def _sanitize(self, bad: torch.Tensor) -> None:
        """Keep a broken-down step of ``bad`` envs out of observations and metrics.

        Non-finite readings become 0; the step's velocities and torques (finite differences and PD
        forces of an exploded state, up to 1e13 here) are zeroed, so evaluation metrics such as
        ObjVel and Torque count the breakdown as the end of the episode, not as a huge value.
        """
        for tensor in (self.qpos, self.object_pos, self.object_quat, self.tip_pos):
            tensor[bad] = torch.nan_to_num(tensor[bad], nan=0.0, posinf=0.0, neginf=0.0)
        for tensor in (self.qvel, self.object_linvel, self.object_angvel, self.torque):
            tensor[bad] = 0.0

    # Metrics -----------------------------------------------------------------------------------
    def _record_episodes(self, done_ids: torch.Tensor, dropped: torch.Tensor) -> None:
        steps = self.steps_since_reset[done_ids].float()
        speed = self.episode_rotation[done_ids] / (steps * self.ctrl_dt)
        self.metrics.add_episodes(steps, speed, dropped[done_ids], self.env_scale[done_ids])

    def pop_metrics(self) -> dict[str, float]:
        """Means since the last call: ``reward/<term>``, finished-episode figures (``unilab.tasks.env_metrics``) and
        counters."""
        metrics = self.metrics.pop()
        metrics["env/nan_resets"] = float(self.nan_resets)
        metrics["env/rotation_speed_now"] = self.object_angvel[:, 2].mean().item()
        return metrics
