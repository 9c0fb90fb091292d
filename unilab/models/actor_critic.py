"""Gaussian actor-critic with observation normalisation and a state-independent std."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Normal

from unilab.models.hora import PrivilegedEncoder
from unilab.models.mlp import mlp
from unilab.models.normalizer import RunningNormalizer


class ActorCritic(nn.Module):
    """Actor reads the ``actor_group`` observation, critic the ``critic_group`` (asymmetric).

    With a ``privileged_group`` it is a HORA teacher: a privileged encoder turns that group into the
    extrinsics latent z and the actor reads [normalised actor obs, z].
    """

    def __init__(
        self,
        actor_obs_dim: int,
        critic_obs_dim: int,
        num_actions: int,
        actor_hidden_dims: Sequence[int] = (512, 256, 128),
        critic_hidden_dims: Sequence[int] = (512, 256, 128),
        activation: str = "elu",
        init_std: float = 1.0,
        actor_output_gain: float = 1.0,
        actor_group: str = "policy",
        critic_group: str = "critic",
        privileged_group: str | None = None,
        privileged_obs_dim: int = 0,
        latent_dim: int = 9,
        encoder_hidden_dims: Sequence[int] = (256, 128),
    ) -> None:
        super().__init__()
        self.actor_group, self.critic_group, self.privileged_group = actor_group, critic_group, privileged_group
        self.actor_normalizer = RunningNormalizer(actor_obs_dim)
        self.critic_normalizer = RunningNormalizer(critic_obs_dim)
        self.encoder: PrivilegedEncoder | None = None
        if privileged_group is not None:
            self.privileged_normalizer = RunningNormalizer(privileged_obs_dim)
            self.encoder = PrivilegedEncoder(privileged_obs_dim, encoder_hidden_dims, latent_dim, activation)
        self.latent_dim = latent_dim if privileged_group is not None else 0
        self.actor = mlp(actor_obs_dim + self.latent_dim, actor_hidden_dims, num_actions, activation)
        self.critic = mlp(critic_obs_dim, critic_hidden_dims, 1, activation)
        if actor_output_gain != 1.0:  # small: the untrained actor's mean actions start near zero (hold still)
            output = self.actor[-1]
            with torch.no_grad():
                output.weight.mul_(actor_output_gain)
                output.bias.zero_()
        self.log_std = nn.Parameter(torch.full((num_actions,), float(torch.log(torch.tensor(init_std)))))

    @property
    def input_groups(self) -> tuple[str, ...]:
        """Observation groups this model reads."""
        groups = (self.actor_group, self.critic_group)
        return groups if self.privileged_group is None else (*groups, self.privileged_group)

    def normalizers(self) -> list[RunningNormalizer]:
        return [module for module in self.modules() if isinstance(module, RunningNormalizer)]

    def update_normalizers(self, obs: dict[str, torch.Tensor]) -> None:
        self.actor_normalizer.update(obs[self.actor_group])
        self.critic_normalizer.update(obs[self.critic_group])
        if self.privileged_group is not None:
            self.privileged_normalizer.update(obs[self.privileged_group])

    def latent(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Extrinsics latent z from the privileged group (HORA teachers only)."""
        if self.encoder is None:
            raise ValueError("this policy has no privileged encoder; train a teacher with --profile hora")
        return self.encoder(self.privileged_normalizer(obs[self.privileged_group]))

    def actor_input(self, obs: dict[str, torch.Tensor], latent: torch.Tensor | None = None) -> torch.Tensor:
        """What the actor reads: the normalised actor obs, and for a HORA policy ``latent`` (default: the
        privileged group's z) after it."""
        features = self.actor_normalizer(obs[self.actor_group])
        if self.encoder is not None:
            features = torch.cat([features, self.latent(obs) if latent is None else latent], dim=-1)
        return features

    def action_mean(self, obs: dict[str, torch.Tensor], latent: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic action; a HORA policy uses ``latent`` if given, else z from the privileged group."""
        return self.actor(self.actor_input(obs, latent))

    def distribution(self, obs: dict[str, torch.Tensor]) -> Normal:
        mean = self.action_mean(obs)
        return Normal(mean, self.log_std.exp().expand_as(mean))

    def value(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.critic(self.critic_normalizer(obs[self.critic_group])).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Sampled actions with their mean and log-prob (the rollout loop's actor contract).

        The noise comes from ``generator`` (a CPU generator, whatever the device), so a collector seeded
        alike samples alike in any process.
        """
        dist = self.distribution(obs)
        noise = torch.randn(dist.mean.shape, generator=generator, dtype=dist.mean.dtype).to(dist.mean.device)
        actions = dist.mean + dist.stddev * noise
        return {"actions": actions, "action_mean": dist.mean, "log_prob": dist.log_prob(actions).sum(-1)}

    def evaluate_actions(self, obs: dict[str, torch.Tensor], actions: torch.Tensor):
        """Log-prob, entropy, value and the distribution for a batch of stored actions."""
        dist = self.distribution(obs)
        return dist.log_prob(actions).sum(-1), dist.entropy().sum(-1), self.value(obs), dist


class DeterministicActor(nn.Module):
    """Observation normalisation + actor MLP -> action mean (what a robot runs).

    A HORA teacher takes the privileged observation as a second input.
    """

    def __init__(self, policy: ActorCritic) -> None:
        super().__init__()
        self.policy = policy
        self.input_names = ("obs",) if policy.privileged_group is None else ("obs", "privileged")

    def forward(self, obs: torch.Tensor, privileged: torch.Tensor | None = None) -> torch.Tensor:
        groups = {self.policy.actor_group: obs}
        if privileged is not None:
            groups[self.policy.privileged_group] = privileged
        return self.policy.action_mean(groups)
