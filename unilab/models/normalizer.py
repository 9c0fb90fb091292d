"""Running mean / variance observation normaliser (state lives in buffers, so it is checkpointed)."""

from __future__ import annotations

from collections.abc import Callable

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
        if batch_count == 0:  # nothing to fold in (an empty selection would make every statistic NaN)
            return
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

    def mark_synchronised(self) -> None:
        """Remember the statistics every rank holds now (the base that later deltas are measured from)."""
        self._synced = (self.count.clone(), self.mean.double().clone(), self.var.double().clone())

    def merge_over_ranks(self, all_gather: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Fold every rank's observations since the last merge into the same statistics on every rank.

        ``all_gather`` maps this rank's :meth:`delta_row` to the (ranks, …) rows of all ranks.
        """
        self.merge_rows(all_gather(self.delta_row()))

    @torch.no_grad()
    def delta_row(self) -> torch.Tensor:
        """[count, mean, M2] of the samples folded in since :meth:`mark_synchronised` (float64, 1 + 2 dim)."""
        base_count, base_mean, base_var = self._synced
        count, mean, var = self.count, self.mean.double(), self.var.double()
        new = count - base_count
        new_mean = (count * mean - base_count * base_mean) / new.clamp_min(1e-12)
        new_m2 = var * count - base_var * base_count - (new_mean - base_mean).square() * base_count * new / count
        return torch.cat([new.reshape(1), new_mean, new_m2.clamp_min(0.0)])

    @torch.no_grad()
    def merge_rows(self, rows: torch.Tensor) -> None:
        """Merge the ranks' delta rows count-weighted into the shared base (Chan et al.'s parallel variance)."""
        base_count, base_mean, base_var = self._synced
        dim = len(base_mean)
        total, merged_mean, merged_m2 = base_count.clone(), base_mean.clone(), base_var * base_count
        for row in rows.reshape(-1, 1 + 2 * dim):
            rank_count, rank_mean, rank_m2 = row[0], row[1 : 1 + dim], row[1 + dim :]
            if rank_count <= 0:
                continue
            combined = total + rank_count
            delta = rank_mean - merged_mean
            merged_m2 = merged_m2 + rank_m2 + delta.square() * total * rank_count / combined
            merged_mean = merged_mean + delta * rank_count / combined
            total = combined
        self.count.copy_(total)
        self.mean.copy_(merged_mean.to(self.mean.dtype))
        self.var.copy_((merged_m2 / total).to(self.var.dtype))
        self.mark_synchronised()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + self.epsilon)).clamp(-self.clip, self.clip)
