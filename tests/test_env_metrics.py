"""EnvMetrics: step means, finished-episode figures and drop rates per object scale, reset by each pop."""

from __future__ import annotations

import pytest
import torch

from unilab.tasks.env_metrics import EnvMetrics


def test_a_step_value_is_averaged_over_the_steps_that_had_it():
    metrics = EnvMetrics((1.0,))
    metrics.add_step({"reward/total": 1.0, "reward/rotate": 0.5})
    metrics.add_step({"reward/total": 3.0})
    assert metrics.pop() == {"reward/total": 2.0, "reward/rotate": 0.5}
    assert metrics.pop() == {}


def test_episodes_give_means_and_per_scale_drop_rates_only_for_scales_that_ended_one():
    metrics = EnvMetrics((0.8, 1.0, 1.6))
    length, speed = torch.tensor([10.0, 400.0, 20.0]), torch.tensor([0.5, 0.7, 0.0])
    metrics.add_episodes(length, speed, torch.tensor([True, False, True]), torch.tensor([0, 0, 2]))
    metrics.add_episodes(torch.tensor([400.0]), torch.tensor([0.6]), torch.tensor([False]), torch.tensor([2]))
    popped = metrics.pop()
    assert popped["episode/count"] == 4 and popped["episode/length"] == pytest.approx(207.5)
    assert popped["episode/drop_rate"] == 0.5 and popped["episode/rotation_speed"] == pytest.approx(0.45)
    assert {key: value for key, value in popped.items() if key.startswith("drop_rate_by_scale/")} == {
        "drop_rate_by_scale/0.8": 0.5,
        "drop_rate_by_scale/1.6": 0.5,
    }
    assert metrics.pop() == {}


def test_one_object_scale_logs_no_per_scale_rate():
    metrics = EnvMetrics((1.0,))
    metrics.add_episodes(torch.tensor([5.0]), torch.tensor([0.1]), torch.tensor([True]), torch.tensor([0]))
    assert not any(key.startswith("drop_rate_by_scale/") for key in metrics.pop())
