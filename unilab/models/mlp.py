"""Plain multilayer perceptrons."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}") from None


def mlp(input_dim: int, hidden_dims: Sequence[int], output_dim: int | None, act: str = "elu") -> nn.Sequential:
    """Linear layers with ``act`` between them; the output layer (if any) has no activation."""
    layers: list[nn.Module] = []
    width = input_dim
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), activation(act)]
        width = hidden
    if output_dim is not None:
        layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)
