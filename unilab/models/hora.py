"""HORA networks (docs/spec.md §5): the privileged encoder of the teacher and the student's adaptation module."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unilab.models.mlp import activation, mlp


class PrivilegedEncoder(nn.Module):
    """Privileged object/physics properties -> extrinsics latent z in [-1, 1] (MLP 9 -> 256 -> 128 -> 9, tanh)."""

    def __init__(
        self, input_dim: int, hidden_dims: Sequence[int] = (256, 128), latent_dim: int = 9, act: str = "elu"
    ) -> None:
        super().__init__()
        self.net = mlp(input_dim, hidden_dims, latent_dim, act)

    def forward(self, privileged: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(privileged))


class AdaptationModule(nn.Module):
    """(batch, frames, frame_dim) proprioceptive history -> z estimate in [-1, 1].

    A per-step MLP embeds each frame, temporal convolutions (kernel 9 stride 2, kernel 5, kernel 5)
    aggregate over time, a linear layer maps the flattened result to the latent, then tanh.
    """

    def __init__(
        self,
        frames: int,
        frame_dim: int,
        latent_dim: int = 9,
        channels: int = 32,
        embed_hidden_dims: Sequence[int] = (32,),
        act: str = "elu",
    ) -> None:
        super().__init__()
        self.frames, self.frame_dim = frames, frame_dim
        self.embed = nn.Sequential(mlp(frame_dim, embed_hidden_dims, channels, act), activation(act))
        self.temporal = nn.Sequential(
            nn.Conv1d(channels, channels, kernel_size=9, stride=2),
            activation(act),
            nn.Conv1d(channels, channels, kernel_size=5, stride=1),
            activation(act),
            nn.Conv1d(channels, channels, kernel_size=5, stride=1),
            activation(act),
        )
        length = (frames - 9) // 2 + 1 - 4 - 4
        if length < 1:
            raise ValueError(f"the adaptation module needs at least 17 history frames, got {frames}")
        self.head = nn.Linear(channels * length, latent_dim)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        history = history.reshape(-1, self.frames, self.frame_dim)
        embedded = self.embed(history)  # (B, T, C)
        aggregated = self.temporal(embedded.transpose(1, 2))  # (B, C, T')
        return torch.tanh(self.head(aggregated.flatten(1)))
