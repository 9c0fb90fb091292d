"""Env throughput against the physics ceiling of the same scene, in one process and one run.

Each round snapshots the simulator state, times ``env.step`` for ``--steps`` control steps, then
restores the snapshot and replays the same targets (and object forces) twice without task code:
- ``uninterrupted_rollout``: ONE ``mujoco.rollout`` call over all control steps and substeps (the
  physics ceiling: no per-call copies, no Python between control steps; MuJoCo only);
- ``raw_physics_ceiling`` (per call): one backend step per control step, as the env makes them.
``ratio`` is env-steps/s over the uninterrupted rollout (over the per-call figure where there is no
such call); ``per_call_ratio`` over the per-call figure. ``seconds_per_control_step`` splits
``env.step`` into the backend call, resets and the rest of the task code.
With ``--sim motrix`` the same task is then measured on MuJoCo in the same run, side by side.

    python benchmarks/env_throughput.py --num-envs 256
    python benchmarks/env_throughput.py --task sharpa_inhand --sim motrix --num-envs 256
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import time
from dataclasses import replace

import numpy as np
import torch

from unilab.cpu_share import default_num_threads
from unilab.tasks import get_task


def measure(
    task: str, sim: str, num_envs: int, steps: int, rounds: int, threads: int, action_std: float, cache_dir: str | None
) -> dict:
    cls = get_task(task)
    default_source = inspect.signature(cls).parameters["cache"].default
    source = replace(default_source, cache_dir=cache_dir) if cache_dir else default_source
    env = cls(num_envs=num_envs, sim=sim, num_threads=threads, cache=source)
    env.reset(seed=0)
    generator = torch.Generator().manual_seed(0)
    backend = env.backend
    for _ in range(5):  # warm-up
        env.step(torch.randn(num_envs, env.num_actions, generator=generator) * action_std)
    env_rates, raw_rates, whole_rates = [], [], []
    split: dict = {"backend": 0.0, "resets": 0.0, "total": 0.0, "force": None}
    timed_backend_step, timed_reset = timers(env, split)
    everyone = np.arange(num_envs)
    uninterrupted = UninterruptedRollout(backend, steps) if sim == "mujoco" else None
    forces = np.zeros((steps, num_envs, 3))
    for _ in range(rounds):
        snapshot = backend.qpos.copy(), backend.qvel.copy()
        full_state = backend.full_physics_state() if uninterrupted else None
        targets = np.zeros((steps, num_envs, env.num_actions))
        actions = [torch.randn(num_envs, env.num_actions, generator=generator) * action_std for _ in range(steps)]
        env.backend.step, env._reset_envs = timed_backend_step, timed_reset
        started = time.perf_counter()
        for t in range(steps):
            env.step(actions[t])
            targets[t] = env.targets.numpy()
            if split.get("force") is not None:
                forces[t] = split["force"]  # the object force this step applied
        split["total"] += time.perf_counter() - started
        del env.backend.step, env._reset_envs  # back to the class methods
        env_rates.append(steps * num_envs / (time.perf_counter() - started))
        after = backend.qpos.copy(), backend.qvel.copy()
        force_now = forces if env.randomizer.config.object_force else None
        backend.reset(everyone, *snapshot)
        started = time.perf_counter()
        for t in range(steps):
            backend.step(targets[t], None if force_now is None else force_now[t])
        raw_rates.append(steps * num_envs / (time.perf_counter() - started))
        if uninterrupted:
            whole_rates.append(uninterrupted.rate(full_state, targets, force_now))
        backend.reset(everyone, *after)
    env_median, raw_median = statistics.median(env_rates), statistics.median(raw_rates)
    whole_median = statistics.median(whole_rates) if whole_rates else None
    control_steps = rounds * steps
    return {
        "task": task,
        "sim": sim,
        "num_envs": num_envs,
        "substeps": backend.substeps,
        "object_scales": list(env.object_scales),
        "threads": threads,
        "env_steps_per_second": round(env_median, 1),
        "uninterrupted_rollout_steps_per_second": None if whole_median is None else round(whole_median, 1),
        "raw_physics_ceiling_steps_per_second": round(raw_median, 1),
        "ratio": round(env_median / (whole_median or raw_median), 4),
        "per_call_ratio": round(env_median / raw_median, 4),
        "seconds_per_control_step": {
            "env_step": round(split["total"] / control_steps, 5),
            "backend_step": round(split["backend"] / control_steps, 5),
            "resets": round(split["resets"] / control_steps, 5),
            "task_code": round((split["total"] - split["backend"] - split["resets"]) / control_steps, 5),
        },
        "env_rounds": [round(r, 1) for r in env_rates],
        "uninterrupted_rounds": [round(r, 1) for r in whole_rates],
        "raw_rounds": [round(r, 1) for r in raw_rates],
    }


def timers(env, split: dict[str, float]):
    """Instance-level wrappers of the backend step and the env's reset that add their time to ``split``."""
    backend_step, reset = env.backend.step, env._reset_envs

    def timed_backend_step(ctrl, object_force=None):
        split["force"] = object_force
        started = time.perf_counter()
        backend_step(ctrl, object_force)
        split["backend"] += time.perf_counter() - started

    def timed_reset(env_ids):
        started = time.perf_counter()
        reset(env_ids)
        split["resets"] += time.perf_counter() - started

    return timed_backend_step, timed_reset


class UninterruptedRollout:
    """The same targets and forces as one ``mujoco.rollout`` call over every control step and substep."""

    def __init__(self, backend, steps: int) -> None:
        import mujoco
        from mujoco import rollout

        self.backend, self.steps = backend, steps
        model = backend.scale_models[0]
        n, substeps = backend.num_envs, backend.substeps
        spec = mujoco.mjtState.mjSTATE_CTRL
        if backend._xfrc is not None:
            spec |= mujoco.mjtState.mjSTATE_XFRC_APPLIED
        self.control_spec = int(spec)
        self.xfrc_start = backend.nu + 6 * backend._object_body
        nstate = mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        self.control = np.zeros((n, steps * substeps, mujoco.mj_stateSize(model, spec)))
        self.state = np.zeros((n, steps * substeps, nstate))
        self.sensordata = np.zeros((n, steps * substeps, model.nsensordata))
        self.datas = [mujoco.MjData(model) for _ in range(backend.num_threads)]
        self.pool = rollout.Rollout(nthread=backend.num_threads)

    def rate(self, initial_state: np.ndarray, targets: np.ndarray, forces: np.ndarray | None) -> float:
        backend, substeps = self.backend, self.backend.substeps
        self.control[:, :, : backend.nu] = np.repeat(targets.transpose(1, 0, 2), substeps, axis=1)
        if forces is not None:
            start = self.xfrc_start
            self.control[:, :, start : start + 3] = np.repeat(forces.transpose(1, 0, 2), substeps, axis=1)
        started = time.perf_counter()
        self.pool.rollout(
            backend._step_models,
            self.datas,
            initial_state=initial_state,
            control=self.control,
            control_spec=self.control_spec,
            skip_checks=True,
            nstep=self.steps * substeps,
            state=self.state,
            sensordata=self.sensordata,
        )
        return self.steps * backend.num_envs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="allegro_inhand")
    parser.add_argument("--sim", default="mujoco")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50, help="control steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=default_num_threads())
    parser.add_argument("--action-std", type=float, default=0.3, help="std of the random actions")
    parser.add_argument("--cache-dir", default=None, help="grasp-cache folder (default: the task's)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    result = measure(
        args.task, args.sim, args.num_envs, args.steps, args.rounds, args.threads, args.action_std, args.cache_dir
    )
    if args.sim != "mujoco":
        reference = measure(
            args.task, "mujoco", args.num_envs, args.steps, args.rounds, args.threads, args.action_std, args.cache_dir
        )
        result["mujoco"] = {key: reference[key] for key in ("env_steps_per_second", "ratio")}
        result[f"{args.sim}_over_mujoco_env_steps"] = round(
            result["env_steps_per_second"] / reference["env_steps_per_second"], 3
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
