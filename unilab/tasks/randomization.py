"""Domain randomisation shared by both hands (docs/spec.md §3), applied through backend setters.

Every term is switched separately in config. Reset-time terms are drawn for the envs being reset;
the random object force evolves every step. The values drawn feed the ``privileged`` group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from unilab.sim.base import SimBackend

GRAVITY = 9.81


@dataclass(frozen=True)
class DomainRandomization:
    """Which terms are randomised, and their ranges."""

    gravity_direction: bool = False
    """|g| = 9.81 in a uniformly random direction (off: straight down)."""
    gains: bool = False
    """Per joint: with probability 0.5 kp * U(0.5, 1), else kp * U(1, 2); kd drawn the same way."""
    friction: bool = False
    friction_range: tuple[float, float] = (0.75, 1.25)
    """One scale per env on the object and hand geoms."""
    object_mass: bool = False
    mass_range: tuple[float, float] = (0.01, 0.25)
    """Object mass (kg); the inertia is rescaled with it."""
    object_com: bool = False
    com_range: float = 0.01
    """Object centre-of-mass offset U(-r, r) per axis (m)."""
    object_force: bool = False
    force_probability: float = 0.25
    """Per env and step: probability of a new force N(0, 1)^3 * mass * force_scale."""
    force_scale: float = 2.0
    force_decay_time: float = 0.08
    """The force decays by 0.9 ** (ctrl_dt / force_decay_time) per step."""

    def __post_init__(self) -> None:
        prefix = "domain_randomization."
        for name in ("friction_range", "mass_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{prefix}{name} must be (low, high) with 0 < low <= high, got {(low, high)}")
        if self.com_range < 0 or self.force_scale < 0:
            raise ValueError(
                f"{prefix}com_range and force_scale must be >= 0, got {self.com_range} and {self.force_scale}"
            )
        if not 0 <= self.force_probability <= 1:
            raise ValueError(f"{prefix}force_probability must be in [0, 1], got {self.force_probability}")
        if self.force_decay_time <= 0:
            raise ValueError(f"{prefix}force_decay_time must be > 0 (seconds), got {self.force_decay_time}")

    def needed_capabilities(self) -> dict[str, bool]:
        return {
            "gravity": self.gravity_direction,
            "actuator_gains": self.gains,
            "friction_scale": self.friction,
            "object_mass": self.object_mass,
            "object_com": self.object_com,
            "object_force": self.object_force,
        }


FULL_RANDOMIZATION = DomainRandomization(
    gravity_direction=True, gains=True, friction=True, object_mass=True, object_com=True, object_force=True
)


def scaled_gains(nominal: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """nominal * U(0.5, 1) or nominal * U(1, 2), each with probability 0.5, elementwise."""
    low = torch.rand(nominal.shape, generator=generator) < 0.5
    u = torch.rand(nominal.shape, generator=generator)
    factor = torch.where(low, 0.5 + 0.5 * u, 1.0 + u)
    return nominal * factor


def random_directions(count: int, generator: torch.Generator) -> torch.Tensor:
    """(count, 3) unit vectors uniform on the sphere."""
    vectors = torch.randn(count, 3, generator=generator)
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-9)


class Randomizer:
    """Draws randomised parameters, pushes them to the backend, and keeps them for observations."""

    def __init__(
        self,
        config: DomainRandomization,
        backend: SimBackend,
        nominal_kp: torch.Tensor,
        nominal_kd: torch.Tensor,
        nominal_mass: float,
        ctrl_dt: float,
        generator: torch.Generator,
    ) -> None:
        backend.capabilities.require(config.needed_capabilities(), backend.name)
        n = backend.num_envs
        self.config, self.backend, self.generator = config, backend, generator
        self.nominal_kp, self.nominal_kd = nominal_kp, nominal_kd
        self.kp = nominal_kp.expand(n, -1).clone()
        self.kd = nominal_kd.expand(n, -1).clone()
        self.friction_scale = torch.ones(n)
        self.mass = torch.full((n,), nominal_mass)
        self.com_offset = torch.zeros(n, 3)
        self.gravity = torch.tensor([0.0, 0.0, -GRAVITY]).repeat(n, 1)
        self.force = torch.zeros(n, 3)
        self.force_decay = 0.9 ** (ctrl_dt / config.force_decay_time)
        self._force_np = np.zeros((n, 3))

    def _uniform(self, count: int, low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, *shape, generator=self.generator)

    def apply(self, env_ids: torch.Tensor) -> None:
        """Draw and apply every enabled reset-time term for ``env_ids``."""
        c, count, ids = self.config, len(env_ids), env_ids.numpy()
        if count == 0:
            return
        if c.gains:
            self.kp[env_ids] = scaled_gains(self.nominal_kp.expand(count, -1), self.generator)
            self.kd[env_ids] = scaled_gains(self.nominal_kd.expand(count, -1), self.generator)
            self.backend.set_actuator_gains(ids, self.kp[env_ids].double().numpy(), self.kd[env_ids].double().numpy())
        if c.friction:
            self.friction_scale[env_ids] = self._uniform(count, *c.friction_range)
            self.backend.set_friction_scale(ids, self.friction_scale[env_ids].double().numpy())
        if c.object_mass:
            self.mass[env_ids] = self._uniform(count, *c.mass_range)
            self.backend.set_object_mass(ids, self.mass[env_ids].double().numpy())
        if c.object_com:
            self.com_offset[env_ids] = self._uniform(count, -c.com_range, c.com_range, 3)
            self.backend.set_object_com(ids, self.com_offset[env_ids].double().numpy())
        if c.gravity_direction:
            self.gravity[env_ids] = random_directions(count, self.generator) * GRAVITY
            self.backend.set_gravity(ids, self.gravity[env_ids].double().numpy())
        self.force[env_ids] = 0.0

    def step_force(self) -> np.ndarray | None:
        """Decay the object force and draw new ones; ``None`` when the term is off."""
        c = self.config
        if not c.object_force:
            return None
        self.force *= self.force_decay
        new = torch.rand(len(self.force), generator=self.generator) < c.force_probability
        if new.any():
            draw = torch.randn(int(new.sum()), 3, generator=self.generator)
            self.force[new] = draw * self.mass[new, None] * c.force_scale
        np.copyto(self._force_np, self.force.numpy())
        return self._force_np
