"""Plain multilayer perceptrons."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}") from None


class FullPrecisionLinear(nn.Linear):
    """A linear layer that computes in float32 even under mixed precision (``trainer.precision: bf16-mixed``).

    Used as the output layer, so action means and values keep full resolution: in bfloat16 a value
    near 50 would be rounded to a multiple of 0.25, and PPO's ratio and value clipping compare these
    outputs with ones computed in float32 while collecting. Outside autocast it is a plain ``nn.Linear``
    (same parameters and checkpoint keys, same exported graph).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled(x.device.type):
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


def mlp(input_dim: int, hidden_dims: Sequence[int], output_dim: int | None, act: str = "elu") -> nn.Sequential:
    """Linear layers with ``act`` between them; the output layer (if any) has no activation and stays float32."""
    layers: list[nn.Module] = []
    width = input_dim
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), activation(act)]
        width = hidden
    if output_dim is not None:
        layers.append(FullPrecisionLinear(width, output_dim))
    return nn.Sequential(*layers)
