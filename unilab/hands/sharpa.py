"""Sharpa Wave right hand (22 DoF, Apache-2.0) from MuJoCo Menagerie ``sharpa_wave``.

The reference task wrote joint angles with flexion positive. Menagerie revisions differ in the
sign of the flexion joints (some mirror the ranges, e.g. thumb CMC_FE [-1.9199, 0.1745]), so the
default pose is mapped per joint at scene-build time: a joint whose model range is the mirror
of the reference range gets the negated angle (:func:`map_reference_pose`). Gains stay the
model's own (per-joint kp, damping from its dampratio); armature is kept.
"""

from __future__ import annotations

import math

import numpy as np

from unilab.sim.hand_spec import HandSpec

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
JOINT_NAMES = (
    "right_thumb_CMC_FE", "right_thumb_CMC_AA", "right_thumb_MCP_FE", "right_thumb_MCP_AA", "right_thumb_IP",
    "right_index_MCP_FE", "right_index_MCP_AA", "right_index_PIP", "right_index_DIP",
    "right_middle_MCP_FE", "right_middle_MCP_AA", "right_middle_PIP", "right_middle_DIP",
    "right_ring_MCP_FE", "right_ring_MCP_AA", "right_ring_PIP", "right_ring_DIP",
    "right_pinky_CMC", "right_pinky_MCP_FE", "right_pinky_MCP_AA", "right_pinky_PIP", "right_pinky_DIP",
)  # fmt: skip
REFERENCE_POSE_DEG = (
    95.13, -3.11, 14.82, -1.03, 12.24,
    65.21, 6.11, 15.58, 5.90,
    31.74, -0.96, 41.88, 12.84,
    31.72, 9.84, 35.22, 18.03,
    10.97, 68.31, 7.99, 5.90, 5.90,
)  # fmt: skip
REFERENCE_RANGES = (
    (-0.1745, 1.9199), (-0.3491, 0.3491), (-0.5236, 1.3963), (-0.3491, 0.3491), (0.0, 1.7453),
    (-0.174533, 1.5708), (-0.3491, 0.3491), (0.0, 1.7453), (0.0, 1.3963),
    (-0.174533, 1.5708), (-0.3491, 0.3491), (0.0, 1.7453), (0.0, 1.3963),
    (-0.174533, 1.5708), (-0.3491, 0.3491), (0.0, 1.7453), (0.0, 1.3963),
    (0.0, 0.2618), (-0.174533, 1.5708), (-0.3491, 0.3491), (0.0, 1.7453), (0.0, 1.3963),
)  # fmt: skip
"""Joint ranges in the reference sign convention (flexion positive)."""


def map_reference_pose(model_ranges: np.ndarray, tolerance: float = 1e-3) -> np.ndarray:
    """Reference default pose (rad) in the sign convention of a model with ``model_ranges`` (J, 2).

    A joint keeps its sign where the model range equals the reference range and is negated where
    it equals the mirrored range; any other range is an error (the model is not the expected hand).
    """
    pose = np.radians(REFERENCE_POSE_DEG)
    signs = np.ones(len(pose))
    for index, ((lo, hi), (ref_lo, ref_hi)) in enumerate(zip(model_ranges, REFERENCE_RANGES, strict=True)):
        if math.isclose(lo, ref_lo, abs_tol=tolerance) and math.isclose(hi, ref_hi, abs_tol=tolerance):
            continue
        if math.isclose(lo, -ref_hi, abs_tol=tolerance) and math.isclose(hi, -ref_lo, abs_tol=tolerance):
            signs[index] = -1.0
            continue
        raise ValueError(
            f"joint {JOINT_NAMES[index]} has range [{lo}, {hi}], neither the reference [{ref_lo}, {ref_hi}] "
            "nor its mirror; this Menagerie revision of sharpa_wave is not supported"
        )
    return pose * signs


SHARPA = HandSpec(
    name="sharpa",
    menagerie_id="sharpa_wave",
    menagerie_entry="right_hand",
    joint_names=JOINT_NAMES,
    home_pose=tuple(np.radians(REFERENCE_POSE_DEG)),
    kp=None,
    kd=None,
    fingertip_bodies=tuple(f"right_{finger}_DP" for finger in FINGERS),
    fingertip_friction=(2.0, 0.10, 0.02),
    fingertip_geom_class="elastomer_collision",
    base_pos=(0.0, 0.0, 0.5),
    base_quat=(math.cos(math.radians(-35.0)), 0.0, math.sin(math.radians(-35.0)), 0.0),
    gravity_compensation=True,
    joint_damping=None,
)
