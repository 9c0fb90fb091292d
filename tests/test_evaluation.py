import pytest
import torch

from unilab.evaluation import EpisodeRecord, evaluate, format_table, summarize


def record(omega_z, alive, dropped, linvel=None, torque=None, qvel=None, max_steps=400):
    steps, episodes = omega_z.shape
    return EpisodeRecord(
        omega_z=omega_z,
        linvel=torch.zeros(steps, episodes, 3) if linvel is None else linvel,
        torque=torch.zeros(steps, episodes, 2) if torque is None else torque,
        qvel=torch.zeros(steps, episodes, 2) if qvel is None else qvel,
        alive=alive,
        dropped=dropped,
        ctrl_dt=0.05,
        max_steps=max_steps,
    )


def test_constant_spin_for_a_full_episode():
    metrics = summarize(record(torch.full((400, 1), 0.3), torch.ones(400, 1, dtype=torch.bool), torch.tensor([False])))
    assert metrics["RotR"] == pytest.approx(120.0)
    assert metrics["rotation_speed"] == pytest.approx(0.3)
    assert metrics["TTF"] == pytest.approx(1.0) and metrics["drop_rate"] == 0.0


def test_dropped_episode_counts_only_its_alive_steps_and_clips_rotation():
    omega = torch.stack([torch.full((400,), 0.8), torch.full((400,), 0.2)], dim=1)
    alive = torch.ones(400, 2, dtype=torch.bool)
    alive[100:, 0] = False  # episode 0 dropped after 100 steps
    metrics = summarize(record(omega, alive, torch.tensor([True, False])))
    assert metrics["RotR"] == pytest.approx((100 * 0.5 + 400 * 0.2) / 2)
    assert metrics["TTF"] == pytest.approx((100 / 400 + 1.0) / 2)
    assert metrics["rotation_speed"] == pytest.approx((0.8 + 0.2) / 2)  # unclipped signed speed
    assert metrics["drop_rate"] == pytest.approx(0.5)


def test_velocity_torque_and_work_are_means_over_alive_steps():
    alive = torch.ones(2, 1, dtype=torch.bool)
    linvel = torch.tensor([[[0.1, 0.0, 0.0]], [[0.0, 0.2, 0.0]]])
    torque = torch.tensor([[[1.0, -1.0]], [[2.0, 0.0]]])
    qvel = torch.tensor([[[1.0, 1.0]], [[0.5, 0.0]]])
    metrics = summarize(record(torch.zeros(2, 1), alive, torch.tensor([False]), linvel, torque, qvel, max_steps=2))
    assert metrics["ObjVel"] == pytest.approx(100 * (0.01 + 0.04) / 2)
    assert metrics["Torque"] == pytest.approx((2.0 + 2.0) / 2)
    assert metrics["Work"] == pytest.approx((0.0**2 + 1.0**2) / 2)


def test_evaluation_on_real_physics_is_deterministic(make_env):
    env = make_env(num_envs=4, episode_length=30)
    zero_policy = lambda obs: torch.zeros(obs["policy"].shape[0], 16)  # noqa: E731
    first = evaluate(env, zero_policy, seed=5)["overall"]
    second = evaluate(env, zero_policy, seed=5)["overall"]
    assert first == second and first["episodes"] == 4
    assert 0.0 < first["TTF"] <= 1.0
    assert "RotR" in format_table({"overall": first})
