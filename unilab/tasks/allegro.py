"""Allegro ball rotation (task ``allegro_inhand``, docs/spec.md §2).

The ball's nominal position is the fingertip centroid of the home pose (x, y) at the height where
the home grasp holds it. An episode terminates when the ball centre falls 1.5 cm below its
height at reset (grasp collection demands it stays above nominal - 1.5 cm for the whole hold);
with gravity-direction randomisation "below" means along that env's gravity.
"""

from __future__ import annotations

import math

import torch

from unilab.caches import CacheSource
from unilab.hands.allegro import ALLEGRO
from unilab.sim.scene import ObjectSpec, PhysicsOptions
from unilab.tasks.base import InHandRotationEnv
from unilab.tasks.grasp import GraspCriteria
from unilab.tasks.randomization import GRAVITY, DomainRandomization
from unilab.tasks.registry import register_task
from unilab.user_errors import refuse_invalid

BALL = ObjectSpec(
    shape="sphere", size=(0.04,), mass=0.05, friction=(2.0, 0.05, 0.01), condim=6, pos=(0.012, -0.006, 0.105)
)
DROP_DISTANCE = 0.015
DEFAULT_REWARD_WEIGHTS = {"rotate": 1.25, "object_linvel": -0.3, "pose": -0.3, "torque": -0.1, "work": -2.0}


@register_task("allegro_inhand")
class AllegroInhandRotation(InHandRotationEnv):
    """Allegro right hand (16 DoF) spinning a 4 cm ball about world +z."""

    hand = ALLEGRO

    def __init__(
        self,
        num_envs: int = 256,
        sim: str = "mujoco",
        num_threads: int | None = None,
        cache: CacheSource = CacheSource(),
        cache_name: str = "allegro_grasp_50k.npy",
        reward_weights: dict[str, float] | None = None,
        episode_length: int = 400,
        action_scale: float = 1.0 / 24.0,
        joint_noise: float = 0.02,
        impratio: float = 1.0,
        noslip_iterations: int = 0,
        domain_randomization: DomainRandomization = DomainRandomization(),
        seed: int = 0,
    ) -> None:
        """
        Args:
            num_envs: Parallel environments.
            sim: Physics backend: ``mujoco`` or ``motrix``.
            num_threads: Simulator threads (default: the cores this process may use).
            cache: Where grasp caches come from (path, folder, Hugging Face, generation size).
            cache_name: File name of the full cache looked up in the folder and on Hugging Face.
            reward_weights: Weight per reward term (default docs/spec.md §2); missing terms are off.
            episode_length: Control steps before a time-out (20 s at 20 Hz).
            action_scale: Delta-target gain: target += action * action_scale (rad).
            joint_noise: Half-width of uniform noise on the normalised joint observations.
            impratio: Elliptic-cone impedance ratio; the reference's 40 with 5 no-slip iterations halves
                the speed for no stability gain (docs/results.md, "Allegro solver options").
            noslip_iterations: No-slip solver iterations (reference 5, default 0; see ``impratio``).
            domain_randomization: Randomised terms (all off by default for Allegro).
            seed: Seed of resets, observation noise and cache generation.
        """
        refuse_invalid(
            [
                ("impratio", impratio, 0 < impratio < math.inf, "> 0 and finite"),
                ("noslip_iterations", noslip_iterations, noslip_iterations >= 0, ">= 0"),
            ],
            "env.",
        )
        # Sparse constraint Jacobian: faster than MuJoCo's automatic (dense) choice here, same trajectory
        # (docs/results.md, "Allegro solver options"); Sharpa's scene is faster dense.
        physics = PhysicsOptions(
            timestep=0.005,
            substeps=10,
            cone="elliptic",
            impratio=impratio,
            noslip_iterations=noslip_iterations,
            jacobian="sparse",
        )
        super().__init__(
            num_envs=num_envs,
            obj=BALL,
            physics=physics,
            reward_weights=DEFAULT_REWARD_WEIGHTS if reward_weights is None else reward_weights,
            cache_source=cache,
            cache_name=cache_name,
            sim=sim,
            num_threads=num_threads,
            episode_length=episode_length,
            action_scale=action_scale,
            joint_noise=joint_noise,
            domain_randomization=domain_randomization,
            seed=seed,
        )

    def grasp_criteria(self) -> GraspCriteria:
        return GraspCriteria(
            hold_steps=60,
            pose_noise=0.25,
            max_tip_distance=0.10,
            min_tip_contacts=2,
            min_object_z=BALL.pos[2] - DROP_DISTANCE,
        )

    def dropped(self) -> torch.Tensor:
        """The ball centre moved more than 1.5 cm from its reset position along gravity.

        With gravity straight down this is "1.5 cm below the reset height"; with a randomised
        direction a ball falling sideways or upwards out of the hand ends the episode as well.
        """
        down = self.randomizer.gravity / GRAVITY  # |g| is 9.81 in every direction drawn
        fallen = ((self.object_pos - self.reset_object_pos) * down).sum(dim=1)
        return fallen > DROP_DISTANCE
