"""The SimBackend protocol: N environments of one scene, stepped together.

Arrays are NumPy and batch-first. Quaternions are wxyz and joints are in actuator order at this
boundary; a backend that differs internally converts inside itself.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Protocol, runtime_checkable

import numpy as np

from unilab.cpu_share import default_num_threads


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; tasks check this at start-up and refuse to run without what they need."""

    actuator_gains: bool = False
    friction_scale: bool = False
    object_mass: bool = False
    object_com: bool = False
    gravity: bool = False
    object_force: bool = False
    object_scale: bool = False

    @classmethod
    def everything(cls) -> Capabilities:
        """A backend that can apply every domain-randomisation term."""
        return cls(**{field.name: True for field in fields(cls)})

    def require(self, needed: dict[str, bool], backend: str) -> None:
        """Raise if any capability named with ``True`` in ``needed`` is missing."""
        missing = [name for name, wanted in needed.items() if wanted and not getattr(self, name)]
        if missing:
            have = [f.name for f in fields(self) if getattr(self, f.name)]
            raise RuntimeError(
                f"the {backend} backend cannot apply {missing}; it supports {have}. "
                "Switch those domain-randomisation terms off or pick another simulator."
            )


@runtime_checkable
class SimBackend(Protocol):
    """N environments of one scene (per-env models allowed), advanced by one call per control step."""

    name: str
    num_envs: int
    substeps: int
    timestep: float
    capabilities: Capabilities

    @property
    def qpos(self) -> np.ndarray:
        """(N, nq) generalised positions (read-only view)."""

    @property
    def qvel(self) -> np.ndarray:
        """(N, nv) generalised velocities (read-only view)."""

    @property
    def sensordata(self) -> np.ndarray:
        """(N, nsensordata) sensor readings after the last step."""

    @property
    def diverged(self) -> np.ndarray:
        """(N,) True where the physics of an env broke down during the last step (NaN, instability)."""

    def reset(self, env_ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Set the state of ``env_ids`` (k,) to ``qpos`` (k, nq) and ``qvel`` (k, nv)."""

    def step(self, ctrl: np.ndarray, object_force: np.ndarray | None = None) -> None:
        """Hold ``ctrl`` (N, nu) for ``substeps`` physics steps; ``object_force`` (N, 3) in world frame."""

    def set_actuator_gains(self, env_ids: np.ndarray, kp: np.ndarray, kd: np.ndarray) -> None:
        """Per-env, per-actuator position gains ``kp``, ``kd`` of shape (k, nu)."""

    def set_friction_scale(self, env_ids: np.ndarray, scale: np.ndarray) -> None:
        """Scale the sliding friction of every geom of ``env_ids`` by ``scale`` (k,) from nominal."""

    def set_object_mass(self, env_ids: np.ndarray, mass: np.ndarray) -> None:
        """Set the object mass (k,) and rescale its inertia by the same factor."""

    def set_object_com(self, env_ids: np.ndarray, offset: np.ndarray) -> None:
        """Offset the object's centre of mass by ``offset`` (k, 3) in its body frame."""

    def set_gravity(self, env_ids: np.ndarray, gravity: np.ndarray) -> None:
        """Set the gravity vector (k, 3) of ``env_ids``."""


class BatchedBackend:
    """What the backends share: sizes, threads, every capability, and read-only views of the state arrays.

    A subclass fills ``_qpos`` (N, nq), ``_qvel`` (N, nv), ``_sensordata`` (N, nsensordata) and ``_diverged``
    (N,) in its constructor and keeps them current in ``reset`` and ``step``.
    """

    capabilities = Capabilities.everything()
    _qpos: np.ndarray
    _qvel: np.ndarray
    _sensordata: np.ndarray
    _diverged: np.ndarray

    def __init__(self, num_envs: int, substeps: int, num_threads: int | None) -> None:
        if num_envs < 1 or substeps < 1:
            raise ValueError(f"num_envs and substeps must be >= 1, got {num_envs} and {substeps}")
        self.num_envs, self.substeps = num_envs, substeps
        self.num_threads = num_threads or default_num_threads()

    qpos = property(attrgetter("_qpos"), doc="(N, nq) generalised positions.")
    qvel = property(attrgetter("_qvel"), doc="(N, nv) generalised velocities.")
    sensordata = property(attrgetter("_sensordata"), doc="(N, nsensordata) sensor readings after the last step.")
    diverged = property(attrgetter("_diverged"), doc="(N,) True where an env's physics broke down in the last step.")


def contiguous_assignment(num_envs: int, num_groups: int) -> np.ndarray:
    """Group index of each env when ``num_envs`` are split into ``num_groups`` contiguous blocks."""
    return (np.arange(num_envs) * num_groups) // num_envs
