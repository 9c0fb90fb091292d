"""``train`` / ``eval``: the reference tool's flags, routed onto the LightningCLI (no second config system).

    train --algo ppo --task allegro_inhand --sim mujoco [--profile P] [--resume] [overrides]
    eval  --algo ppo --task allegro_inhand --sim mujoco --load-run -1 [--checkpoint last|best|N]

Trailing ``--a.b value`` arguments pass through to LightningCLI; the reference tool's common
``key=value`` overrides are translated, any other ``key=value`` is rejected.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from unilab import runs
from unilab.errors import UnilabError

CONFIG_ROOT = Path(__file__).resolve().parents[1] / "configs"
REFERENCE_KEYS = {
    "algo.num_envs": "--data.num_envs",
    "algo.max_iterations": None,  # -> --trainer.max_epochs (rounded up to whole epochs)
    "algo.load_run": None,  # -> --load-run
    "env.grasp_cache_path": "--data.env.cache.path",
    "env.domain_rand.scale_list": "--data.env.scale_list",
    "training.no_play": None,  # unilab never opens a viewer after training: accepted, nothing to do
}
COLLECT_KEYS = {
    "algo.num_envs": "--num_envs",
    "env.grasp_collection_target": "--count",
    "env.grasp_cache_path": "--output",
    "env.domain_rand.scale_list": "--env.scale_list",
    "training.no_play": None,
}


class RouterError(UnilabError, ValueError):
    """Bad flags or combinations; the message lists what exists."""


@dataclass(frozen=True)
class Route:
    """What the router decided: the LightningCLI (or collect) argument list, and commands to run after it."""

    args: list[str]
    then: tuple[list[str], ...] = ()


def choices(root: Path = CONFIG_ROOT) -> dict[str, list[str]]:
    """What can be composed: algorithms, tasks, simulators and profiles (the file names of their parts)."""
    sims = ["mujoco", *sorted(p.name for p in (root / "sims").iterdir() if p.is_dir())]
    return {
        "algo": sorted(p.stem for p in (root / "algos").glob("*.yaml")),
        "task": sorted(p.stem for p in (root / "tasks").glob("*.yaml")),
        "sim": sims,
        "profile": sorted(p.stem for p in (root / "profiles").glob("*.yaml")),
        "grasp task": sorted(f"{p.name}_grasp" for p in (root / "grasp").iterdir() if p.is_dir()),
    }


def compose(algo: str, task: str, sim: str, profile: str | None, root: Path = CONFIG_ROOT) -> list[Path]:
    """The config files of one training setup, in the order LightningCLI merges them.

    ``algos/<algo>.yaml`` (model, data module, trainer), ``tasks/<task>.yaml`` (the env and its sizes),
    ``algos/<algo>/<task>.yaml`` where an algorithm needs other settings on a task, ``sims/<sim>/<task>.yaml``
    for a simulator other than MuJoCo, ``profiles/<profile>.yaml``. Each states only what differs.
    """
    available = choices(root)
    for kind, value in (("algo", algo), ("task", task), ("sim", sim)) + ((("profile", profile),) if profile else ()):
        if value not in available[kind]:
            raise RouterError(f"unknown --{kind} {value!r}; available: {', '.join(available[kind])}")
    parts = [root / "algos" / f"{algo}.yaml", root / "tasks" / f"{task}.yaml", root / "algos" / algo / f"{task}.yaml"]
    parts += [root / "sims" / sim / f"{task}.yaml"]
    if sim != "mujoco" and not parts[-1].is_file():
        raise RouterError(f"--sim {sim} has no settings for task {task} ({parts[-1]})")
    if profile:
        parts.append(root / "profiles" / f"{profile}.yaml")
    return [part for part in parts if part.is_file()]


def grasp_config(task: str, sim: str, root: Path = CONFIG_ROOT) -> Path:
    """``grasp/<task>/<sim>.yaml`` for ``--task <task>_grasp``."""
    path = root / "grasp" / task.removesuffix("_grasp") / f"{sim}.yaml"
    if not path.is_file():
        raise RouterError(f"no grasp collection config {path}; grasp tasks: {', '.join(choices(root)['grasp task'])}")
    return path


def config_args(parts: list[Path]) -> list[str]:
    """``--config <part>`` for each part, for LightningCLI."""
    return [arg for part in parts for arg in ("--config", str(part))]


def composed_value(parts: list[Path], *keys: str, default=None):
    """The value the composed config gives ``keys`` (the last part that sets it wins)."""
    value = default
    for part in parts:
        node = yaml.safe_load(part.read_text()) or {}
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            value = node
    return value


def task_class_name(task: str) -> str:
    from unilab.tasks import get_task

    return get_task(task).__name__


def find_run(algo: str, task: str, sim: str, selector: str, root: Path | None = None) -> Path:
    """Run folder of ``task`` (a registered task name): ``-1`` is the newest, else a folder name or path."""
    try:
        return runs.find_run(algo, task_class_name(task), sim, selector, root)
    except runs.RunError as error:
        raise RouterError(str(error)) from None


def checkpoint_file(run: Path, which: str) -> Path:
    """``last``, ``best`` or an epoch number N of a run (``unilab.runs.checkpoint_file``)."""
    try:
        return runs.checkpoint_file(run, which)
    except runs.RunError as error:
        raise RouterError(str(error)) from None


def translate(extra: list[str], table: dict[str, str | None], parts: list[Path]) -> tuple[list[str], str | None]:
    """Pass ``--x`` arguments through; translate reference ``key=value``; return (args, load_run)."""
    args: list[str] = []
    load_run = None
    for item in extra:
        if item.startswith("-") or "=" not in item:
            args.append(item)
            continue
        key, value = item.split("=", 1)
        if key not in table:
            raise RouterError(
                f"unsupported override {key!r}; supported key=value overrides: {', '.join(table)}. "
                "Anything else goes as a LightningCLI flag, e.g. --data.num_envs 64"
            )
        if key == "algo.load_run":
            load_run = value
        elif key == "algo.max_iterations":
            per_epoch = composed_value(parts, "data", "init_args", "iterations_per_epoch", default=50)
            args.append(f"--trainer.max_epochs={math.ceil(int(value) / per_epoch)}")
        elif table[key] is not None:
            args.append(f"{table[key]}={value}")
    return args, load_run


def common_parser(prog: str) -> argparse.ArgumentParser:
    available = choices()
    parser = argparse.ArgumentParser(
        prog=f"python -m unilab {prog}",
        epilog="Other arguments go to LightningCLI (e.g. --data.num_envs 64 --trainer.max_epochs 10), as do the "
        f"reference key=value overrides {', '.join(REFERENCE_KEYS)}. The configs composed are "
        "configs/algos/<algo>.yaml, configs/tasks/<task>.yaml, configs/algos/<algo>/<task>.yaml, "
        "configs/sims/<sim>/<task>.yaml and configs/profiles/<profile>.yaml (those that exist); "
        "--print_config shows the result as one file.",
    )
    parser.add_argument("--algo", default=None, help=", ".join(available["algo"]))
    parser.add_argument("--task", required=True, help=", ".join(available["task"] + available["grasp task"]))
    parser.add_argument("--sim", default="mujoco", help=", ".join(available["sim"]))
    parser.add_argument("--profile", default=None, help=f"a variant: {', '.join(available['profile'])}")
    parser.add_argument("--load-run", default=None, help="-1 (newest run) or a run folder name")
    parser.add_argument("--checkpoint", default="last", help="last, best or an epoch number")
    return parser


def required_algo(known: argparse.Namespace) -> str:
    if known.algo is None:
        raise RouterError(f"--algo is required; available: {', '.join(choices()['algo'])}")
    return known.algo


def route_train(argv: list[str]) -> Route:
    parser = common_parser("train")
    parser.add_argument("--resume", action="store_true", help="continue the newest (or --load-run) run")
    known, extra = parser.parse_known_args(argv)
    if known.task.endswith("_grasp"):
        config = grasp_config(known.task, known.sim)
        args, _ = translate(extra, COLLECT_KEYS, [config])
        return Route(["collect", "--config", str(config), *args])
    parts = compose(required_algo(known), known.task, known.sim, known.profile)
    args, load_run = translate(extra, REFERENCE_KEYS, parts)
    load_run = known.load_run or load_run
    if known.resume or load_run is not None:
        run = find_run(runs.run_algo(known.algo, known.profile), known.task, known.sim, load_run or "-1")
        ckpt = checkpoint_file(run, known.checkpoint)
        return Route(["fit", "--config", str(run / "config.yaml"), f"--ckpt_path={ckpt}", *args])
    return Route(["fit", *config_args(parts), *args])


def route_eval(argv: list[str]) -> Route:
    parser = common_parser("eval")
    parser.add_argument("--video", type=int, default=0, metavar="N", help="also record and render N episodes to GIFs")
    parser.add_argument(
        "--trained-on",
        choices=("mujoco", "motrix"),
        default=None,
        help="with --load-run -N: pick among the runs trained on this simulator (default: --sim); a run trained "
        "on another simulator than --sim is evaluated on both, side by side",
    )
    known, extra = parser.parse_known_args(argv)
    parts = compose(required_algo(known), known.task, known.sim, known.profile)
    args, load_run = translate(extra, REFERENCE_KEYS, parts)
    selector = known.load_run or load_run or "-1"
    run = find_run(runs.run_algo(known.algo, known.profile), known.task, known.trained_on or known.sim, selector)
    ckpt = checkpoint_file(run, known.checkpoint)
    restore = ["--config", str(run / "config.yaml"), f"--ckpt_path={ckpt}"]
    trained = runs.trained_sim(run)
    if trained != known.sim:  # its own simulator first (eval.json, policy.onnx), then the other one beside it
        if known.video > 0:
            raise RouterError(
                "--video renders the training simulator's episodes; leave it out of a cross-simulator eval"
            )
        cross = ["test", *restore, "--trainer.logger=false", f"--data.env.sim={known.sim}", *args]
        return Route(["test", *restore, "--trainer.logger=false", *args], (cross,))
    then = ()
    if known.video > 0:  # the same episodes again, every step kept, then drawn
        then = (["predict", *restore, *args], ["render", f"--run={run}", f"--episodes={known.video}"])
    return Route(["test", *restore, "--trainer.logger=false", *args], then)
