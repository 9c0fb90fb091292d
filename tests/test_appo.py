"""APPO: V-trace by hand, the shared-memory ring, collector failure handling, and a real fit."""

from __future__ import annotations

import copy
import functools
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.multiprocessing as mp

from tests.helpers.async_faults import FailingAllegro, hold_the_ring_lock_and_die, write_numbered_rollouts
from unilab.algos.appo import APPO
from unilab.algos.losses import gaussian_kl
from unilab.algos.targets import vtrace
from unilab.caches import CacheSource
from unilab.cli import main
from unilab.data.async_rollout import AsyncRolloutDataModule, CollectorError
from unilab.data.record import RolloutLayout
from unilab.data.ring import RolloutRing
from unilab.data.rollout import RolloutDataModule
from unilab.models.actor_critic import ActorCritic
from unilab.router import compose, config_args

REPO = Path(__file__).resolve().parents[1]
CONFIG = config_args(compose("appo", "allegro_inhand", "mujoco", None))  # --config <part> ...


def column(*values: float) -> torch.Tensor:
    return torch.tensor(values).unsqueeze(1)


# V-trace ------------------------------------------------------------------------------------------
def test_vtrace_matches_a_three_step_example_worked_by_hand():
    # gamma 0.9; ratios pi/mu = 2, 0.5, 1 -> rho = c = 1, 0.5, 1; V = 0.5, 1, 1.5; bootstrap V(x3) = 2
    rewards, values, next_values = column(1, 2, 3), column(0.5, 1.0, 1.5), column(1.0, 1.5, 2.0)
    log_rhos = torch.log(column(2.0, 0.5, 1.0))
    no = torch.zeros(3, 1, dtype=torch.bool)
    targets, advantages = vtrace(rewards, values, next_values, no, no, log_rhos, gamma=0.9)
    # deltas: 1(1 + .9*1 - .5) = 1.4; .5(2 + .9*1.5 - 1) = 1.175; 1(3 + .9*2 - 1.5) = 3.3
    # v2 - V2 = 3.3; v1 - V1 = 1.175 + .9*.5*3.3 = 2.66; v0 - V0 = 1.4 + .9*1*2.66 = 3.794
    torch.testing.assert_close(targets, column(4.294, 3.66, 4.8))
    # A_t = rho_t (r_t + .9 v_{t+1} - V_t): 1 + .9*3.66 - .5; .5(2 + .9*4.8 - 1); 3 + .9*2 - 1.5
    torch.testing.assert_close(advantages, column(3.794, 2.66, 3.3))


def test_vtrace_with_a_terminal_step_worked_by_hand():
    rewards, values, next_values = column(1, 2, 3), column(0.5, 1.0, 1.5), column(1.0, 1.5, 2.0)
    log_rhos = torch.log(column(2.0, 0.5, 1.0))
    terminal = column(0, 1, 0).bool()  # the episode ends at t=1; t=2 starts a new one
    targets, advantages = vtrace(rewards, values, next_values, terminal, terminal, log_rhos, gamma=0.9)
    # delta1 = .5(2 - 1) = .5 (no bootstrap); v1 - V1 = .5 (trace cut); v0 - V0 = 1.4 + .9*.5 = 1.85
    torch.testing.assert_close(targets, column(2.35, 1.5, 4.8))
    # A0 = 1 + .9*1.5 - .5 = 1.85; A1 = .5(2 - 1) = .5; A2 = 3.3
    torch.testing.assert_close(advantages, column(1.85, 0.5, 3.3))


def test_vtrace_on_policy_equals_n_step_returns():
    generator = torch.Generator().manual_seed(0)
    steps, envs, gamma = 6, 5, 0.97
    rewards = torch.randn(steps, envs, generator=generator)
    values = torch.randn(steps, envs, generator=generator)
    next_values = torch.randn(steps, envs, generator=generator)
    dones = torch.rand(steps, envs, generator=generator) < 0.25
    terminated = dones & (torch.rand(steps, envs, generator=generator) < 0.5)
    # V(x_{t+1}) inside an episode; the time-out bootstrap V(final_obs) where it ended
    next_values[:-1] = torch.where(dones[:-1], next_values[:-1], values[1:])
    targets, _ = vtrace(rewards, values, next_values, terminated, dones, torch.zeros(steps, envs), gamma, lam=1.0)
    expected = torch.zeros(steps, envs)
    for env in range(envs):
        for t in range(steps):  # discounted sum up to the episode end or the rollout end, then bootstrap
            total, discount = 0.0, 1.0
            for k in range(t, steps):
                total += discount * float(rewards[k, env])
                discount *= gamma
                if dones[k, env] or k == steps - 1:
                    total += discount * float(next_values[k, env]) * (not terminated[k, env])
                    break
            expected[t, env] = total
    torch.testing.assert_close(targets, expected)


# Ring buffer --------------------------------------------------------------------------------------
def test_ring_under_a_slow_reader_counts_drops_and_never_tears_a_rollout():
    layout = RolloutLayout(horizon=4, num_envs=64, obs_dims={"policy": 32, "critic": 40}, num_actions=8,
                           bootstrap_group="critic")  # fmt: skip
    context = mp.get_context("spawn")
    ring = RolloutRing(layout, size=3, context=context)
    writer = context.Process(target=write_numbered_rollouts, args=(ring, 400), daemon=True)
    writer.start()
    into = layout.allocate()
    seen = []
    deadline = time.time() + 60
    while (writer.is_alive() or ring.counters()["pending"]) and time.time() < deadline:
        if not ring.try_read(into):
            time.sleep(0.001)
            continue
        k = int(into["stamp"][1])
        for name, tensor in into.items():
            if name not in ("stamp", "action_std") and tensor.dtype != torch.bool:
                assert torch.all(tensor == k), f"torn rollout: {name} mixes values of several rollouts"
        assert int(into["stamp"][0]) == k
        seen.append(k)
        time.sleep(0.01)  # a slow learner
    writer.join(timeout=10)
    counters = ring.counters()
    assert writer.exitcode == 0
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert counters["written"] == 400 and counters["read"] == len(seen)
    assert counters["dropped"] > 0
    assert counters["read"] + counters["dropped"] + counters["pending"] == counters["written"]


# Collector failures -------------------------------------------------------------------------------
def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a reaped-but-listed zombie does not count
        return stat.read().split()[2] != "Z"


def small_datamodule(cache_dir: Path, env_class=None, **kwargs) -> AsyncRolloutDataModule:
    from unilab.tasks.allegro import AllegroInhandRotation

    cache = CacheSource(cache_dir=str(cache_dir), generate_count=0)
    factory = functools.partial(env_class or AllegroInhandRotation, cache=cache, **kwargs)
    return AsyncRolloutDataModule(factory, num_envs=8, horizon=4, iterations_per_epoch=1, collector_threads=1,
                                  startup_timeout=120, hang_timeout=3)  # fmt: skip


def small_policy(datamodule: AsyncRolloutDataModule) -> ActorCritic:
    dims = datamodule.observation_dims
    return ActorCritic(dims["policy"], dims["critic"], datamodule.num_actions, (32,), (32,))


def test_the_collector_process_and_the_training_process_make_the_same_rollouts(cache_dir):
    # One loop, two places: APPO's spawned collector and PPO's in-process data module, same env factory,
    # seed and weights, give the same records bit for bit (actions, log-probs, time-out observations ...).
    remote = small_datamodule(cache_dir, episode_length=6)  # short episodes: time-outs inside the rollouts
    torch.manual_seed(0)
    policy = small_policy(remote)
    remote.start_collector(policy, "critic", learner_buffers=3)
    try:
        received = [copy.deepcopy(remote.next_rollout()) for _ in range(3)]
    finally:
        remote.stop_collector()
    local = RolloutDataModule(remote.env_factory, num_envs=8, horizon=4, iterations_per_epoch=1, seed=remote.seed)
    local.set_actor(policy, torch.device("cpu"), "critic")
    made = [copy.deepcopy(local.next_rollout()) for _ in range(1 + max(r.sequence for r in received))]
    assert any(bool(r.truncated.any()) for r in received)
    for rollout in received:
        twin = made[rollout.sequence].tensors
        for key, value in rollout.tensors.items():
            if key not in ("stamp", "collect_seconds"):
                assert torch.equal(value, twin[key]), key


def test_collector_exception_reaches_the_learner_with_its_traceback(cache_dir):
    datamodule = small_datamodule(cache_dir, FailingAllegro, fail_after=6)
    datamodule.start_collector(small_policy(datamodule), "critic", learner_buffers=2)
    pid = datamodule.collector.pid
    rollout = datamodule.next_rollout()  # 4 steps succeed
    assert rollout.env_steps == 32 and rollout.version == 0
    started = time.time()
    with pytest.raises(CollectorError, match="(?s)died.*FloatingPointError: injected physics failure"):
        while True:
            datamodule.next_rollout()
    assert time.time() - started < 30
    datamodule.stop_collector()
    assert not alive(pid)


def assert_reads_fail_quickly(datamodule: AsyncRolloutDataModule, reason: str) -> None:
    """The learner's reads raise ``CollectorError`` matching ``reason`` within 10 s instead of waiting on."""
    started = time.time()
    with pytest.raises(CollectorError, match=reason):
        for _ in range(100):
            datamodule.next_rollout()
    assert time.time() - started < 10


def test_a_hung_collector_is_detected(cache_dir):
    datamodule = small_datamodule(cache_dir)
    datamodule.start_collector(small_policy(datamodule), "critic", learner_buffers=2)
    pid = datamodule.collector.pid
    datamodule.next_rollout()
    os.kill(pid, signal.SIGSTOP)
    assert_reads_fail_quickly(datamodule, "no progress for 3 s")
    datamodule.stop_collector()
    assert not alive(pid)


def test_a_lock_left_held_by_a_killed_process_fails_the_read_instead_of_hanging(cache_dir):
    datamodule = small_datamodule(cache_dir)
    datamodule.start_collector(small_policy(datamodule), "critic", learner_buffers=2)
    datamodule.next_rollout()
    holder = mp.get_context("spawn").Process(target=hold_the_ring_lock_and_die, args=(datamodule.collector.ring,))
    holder.start()
    holder.join(timeout=60)
    assert holder.exitcode == -signal.SIGKILL
    assert_reads_fail_quickly(datamodule, "no progress for 3 s")
    datamodule.stop_collector()


def appo_args(cache_dir: Path, *extra: str) -> list[str]:
    return [
        "fit",
        *CONFIG,
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--data.num_envs=16",
        "--data.horizon=4",
        "--data.collector_threads=1",
        f"--data.env.cache.cache_dir={cache_dir}",
        "--data.env.cache.generate_count=0",
        "--data.env.num_threads=1",
        "--model.actor_hidden_dims=[32, 32]",
        "--model.critic_hidden_dims=[32, 32]",
        *extra,
    ]


def shared_memory_files() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def test_killing_the_collector_fails_the_fit_quickly_and_leaves_nothing_behind(tmp_path, monkeypatch, cache_dir):
    monkeypatch.chdir(tmp_path)
    before = shared_memory_files()
    record = tmp_path / "killed.json"
    killer = (
        f"--trainer.callbacks+={{'class_path': 'tests.helpers.async_faults.KillCollectorAfter', "
        f"'init_args': {{'steps': 3, 'record': '{record}'}}}}"
    )
    with pytest.raises(CollectorError, match=r"died \(exit code -9\)"):
        main(appo_args(cache_dir, "--data.iterations_per_epoch=50", killer))
    killed = json.loads(record.read_text())
    assert time.time() - killed["killed_at"] < 30
    assert not alive(killed["pid"])
    assert multiprocessing.active_children() == []
    assert shared_memory_files() <= before


def test_appo_fit_logs_lag_drops_and_reuse_then_evaluates(tmp_path, monkeypatch, cache_dir):
    monkeypatch.chdir(tmp_path)
    before = shared_memory_files()
    cli = main(appo_args(cache_dir, "--data.iterations_per_epoch=6", "--model.replays_per_step=1"))
    model = cli.model
    assert int(model.iteration) == 6 and int(model.env_steps) == 6 * 4 * 16
    assert int(model.rollouts_reused) == 5  # every step after the first replays one older rollout
    metrics = cli.trainer.callback_metrics
    for key in ("policy/lag_mean", "policy/lag_max", "perf/learner_wait_fraction", "data/rollouts_dropped",
                "perf/collector_env_steps_per_second", "reward/rotate"):  # fmt: skip
        assert key in metrics, key
    assert float(metrics["policy/lag_max"]) >= 1  # replays are at least one version behind
    assert multiprocessing.active_children() == []
    assert shared_memory_files() <= before
    (run,) = (tmp_path / "logs" / "appo" / "AllegroInhandRotation").iterdir()
    assert (run / "checkpoints" / "last.ckpt").exists()
    main(["eval", "--algo", "appo", "--task", "allegro_inhand", "--sim", "mujoco", "--load-run", "-1",
          f"--data.env.cache.cache_dir={cache_dir}", "--data.test_episodes=4"])  # fmt: skip
    assert (run / "eval.json").exists()


# Learner step -------------------------------------------------------------------------------------
def tiny_appo(**overrides) -> APPO:
    torch.manual_seed(0)
    options = dict(actor_hidden_dims=[16], critic_hidden_dims=[16], num_learning_epochs=1, num_mini_batches=1)
    module = APPO({"policy": 7, "critic": 9}, 3, **(options | overrides))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    module.trainer = trainer
    return module


def random_batch(steps: int = 5, envs: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    randn = functools.partial(torch.randn, generator=generator)
    terminated = torch.rand(steps, envs, generator=generator) < 0.15
    return {
        "obs/policy": randn(steps, envs, 7),
        "obs/critic": randn(steps, envs, 9),
        "actions": randn(steps, envs, 3),
        "log_prob": randn(steps, envs) - 4.0,
        "rewards": randn(steps, envs),
        "terminated": terminated,
        "dones": terminated | (torch.rand(steps, envs, generator=generator) < 0.15),
        "final_obs": randn(steps, envs, 9),
        "last_obs": randn(envs, 9),
    }


def test_single_update_folds_the_target_pass_without_changing_the_step():
    # One pass in one minibatch: the forward pass with gradients doubles as the target pass. The step
    # must equal the one taken with a separate no-grad target pass (same targets, nothing leaking
    # gradients through the V-trace targets).
    folded, separate = tiny_appo(schedule="fixed"), tiny_appo(schedule="fixed")
    data = random_batch()
    folded._single_update(data, folded.configure_optimizers())
    separate._minibatch_updates(data, separate.configure_optimizers())
    for (name, a), b in zip(folded.policy.named_parameters(), separate.policy.parameters(), strict=True):
        assert not torch.equal(a, tiny_appo().policy.get_parameter(name)), name  # the step moved it
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize(("overrides", "factor"), [({}, 1.1), ({"lr_factor": 1.3}, 1.3)])
def test_single_update_drives_the_adaptive_lr_by_the_kl_of_its_own_step(overrides, factor):
    module = tiny_appo(desired_kl=10.0, **overrides)  # any real step is far below the target -> lr x factor
    data = random_batch()
    obs = module._flat_obs(data)
    before = copy.deepcopy(module.policy).distribution(obs)
    optimizer = module.configure_optimizers()
    lr = optimizer.param_groups[0]["lr"]
    stats = module._single_update(data, optimizer)
    after = module.policy.distribution(obs)
    expected = gaussian_kl(before.mean, before.stddev, after.mean, after.stddev)
    assert stats["policy/kl"] > 0
    torch.testing.assert_close(torch.tensor(stats["policy/kl"]), expected.detach())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(factor * lr)


def test_ctrl_c_on_appo_stops_quietly_and_keeps_the_run(tmp_path, cache_dir):
    import signal
    import subprocess
    import sys
    import time

    command = [sys.executable, "-m", "unilab", *appo_args(cache_dir, "--trainer.max_epochs=1000")]
    log = tmp_path / "appo.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(  # SIGINT as Ctrl-C even if this test run was started with it ignored
            command,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob("logs/appo/*/*/checkpoints/last.ckpt")) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole process group, collector included
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    (run,) = tmp_path.glob("logs/appo/*/*")
    meta = json.loads((run / "run.json").read_text())
    assert meta["sessions"][-1]["interrupted"] == "KeyboardInterrupt" and meta["env_steps"] > 0
