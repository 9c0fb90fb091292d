import math

import pytest
import torch

from unilab.algos.losses import (
    KLAdaptiveLR,
    adaptive_learning_rate,
    clipped_surrogate_loss,
    clipped_value_loss,
    gaussian_kl,
)
from unilab.algos.targets import gae

GAMMA, LAM = 0.9, 0.5


def column(*values):
    return torch.tensor(values, dtype=torch.float32)[:, None]


def test_gae_three_steps_worked_by_hand():
    rewards, values = column(1.0, 0.0, 2.0), column(0.5, 1.0, 1.5)
    next_values = column(1.0, 1.5, 2.0)  # V(s1), V(s2), V(s3)
    no = torch.zeros(3, 1, dtype=torch.bool)
    advantages, returns = gae(rewards, values, next_values, no, no, GAMMA, LAM)
    # delta = r + 0.9 V' - V: 1.4, 0.35, 2.3; A2 = 2.3; A1 = 0.35 + 0.45*2.3; A0 = 1.4 + 0.45*A1
    a2 = 2.3
    a1 = 0.35 + 0.45 * a2
    a0 = 1.4 + 0.45 * a1
    assert advantages[:, 0].tolist() == pytest.approx([a0, a1, a2], abs=1e-6)
    assert returns[:, 0].tolist() == pytest.approx([a0 + 0.5, a1 + 1.0, a2 + 1.5], abs=1e-6)


def test_gae_terminal_step_does_not_bootstrap_and_cuts_the_trace():
    rewards, values = column(1.0, 0.0, 2.0), column(0.5, 1.0, 1.5)
    next_values = column(1.0, 9.0, 2.0)  # 9.0 would be the post-reset value: must be ignored
    terminated = torch.tensor([[False], [True], [False]])
    advantages, _ = gae(rewards, values, next_values, terminated, terminated, GAMMA, LAM)
    a2 = 2.3
    a1 = 0.0 - 1.0  # r - V, no bootstrap, no trace from step 2
    a0 = 1.4 + 0.45 * a1
    assert advantages[:, 0].tolist() == pytest.approx([a0, a1, a2], abs=1e-6)


def test_gae_time_out_bootstraps_from_final_observation_value():
    rewards, values = column(0.0), column(1.0)
    next_values = column(2.0)  # V(final_obs)
    truncated_done = torch.tensor([[True]])
    not_terminal = torch.tensor([[False]])
    advantages, _ = gae(rewards, values, next_values, not_terminal, truncated_done, GAMMA, LAM)
    assert advantages.item() == pytest.approx(0.9 * 2.0 - 1.0)


def test_clipped_surrogate_by_hand():
    log_prob = torch.log(torch.tensor([1.5, 0.5]))
    old = torch.zeros(2)
    advantages = torch.tensor([1.0, -1.0])
    # ratio 1.5 clipped to 1.2 for the positive advantage; ratio 0.5 clipped to 0.8 -> min(-0.5, -0.8)
    assert clipped_surrogate_loss(log_prob, old, advantages, 0.2).item() == pytest.approx(-(1.2 - 0.8) / 2)


def test_clipped_value_loss_by_hand():
    values, old, returns = torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([1.0])
    # unclipped error 1.0; clipped value 1.2 -> 0.04; max -> 1.0
    assert clipped_value_loss(values, old, returns, 0.2).item() == pytest.approx(1.0)


def test_gaussian_kl_zero_for_equal_and_known_for_shift():
    mean, std = torch.zeros(1, 2), torch.ones(2)
    assert gaussian_kl(mean, std, mean, std).item() == pytest.approx(0.0)
    assert gaussian_kl(mean, std, mean + 1.0, std).item() == pytest.approx(1.0)
    assert gaussian_kl(mean, std, mean, 2 * std).item() == pytest.approx(2 * (math.log(2) + 1 / 8 - 0.5))


@pytest.mark.parametrize(("kl", "expected"), [(0.05, 1e-3 / 1.5), (0.005, 1e-3 * 1.5), (0.02, 1e-3), (1.0, 1e-3 / 1.5)])
def test_adaptive_learning_rate_rule(kl, expected):
    assert adaptive_learning_rate(1e-3, kl, desired_kl=0.02) == pytest.approx(expected)


def test_adaptive_learning_rate_respects_bounds():
    assert adaptive_learning_rate(1e-2, 0.0001, 0.02) == pytest.approx(1e-2)
    assert adaptive_learning_rate(1e-5, 1.0, 0.02) == pytest.approx(1e-5)


def test_normalisers_merged_over_ranks_equal_one_normaliser_that_saw_everything():
    from unilab.models.normalizer import RunningNormalizer

    generator = torch.Generator().manual_seed(0)
    shared = torch.randn(40, 3, generator=generator) * 2 + 1
    rank_data = [torch.randn(24, 3, generator=generator) * 3 - 2, torch.randn(8, 3, generator=generator) + 5]
    ranks = [RunningNormalizer(3), RunningNormalizer(3)]
    for normalizer, data in zip(ranks, rank_data, strict=True):
        normalizer.update(shared)
        normalizer.mark_synchronised()  # every rank holds the same statistics here
        normalizer.update(data[:10])  # then each folds in its own envs, step by step
        normalizer.update(data[10:])
    gathered = torch.stack([normalizer.delta_row() for normalizer in ranks])  # what all_gather returns
    for normalizer in ranks:
        normalizer.merge_over_ranks(lambda row, gathered=gathered: gathered)
    reference = RunningNormalizer(3)
    reference.update(torch.cat([shared, *rank_data]))
    for normalizer in ranks:
        torch.testing.assert_close(normalizer.mean, reference.mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(normalizer.var, reference.var, rtol=1e-5, atol=1e-5)
        assert float(normalizer.count) == pytest.approx(float(reference.count))
    # a second round starts from the merged statistics
    assert torch.count_nonzero(ranks[0].delta_row()[:1]) == 0


def test_kl_rule_object_uses_its_own_factor_and_band():
    rule = KLAdaptiveLR(desired_kl=0.02, factor=1.1, kl_band=(1 / 1.2, 1.2))  # APPO's
    assert rule(1e-3, 0.03) == pytest.approx(1e-3 / 1.1)  # above 1.2 x target: PPO's band (2x) would keep it
    assert rule(1e-3, 0.02) == pytest.approx(1e-3)
    assert rule(1e-3, 0.015) == pytest.approx(1.1e-3)  # below target / 1.2
    assert KLAdaptiveLR()(1e-3, 0.03) == pytest.approx(1e-3)  # PPO's defaults: inside [0.5, 2] x target
