"""What the scene builder and the tasks need to know about a hand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HandSpec:
    """Constants of one hand model from MuJoCo Menagerie.

    Joint arrays follow the actuator order of the compiled hand model.
    """

    name: str
    """Short name used in configs and cache file names."""
    menagerie_id: str
    """Robot name in ``mujoco_menagerie`` (e.g. ``wonik_allegro``)."""
    menagerie_entry: str
    """Model entry inside that robot folder (e.g. ``right_hand``)."""
    joint_names: tuple[str, ...]
    """Hinge joints in actuator order."""
    home_pose: tuple[float, ...]
    """Joint positions (rad) of the nominal grasp pose."""
    kp: float
    """Position-servo stiffness (N m / rad)."""
    kd: float
    """Position-servo damping (N m s / rad)."""
    fingertip_bodies: tuple[str, ...]
    """Bodies whose collision geom touches the object; each gets a site and a contact sensor."""
    fingertip_friction: tuple[float, float, float]
    """Sliding, torsional and rolling friction of the fingertip geoms."""
    base_pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """World position of the hand's root body."""
    base_quat: tuple[float, float, float, float] | None = None
    """World orientation (wxyz) of the hand's root body; ``None`` keeps the model's own."""
    joint_damping: float = 0.0
    """Passive joint damping kept in the model (the servo's ``kd`` is separate)."""

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def home_array(self) -> np.ndarray:
        return np.asarray(self.home_pose, dtype=np.float64)
