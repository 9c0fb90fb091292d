"""Physics stability: exploded or NaN resets per 100 k env-steps under full DR and random actions (JSON).

Steps a task from its cached grasps with uniform random actions in [-1, 1] and counts the envs the
NaN/explosion guard resets, overall, per object scale and per object-mass decile of the DR range.

    python benchmarks/stability.py --task sharpa_inhand --steps 100000
    python benchmarks/stability.py --task sharpa_inhand --sim motrix --steps 100000
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import time
from dataclasses import replace

import numpy as np
import torch

from unilab.cpu_share import default_num_threads
from unilab.tasks import get_task
from unilab.tasks.randomization import FULL_RANDOMIZATION


def per_100k(count: float, steps: float) -> float:
    return round(1e5 * count / max(steps, 1.0), 3)


def measure(task: str, sim: str, num_envs: int, steps: int, threads: int, seed: int, cache_dir: str | None) -> dict:
    cls = get_task(task)
    parameters = inspect.signature(cls).parameters
    kwargs = {"domain_randomization": FULL_RANDOMIZATION} if "domain_randomization" in parameters else {}
    if cache_dir:
        kwargs["cache"] = replace(parameters["cache"].default, cache_dir=cache_dir)
    env = cls(num_envs=num_envs, sim=sim, num_threads=threads, seed=seed, **kwargs)
    env.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    mass_low, mass_high = env.randomizer.config.mass_range
    deciles = 10
    scales = len(env.object_scales)
    steps_by_scale, resets_by_scale = np.zeros(scales), np.zeros(scales)
    steps_by_mass, resets_by_mass = np.zeros(deciles), np.zeros(deciles)
    env_scale = env.env_scale.numpy()
    iterations = max(1, -(-steps // num_envs))
    started = time.perf_counter()
    for _ in range(iterations):
        mass = env.randomizer.mass.numpy()  # the mass each env steps with (before this step's resets)
        decile = np.clip(((mass - mass_low) / (mass_high - mass_low) * deciles).astype(int), 0, deciles - 1)
        env.step(torch.rand(num_envs, env.num_actions, generator=generator) * 2 - 1)
        bad = env.last_breakdowns.numpy()
        np.add.at(steps_by_scale, env_scale, 1)
        np.add.at(resets_by_scale, env_scale[bad], 1)
        np.add.at(steps_by_mass, decile, 1)
        np.add.at(resets_by_mass, decile[bad], 1)
    seconds = time.perf_counter() - started
    total_steps, total_resets = iterations * num_envs, int(resets_by_scale.sum())
    edges = np.linspace(mass_low, mass_high, deciles + 1)
    return {
        "task": task,
        "sim": sim,
        "num_envs": num_envs,
        "seed": seed,
        "env_steps": total_steps,
        "seconds": round(seconds, 1),
        "exploded_or_nan_resets": total_resets,
        "resets_per_100k_env_steps": per_100k(total_resets, total_steps),
        "per_scale": {
            f"{scale:g}": per_100k(resets_by_scale[i], steps_by_scale[i]) for i, scale in enumerate(env.object_scales)
        },
        "per_mass_decile": {
            f"{edges[i]:.3f}-{edges[i + 1]:.3f} kg": per_100k(resets_by_mass[i], steps_by_mass[i])
            for i in range(deciles)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sharpa_inhand")
    parser.add_argument("--sim", default="mujoco")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100_000, help="env-steps in total (over all envs)")
    parser.add_argument("--threads", type=int, default=default_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="grasp-cache folder (default: the task's)")
    args = parser.parse_args()
    if args.num_envs < 1 or args.steps < 1 or args.threads < 1:
        parser.error("--num-envs, --steps and --threads must be >= 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    print(json.dumps(measure(args.task, args.sim, args.num_envs, args.steps, args.threads, args.seed, args.cache_dir)))


if __name__ == "__main__":
    main()
