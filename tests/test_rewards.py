import math

import pytest
import torch

from unilab.tasks import rewards as R


def z_rotation(angle: float) -> torch.Tensor:
    return torch.tensor([[math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)]])


def test_angular_velocity_of_a_spin_about_plus_z():
    dt = 0.05
    omega = R.angular_velocity(z_rotation(0.3 + 0.02), z_rotation(0.3), dt)
    assert omega[0].tolist() == pytest.approx([0.0, 0.0, 0.02 / dt], abs=1e-5)


def test_angular_velocity_is_negative_for_clockwise_spin_and_handles_quaternion_sign():
    dt = 0.05
    omega = R.angular_velocity(-z_rotation(1.0 - 0.01), z_rotation(1.0), dt)  # -q is the same rotation
    assert omega[0, 2].item() == pytest.approx(-0.01 / dt, abs=1e-4)


def test_rotate_rewards_positive_spin_and_clips():
    angvel = torch.tensor([[0.0, 0.0, 0.3], [0.0, 0.0, -0.2], [5.0, 0.0, 2.0]])
    assert R.rotate(angvel).tolist() == pytest.approx([0.3, -0.2, 0.5])


def test_linear_velocity_penalty_is_l1_of_finite_difference():
    velocity = R.linear_velocity(torch.tensor([[0.01, -0.02, 0.0]]), torch.zeros(1, 3), dt=0.05)
    assert R.object_linvel_penalty(velocity).item() == pytest.approx(0.6)


def test_pose_torque_and_work_penalties_by_hand():
    qpos = torch.tensor([[0.1, -0.2]])
    assert R.pose_penalty(qpos, torch.zeros(1, 2)).item() == pytest.approx(0.05, rel=1e-6)
    torque = R.pd_torque(
        torch.tensor(2.0), torch.tensor(0.5), torch.tensor([[1.0, 0.0]]), qpos, torch.tensor([[1.0, 2.0]])
    )
    assert torque.tolist()[0] == pytest.approx([2 * 0.9 - 0.5, 2 * 0.2 - 1.0])
    assert R.torque_penalty(torque, limit=0.5).item() == pytest.approx(0.5**2 + 0.5**2)
    assert R.work_penalty(torque, torch.tensor([[1.0, 2.0]])).item() == pytest.approx((1.3 - 1.2) ** 2, rel=1e-4)


def test_object_position_bonus_grows_near_anchor():
    anchor = torch.zeros(3)
    near = R.object_position_bonus(torch.tensor([[0.001, 0.0, 0.0]]), anchor)
    far = R.object_position_bonus(torch.tensor([[0.05, 0.0, 0.0]]), anchor)
    assert near.item() == pytest.approx(500.0) and far.item() < near.item()
