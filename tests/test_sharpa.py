import mujoco
import numpy as np
import pytest
import torch

from tests.conftest import SHARPA_SCALE as SCALE
from unilab.caches import CacheError, CacheSource
from unilab.hands.sharpa import JOINT_NAMES, REFERENCE_POSE_DEG, REFERENCE_RANGES, SHARPA, map_reference_pose
from unilab.sim.scene import SceneLayout, build_scene
from unilab.tasks.randomization import DomainRandomization
from unilab.tasks.sharpa import CYLINDER, PHYSICS, SharpaInhandRotation


def make(sharpa_cache, num_envs=4, **kwargs):
    kwargs.setdefault("domain_randomization", DomainRandomization())
    return SharpaInhandRotation(
        num_envs=num_envs,
        num_threads=2,
        scale_list=[SCALE],
        cache=CacheSource(cache_dir=str(sharpa_cache), generate_count=0),
        **kwargs,
    )


def test_reference_pose_maps_into_every_joint_range_and_mirrors():
    ranges = np.array(REFERENCE_RANGES)
    pose = map_reference_pose(ranges)
    assert np.all(pose >= ranges[:, 0]) and np.all(pose <= ranges[:, 1])
    mirrored = -ranges[:, ::-1]
    symmetric = np.isclose(ranges[:, 0], -ranges[:, 1])  # abduction joints: a mirror cannot be seen in the range
    expected = np.where(symmetric, 1.0, -1.0) * np.radians(REFERENCE_POSE_DEG)
    np.testing.assert_allclose(map_reference_pose(mirrored), expected)
    with pytest.raises(ValueError, match="right_thumb_CMC_FE"):
        map_reference_pose(ranges + 0.3)


def test_default_pose_curls_fingers_toward_the_palm_on_the_offline_model():
    model = build_scene(SHARPA, CYLINDER, PHYSICS).compile()
    layout = SceneLayout.from_model(model, SHARPA)
    data = mujoco.MjData(model)
    palm = model.body("right_hand_C_MC").id

    def pad_spread(pose):
        data.qpos[layout.hand_qpos] = pose
        mujoco.mj_forward(model, data)
        pads = data.sensordata[layout.tip_pos]
        return np.linalg.norm(pads - pads.mean(axis=0), axis=1).mean(), pads

    pose = map_reference_pose(layout.joint_range)
    assert np.all(pose >= layout.joint_range[:, 0]) and np.all(pose <= layout.joint_range[:, 1])
    curled_spread, curled = pad_spread(pose)
    open_spread, _ = pad_spread(np.zeros(22))
    assert curled_spread < 0.6 * open_spread  # the five pads close around an object
    assert np.all(curled[:, 2] > data.xpos[palm][2])  # above the palm, which faces up


def test_pads_are_found_by_class_with_tactile_sensors():
    model = build_scene(SHARPA, CYLINDER, PHYSICS).compile()
    names = [model.geom(f"{body}_collision").name for body in SHARPA.fingertip_bodies]
    assert len(names) == 5 and all(model.geom(n).type == mujoco.mjtGeom.mjGEOM_CAPSULE for n in names)
    assert list(SHARPA.joint_names) == [model.actuator(i).name for i in range(model.nu)] == list(JOINT_NAMES)
    assert model.body_gravcomp[model.body("right_index_DP").id] == 1.0
    assert model.opt.timestep == pytest.approx(1 / 240)


def test_observation_groups_and_no_privileged_value_in_policy(sharpa_cache):
    env = make(sharpa_cache, domain_randomization=DomainRandomization(object_mass=True, friction=True, object_com=True))
    obs = env.reset(seed=0)
    assert {k: tuple(v.shape) for k, v in obs.items()} == {
        "policy": (4, 147),
        "critic": (4, 156),
        "privileged": (4, 9),
        "proprio_hist": (4, 30 * 49),
    }
    assert env.observation_shapes["proprio_hist"] == (30, 49)
    torch.testing.assert_close(obs["policy"], obs["proprio_hist"].view(4, 30, 49)[:, -3:].flatten(1))
    before = env.observations()
    env.randomizer.mass[:] = 0.2
    env.randomizer.friction_scale[:] = 1.2
    env.randomizer.com_offset[:] = 0.005
    after = env.observations()
    torch.testing.assert_close(before["policy"], after["policy"])
    assert not torch.equal(before["privileged"], after["privileged"])
    torch.testing.assert_close(after["critic"][:, 147:], after["privileged"])


def test_tactile_reads_contact_and_zero_without_it(sharpa_cache):
    env = make(sharpa_cache, num_envs=2, tactile_latency_probability=0.0)
    env.reset(seed=0)
    env.episode_step.zero_()
    env.step(torch.zeros(2, 22))
    assert (env.tactile[0] > 0).sum() >= 2  # cached grasps press the object with several pads
    qpos = env.backend.qpos.copy()
    qpos[:, 22:25] = [0.3, 0.3, 0.9]  # the object far away from the hand
    env.backend.reset(np.arange(2), qpos, np.zeros((2, env.backend.nv)))
    env.tactile.zero_()
    env.backend.step(env.targets.double().numpy())
    env.update_sensors()  # smoothed with the zeroed previous reading: exactly the new contact force
    assert torch.all(env.tactile == 0)


def test_z_band_termination(sharpa_cache):
    env = make(sharpa_cache, num_envs=2)
    env.reset(seed=0)
    env.episode_step.zero_()
    qpos = env.backend.qpos.copy()
    qpos[1, 24] += 0.06  # lifted 6 cm: still more than 2 cm above its reset height after one step
    env.backend.reset(np.array([1]), qpos[1:2], np.zeros((1, env.backend.nv)))
    step = env.step(torch.zeros(2, 22))
    assert step.terminated.tolist() == [False, True]


def test_each_randomisation_term_changes_what_it_should(sharpa_cache):
    config = DomainRandomization(gravity_direction=True, gains=True, friction=True, object_mass=True, object_com=True)
    env = make(sharpa_cache, num_envs=6, domain_randomization=config)
    nominal = build_scene(SHARPA, env.obj, PHYSICS, SCALE, visuals=False).compile()
    env.reset(seed=1)
    body = nominal.body("object").id
    pad = nominal.geom(f"{SHARPA.fingertip_bodies[0]}_collision").id
    cylinder = nominal.geom("object_geom").id
    for index in range(6):
        model = env.backend.model_for_env(index)
        mass_ratio = model.body_mass[body] / nominal.body_mass[body]
        assert 0.01 <= model.body_mass[body] <= 0.25
        np.testing.assert_allclose(model.body_inertia[body], nominal.body_inertia[body] * mass_ratio, rtol=1e-6)
        scale = env.randomizer.friction_scale[index].item()
        assert 0.75 <= scale <= 1.25
        assert model.geom_friction[pad, 0] == pytest.approx(nominal.geom_friction[pad, 0] * scale, rel=1e-5)
        assert model.geom_friction[cylinder, 0] == pytest.approx(nominal.geom_friction[cylinder, 0] * scale, rel=1e-5)
        np.testing.assert_allclose(model.actuator_gainprm[:, 0], env.kp[index].numpy(), rtol=1e-6)
        ratio = env.kp[index] / torch.as_tensor(env.layout.kp, dtype=torch.float32)
        assert torch.all((ratio >= 0.5) & (ratio <= 2.0))
        assert np.linalg.norm(model.opt.gravity) == pytest.approx(9.81)
        assert np.all(np.abs(model.body_ipos[body] - nominal.body_ipos[body]) <= 0.01 + 1e-9)
    gravities = np.stack([env.backend.model_for_env(i).opt.gravity for i in range(6)])
    assert np.ptp(gravities, axis=0).max() > 1.0  # directions differ between envs


def test_object_force_decays_and_is_drawn_per_env(sharpa_cache):
    env = make(sharpa_cache, num_envs=64, domain_randomization=DomainRandomization(object_force=True))
    env.reset(seed=0)
    force = env.external_object_force().copy()
    assert 0 < (np.abs(force).sum(axis=1) > 0).sum() < 64
    env.randomizer.config = DomainRandomization(object_force=True, force_probability=0.0)
    decayed = env.external_object_force()
    np.testing.assert_allclose(decayed, force * 0.9 ** (env.ctrl_dt / 0.08), rtol=1e-5)


def test_per_scale_cache_names_and_missing_scale_message(tmp_path):
    env = SharpaInhandRotation(
        num_envs=3,
        num_threads=1,
        scale_list=[0.8, 1.0, 1.2],
        cache=CacheSource(cache_dir=str(tmp_path), generate_count=0),
    )
    assert [name for name, _ in env.cache_files()] == [
        "sharpa_grasp_0.8.npy",
        "sharpa_grasp_1.npy",
        "sharpa_grasp_1.2.npy",
    ]
    assert env.env_scale.tolist() == [0, 1, 2]
    with pytest.raises(CacheError) as error:
        env.reset(seed=0)
    message = str(error.value)
    assert "0.8 (sharpa_grasp_0.8.npy)" in message and "1.2" in message and "sharpa_collect_grasps.sh" in message


@pytest.mark.parametrize(
    ("field", "value"),
    [("mass_range", (0.0, 0.25)), ("friction_range", (1.25, 0.75)), ("force_probability", 1.5), ("com_range", -0.01)],
)
def test_randomisation_ranges_are_checked_with_their_config_name(field, value):
    with pytest.raises(ValueError, match=f"domain_randomization.{field}"):
        DomainRandomization(**{field: value})


def test_an_object_falling_sideways_under_randomised_gravity_is_a_drop_not_a_blow_up(sharpa_cache):
    env = make(sharpa_cache, num_envs=2, domain_randomization=DomainRandomization(gravity_direction=True))
    env.reset(seed=0)
    env.episode_step.zero_()
    sideways = torch.tensor([[9.81, 0.0, 0.0], [0.0, -9.81, 0.0]])
    env.randomizer.gravity[:] = sideways
    env.backend.set_gravity(np.arange(2), sideways.double().numpy())
    qpos = env.backend.qpos.copy()
    qpos[:, 23] += 0.10  # out of the fingers' reach (+y), at its reset height: free to fall sideways
    env.backend.reset(np.arange(2), qpos, np.zeros((2, env.backend.nv)))
    ended = torch.zeros(2, dtype=torch.bool)
    for _ in range(20):  # 1 s: the z band alone never ends these episodes; the speed guard fired after ~0.5 s
        step = env.step(torch.zeros(2, 22))
        assert not env.last_breakdowns.any()
        ended |= step.terminated
        if ended.all():
            break
    assert ended.all() and env.nan_resets == 0
    assert env.pop_metrics()["episode/drop_rate"] == 1.0


@pytest.fixture(scope="session")
def extreme_scale_caches(tmp_path_factory):
    """Real grasp caches of the smallest and the largest cylinder (0.8 and 1.6)."""
    directory = tmp_path_factory.mktemp("sharpa_extreme_caches")
    env = SharpaInhandRotation(
        num_envs=1, num_threads=2, scale_list=[0.8, 1.6], cache=CacheSource(cache_dir=str(directory))
    )
    for index, (name, _) in enumerate(env.cache_files()):
        env.write_grasp_cache(directory / name, 4, num_envs=128, scale_index=index)
    return directory


def test_drop_rates_are_logged_per_object_scale(extreme_scale_caches):
    env = SharpaInhandRotation(
        num_envs=4,
        num_threads=2,
        scale_list=[0.8, 1.6],
        cache=CacheSource(cache_dir=str(extreme_scale_caches), generate_count=0),
        domain_randomization=DomainRandomization(),
    )
    env.reset(seed=0)
    env.episode_step[:] = torch.tensor([0, 0, env.episode_length - 1, env.episode_length - 1])
    qpos = env.backend.qpos.copy()
    qpos[:2, env.layout.object_qpos + 2] -= 0.10  # the 0.8 cylinders, 10 cm below the band: dropped next step
    env.backend.reset(np.arange(2), qpos[:2], np.zeros((2, env.backend.nv)))
    step = env.step(torch.zeros(4, 22))
    assert step.terminated.tolist() == [True, True, False, False]
    assert step.truncated.tolist() == [False, False, True, True]
    metrics = env.pop_metrics()
    assert metrics["drop_rate_by_scale/0.8"] == 1.0 and metrics["drop_rate_by_scale/1.6"] == 0.0
    assert metrics["episode/drop_rate"] == 0.5
    env.step(torch.zeros(4, 22))
    assert not any(key.startswith("drop_rate_by_scale/") for key in env.pop_metrics())  # no episode ended


@pytest.mark.parametrize("mass", [0.01, 0.25])
def test_extreme_masses_and_scales_under_full_randomisation_never_diverge(extreme_scale_caches, mass):
    from dataclasses import replace

    from unilab.tasks.randomization import FULL_RANDOMIZATION

    env = SharpaInhandRotation(
        num_envs=32,
        num_threads=2,
        scale_list=[0.8, 1.6],
        cache=CacheSource(cache_dir=str(extreme_scale_caches), generate_count=0),
        domain_randomization=replace(FULL_RANDOMIZATION, mass_range=(mass, mass)),
        seed=3,
    )
    env.reset(seed=3)
    generator = torch.Generator().manual_seed(3)
    for _ in range(300):
        env.step(torch.rand(32, 22, generator=generator) * 2 - 1)
        assert not env.last_breakdowns.any(), "an env's physics broke down"
    assert env.nan_resets == 0


def test_privileged_position_noise_reaches_the_encoder_input_only(sharpa_cache):
    exact, noisy = make(sharpa_cache, num_envs=64), make(sharpa_cache, num_envs=64, privileged_position_noise=0.004)
    for env in (exact, noisy):
        env.reset(seed=3)
        obs = env.step(torch.zeros(env.num_envs, env.num_actions)).obs
        critic_privileged = obs["critic"][:, -env.privileged_dim :]
        offset = obs["privileged"] - critic_privileged
        if env is exact:
            assert torch.equal(offset, torch.zeros_like(offset))
        else:
            assert torch.equal(offset[:, 3:], torch.zeros_like(offset[:, 3:]))  # physics and scale stay exact
            assert 0.003 < offset[:, :3].std() < 0.005  # 192 draws of N(0, 0.004^2)
            torch.testing.assert_close(critic_privileged, env.privileged())  # the critic reads the exact position
