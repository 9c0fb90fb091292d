"""Gaussian actor-critic with observation normalisation and a state-independent std."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Normal

from unilab.models.mlp import mlp
from unilab.models.normalizer import RunningNormalizer


class ActorCritic(nn.Module):
    """Actor reads the ``actor_group`` observation, critic the ``critic_group`` (asymmetric)."""

    def __init__(
        self,
        actor_obs_dim: int,
        critic_obs_dim: int,
        num_actions: int,
        actor_hidden_dims: Sequence[int] = (512, 256, 128),
        critic_hidden_dims: Sequence[int] = (512, 256, 128),
        activation: str = "elu",
        init_std: float = 1.0,
        actor_group: str = "policy",
        critic_group: str = "critic",
    ) -> None:
        super().__init__()
        self.actor_group, self.critic_group = actor_group, critic_group
        self.actor_normalizer = RunningNormalizer(actor_obs_dim)
        self.critic_normalizer = RunningNormalizer(critic_obs_dim)
        self.actor = mlp(actor_obs_dim, actor_hidden_dims, num_actions, activation)
        self.critic = mlp(critic_obs_dim, critic_hidden_dims, 1, activation)
        self.log_std = nn.Parameter(torch.full((num_actions,), float(torch.log(torch.tensor(init_std)))))

    def update_normalizers(self, obs: dict[str, torch.Tensor]) -> None:
        self.actor_normalizer.update(obs[self.actor_group])
        self.critic_normalizer.update(obs[self.critic_group])

    def action_mean(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.actor(self.actor_normalizer(obs[self.actor_group]))

    def distribution(self, obs: dict[str, torch.Tensor]) -> Normal:
        mean = self.action_mean(obs)
        return Normal(mean, self.log_std.exp().expand_as(mean))

    def value(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.critic(self.critic_normalizer(obs[self.critic_group])).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = False):
        """Sample actions; return (actions, log-prob, value, mean)."""
        dist = self.distribution(obs)
        actions = dist.mean if deterministic else dist.sample()
        return actions, dist.log_prob(actions).sum(-1), self.value(obs), dist.mean

    def evaluate(self, obs: dict[str, torch.Tensor], actions: torch.Tensor):
        """Log-prob, entropy, value and the distribution for a batch of stored actions."""
        dist = self.distribution(obs)
        return dist.log_prob(actions).sum(-1), dist.entropy().sum(-1), self.value(obs), dist


class DeterministicActor(nn.Module):
    """Observation normalisation + actor MLP -> action mean (what a robot runs)."""

    def __init__(self, normalizer: nn.Module, actor: nn.Module) -> None:
        super().__init__()
        self.normalizer, self.actor = normalizer, actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.normalizer(obs))
