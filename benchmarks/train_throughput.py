"""End-to-end training throughput: env-steps/s of a PPO fit with the collection / update split (JSON).

Runs the default config's PPO for ``--iterations`` iterations in-process (no logger, no
checkpoints) and reports medians after ``--warmup`` iterations.

    python benchmarks/train_throughput.py --algo ppo --num-envs 512 --iterations 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import lightning as L
import torch

from unilab.sim.mujoco import default_num_threads

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class PerfRecorder(L.Callback):
    """Keeps the per-iteration perf metrics the algorithm logs."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, *args) -> None:
        metrics = trainer.callback_metrics
        self.rows.append({k: float(v) for k, v in metrics.items() if k.startswith("perf/")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--task", default="allegro_inhand")
    parser.add_argument("--sim", default="mujoco")
    parser.add_argument("--num-envs", type=int, default=512)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=default_num_threads())
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    from unilab.cli import UnilabCLI

    recorder = PerfRecorder()
    config = CONFIGS / args.algo / args.task / f"{args.sim}.yaml"
    cli = UnilabCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        trainer_defaults={"callbacks": [recorder]},
        args=[
            "--config",
            str(config),
            f"--data.num_envs={args.num_envs}",
            f"--data.env.num_threads={args.threads}",
            f"--data.iterations_per_epoch={args.iterations}",
            "--trainer.max_epochs=1",
            "--trainer.logger=false",
            "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ],
    )
    cli.trainer.fit(cli.model, cli.datamodule)
    rows = recorder.rows[args.warmup :]
    collect = statistics.median(r["perf/collect_seconds"] for r in rows)
    update = statistics.median(r["perf/update_seconds"] for r in rows)
    steps = cli.datamodule.batch_size
    print(
        json.dumps(
            {
                "algo": args.algo,
                "task": args.task,
                "sim": args.sim,
                "num_envs": args.num_envs,
                "iterations_timed": len(rows),
                "env_steps_per_iteration": steps,
                "env_steps_per_second": round(steps / (collect + update), 1),
                "collect_seconds": round(collect, 4),
                "update_seconds": round(update, 4),
                "collect_fraction": round(collect / (collect + update), 3),
                "collection_env_steps_per_second": round(steps / collect, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
