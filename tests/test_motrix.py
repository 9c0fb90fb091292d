"""MotrixSim backend: parity with MuJoCo on real physics, layouts, DR overrides, missing package."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from unilab.caches import CacheSource
from unilab.hands import ALLEGRO, SHARPA
from unilab.hands.sharpa import map_reference_pose
from unilab.sim import make_backend
from unilab.sim.motrix import MotrixError, import_motrixsim
from unilab.sim.scene import ObjectSpec, PhysicsOptions, SceneLayout, build_scene
from unilab.tasks.allegro import AllegroInhandRotation
from unilab.tasks.sharpa import CYLINDER, PHYSICS, SharpaInhandRotation

pytest.importorskip("motrixsim")
ALLEGRO_BALL = ObjectSpec(pos=(0.012, -0.006, 0.105))
HANDS = {"allegro": (ALLEGRO, ALLEGRO_BALL, PhysicsOptions()), "sharpa": (SHARPA, CYLINDER, PHYSICS)}


def backends(hand_name: str, num_envs: int = 2):
    hand, obj, physics = HANDS[hand_name]
    spec = build_scene(hand, obj, physics, visuals=False, movable_object_com=True)
    model = spec.compile()
    built = {
        sim: make_backend(sim, [model], num_envs, physics.substeps, num_threads=2, specs=[spec])
        for sim in ("mujoco", "motrix")
    }
    return built, hand, model


def object_away(qpos: np.ndarray, hand) -> np.ndarray:
    """The object parked 5 m away from the hand: the hand moves as if it were not there."""
    qpos = qpos.copy()
    qpos[:, hand.num_joints : hand.num_joints + 3] = [5.0, 5.0, 5.0]
    return qpos


def home_pose(hand, model) -> np.ndarray:
    joints = model.jnt_range[: hand.num_joints]
    return map_reference_pose(joints) if hand is SHARPA else np.clip(hand.home_array(), joints[:, 0], joints[:, 1])


@pytest.mark.parametrize("hand_name", ["allegro", "sharpa"])
def test_hand_joint_trajectories_match_mujoco_without_the_object(hand_name):
    built, hand, model = backends(hand_name)
    joints = hand.num_joints
    home = home_pose(hand, model)
    start = object_away(np.tile(built["mujoco"].qpos[0], (2, 1)), hand)
    start[:, :joints] = home
    for backend in built.values():
        backend.reset(np.arange(2), start, np.zeros((2, model.nv)))
    # Small sinusoids about the home pose: joints stay off their limits and fingers off each other, where
    # the two simulators' contact solvers would legitimately differ.
    phase = np.random.default_rng(0).uniform(0, 2 * np.pi, (2, joints))
    low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    worst = 0.0
    for step in range(20):
        target = np.clip(home + 0.05 * np.sin(0.3 * step + phase), low, high)
        for backend in built.values():
            backend.step(target)
        difference = np.abs(built["mujoco"].qpos[:, :joints] - built["motrix"].qpos[:, :joints]).max()
        worst = max(worst, float(difference))
    moved = np.abs(built["motrix"].qpos[:, :joints] - home).max()
    assert moved > 0.02  # the hand really moved
    assert worst < 0.01, f"max |q_mujoco - q_motrix| over 20 control steps = {worst:.4f} rad"
    assert not built["motrix"].diverged.any()


def test_gain_overrides_change_both_simulators_alike():
    built, hand, model = backends("allegro", num_envs=3)
    joints = hand.num_joints
    home = home_pose(hand, model)
    kp, kd = model.actuator_gainprm[:, 0], -model.actuator_biasprm[:, 2]
    low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    trajectories = {}
    for sim, backend in built.items():
        start = object_away(np.tile(backend.qpos[0], (3, 1)), hand)
        start[:, :joints] = home
        backend.reset(np.arange(3), start, np.zeros((3, model.nv)))
        backend.set_actuator_gains(np.array([1, 2]), np.stack([kp * 1.8, kp]), np.stack([kd, kd * 1.8]))
        trajectory = []
        for step in range(12):
            target = np.clip(home + 0.05 * np.sin(0.3 * step + np.arange(joints)), low, high)
            backend.step(np.tile(target, (3, 1)))
            trajectory.append(backend.qpos[:, :joints].copy())
        trajectories[sim] = np.array(trajectory)
    effect = np.abs(trajectories["motrix"][:, 1:] - trajectories["motrix"][:, :1]).max(axis=(0, 2))
    assert (effect > 5e-3).all(), effect  # stiffer (env 1) and more damped (env 2) servos move differently
    np.testing.assert_allclose(trajectories["motrix"], trajectories["mujoco"], atol=2e-3)


def env_pair(make, **kwargs):
    return make("mujoco", **kwargs), make("motrix", **kwargs)


def test_allegro_env_on_motrix_has_the_same_groups_and_rotate_sign(cache_dir):
    def make(sim):
        cache = CacheSource(cache_dir=str(cache_dir), generate_count=0)
        return AllegroInhandRotation(num_envs=2, sim=sim, num_threads=2, cache=cache)

    for env in env_pair(make):
        env.reset(seed=0)
    mujoco_env, motrix_env = env_pair(make)
    assert motrix_env.observation_dims == mujoco_env.observation_dims
    obs = motrix_env.reset(seed=0)
    assert {k: v.shape for k, v in obs.items()} == {k: v.shape for k, v in mujoco_env.reset(seed=0).items()}
    motrix_env.episode_step.zero_()
    qpos, qvel = motrix_env.backend.qpos.copy(), np.zeros((2, motrix_env.backend.nv))
    qpos[:, 16:19] = [0.3, 0.3, 0.3]  # free flight, no contact
    qvel[0, 16 + 5], qvel[1, 16 + 5] = 2.0, -2.0  # +z and -z spin
    motrix_env.backend.reset(np.arange(2), qpos, qvel)
    motrix_env._read_state()
    step = motrix_env.step(torch.zeros(2, 16))
    assert torch.isfinite(step.reward).all()
    rotate = motrix_env.reward_terms()["rotate"]
    assert rotate[0] > 0.4 and rotate[1] < -0.4


def test_sharpa_env_on_motrix_has_the_same_groups_and_finite_rewards(sharpa_cache):
    def make(sim):
        cache = CacheSource(cache_dir=str(sharpa_cache), generate_count=0)
        return SharpaInhandRotation(num_envs=3, sim=sim, num_threads=2, scale_list=[1.0], cache=cache)

    mujoco_env, motrix_env = env_pair(make)
    assert motrix_env.observation_dims == mujoco_env.observation_dims
    obs = motrix_env.reset(seed=0)
    for _ in range(5):
        step = motrix_env.step(torch.zeros(3, 22))
        assert torch.isfinite(step.reward).all()
    assert set(obs) == set(mujoco_env.reset(seed=0))
    assert ((motrix_env.tactile > 0).sum(dim=1) >= 2).any()  # cached grasps press the cylinder with the pads


def test_missing_motrixsim_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "motrixsim", None)
    with pytest.raises(MotrixError, match="pip install motrixsim"):
        import_motrixsim()


def test_gravity_mass_and_object_force_overrides_act_per_env():
    hand, obj, physics = HANDS["allegro"]
    spec = build_scene(hand, obj, physics, visuals=False)
    model = spec.compile()
    backend = make_backend("motrix", [model], 3, physics.substeps, num_threads=2, object_force=True, specs=[spec])
    start = object_away(np.tile(backend.qpos[0], (3, 1)), hand)
    backend.reset(np.arange(3), start, np.zeros((3, model.nv)))
    backend.set_gravity(np.arange(3), np.array([[0, 0, -9.81], [0, 0, 0], [0, 0, 0]]))
    mass = model.body_mass[model.body("object").id]
    backend.set_object_mass(np.array([2]), np.array([2 * mass]))
    force = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.1, 0.0, 0.0]])
    backend.step(np.tile(start[0, :16], (3, 1)), object_force=force)
    velocity = backend.qvel[:, 16:19]
    assert velocity[0, 2] < -0.3 and abs(velocity[1, 2]) < 1e-4  # gravity off in env 1
    # F = m a over the whole control step (0.1 N on the 50 g ball for 50 ms -> 0.1 m/s), as MuJoCo holds it
    assert velocity[1, 0] == pytest.approx(0.1, rel=0.02) and velocity[2, 0] == pytest.approx(0.05, rel=0.02)


def test_com_offset_moves_a_spinning_ball_alike_in_both_simulators():
    built, hand, model = backends("allegro")
    drift = {}
    for sim, backend in built.items():
        backend.set_object_com(np.array([1]), np.array([[0.01, 0.0, 0.0]]))
        qpos = object_away(np.tile(backend.qpos[0], (2, 1)), hand)
        qvel = np.zeros((2, model.nv))
        qvel[:, hand.num_joints + 5] = 20.0  # spin about z
        backend.reset(np.arange(2), qpos, qvel)
        for _ in range(2):
            backend.step(np.tile(qpos[0, : hand.num_joints], (2, 1)))
        drift[sim] = backend.qpos[:, hand.num_joints : hand.num_joints + 2] - 5.0
    for sim in built:
        assert np.abs(drift[sim][0]).max() < 1e-6 and np.linalg.norm(drift[sim][1]) > 5e-3
    np.testing.assert_allclose(drift["motrix"], drift["mujoco"], atol=2e-4)


@pytest.mark.parametrize("hand_name", ["allegro", "sharpa"])
def test_fingertip_sensors_after_a_reset_agree(hand_name):
    built, hand, model = backends(hand_name)
    tips = SceneLayout.from_model(model, hand).tip_pos
    home = home_pose(hand, model)
    readings = {}
    for sim, backend in built.items():
        start = np.tile(backend.qpos[0], (2, 1))
        start[:, : hand.num_joints] = home
        backend.reset(np.arange(2), start, np.zeros((2, model.nv)))
        backend.step(np.tile(home, (2, 1)))
        start[1, : hand.num_joints] += 0.1  # a new pose for env 1 only
        backend.reset(np.array([1]), start[1:], np.zeros((1, model.nv)))
        readings[sim] = backend.sensordata[:, tips].copy()
    np.testing.assert_allclose(readings["motrix"][1], readings["mujoco"][1], atol=1e-5)
    assert np.abs(readings["mujoco"][1] - readings["mujoco"][0]).max() > 1e-3
