"""``python -m unilab play --run <run> [--sim mujoco|motrix] [--episodes N]``: drive a simulator with the
torch-free runner (``policy.onnx`` + ``policy.json``), as a robot would, and print the HORA metrics.

The simulator plays the robot: each control period the runner gets the readings a robot's drivers
deliver (joint positions in rad with the task's sensor noise, and the task's other frame channels),
and its joint targets are sent back as the action. The episodes are the run's ``test`` manifest
(``data.test_episodes`` seeded episodes), so on the training simulator the figures equal ``eval``'s up to
float32 round-off; ``max_target_difference`` says how far the runner's targets strayed from the
simulator's own integration of the same actions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml

from unilab.deploy.contract import ContractError
from unilab.deploy.runner import PolicyRunner
from unilab.evaluation import METRICS, evaluate, format_table
from unilab.runs import task_of_run, trained_sim


def check_contract_against_env(contract: dict, env) -> None:
    """Refuse a policy whose task, joint order or frame layout is not the simulator's."""
    if env.task_name != contract["task"]:
        raise ContractError(f"policy.json is for task {contract['task']!r}, the run builds {env.task_name!r}")
    if list(contract["joint_names"]) != list(env.hand.joint_names):
        raise ContractError(
            f"policy.json's joint order {contract['joint_names']} is not the model's actuator order "
            f"{list(env.hand.joint_names)}; export the policy again with this model"
        )
    if contract["frame"]["size"] != env.frame_dim:
        raise ContractError(f"policy.json's frame has {contract['frame']['size']} values, the task's {env.frame_dim}")


def readings(env, contract: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """What a robot's drivers deliver this period, taken from the simulator's newest observation frame."""
    frame = env.history[:, -1].numpy()
    joints = env.num_actions
    lower, upper = env.joint_lower.numpy(), env.joint_upper.numpy()
    joint_positions = lower + (frame[:, :joints] + 1.0) / 2.0 * (upper - lower)
    channels, start = {}, 2 * joints
    for channel in contract["frame"]["channels"][2:]:
        channels[channel["name"]] = frame[:, start : start + channel["size"]]
        start += channel["size"]
    return joint_positions, channels


def play(run: Path, sim: str | None, episodes: int | None, seed: int | None) -> dict:
    """Run the manifest with the runner; the metrics, the largest target difference and the settings."""
    runner = PolicyRunner.load(run)
    sim = sim or trained_sim(run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    data = config["data"]["init_args"]
    episodes = episodes or int(data.get("test_episodes", 64))
    seed = int(data.get("eval_seed", 12345)) if seed is None else seed
    env = task_of_run(run, episodes, sim=sim)
    env.load_grasps(episodes, env.episode_length)
    check_contract_against_env(runner.contract, env)
    worst = 0.0

    def act(obs: dict[str, torch.Tensor]) -> torch.Tensor:
        nonlocal worst
        started = (env.episode_step == 0).numpy()
        targets = env.targets.numpy()
        if runner.targets is None:
            runner.reset(targets)
        else:  # both integrated the same actions since the last reset; a reset env starts from its new pose
            if (~started).any():
                worst = max(worst, float(np.abs(runner.targets - targets)[~started].max()))
            if started.any():
                runner.reset_envs(np.flatnonzero(started), targets[started])
        joint_positions, channels = readings(env, runner.contract)
        runner.step(joint_positions, **channels)
        return torch.from_numpy(runner.last_action)

    result = evaluate(env, act, seed)
    result["max_target_difference"] = worst
    result["played"] = {"run": str(run), "sim": sim, "trained_on": trained_sim(run), "episodes": episodes}
    return result


def play_main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m unilab play", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="run folder holding policy.onnx and policy.json")
    parser.add_argument("--sim", choices=("mujoco", "motrix"), default=None, help="default: the training simulator")
    parser.add_argument("--episodes", type=int, default=None, help="default: the run's data.test_episodes")
    parser.add_argument("--seed", type=int, default=None, help="default: the run's data.eval_seed")
    args = parser.parse_args(argv)
    if args.episodes is not None and args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    if not (args.run / "config.yaml").is_file():
        parser.error(f"{args.run} is not a run folder (no config.yaml)")
    result = play(args.run, args.sim, args.episodes, args.seed)
    rows = {"play": result["overall"]}
    report = args.run / "eval.json"
    if report.is_file() and result["played"]["sim"] == result["played"]["trained_on"]:
        evaluated = json.loads(report.read_text()).get("overall", {})
        if all(name in evaluated for name in METRICS):
            rows["eval"] = evaluated
    print(format_table(rows))
    print(
        f"played {result['played']['episodes']} episodes on {result['played']['sim']} "
        f"(trained on {result['played']['trained_on']}); max |runner targets - simulator targets| = "
        f"{result['max_target_difference']:.3g} rad"
    )
    return result
