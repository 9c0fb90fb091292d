"""Grasp collection for any hand: perturbed poses held under gravity, survivors become cache rows.

Collection is a pipeline over N envs: every env holds one candidate; a candidate that breaks a
criterion is replaced at once, one that survives ``hold_steps`` control steps is stored (its
*settled* state) and replaced. Nothing loops over envs in Python.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from unilab.sim.base import SimBackend
from unilab.sim.scene import SceneLayout


@dataclass(frozen=True)
class GraspCriteria:
    """Conditions a candidate must meet at every control step of the hold (off when ``None``)."""

    hold_steps: int = 60
    """Control steps the grasp must survive (3 s at 20 Hz)."""
    pose_noise: float = 0.25
    """Half-width (rad) of the uniform perturbation added to the home pose."""
    max_tip_distance: float | None = 0.10
    """Every fingertip within this distance (m) of the object centre."""
    min_tip_contacts: int = 2
    """Fingertips touching the object, counted where the contact force exceeds ``contact_force``."""
    contact_force: float = 0.0
    min_object_z: float | None = None
    """Object centre must stay above this height (m)."""
    max_z_drift: float | None = None
    """Object centre must stay within this band (m) of its nominal height."""
    max_tilt_deg: float | None = None
    """Object orientation must stay within this angle of its start."""


@dataclass
class CollectionStats:
    accepted: int = 0
    candidates: int = 0
    seconds: float = 0.0
    physics_env_steps: int = 0
    """Control steps simulated, summed over the envs."""
    physics_seconds: float = 0.0
    """Time spent inside the backend's step."""

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / max(self.candidates, 1)

    @property
    def grasps_per_second(self) -> float:
        return self.accepted / max(self.seconds, 1e-9)


class GraspCollector:
    """Collects grasps with a backend whose scene has the hand, the object and the tip sensors."""

    def __init__(
        self,
        backend: SimBackend,
        layout: SceneLayout,
        home_pose: np.ndarray,
        object_pos: np.ndarray,
        criteria: GraspCriteria,
        target_limits: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        self.backend = backend
        self.layout = layout
        self.criteria = criteria
        self.home_pose = np.asarray(home_pose, dtype=np.float64)
        self.object_pos = np.asarray(object_pos, dtype=np.float64)
        self.limits = layout.joint_range if target_limits is None else target_limits
        self.rng = np.random.default_rng(seed)
        num_envs = backend.num_envs
        self.targets = np.zeros((num_envs, len(self.home_pose)))
        self.steps_held = np.zeros(num_envs, dtype=np.int64)
        self.stats = CollectionStats()

    def _start_candidates(self, env_ids: np.ndarray) -> None:
        count = len(env_ids)
        if count == 0:
            return
        noise = self.rng.uniform(-self.criteria.pose_noise, self.criteria.pose_noise, (count, len(self.home_pose)))
        pose = np.clip(self.home_pose + noise, self.limits[:, 0], self.limits[:, 1])
        qpos = self.backend.qpos[env_ids].copy()
        qpos[:, self.layout.hand_qpos] = pose
        start = self.layout.object_qpos
        qpos[:, start : start + 3] = self.object_pos
        qpos[:, start + 3 : start + 7] = (1.0, 0.0, 0.0, 0.0)
        self.backend.reset(env_ids, qpos, np.zeros((count, self.backend.qvel.shape[1])))
        self.targets[env_ids] = pose
        self.steps_held[env_ids] = 0
        self.stats.candidates += count

    def _failed(self) -> np.ndarray:
        """(N,) True where the candidate broke a criterion during the last step."""
        c, layout = self.criteria, self.layout
        qpos, sensors = self.backend.qpos, self.backend.sensordata
        obj_pos = qpos[:, layout.object_qpos : layout.object_qpos + 3]
        failed = ~np.isfinite(qpos).all(axis=1)
        if c.max_tip_distance is not None:
            tips = sensors[:, layout.tip_pos]  # (N, tips, 3)
            failed |= (np.linalg.norm(tips - obj_pos[:, None, :], axis=-1) > c.max_tip_distance).any(axis=1)
        forces = np.linalg.norm(sensors[:, layout.tip_contact[:, 1:]], axis=-1)
        touching = (sensors[:, layout.tip_contact[:, 0]] > 0) & (forces > c.contact_force)
        failed |= touching.sum(axis=1) < c.min_tip_contacts
        if c.min_object_z is not None:
            failed |= obj_pos[:, 2] < c.min_object_z
        if c.max_z_drift is not None:
            failed |= np.abs(obj_pos[:, 2] - self.object_pos[2]) > c.max_z_drift
        if c.max_tilt_deg is not None:
            w = np.abs(qpos[:, layout.object_qpos + 3]).clip(max=1.0)
            failed |= np.degrees(2.0 * np.arccos(w)) > c.max_tilt_deg
        return failed

    def collect(self, target: int, progress: Callable[[CollectionStats], None] | None = None) -> np.ndarray:
        """Run until ``target`` grasps are accepted; return them as (target, nq_hand + 7) float32."""
        layout = self.layout
        columns = np.concatenate([layout.hand_qpos, np.arange(layout.object_qpos, layout.object_qpos + 7)])
        accepted = np.zeros((target, len(columns)), dtype=np.float32)
        self.stats = CollectionStats()
        started = time.perf_counter()
        self._start_candidates(np.arange(self.backend.num_envs))
        while self.stats.accepted < target:
            physics_started = time.perf_counter()
            self.backend.step(self.targets)
            self.stats.physics_seconds += time.perf_counter() - physics_started
            self.stats.physics_env_steps += self.backend.num_envs
            self.steps_held += 1
            failed = self._failed()
            done = ~failed & (self.steps_held >= self.criteria.hold_steps)
            done_ids = np.flatnonzero(done)[: target - self.stats.accepted]
            rows = self.backend.qpos[done_ids][:, columns]
            accepted[self.stats.accepted : self.stats.accepted + len(done_ids)] = rows
            self.stats.accepted += len(done_ids)
            self.stats.seconds = time.perf_counter() - started
            self._start_candidates(np.flatnonzero(failed | done))
            if progress is not None:
                progress(self.stats)
        return accepted


class GraspProgressBar:
    """A tqdm bar showing accepted grasps, acceptance rate and grasps per second."""

    def __init__(self, total: int, description: str = "grasps") -> None:
        self.bar = tqdm(total=total, desc=description, unit="grasp", dynamic_ncols=True, mininterval=1.0)

    def update(self, stats: CollectionStats) -> None:
        self.bar.update(stats.accepted - self.bar.n)
        self.bar.set_postfix(rate=f"{100 * stats.acceptance_rate:.1f}%", candidates=stats.candidates, refresh=False)

    def __enter__(self) -> GraspProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
