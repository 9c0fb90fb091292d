"""Sharpa Wave cylinder rotation (task ``sharpa_inhand``, docs/spec.md §3).

The hand is fixed at (0, 0, 0.5), rotated -70 deg about world y (palm up), gravity-compensated.
The cylinder (axis along world z) starts at the centroid of the five elastomer pads in the
default pose, computed from the model, so the placement follows the Menagerie revision in use.
Observation groups: ``policy`` (3 x 49), ``critic`` (policy + privileged), ``privileged`` (9),
``proprio_hist`` (30 x 49, flattened; ``observation_shapes`` gives the 2-D shape).
"""

from __future__ import annotations

import math
from dataclasses import replace

import mujoco
import numpy as np
import torch

from unilab.caches import CacheSource
from unilab.hands.sharpa import SHARPA, map_reference_pose
from unilab.sim.scene import ObjectSpec, PhysicsOptions, SceneLayout, build_scene
from unilab.tasks import rewards as R
from unilab.tasks.base import InHandRotationEnv
from unilab.tasks.grasp import GraspCriteria
from unilab.tasks.randomization import FULL_RANDOMIZATION, GRAVITY, DomainRandomization
from unilab.tasks.registry import register_task
from unilab.user_errors import refuse_invalid

SCALES = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6)
PHYSICS = PhysicsOptions(timestep=1.0 / 240.0, substeps=12, cone="elliptic", impratio=1.0, floor_z=0.0)
CYLINDER = ObjectSpec(shape="cylinder", size=(0.020, 0.016), mass=0.05, friction=(2.0, 0.10, 0.02), condim=6)
DEFAULT_REWARD_WEIGHTS = {
    "rotate": 2.5,
    "object_linvel": -0.3,
    "pose": -0.4,
    "torque": -0.1,
    "work": -0.5,
    "object_position": 0.003,
    "drop": -40.0,  # ours: -2 per lost cylinder; without it PPO learns to spin and drop (docs/results.md)
}
TACTILE_CLIP = 4.0
OBS_CLIP = 5.0
Z_BAND = 0.02


def pad_centroid(physics: PhysicsOptions) -> tuple[float, float, float]:
    """Centre of the five fingertip pads with the hand in its default pose (world frame)."""
    model = build_scene(SHARPA, CYLINDER, physics).compile()
    layout = SceneLayout.from_model(model, SHARPA)
    data = mujoco.MjData(model)
    data.qpos[layout.hand_qpos] = map_reference_pose(layout.joint_range)
    mujoco.mj_forward(model, data)
    return tuple(float(x) for x in data.sensordata[layout.tip_pos].mean(axis=0))


@register_task("sharpa_inhand")
class SharpaInhandRotation(InHandRotationEnv):
    """Sharpa Wave right hand (22 DoF, fingertip tactile) spinning cylinders of 9 scales about +z."""

    hand = SHARPA
    frames = 30
    policy_frames = 3
    frame_clip = OBS_CLIP

    def __init__(
        self,
        num_envs: int = 64,
        sim: str = "mujoco",
        num_threads: int | None = None,
        scale_list: list[float] | None = None,
        cache: CacheSource = CacheSource(generate_count=200),
        cache_prefix: str = "sharpa_grasp",
        reward_weights: dict[str, float] | None = None,
        domain_randomization: DomainRandomization = FULL_RANDOMIZATION,
        episode_length: int = 400,
        action_scale: float = 1.0 / 24.0,
        joint_noise: float = 0.02,
        tactile_latency_probability: float = 0.005,
        privileged_position_noise: float = 0.0,
        seed: int = 0,
    ) -> None:
        """
        Args:
            num_envs: Parallel environments, assigned to the object scales in contiguous blocks.
            sim: Physics backend: ``mujoco`` or ``motrix``.
            num_threads: Simulator threads (default: the cores this process may use).
            scale_list: Object scales (default 0.8, 0.9, ..., 1.6); one compiled model and one grasp cache each.
            cache: Where grasp caches come from; ``generate_count`` grasps per missing scale.
            cache_prefix: Cache files are ``<prefix>_<scale %g>.npy``.
            reward_weights: Weight per reward term (default docs/spec.md §3).
            domain_randomization: Randomised terms (all on by default).
            episode_length: Control steps before a time-out.
            action_scale: Delta-target gain (rad per unit action).
            joint_noise: Half-width of uniform noise on the normalised joint observations.
            tactile_latency_probability: Per finger and step, probability that the previous reading is held.
            privileged_position_noise: Std (m) of Gaussian noise, drawn every step, on the object position in
                the ``privileged`` group (a HORA teacher's encoder input); the critic's copy stays exact. A
                teacher trained so leans less on a position its student can only estimate (docs/results.md,
                "Why the student drops the cylinder").
            seed: Seed of resets, noise, randomisation and cache generation.
        """
        scale_list = list(SCALES) if scale_list is None else scale_list
        if not scale_list:
            raise ValueError("scale_list must name at least one object scale, e.g. [1.0]")
        probability, position_noise = tactile_latency_probability, privileged_position_noise
        refuse_invalid(
            [
                ("tactile_latency_probability", probability, 0 <= probability <= 1, "in [0, 1]"),
                ("privileged_position_noise", position_noise, 0 <= position_noise < math.inf, ">= 0 and finite (m)"),
            ],
            "env.",
        )
        self.privileged_position_noise = privileged_position_noise
        self.cache_prefix = cache_prefix
        self.tactile_latency_probability = tactile_latency_probability
        obj = replace(CYLINDER, pos=pad_centroid(PHYSICS))
        super().__init__(
            num_envs=num_envs,
            obj=obj,
            physics=PHYSICS,
            reward_weights=DEFAULT_REWARD_WEIGHTS if reward_weights is None else reward_weights,
            cache_source=cache,
            cache_name=f"{cache_prefix}_{scale_list[0]:g}.npy",
            sim=sim,
            num_threads=num_threads,
            episode_length=episode_length,
            action_scale=action_scale,
            joint_noise=joint_noise,
            object_scales=tuple(scale_list),
            target_limit_scale=0.9,
            domain_randomization=domain_randomization,
            seed=seed,
        )
        self.default_pose = torch.as_tensor(self.home_pose(), dtype=torch.float32)
        self.tactile = torch.zeros(num_envs, len(self.hand.fingertip_bodies))
        self.env_object_scale = torch.tensor(self.object_scales, dtype=torch.float32)[self.env_scale]

    # Layout ------------------------------------------------------------------------------------
    @classmethod
    def reward_term_names(cls) -> tuple[str, ...]:
        return (*super().reward_term_names(), "object_position")

    @property
    def frame_dim(self) -> int:
        return 2 * self.num_actions + len(self.hand.fingertip_bodies)

    @property
    def privileged_dim(self) -> int:
        return 9

    @property
    def observation_dims(self) -> dict[str, int]:
        policy = self.policy_frames * self.frame_dim
        return {
            "policy": policy,
            "critic": policy + self.privileged_dim,
            "privileged": self.privileged_dim,
            "proprio_hist": self.frames * self.frame_dim,
        }

    @property
    def observation_shapes(self) -> dict[str, tuple[int, ...]]:
        dims = self.observation_dims
        return {**{k: (v,) for k, v in dims.items()}, "proprio_hist": (self.frames, self.frame_dim)}

    def cache_files(self, count: int | None = None) -> list[tuple[str, str]]:
        names = [f"{self.cache_prefix}_{scale:g}.npy" for scale in self.object_scales]
        return [(name, name) for name in names]

    def counted_cache_prefix(self) -> str | None:
        return None  # per-scale caches are named by scale, not by count

    def regenerate_command(self) -> str:
        scales = " ".join(f"{s:g}" for s in self.object_scales)
        return f"bash scripts/sharpa_collect_grasps.sh {scales}"

    def home_pose(self) -> np.ndarray:
        return map_reference_pose(self.layout.joint_range)

    def grasp_criteria(self) -> GraspCriteria:
        return GraspCriteria(
            hold_steps=60,
            pose_noise=0.15,
            max_tip_distance=0.10,
            min_tip_contacts=3,
            contact_force=0.5,
            max_z_drift=0.005,
            max_tilt_deg=30.0,
        )

    # Observations ------------------------------------------------------------------------------
    def _frame(self, env_ids: torch.Tensor | slice, noise: bool) -> torch.Tensor:
        """[normalised joints (+noise), targets, tactile], clipped to +-5."""
        joints = self.normalized_joints(env_ids)
        if noise and self.joint_noise > 0:
            joints = joints + (torch.rand(joints.shape, generator=self.generator) * 2 - 1) * self.joint_noise
        frame = torch.cat([joints, self.targets[env_ids], self.tactile[env_ids]], dim=-1)
        return frame.clamp(-OBS_CLIP, OBS_CLIP)

    def deployed_channels(self) -> list[dict]:
        return [
            {
                "name": "tactile",
                "size": len(self.hand.fingertip_bodies),
                "enters_as": f"N: per fingertip pad ({', '.join(self.hand.fingertip_bodies)}), norm of the net "
                f"pad-object contact force clipped to [0, {TACTILE_CLIP:g}], smoothed 0.5 * now + 0.5 * previous",
            }
        ]

    def privileged(self) -> torch.Tensor:
        """Object position - anchor (3), friction scale, mass, COM offset (3), object scale."""
        r = self.randomizer
        return torch.cat(
            [
                self.object_pos - self.object_anchor,
                r.friction_scale[:, None],
                r.mass[:, None],
                r.com_offset,
                self.env_object_scale[:, None],
            ],
            dim=-1,
        )

    def observations(self) -> dict[str, torch.Tensor]:
        policy = self.history[:, -self.policy_frames :].flatten(1)
        privileged = self.privileged()
        encoder_input = privileged
        if self.privileged_position_noise > 0:
            encoder_input = privileged.clone()
            noise = torch.randn(privileged.shape[0], 3, generator=self.generator) * self.privileged_position_noise
            encoder_input[:, :3] += noise
        return {
            "policy": policy,
            "critic": torch.cat([policy, privileged], dim=-1),
            "privileged": encoder_input,
            "proprio_hist": self.history.flatten(1),
        }

    def update_sensors(self) -> None:
        """Tactile: pad-object net force norm, clipped to [0, 4] N, smoothed, sometimes held (latency)."""
        sensors = torch.from_numpy(self.backend.sensordata[:, self.layout.tip_contact[:, 1:]])
        force = sensors.float().norm(dim=-1).clamp(0.0, TACTILE_CLIP)
        smoothed = 0.5 * force + 0.5 * self.tactile
        hold = torch.rand(self.tactile.shape, generator=self.generator) < self.tactile_latency_probability
        self.tactile = torch.where(hold, self.tactile, smoothed)

    def _reset_envs(self, env_ids: torch.Tensor) -> None:
        if len(env_ids):
            self.tactile[env_ids] = 0.0
        super()._reset_envs(env_ids)

    # Rewards and termination -------------------------------------------------------------------
    def reward_terms(self) -> dict[str, torch.Tensor]:
        torque = self.torque
        return {
            "rotate": R.rotate(self.object_angvel),
            "object_linvel": R.object_linvel_penalty(self.object_linvel),
            "pose": R.pose_penalty(self.qpos, self.default_pose),
            "torque": R.torque_penalty(torque),
            "work": R.work_penalty(torque, self.qvel),
            "object_position": R.object_position_bonus(self.object_pos, self.object_anchor),
        }

    def dropped(self) -> torch.Tensor:
        """The object left the +-2 cm band around its height at reset, or fell 2 cm along gravity.

        With gravity straight down the second condition is part of the first. With a randomised
        direction it is what ends an episode whose object falls sideways out of the hand: the z band
        alone let such objects fall for metres until the speed guard took them for a physics
        blow-up (every one of the "explosions" measured under full DR, docs/results.md).
        """
        displacement = self.object_pos - self.reset_object_pos
        down = self.randomizer.gravity / GRAVITY  # |g| is 9.81 in every direction drawn
        fallen = (displacement * down).sum(dim=1)
        return (displacement[:, 2].abs() > Z_BAND) | (fallen > Z_BAND)
