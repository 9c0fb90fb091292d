import numpy as np
import pytest
import torch

from unilab.tasks import TASKS, get_task
from unilab.tasks.randomization import DomainRandomization


def test_registry_is_strict():
    assert "allegro_inhand" in TASKS
    with pytest.raises(KeyError, match="allegro_inhand"):
        get_task("allegro_rotate")


def test_observation_groups_shapes_and_normalisation(make_env):
    env = make_env(num_envs=6)
    obs = env.reset(seed=0)
    assert obs["policy"].shape == (6, 105) and env.observation_dims["policy"] == 105
    assert obs["critic"].shape == (6, env.observation_dims["critic"])
    torch.testing.assert_close(obs["critic"][:, :105], obs["policy"])
    frames = obs["policy"].view(6, 3, 35)
    torch.testing.assert_close(frames[:, 0], frames[:, 2])  # all three frames equal the reset frame at reset
    joints = frames[:, -1, :16]
    assert joints.abs().max() <= 1.1  # soft joint limits allow a little overshoot, plus noise
    env.qpos[:2] = torch.stack([env.joint_lower, env.joint_upper])
    torch.testing.assert_close(env.normalized_joints(slice(0, 2)), torch.tensor([[-1.0], [1.0]]).expand(2, 16))
    torch.testing.assert_close(frames[:, -1, 16:32], env.targets)
    for _ in range(3):
        obs = env.step(torch.zeros(6, 16)).obs
    frames = obs["policy"].view(6, 3, 35)
    assert not torch.equal(frames[:, 0], frames[:, 2])


def test_reset_samples_come_from_the_cache(make_env):
    env = make_env(num_envs=8)
    env.reset(seed=3)
    hand = torch.from_numpy(env.backend.qpos[:, :16]).float()
    distances = torch.cdist(hand, env.grasps[:, :16], compute_mode="donot_use_mm_for_euclid_dist")
    assert distances.min(dim=1).values.max() < 1e-5
    torch.testing.assert_close(env.targets, hand, atol=1e-5, rtol=0)


def test_first_reset_spreads_episode_counters(make_env):
    env = make_env(num_envs=64)
    env.reset(seed=0)
    assert env.episode_step.min() >= 0 and env.episode_step.max() < 400
    assert len(torch.unique(env.episode_step)) > 20


def test_actions_move_targets_by_one_24th_and_clip_to_limits(make_env):
    env = make_env(num_envs=2)
    env.reset(seed=0)
    before = env.targets.clone()
    env.episode_step.zero_()
    env.step(torch.full((2, 16), 0.5))
    expected = torch.minimum(before + 0.5 / 24, env.target_upper)
    torch.testing.assert_close(env.targets, expected)
    for _ in range(60):
        env.step(torch.full((2, 16), 5.0))  # clipped to 1.0 per step; targets saturate at the limits
    assert torch.all(env.targets <= env.target_upper + 1e-6)


def test_dropped_ball_terminates_and_auto_reset_keeps_final_obs(make_env):
    env = make_env(num_envs=3)
    env.reset(seed=0)
    env.episode_step.zero_()
    qpos = env.backend.qpos.copy()
    qpos[1, 16:19] = [0.3, 0.3, 0.0]  # far below the termination height
    env.backend.reset(np.array([1]), qpos[1:2], np.zeros((1, env.backend.nv)))
    step = env.step(torch.zeros(3, 16))
    assert step.terminated.tolist() == [False, True, False]
    assert not step.truncated.any()
    final_ball = step.final_obs["policy"][1, -3:] + env.object_anchor
    assert final_ball[2] < 0.01
    new_ball = step.obs["policy"][1, -3:] + env.object_anchor
    assert new_ball[2] == pytest.approx(env.reset_object_pos[1, 2].item())  # reset from the cache in the same step
    assert new_ball[2] > 0.08
    torch.testing.assert_close(step.final_obs["policy"][0], step.obs["policy"][0])
    assert env.episode_step[1] == 0


def test_a_ball_that_leaves_along_randomised_gravity_is_dropped(make_env):
    env = make_env(num_envs=4, domain_randomization=DomainRandomization(gravity_direction=True))
    env.reset(seed=0)
    env.episode_step.zero_()
    gravity = torch.tensor([[0.0, 0.0, -9.81], [0.0, 0.0, 9.81], [9.81, 0.0, 0.0], [0.0, 0.0, -9.81]])
    env.randomizer.gravity[:] = gravity
    env.backend.set_gravity(np.arange(4), gravity.double().numpy())
    moves = np.array([[0.0, 0.0, 0.2], [0.0, 0.0, 0.2], [0.2, 0.0, 0.0], [0.0, 0.0, -0.2]])  # out of the hand
    qpos = env.backend.qpos.copy()
    qpos[:, 16:19] += moves
    env.backend.reset(np.arange(4), qpos, np.zeros((4, env.backend.nv)))
    step = env.step(torch.zeros(4, 16))
    # env 0 went against gravity (it would fall back); 1 up with gravity up, 2 along +x with gravity +x
    assert step.terminated.tolist() == [False, True, True, True]
    assert env.nan_resets == 0


def test_time_out_is_truncation_not_termination(make_env):
    env = make_env(num_envs=2, episode_length=5)
    env.reset(seed=0)
    env.episode_step.zero_()
    for _ in range(4):
        step = env.step(torch.zeros(2, 16))
        assert not step.truncated.any()
    step = env.step(torch.zeros(2, 16))
    assert step.truncated.tolist() == [True, True] and not step.terminated.any()
    assert env.episode_step.tolist() == [0, 0]
    metrics = env.pop_metrics()
    assert metrics["episode/length"] == 5 and metrics["episode/drop_rate"] == 0.0


def test_reward_terms_are_logged_and_weighted(make_env):
    env = make_env(num_envs=4)
    env.reset(seed=0)
    env.episode_step.zero_()
    step = env.step(torch.zeros(4, 16))
    assert not (step.terminated | step.truncated).any()
    terms = env.reward_terms()
    expected = sum(w * terms[name] for name, w in env.reward_weights.items()) * env.ctrl_dt
    torch.testing.assert_close(step.reward, expected)
    metrics = env.pop_metrics()
    for name in env.reward_term_names():
        assert f"reward/{name}" in metrics


def test_drop_term_charges_exactly_the_step_that_loses_the_object(make_env):
    env = make_env(num_envs=8, reward_weights={"drop": -20.0})
    env.reset(seed=0)
    env.episode_step.zero_()
    generator = torch.Generator().manual_seed(0)
    lost_any = False
    for _ in range(60):  # full-scale random actions shake the ball out of the hand
        step = env.step(torch.rand(8, 16, generator=generator) * 2 - 1)
        expected = torch.where(step.terminated, torch.tensor(-20.0 * env.ctrl_dt), torch.tensor(0.0))
        torch.testing.assert_close(step.reward, expected)
        lost_any |= bool(step.terminated.any())
    assert lost_any


def test_spinning_ball_earns_positive_rotate(make_env):
    env = make_env(num_envs=2)
    env.reset(seed=0)
    env.episode_step.zero_()
    qpos, qvel = env.backend.qpos.copy(), np.zeros((2, env.backend.nv))
    qpos[:, 16:19] = [0.3, 0.3, 0.3]  # free flight, no contact
    qvel[0, 16 + 5] = 2.0  # +z spin
    qvel[1, 16 + 5] = -2.0
    env.backend.reset(np.arange(2), qpos, qvel)
    env._read_state()
    env.step(torch.zeros(2, 16))
    rotate = env.reward_terms()["rotate"]
    assert rotate[0] == pytest.approx(0.5) and rotate[1] == pytest.approx(-0.5)


def test_nan_state_resets_env_and_is_counted(make_env):
    env = make_env(num_envs=2)
    env.reset(seed=0)
    env.episode_step.zero_()
    qpos = env.backend.qpos.copy()
    qpos[0, 16] = np.nan
    env.backend.reset(np.array([0]), qpos[:1], np.zeros((1, env.backend.nv)))
    step = env.step(torch.zeros(2, 16))
    assert step.terminated[0] and torch.isfinite(step.reward).all()
    assert torch.isfinite(step.obs["policy"]).all() and torch.isfinite(step.final_obs["critic"]).all()
    assert env.pop_metrics()["env/nan_resets"] >= 1


def test_seeded_envs_are_reproducible(make_env):
    rollouts = []
    for _ in range(2):
        env = make_env(num_envs=4)
        obs = env.reset(seed=7)
        generator = torch.Generator().manual_seed(1)
        for _ in range(5):
            obs = env.step(torch.rand(4, 16, generator=generator) * 2 - 1).obs
        rollouts.append(obs["critic"])
    torch.testing.assert_close(rollouts[0], rollouts[1], rtol=0, atol=0)


def test_exploded_but_finite_state_is_reset_like_a_nan(make_env):
    env = make_env(num_envs=2)
    env.reset(seed=0)
    env.episode_step.zero_()
    qvel = np.zeros((2, env.backend.nv))
    qvel[1, 3] = 1e6  # a finger joint spinning absurdly fast: finite, but its work penalty would be ~1e12
    env.backend.reset(np.arange(2), env.backend.qpos.copy(), qvel)
    step = env.step(torch.zeros(2, 16))
    assert step.terminated.tolist() == [False, True]
    assert step.reward.abs().max() < 1.0
    assert env.pop_metrics()["env/nan_resets"] == 1
    # the exploded step reaches evaluation metrics (ObjVel, Torque, Work) as zeros, not as 1e6-scale values
    for name in ("linvel", "torque", "qvel"):
        assert step.kinematics[name][1].abs().max() == 0.0
    assert step.kinematics["torque"][0].abs().max() < 100.0


def test_a_step_in_which_every_env_breaks_down_logs_no_nan(make_env):
    env = make_env(num_envs=2)
    env.reset(seed=0)
    env.pop_metrics()
    qpos = env.backend.qpos.copy()
    qpos[:, 16] = np.nan
    env.backend.reset(np.arange(2), qpos, np.zeros((2, env.backend.nv)))
    env.step(torch.zeros(2, 16))
    assert env.last_breakdowns.all()
    env.step(torch.zeros(2, 16))  # a healthy step after it
    metrics = env.pop_metrics()
    assert all(np.isfinite(value) for value in metrics.values()), metrics
    assert "reward/rotate" in metrics and metrics["env/nan_resets"] == 2


@pytest.mark.parametrize("shape", [(16,), (1, 16), (), (2, 15), (2, 16, 1)])
def test_actions_of_the_wrong_shape_are_refused(make_env, shape):
    env = make_env(num_envs=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must have shape \(num_envs, num_actions\) = \(2, 16\)"):
        env.step(torch.zeros(shape))
