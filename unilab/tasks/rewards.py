"""Reward terms and the kinematic quantities they use: pure functions, batch-first torch tensors.

Every term returns shape (N,) and is *unweighted*; weights come from the task config and the
weighted sum is multiplied by ``ctrl_dt`` (docs/spec.md §1).
"""

from __future__ import annotations

import torch


def quat_conjugate(q: torch.Tensor) -> torch.Tensor:
    """Conjugate of wxyz quaternions (..., 4)."""
    return torch.cat([q[..., :1], -q[..., 1:]], dim=-1)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a*b of wxyz quaternions (..., 4)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def quat_to_rotvec(q: torch.Tensor) -> torch.Tensor:
    """Axis-angle vector (..., 3) of wxyz quaternions (..., 4), angle in [0, pi]."""
    q = torch.where(q[..., :1] < 0, -q, q)
    vec_norm = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(vec_norm, q[..., :1])
    # angle / sin(angle/2) -> 2 as the rotation vanishes.
    scale = torch.where(vec_norm > 1e-9, angle / vec_norm.clamp_min(1e-12), torch.full_like(angle, 2.0))
    return q[..., 1:] * scale


def angular_velocity(quat: torch.Tensor, prev_quat: torch.Tensor, dt: float) -> torch.Tensor:
    """World-frame angular velocity (N, 3) from two wxyz orientations dt apart: rotvec(q_t q_{t-1}^*) / dt."""
    return quat_to_rotvec(quat_multiply(quat, quat_conjugate(prev_quat))) / dt


def linear_velocity(pos: torch.Tensor, prev_pos: torch.Tensor, dt: float) -> torch.Tensor:
    """Finite-difference linear velocity (N, 3)."""
    return (pos - prev_pos) / dt


def pd_torque(kp: torch.Tensor, kd: torch.Tensor, target: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor):
    """Virtual PD torque (N, J): kp (target - q) - kd qdot."""
    return kp * (target - qpos) - kd * qvel


def rotate(angvel: torch.Tensor, limit: float = 0.5) -> torch.Tensor:
    """Rotation about world +z, clipped to [-limit, limit] rad/s."""
    return angvel[:, 2].clamp(-limit, limit)


def object_linvel_penalty(linvel: torch.Tensor) -> torch.Tensor:
    """L1 norm of the object's linear velocity."""
    return linvel.abs().sum(dim=-1)


def pose_penalty(qpos: torch.Tensor, reference_qpos: torch.Tensor) -> torch.Tensor:
    """Squared distance of the joints from a reference pose."""
    return (qpos - reference_qpos).square().sum(dim=-1)


def torque_penalty(torque: torch.Tensor, limit: float | None = None) -> torch.Tensor:
    """Sum of squared joint torques, optionally clipped to [-limit, limit] first."""
    if limit is not None:
        torque = torque.clamp(-limit, limit)
    return torque.square().sum(dim=-1)


def work_penalty(torque: torch.Tensor, qvel: torch.Tensor) -> torch.Tensor:
    """Squared mechanical power (sum tau * qdot)^2."""
    return (torque * qvel).sum(dim=-1).square()


def object_position_bonus(pos: torch.Tensor, anchor: torch.Tensor, epsilon: float = 1e-3) -> torch.Tensor:
    """Inverse distance of the object from its anchor: 1 / (|p - anchor| + epsilon)."""
    return 1.0 / ((pos - anchor).norm(dim=-1) + epsilon)
