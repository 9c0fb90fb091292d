"""Running mean / variance observation normaliser (state lives in buffers, so it is checkpointed)."""

from __future__ import annotations

import torch
from torch import nn


class RunningNormalizer(nn.Module):
    """Normalise (..., dim) inputs by a running mean and variance (parallel-variance update)."""

    def __init__(self, dim: int, epsilon: float = 1e-5, clip: float = 5.0) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.clip = clip
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """Fold a batch (B, dim) into the running statistics."""
        batch = batch.reshape(-1, batch.shape[-1]).to(self.mean.dtype)
        batch_count = batch.shape[0]
        batch_mean = batch.mean(dim=0)
        batch_var = batch.var(dim=0, unbiased=False)
        total = self.count + batch_count
        delta = batch_mean - self.mean
        new_mean = self.mean + delta * (batch_count / total).to(self.mean.dtype)
        m2 = self.var * self.count.to(self.var.dtype) + batch_var * batch_count
        m2 = m2 + delta.square() * (self.count * batch_count / total).to(self.var.dtype)
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total.to(self.var.dtype))
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + self.epsilon)).clamp(-self.clip, self.clip)
