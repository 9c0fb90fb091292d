import mujoco
import numpy as np
import pytest

from unilab.hands import ALLEGRO, get_hand
from unilab.sim import contiguous_assignment, make_backend
from unilab.sim.mujoco import MujocoBackend
from unilab.sim.scene import ObjectSpec, PhysicsOptions, SceneError, SceneLayout, build_scene, hand_fingerprint

BALL = ObjectSpec(pos=(0.012, -0.006, 0.105))


@pytest.fixture(scope="module")
def model():
    return build_scene(ALLEGRO, BALL, PhysicsOptions()).compile()


@pytest.fixture(scope="module")
def dr_model():
    """The scene as a task with COM randomisation builds it."""
    return build_scene(ALLEGRO, BALL, PhysicsOptions(), movable_object_com=True).compile()


def test_scene_has_hand_ball_gains_and_tip_sensors(model):
    layout = SceneLayout.from_model(model, ALLEGRO)
    assert model.nu == 16 and model.nq == 16 + 7
    assert model.opt.timestep == pytest.approx(0.005)
    assert model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    np.testing.assert_allclose(model.actuator_gainprm[:, 0], 1.0)
    np.testing.assert_allclose(model.actuator_biasprm[:, :3], np.tile([0.0, -1.0, -0.1], (16, 1)))
    assert layout.tip_pos.shape == (4, 3) and layout.tip_contact.shape == (4, 4)
    ball = model.geom("object_geom")
    assert ball.size[0] == pytest.approx(0.04) and model.body("object").mass[0] == pytest.approx(0.05)
    np.testing.assert_allclose(ball.friction, [2.0, 0.05, 0.01])
    for body in ALLEGRO.fingertip_bodies:
        np.testing.assert_allclose(model.geom(f"{body}_collision").friction, [2.0, 0.05, 0.01])


def test_unknown_hand_lists_valid_names():
    with pytest.raises(KeyError, match="allegro"):
        get_hand("shadow")


def test_missing_menagerie_model_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("MENAGERIE_ROOT", str(tmp_path))
    with pytest.raises(SceneError, match="MENAGERIE_ROOT"):
        build_scene(ALLEGRO, BALL, PhysicsOptions())


def test_fingerprint_ignores_gains_but_not_geometry(model):
    other_gains = build_scene(ALLEGRO, BALL, PhysicsOptions(substeps=3)).compile()
    other_ball = build_scene(ALLEGRO, ObjectSpec(size=(0.03,), pos=BALL.pos), PhysicsOptions()).compile()
    assert hand_fingerprint(model, ALLEGRO) == hand_fingerprint(other_gains, ALLEGRO)
    assert hand_fingerprint(model, ALLEGRO) != hand_fingerprint(other_ball, ALLEGRO)


def home_state(backend: MujocoBackend, num_envs: int) -> tuple[np.ndarray, np.ndarray]:
    qpos = np.tile(backend.qpos[0], (num_envs, 1))
    qpos[:, :16] = ALLEGRO.home_array()
    return qpos, np.zeros((num_envs, backend.nv))


def test_backend_equals_sequential_mj_step_bit_for_bit(model):
    # The batch keeps each env's whole integration state (warm start included) between control steps, so
    # several control steps equal one MjData stepped by mj_step, exactly, and the sensors are mj_step's.
    backend = MujocoBackend([model], num_envs=3, substeps=10, num_threads=2)
    qpos, qvel = home_state(backend, 3)
    qpos[1, :16] += 0.1
    backend.reset(np.arange(3), qpos, qvel)
    ctrl = np.tile(ALLEGRO.home_array(), (3, 1))
    ctrl[1] += 0.05
    data = mujoco.MjData(model)
    data.qpos[:] = qpos[1]
    for _ in range(3):
        backend.step(ctrl)
        data.ctrl[:] = ctrl[1]
        for _ in range(10):
            mujoco.mj_step(model, data)
    np.testing.assert_array_equal(backend.qpos[1], data.qpos)
    np.testing.assert_array_equal(backend.qvel[1], data.qvel)
    np.testing.assert_array_equal(backend.sensordata[1], data.sensordata)
    assert not np.allclose(backend.qpos[0], backend.qpos[1])


def test_backend_matches_todays_mujoco_rollout_to_solver_tolerance(model):
    # The trajectories of the earlier backend (one mujoco.rollout call per control step, which restarts
    # the solver without its warm start) to solver tolerance.
    from mujoco import rollout

    backend = MujocoBackend([model], num_envs=2, substeps=10, num_threads=2)
    qpos, qvel = home_state(backend, 2)
    qpos[1, :16] += 0.1
    backend.reset(np.arange(2), qpos, qvel)
    state = backend.full_physics_state()
    ctrl = np.tile(ALLEGRO.home_array(), (2, 1))
    pool = rollout.Rollout(nthread=1)
    for _ in range(5):
        backend.step(ctrl)
        states, _ = pool.rollout(model, mujoco.MjData(model), initial_state=state, control=ctrl[:, None, :], nstep=10)
        state = states[:, -1]
    spec_qpos = slice(1, 1 + model.nq)
    np.testing.assert_allclose(backend.qpos, state[:, spec_qpos], atol=1e-6)


def test_subset_reset_leaves_other_envs(model):
    backend = MujocoBackend([model], num_envs=4, substeps=2, num_threads=2)
    qpos, qvel = home_state(backend, 4)
    backend.reset(np.arange(4), qpos, qvel)
    backend.step(np.tile(ALLEGRO.home_array(), (4, 1)))
    before = backend.qpos.copy()
    backend.reset(np.array([2]), qpos[:1] + 0.01, qvel[:1])
    np.testing.assert_allclose(backend.qpos[[0, 1, 3]], before[[0, 1, 3]])
    np.testing.assert_allclose(backend.qpos[2], qpos[0] + 0.01)


def test_reset_refreshes_fingertip_sensors(model):
    backend = MujocoBackend([model], num_envs=2, substeps=2, num_threads=2)
    qpos, qvel = home_state(backend, 2)
    backend.reset(np.arange(2), qpos, qvel)
    backend.step(np.tile(ALLEGRO.home_array(), (2, 1)))
    qpos[1, :16] += 0.2  # a different hand pose: the fingertips move
    backend.reset(np.array([1]), qpos[1:], qvel[1:])
    data = mujoco.MjData(model)
    data.qpos[:] = qpos[1]
    mujoco.mj_forward(model, data)
    tips = SceneLayout.from_model(model, ALLEGRO).tip_pos
    np.testing.assert_allclose(backend.sensordata[1, tips], data.sensordata[tips], atol=1e-12)
    assert np.abs(backend.sensordata[0, tips] - data.sensordata[tips]).max() > 1e-3  # env 0 kept its own


def test_domain_randomisation_setters_change_only_their_env(dr_model):
    model = dr_model
    backend = make_backend("mujoco", [model], num_envs=2, substeps=1, num_threads=2)
    body = model.body("object").id
    backend.set_object_mass(np.array([1]), np.array([0.1]))
    backend.set_friction_scale(np.array([1]), np.array([0.5]))
    backend.set_actuator_gains(np.array([1]), np.full((1, 16), 2.0), np.full((1, 16), 0.3))
    backend.set_gravity(np.array([1]), np.array([[9.81, 0.0, 0.0]]))
    backend.set_object_com(np.array([1]), np.array([[0.01, 0.0, 0.0]]))
    nominal, changed = backend.model_for_env(0), backend.model_for_env(1)
    assert changed.body_mass[body] == pytest.approx(0.1) and nominal.body_mass[body] == pytest.approx(0.05)
    np.testing.assert_allclose(changed.body_inertia[body], nominal.body_inertia[body] * 2.0)
    np.testing.assert_allclose(changed.geom_friction[:, 0], nominal.geom_friction[:, 0] * 0.5)
    assert changed.actuator_biasprm[0, 1] == pytest.approx(-2.0) and changed.actuator_biasprm[0, 2] == pytest.approx(
        -0.3
    )
    np.testing.assert_allclose(changed.opt.gravity, [9.81, 0.0, 0.0])
    np.testing.assert_allclose(changed.body_ipos[body] - nominal.body_ipos[body], [0.01, 0.0, 0.0])
    # Gravity along +x really moves the free ball sideways in env 1 only.
    qpos, qvel = home_state(backend, 2)
    qpos[:, 16:19] = [0.3, 0.3, 0.3]  # away from the hand
    backend.reset(np.arange(2), qpos, qvel)
    for _ in range(20):
        backend.step(np.tile(ALLEGRO.home_array(), (2, 1)))
    assert backend.qpos[1, 16] > 0.3 + 1e-3 and backend.qpos[0, 16] == pytest.approx(0.3, abs=1e-6)


def test_mass_and_com_randomisation_reach_the_dynamics(dr_model):
    model = dr_model
    backend = make_backend("mujoco", [model], num_envs=2, substeps=5, num_threads=2)
    body = model.body("object").id
    backend.set_object_mass(np.array([1]), np.array([0.2]))
    backend.set_object_com(np.array([1]), np.array([[0.01, 0.0, 0.0]]))
    changed = backend.model_for_env(1)
    # Constants MuJoCo derives from the masses follow them (a stale subtree mass made heavy objects blow up).
    assert changed.body_subtreemass[body] == pytest.approx(0.2)
    assert changed.body_subtreemass[0] == pytest.approx(model.body_subtreemass[0] + 0.15)
    # A spinning free ball whose centre of mass is off its frame origin moves that origin around the COM.
    qpos, qvel = home_state(backend, 2)
    qpos[:, 16:19] = [0.3, 0.3, 0.3]  # away from the hand
    qvel[:, 21] = 20.0  # spin about z
    backend.reset(np.arange(2), qpos, qvel)
    for _ in range(4):
        backend.step(np.tile(ALLEGRO.home_array(), (2, 1)))
    sideways = backend.qpos[:, 16:18] - 0.3
    np.testing.assert_allclose(sideways[0], 0.0, atol=1e-9)
    assert np.linalg.norm(sideways[1]) > 5e-3


def test_com_randomisation_of_a_simple_object_body_says_how_to_build_the_scene(model):
    backend = make_backend("mujoco", [model], num_envs=1, substeps=1, num_threads=2)
    with pytest.raises(RuntimeError, match="movable_object_com=True"):
        backend.set_object_com(np.array([0]), np.array([[0.01, 0.0, 0.0]]))


def test_unknown_simulator_lists_choices(model):
    with pytest.raises(ValueError, match="mujoco"):
        make_backend("bullet", [model], 1, 1)


def test_envs_are_assigned_to_scales_contiguously():
    assert contiguous_assignment(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert contiguous_assignment(5, 2).tolist() == [0, 0, 0, 1, 1]


def test_scene_without_visuals_keeps_inertia_and_dynamics(model):
    lean = build_scene(ALLEGRO, BALL, PhysicsOptions(), visuals=False).compile()
    assert lean.nmeshvert < model.nmeshvert and lean.ngeom < model.ngeom
    np.testing.assert_allclose(lean.body_mass, model.body_mass)
    np.testing.assert_allclose(lean.body_inertia, model.body_inertia)
    assert hand_fingerprint(lean, ALLEGRO) == hand_fingerprint(model, ALLEGRO)
    trajectories = []
    for m in (model, lean):
        data = mujoco.MjData(m)
        data.qpos[:16] = ALLEGRO.home_array()
        data.qpos[16:19] = BALL.pos
        data.ctrl[:] = ALLEGRO.home_array()
        for _ in range(100):
            mujoco.mj_step(m, data)
        trajectories.append(data.qpos.copy())
    np.testing.assert_allclose(trajectories[0], trajectories[1], atol=1e-9)


def test_sparse_jacobian_is_a_speed_setting_only(model):
    sparse = build_scene(ALLEGRO, BALL, PhysicsOptions(jacobian="sparse")).compile()
    assert sparse.opt.jacobian == mujoco.mjtJacobian.mjJAC_SPARSE
    assert model.opt.jacobian == mujoco.mjtJacobian.mjJAC_AUTO
    finals = []
    for m in (model, sparse):
        data = mujoco.MjData(m)
        data.qpos[:16] = ALLEGRO.home_array()
        data.qpos[16:19] = BALL.pos
        data.ctrl[:] = ALLEGRO.home_array() + 0.2  # squeeze: the fingers press into the ball
        for _ in range(200):
            mujoco.mj_step(m, data)
        finals.append((data.qpos.copy(), data.ncon))
    assert finals[0][1] > 0  # the comparison covers contact solving
    np.testing.assert_allclose(finals[0][0], finals[1][0], atol=1e-8)


def test_unknown_jacobian_lists_choices():
    with pytest.raises(SceneError, match=r"jacobian one of \['auto', 'dense', 'sparse'\].*'banded'"):
        build_scene(ALLEGRO, BALL, PhysicsOptions(jacobian="banded"))
