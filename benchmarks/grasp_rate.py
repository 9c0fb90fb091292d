"""Grasp collection speed: accepted grasps per second and the acceptance rate (JSON).

Also the env-steps/s of the collection loop against the raw physics ceiling measured in the same
run: the rate of the backend's step calls alone (``ratio`` = share of the time spent in physics).

Examples: ``python benchmarks/grasp_rate.py --grasps 300`` (Allegro) and
``python benchmarks/grasp_rate.py --task sharpa_inhand_grasp --scale 1.0 --grasps 30``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os

import torch

from unilab.cpu_share import default_num_threads
from unilab.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="allegro_inhand", help="rotation task or its *_grasp name")
    parser.add_argument("--sim", default="mujoco")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--grasps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=default_num_threads())
    parser.add_argument("--scale", type=float, default=1.0, help="object scale (multi-scale tasks)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    task = args.task.removesuffix("_grasp")
    cls = get_task(task)
    kwargs = {"scale_list": [args.scale]} if "scale_list" in inspect.signature(cls).parameters else {}
    env = cls(num_envs=1, sim=args.sim, num_threads=args.threads, **kwargs)
    env.collect_grasps(args.grasps, num_envs=args.num_envs)
    stats = env.last_collection_stats
    print(
        json.dumps(
            {
                "task": args.task,
                "object_scale": env.object_scales[0],
                "sim": args.sim,
                "num_envs": args.num_envs,
                "accepted": stats.accepted,
                "candidates": stats.candidates,
                "acceptance_rate": round(stats.acceptance_rate, 4),
                "grasps_per_second": round(stats.grasps_per_second, 2),
                "seconds": round(stats.seconds, 2),
                "env_steps_per_second": round(stats.physics_env_steps / stats.seconds, 1),
                "raw_physics_ceiling_steps_per_second": round(stats.physics_env_steps / stats.physics_seconds, 1),
                "ratio": round(stats.physics_seconds / stats.seconds, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
