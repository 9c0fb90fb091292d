"""A trained checkpoint in training episodes, frozen: drop rates of the fit's rollout loop with no updates (JSON).

A fit's ``episode/drop_rate`` comes from a policy that changes after every rollout; ``unilab eval`` runs a
frozen checkpoint on the seeded manifest. This runs the frozen checkpoint through the loop a fit collects
with (the actor the algorithm hands its data module: the student's mean actions, PPO's sampled ones; envs
reset one by one as their episodes end), so the two can be told apart:

    python benchmarks/closed_loop.py --algo hora_distill --task sharpa_inhand --load-run <run> --env-steps 500000

It skips the first ``episode_length`` control steps (by then every env has begun an episode inside the
loop) and prints the drop rate pooled over the episodes that end after them, overall and per object
scale, as a fit logs it. Further ``--x.y=value`` arguments override the run's config (e.g. ``--data.seed=5``).
Runs of ``ppo`` and ``hora_distill`` only: APPO collects in another process.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import yaml

from unilab import runs
from unilab.cpu_share import default_num_threads
from unilab.router import RouterError, checkpoint_file, find_run

ALGOS = ("ppo", "hora_distill")
KEYS = ("seed_everything", "trainer", "model", "data", "optimizer", "lr_scheduler")


def frozen_cli(run, checkpoint, overrides: list[str]):
    """The run's model and data module, weights restored from ``checkpoint`` by a short ``validate``."""
    from unilab.cli import built_cli

    # The fit's config less the fit subcommand's own keys (ckpt_path, weights_only): this builds without one
    config = {key: value for key, value in yaml.safe_load((run / "config.yaml").read_text()).items() if key in KEYS}
    cli = built_cli(
        [
            f"--config={yaml.safe_dump(config)}",
            "--trainer.logger=false",
            "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--data.val_episodes=1",
            *overrides,
        ]
    )
    # Nothing of the run may be rewritten: keep Lightning's own callbacks only
    cli.trainer.callbacks[:] = [c for c in cli.trainer.callbacks if not type(c).__module__.startswith("unilab")]
    if hasattr(cli.model, "restoring_from"):  # a HORA student rebuilds its teacher from the checkpoint
        cli.model.restoring_from = str(checkpoint)
    cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=str(checkpoint), verbose=False)
    return cli


def drop_rate(dropped: torch.Tensor, ended: torch.Tensor) -> dict:
    """Drops per ended episode (None when none ended) and the number of episodes."""
    return {"drop_rate": round(float(dropped / ended), 4) if ended > 0 else None, "episodes": int(ended)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", required=True, choices=ALGOS)
    parser.add_argument("--task", required=True)
    parser.add_argument("--sim", default="mujoco")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--load-run", required=True, help="run folder name, or -N for the N-th newest")
    parser.add_argument("--checkpoint", default="last", help="last, best or an epoch number")
    parser.add_argument("--env-steps", type=int, required=True, help="env-steps counted after the warm-up")
    args, overrides = parser.parse_known_args()
    if args.env_steps < 1:
        parser.error(f"--env-steps must be >= 1, got {args.env_steps}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(default_num_threads())
    try:
        run = find_run(runs.run_algo(args.algo, args.profile), args.task, args.sim, args.load_run)
        checkpoint = checkpoint_file(run, args.checkpoint)
    except RouterError as error:
        parser.error(str(error))
    cli = frozen_cli(run, checkpoint, overrides)
    model, data = cli.model, cli.datamodule
    model.eval()
    with torch.no_grad():
        model.on_fit_start()  # hands the data module the actor a fit collects with; nothing trains
        env = data.env
        scales = len(env.object_scales)
        episodes, drops = torch.zeros(scales), torch.zeros(scales)
        warmup, counted, started = env.episode_length, 0, time.perf_counter()
        control_steps = 0
        while counted < args.env_steps:
            rollout = data.next_rollout()
            for t in range(rollout.dones.shape[0]):
                control_steps += 1
                if control_steps <= warmup:
                    continue
                counted += env.num_envs
                episodes.index_add_(0, env.env_scale, rollout.dones[t].float())
                drops.index_add_(0, env.env_scale, rollout.terminated[t].float())
    per_scale = {f"{scale:g}": drop_rate(drops[i], episodes[i]) for i, scale in enumerate(env.object_scales)}
    result = {
        "run": str(run.resolve()),
        "checkpoint": str(checkpoint.resolve()),
        "env_steps": counted,
        "warmup_control_steps": warmup,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "overall": drop_rate(drops.sum(), episodes.sum()),
        "per_scale": per_scale,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
