"""End-to-end training throughput: env-steps/s a fit actually trains on, per algorithm (JSON).

Runs each algorithm's default config in-process (no logger, no checkpoints), at the precision ``train``
picks unless ``--trainer.precision`` is given (bf16-mixed where the CPU multiplies bfloat16 natively), for
``--iterations`` learner steps and times the env steps trained on after ``--warmup`` steps, by wall clock, so the
synchronous (PPO) and asynchronous (APPO) paths are measured the same way. Several algorithms in
one run are measured one after the other with the same num_envs and threads:

    python benchmarks/train_throughput.py --algo ppo,appo --num-envs 512 --iterations 40

Timings on a small shared CPU drift by a few percent between runs, so ``--repeats N`` measures the
algorithms N times, interleaved (ppo, appo, ppo, appo, ...), and reports each round's ratio and the
median ratio next to the per-round results.

Before the runs, the raw physics ceiling of the same task, num_envs and threads is measured
(``env_throughput.py``'s bare-backend steps/s) and each run reports its rate as a ratio to it.
Each run also reports the CPU it spent (core-seconds per 1000 trained env steps, over this process
and the APPO collector process) and the share of the cores it kept busy. With two algorithms,
``<second>_over_<first>_at_full_cpu`` is the ratio the second would reach if it kept every core busy
at its measured CPU cost per env step: once an asynchronous run is near full utilisation, only less
CPU per env step (cheaper physics or learner) can make it faster.

Any further ``--model.x=value`` style arguments are passed to every algorithm's config; prefix one
with an algorithm's name to pass it to that algorithm only (``appo:--model.num_mini_batches=1``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import lightning as L
import torch
from env_throughput import measure as measure_env_and_physics  # sibling script (benchmarks/ is on sys.path)

from unilab.cli import default_precision
from unilab.cpu_share import default_num_threads
from unilab.data.async_rollout import AsyncRolloutDataModule

PERF_KEYS = (
    "perf/collect_seconds",
    "perf/update_seconds",
    "perf/learner_wait_fraction",
    "perf/collector_env_steps_per_second",
    "policy/lag_mean",
    "policy/lag_max",
    "data/rollouts_dropped",
    "data/rollouts_reused",
    "data/rollouts_received",
)


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) another process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class PerfRecorder(L.Callback):
    """Wall-clock time, CPU time and trained env steps at the end of each learner step, plus the perf metrics.

    CPU time is this process's (learner, and for PPO also the physics threads) plus the collector
    process's when there is one, so it counts every core-second the fit spent.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, module, *args) -> None:
        metrics = trainer.callback_metrics
        row = {k: float(v) for k, v in metrics.items() if k in PERF_KEYS}
        row["time"], row["env_steps"] = time.perf_counter(), float(module.env_steps)
        row["cpu"] = row["own_cpu"] = time.process_time()
        if isinstance(trainer.datamodule, AsyncRolloutDataModule):
            row["cpu"] += process_cpu_seconds(trainer.datamodule.collector.process.pid)
        self.rows.append(row)


def composed_cli(algo: str, task: str, sim: str, arguments: list[str], trainer_defaults: dict | None = None):
    """The model, data module and trainer that ``train --algo --task --sim`` composes, built but not run."""
    from unilab.cli import built_cli
    from unilab.router import compose, config_args

    return built_cli([*config_args(compose(algo, task, sim, None)), *arguments], trainer_defaults)


def measure(
    algo: str,
    task: str,
    sim: str,
    num_envs: int,
    iterations: int,
    warmup: int,
    threads: int,
    overrides: list[str],
) -> dict:
    torch.set_num_threads(threads)
    recorder = PerfRecorder()
    cli = composed_cli(
        algo,
        task,
        sim,
        trainer_defaults={"callbacks": [recorder]},
        arguments=[
            f"--data.num_envs={num_envs}",
            f"--data.iterations_per_epoch={iterations}",
            "--trainer.max_epochs=1",
            "--trainer.logger=false",
            "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            *overrides,
        ],
    )
    cli.trainer.fit(cli.model, cli.datamodule)
    first, last = recorder.rows[warmup - 1], recorder.rows[-1]
    rows = recorder.rows[warmup:]
    env_steps, wall, cpu, own_cpu = (last[key] - first[key] for key in ("env_steps", "time", "cpu", "own_cpu"))
    result = {
        "algo": algo,
        "learner_steps_timed": len(rows),
        "env_steps_trained": int(env_steps),
        "env_steps_per_second": round(env_steps / wall, 1),
        # Core-seconds per 1000 trained env steps and the share of the cores kept busy: an algorithm
        # that keeps every core busy can only get faster by needing less CPU per env step.
        "cpu_seconds_per_1k_env_steps": round(1000 * cpu / env_steps, 4),
        "cpu_utilisation": round(cpu / (wall * default_num_threads()), 3),
    }
    if cpu > own_cpu:  # a collector process: split its share from the learner's
        result["collector_cpu_seconds_per_1k_env_steps"] = round(1000 * (cpu - own_cpu) / env_steps, 4)
    for key in PERF_KEYS:
        values = [row[key] for row in rows if key in row]
        if not values:
            continue
        name = key.split("/")[1]
        if key.startswith("perf/"):
            result[f"{name}_median"] = round(statistics.median(values), 4)
        elif key == "policy/lag_mean":
            result[name] = round(statistics.mean(values), 3)
        elif key == "policy/lag_max":
            result[name] = max(values)
        else:  # cumulative counters
            result[name] = values[-1]
    if "collect_seconds_median" in result:
        collect, update = result["collect_seconds_median"], result["update_seconds_median"]
        result["collect_fraction"] = round(collect / (collect + update), 3)
        # What an asynchronous learner gains over this algorithm if its collector steps as fast as this
        # collect phase and the update it hides costs the collector nothing (both share the same cores).
        result["async_speedup_ceiling"] = round((collect + update) / collect, 3)
    return result


def precision_of(overrides: list[str]) -> str:
    """The ``--trainer.precision`` that ``overrides`` set last (Lightning's ``32-true`` if none)."""
    value = "32-true"
    for index, argument in enumerate(overrides):
        if argument == "--trainer.precision" and index + 1 < len(overrides):
            value = overrides[index + 1]
        elif argument.startswith("--trainer.precision="):
            value = argument.split("=", 1)[1]
    return value


def overrides_for(algo: str, overrides: list[str]) -> list[str]:
    """The config arguments meant for ``algo``: unprefixed ones and those prefixed ``<algo>:``."""
    chosen = []
    for argument in overrides:
        target, colon, rest = argument.partition(":")
        if not colon or not target.isidentifier():
            chosen.append(argument)
        elif target == algo:
            chosen.append(rest)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="ppo", help="one algorithm or a comma-separated list (e.g. ppo,appo)")
    parser.add_argument("--task", default="allegro_inhand")
    parser.add_argument("--sim", default="mujoco")
    parser.add_argument("--num-envs", type=int, default=512)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=default_num_threads())
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds of all algorithms")
    args, overrides = parser.parse_known_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    # What `train` picks when none is given (bfloat16 where the CPU multiplies it natively), not Lightning's 32;
    # a --trainer.precision given on the command line comes later and wins
    overrides = [f"--trainer.precision={default_precision(None)}", *overrides]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    algos = args.algo.split(",")
    cores = default_num_threads()
    torch.set_num_threads(args.threads)
    physics = measure_env_and_physics(args.task, args.sim, args.num_envs, 50, 3, args.threads, 0.3, None)
    ceiling = physics["raw_physics_ceiling_steps_per_second"]
    setting = (args.task, args.sim, args.num_envs, args.iterations, args.warmup, args.threads)
    rounds = [[measure(algo, *setting, overrides_for(algo, overrides)) for algo in algos] for _ in range(args.repeats)]
    summary = {"task": args.task, "sim": args.sim, "num_envs": args.num_envs, "threads": args.threads, "cores": cores}
    summary["precision"] = {algo: precision_of(overrides_for(algo, overrides)) for algo in algos}
    summary["raw_physics_ceiling_steps_per_second"] = ceiling
    rate = "env_steps_per_second"
    for results in rounds:
        for run in results:
            run["ratio_to_physics_ceiling"] = round(run[rate] / ceiling, 4)
    summary["results"] = [run for results in rounds for run in results]
    summary[f"{rate}_median"] = {
        algo: round(statistics.median(results[i][rate] for results in rounds), 1) for i, algo in enumerate(algos)
    }
    if len(algos) == 2:
        key = f"{algos[1]}_over_{algos[0]}"
        ratios = [round(results[1][rate] / results[0][rate], 3) for results in rounds]
        summary[key] = round(statistics.median(ratios), 3)
        summary[f"{key}_per_round"] = ratios
        # The ratio the second algorithm would reach with every core busy at its measured CPU cost per
        # env step (first algorithm's wall time per env step / second's core-seconds per env step / cores).
        bounds = [
            round(1000 * cores / (results[0][rate] * results[1]["cpu_seconds_per_1k_env_steps"]), 3)
            for results in rounds
        ]
        summary[f"{key}_at_full_cpu"] = round(statistics.median(bounds), 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
