"""ActorCritic construction: the actor's initial output scale."""

import pytest
import torch

from unilab.algos.ppo import PPO
from unilab.models.actor_critic import ActorCritic


def mean_actions(gain: float) -> torch.Tensor:
    torch.manual_seed(0)
    policy = ActorCritic(49, 58, 22, actor_hidden_dims=(64, 64), critic_hidden_dims=(64,), actor_output_gain=gain)
    obs = {"policy": torch.randn(512, 49), "critic": torch.randn(512, 58)}
    with torch.no_grad():
        return policy.action_mean(obs)


def test_small_actor_output_gain_starts_from_near_zero_mean_actions():
    default, small = mean_actions(1.0), mean_actions(0.01)
    assert default.abs().mean() > 0.02  # PyTorch's default initialisation moves the targets from the first step
    assert small.abs().mean() < default.abs().mean() / 50
    torch.manual_seed(0)
    assert torch.equal(ActorCritic(49, 58, 22).actor[-1].bias, mean_bias_of_default())


def mean_bias_of_default() -> torch.Tensor:
    torch.manual_seed(0)
    return ActorCritic(49, 58, 22, actor_output_gain=1.0).actor[-1].bias  # 1.0 leaves PyTorch's init untouched


@pytest.mark.parametrize("gain", [0.0, -1.0])
def test_actor_output_gain_must_be_positive(gain):
    with pytest.raises(ValueError, match="model.actor_output_gain must be > 0"):
        PPO({"policy": 49, "critic": 58}, 22, actor_output_gain=gain)
