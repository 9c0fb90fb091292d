"""Policy-gradient losses and the adaptive learning-rate rule, as pure functions."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def clipped_surrogate_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip: float
) -> torch.Tensor:
    """PPO clipped objective, negated for minimisation (Schulman et al. 2017, eq. 7); inputs (B,)."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip) * advantages
    return -torch.min(unclipped, clipped).mean()


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float
) -> torch.Tensor:
    """max of squared errors of the new value and of the value clipped to old +- clip; inputs (B,)."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return torch.max((values - returns).square(), (clipped - returns).square()).mean()


def gaussian_kl(mean_old: torch.Tensor, std_old: torch.Tensor, mean_new: torch.Tensor, std_new: torch.Tensor):
    """Mean KL(old || new) of diagonal Gaussians; means (B, A), stds broadcastable to (B, A)."""
    kl = (
        torch.log(std_new / std_old)
        + (std_old.square() + (mean_old - mean_new).square()) / (2.0 * std_new.square())
        - 0.5
    )
    return kl.sum(dim=-1).mean()


@dataclass(frozen=True)
class KLAdaptiveLR:
    """The adaptive learning-rate rule: divide lr by ``factor`` when the policy moved more than
    ``kl_band[1] * desired_kl`` in one step, multiply it when it moved less than ``kl_band[0] * desired_kl``."""

    desired_kl: float = 0.02
    factor: float = 1.5
    kl_band: tuple[float, float] = (0.5, 2.0)
    bounds: tuple[float, float] = (1e-5, 1e-2)

    def __call__(self, lr: float, kl: float) -> float:
        low, high = self.kl_band
        return adaptive_learning_rate(lr, kl, self.desired_kl, self.bounds, self.factor, high, low)


def adaptive_learning_rate(
    lr: float,
    kl: float,
    desired_kl: float,
    bounds: tuple[float, float] = (1e-5, 1e-2),
    factor: float = 1.5,
    high: float = 2.0,
    low: float = 0.5,
) -> float:
    """Shrink lr by ``factor`` when KL > high * target, grow it when KL < low * target, within bounds."""
    if kl > desired_kl * high:
        lr = lr / factor
    elif 0.0 < kl < desired_kl * low:
        lr = lr * factor
    return min(max(lr, bounds[0]), bounds[1])
