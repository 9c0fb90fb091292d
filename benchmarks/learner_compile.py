"""Does ``torch.compile`` make the learner cheaper on this CPU? Eager against compiled, one JSON line.

Builds the default actor-critic of an algorithm and task (real observation sizes, hidden layers and
minibatch size, through the same config composition as ``train``) and times the learner's two hot
pieces on random inputs of the fit's shapes:

- ``act``: the sampling forward pass on ``num_envs`` rows, once per control step;
- ``update``: one minibatch step (log-prob, entropy, value, the clipped PPO losses, backward, gradient
  clipping, Adam), ``num_learning_epochs x num_mini_batches`` times per iteration.

Eager and compiled (``torch.compile`` of the act and of the loss function; backward through
AOTAutograd) are timed in interleaved rounds on two copies of the same weights, and the medians and
their ratios are reported with the one-off compile time. No physics runs after the env has been built
once, so no other process should be running while it measures:

    python benchmarks/learner_compile.py --algo ppo --task allegro_inhand --rounds 7
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time

import torch
from train_throughput import composed_cli  # sibling script (benchmarks/ is on sys.path)

from unilab.algos.losses import clipped_surrogate_loss, clipped_value_loss
from unilab.cpu_share import default_num_threads


def loss_of(policy, obs, actions, old_log_prob, advantages, old_values, returns, clip, value_coef, entropy_coef):
    """The PPO minibatch loss, as ``PPO.training_step`` forms it."""
    log_prob, entropy, values, _ = policy.evaluate_actions(obs, actions)
    surrogate = clipped_surrogate_loss(log_prob, old_log_prob, advantages, clip)
    value_loss = clipped_value_loss(values, old_values, returns, clip)
    return surrogate + value_coef * value_loss - entropy_coef * entropy.mean()


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="ppo", choices=("ppo",), help="the update timed is PPO's loss")
    parser.add_argument("--task", default="allegro_inhand")
    parser.add_argument("--sim", default="mujoco")
    parser.add_argument("--threads", type=int, default=default_num_threads())
    parser.add_argument("--rounds", type=int, default=7, help="interleaved eager/compiled rounds")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per piece and round")
    args, overrides = parser.parse_known_args()
    if args.rounds < 1 or args.calls < 1 or args.threads < 1:
        parser.error("--rounds, --calls and --threads must be >= 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    # The algorithm's module as train composes it (the env is built once, for the observation sizes).
    cli = composed_cli(args.algo, args.task, args.sim, ["--trainer.logger=false", *overrides])
    module, data = cli.model, cli.datamodule
    hp = module.hparams
    rows, minibatch = data.env.num_envs, data.batch_size // hp.num_mini_batches
    generator = torch.Generator().manual_seed(0)
    dims = hp.observation_dims
    groups = module.policy.input_groups

    def observations(n: int) -> dict[str, torch.Tensor]:
        return {group: torch.randn(n, dims[group], generator=generator) for group in groups}

    acting_obs = observations(rows)
    batch = (
        observations(minibatch),
        torch.randn(minibatch, hp.num_actions, generator=generator),
        torch.randn(minibatch, generator=generator) - 20.0,  # old log-probs of the stored actions
        torch.randn(minibatch, generator=generator),  # advantages
        torch.randn(minibatch, generator=generator),  # old values
        torch.randn(minibatch, generator=generator),  # returns
    )
    constants = (hp.clip_param, hp.value_loss_coef, hp.entropy_coef)

    def pieces(policy, act, loss):
        optimizer = torch.optim.Adam(policy.parameters(), lr=1e-4)

        def update() -> None:
            optimizer.zero_grad()
            loss(policy, *batch, *constants).backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), hp.max_grad_norm)
            optimizer.step()

        def acting() -> None:
            with torch.no_grad():
                act(acting_obs, torch.Generator().manual_seed(1))

        return acting, update

    eager_policy, compiled_policy = module.policy, copy.deepcopy(module.policy)
    eager = pieces(eager_policy, eager_policy.act, loss_of)
    compiled = pieces(compiled_policy, torch.compile(compiled_policy.act), torch.compile(loss_of))
    started = time.perf_counter()
    for piece in compiled:  # first calls compile (act, forward and backward graphs)
        piece()
        piece()
    compile_seconds = time.perf_counter() - started
    for piece in eager:
        piece()

    keys = [f"{kind}_{name}" for kind in ("eager", "compiled") for name in ("act", "update")]
    samples: dict[str, list[float]] = {key: [] for key in keys}
    for _ in range(args.rounds):
        for kind, (acting, update) in (("eager", eager), ("compiled", compiled)):
            samples[f"{kind}_act"].append(timed(acting, args.calls))
            samples[f"{kind}_update"].append(timed(update, args.calls))
    medians = {key: statistics.median(values) for key, values in samples.items()}
    updates_per_iteration = hp.num_learning_epochs * hp.num_mini_batches
    steps_per_iteration = data.batch_size // rows  # control steps (act calls) per iteration
    per_iteration = {
        kind: steps_per_iteration * medians[f"{kind}_act"] + updates_per_iteration * medians[f"{kind}_update"]
        for kind in ("eager", "compiled")
    }
    result = {
        "algo": args.algo,
        "task": args.task,
        "threads": args.threads,
        "act_rows": rows,
        "minibatch_rows": minibatch,
        "updates_per_iteration": updates_per_iteration,
        "compile_seconds": round(compile_seconds, 2),
        **{f"{key}_ms": round(1000 * value, 3) for key, value in medians.items()},
        "act_speedup": round(medians["eager_act"] / medians["compiled_act"], 3),
        "update_speedup": round(medians["eager_update"] / medians["compiled_update"], 3),
        "learner_seconds_per_iteration_eager": round(per_iteration["eager"], 4),
        "learner_seconds_per_iteration_compiled": round(per_iteration["compiled"], 4),
        "learner_speedup": round(per_iteration["eager"] / per_iteration["compiled"], 3),
        "iterations_to_repay_compile": (
            round(compile_seconds / (per_iteration["eager"] - per_iteration["compiled"]), 1)
            if per_iteration["eager"] > per_iteration["compiled"]
            else None
        ),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
