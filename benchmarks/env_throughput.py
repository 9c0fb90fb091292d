"""Env throughput against the raw physics ceiling of the same scene, in one process and one run.

Each round snapshots the simulator state, times ``env.step`` for ``--steps`` control steps, then
restores the snapshot and times the bare backend (one backend step per control step, same N,
same substeps, the same targets replayed, no task code). Prints JSON with medians and the ratio.
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

from unilab.sim.mujoco import default_num_threads
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
    env_rates, raw_rates = [], []
    everyone = np.arange(num_envs)
    for _ in range(rounds):
        snapshot = backend.qpos.copy(), backend.qvel.copy()
        targets = np.zeros((steps, num_envs, env.num_actions))
        actions = [torch.randn(num_envs, env.num_actions, generator=generator) * action_std for _ in range(steps)]
        started = time.perf_counter()
        for t in range(steps):
            env.step(actions[t])
            targets[t] = env.targets.numpy()
        env_rates.append(steps * num_envs / (time.perf_counter() - started))
        after = backend.qpos.copy(), backend.qvel.copy()
        backend.reset(everyone, *snapshot)
        started = time.perf_counter()
        for t in range(steps):
            backend.step(targets[t])
        raw_rates.append(steps * num_envs / (time.perf_counter() - started))
        backend.reset(everyone, *after)
    env_median, raw_median = statistics.median(env_rates), statistics.median(raw_rates)
    return {
        "task": task,
        "sim": sim,
        "num_envs": num_envs,
        "substeps": backend.substeps,
        "object_scales": list(env.object_scales),
        "threads": threads,
        "env_steps_per_second": round(env_median, 1),
        "raw_physics_ceiling_steps_per_second": round(raw_median, 1),
        "ratio": round(env_median / raw_median, 4),
        "env_rounds": [round(r, 1) for r in env_rates],
        "raw_rounds": [round(r, 1) for r in raw_rates],
    }


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
