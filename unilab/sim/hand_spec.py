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
    kp: float | None
    """Position-servo stiffness (N m / rad) for every joint; ``None`` keeps the model's per-joint gains."""
    kd: float | None
    """Position-servo damping (N m s / rad); ``None`` keeps the model's (e.g. compiled from a dampratio)."""
    fingertip_bodies: tuple[str, ...]
    """Bodies whose collision geom touches the object; each gets a site and a contact sensor."""
    fingertip_friction: tuple[float, float, float]
    """Sliding, torsional and rolling friction of the fingertip geoms."""
    base_pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """World position of the hand's root body."""
    base_quat: tuple[float, float, float, float] | None = None
    """World orientation (wxyz) of the hand's root body; ``None`` keeps the model's own."""
    joint_damping: float | None = 0.0
    """Passive joint damping set on every joint (the servo's ``kd`` is separate); ``None`` keeps the model's."""
    fingertip_geom_class: str | None = None
    """Default class of the fingertip contact geoms (e.g. elastomer pads); ``None``: the tip body's first
    collision geom."""
    gravity_compensation: bool = False
    """Compensate gravity on every hand body (a fixed hand held up by its servos otherwise sags)."""

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def home_array(self) -> np.ndarray:
        return np.asarray(self.home_pose, dtype=np.float64)
