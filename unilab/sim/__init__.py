"""Physics backends. ``make_backend`` picks one by name; this package imports nothing of unilab."""

from __future__ import annotations

from collections.abc import Sequence

import mujoco

from unilab.sim.base import Capabilities, SimBackend, contiguous_assignment

SIMULATORS = ("mujoco", "motrix")


def make_backend(
    sim: str,
    models: Sequence[mujoco.MjModel],
    num_envs: int,
    substeps: int,
    num_threads: int | None = None,
    object_force: bool = False,
    specs: Sequence[mujoco.MjSpec] | None = None,
) -> SimBackend:
    """Build the backend called ``sim`` for ``num_envs`` envs spread contiguously over ``models``.

    ``specs`` (the MjSpecs ``models`` were compiled from) are needed by simulators that load MJCF.
    """
    if sim == "mujoco":
        from unilab.sim.mujoco import MujocoBackend

        return MujocoBackend(models, num_envs, substeps, num_threads=num_threads, object_force=object_force)
    if sim == "motrix":
        from unilab.sim.motrix import MotrixBackend

        if specs is None:
            raise ValueError("the motrix backend needs the scene specs (make_backend(..., specs=...))")
        return MotrixBackend(specs, models, num_envs, substeps, num_threads=num_threads, object_force=object_force)
    raise ValueError(f"unknown simulator {sim!r}; available: {list(SIMULATORS)}")


__all__ = ["SIMULATORS", "Capabilities", "SimBackend", "contiguous_assignment", "make_backend"]
