"""Where runs live: the one owner of the log root, the run-folder scheme and checkpoint selection.

A run is ``<log root>/<algo>/<TaskClass>/<timestamp>_<sim>/`` holding ``config.yaml``, ``run.json``,
TensorBoard events and ``checkpoints/`` (``last.ckpt``, ``best.ckpt``, ``epoch_<N>.ckpt``). The log root
is ``logs`` (relative to the working directory) unless ``UNILAB_LOG_ROOT`` names another folder.

    python -m unilab.runs newest --algo hora_ppo --task sharpa_inhand --sim mujoco
    python -m unilab.runs ended <run folder>     # exit 0 when its run.json says the fit finished
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import datetime
from pathlib import Path

from unilab.errors import UnilabError
from unilab.files import create_unique_dir

log = logging.getLogger(__name__)

LOG_ROOT_VARIABLE = "UNILAB_LOG_ROOT"


class RunError(UnilabError, ValueError):
    """A run or checkpoint that does not exist; the message lists what does."""


def log_root() -> Path:
    """``$UNILAB_LOG_ROOT``, else ``logs`` in the working directory."""
    return Path(os.environ.get(LOG_ROOT_VARIABLE) or "logs")


def run_algo(algo: str, profile: str | None) -> str:
    """Folder name of an algorithm's runs: a HORA teacher (``--profile hora``) of ppo logs under hora_ppo."""
    return f"hora_{algo}" if profile == "hora" else algo


def runs_folder(algo: str, task_class: str, root: Path | None = None) -> Path:
    """``<log root>/<algo>/<TaskClass>``: the runs of one algorithm on one task."""
    return (log_root() if root is None else root) / algo / task_class


def new_run(algo: str, task_class: str, sim: str, root: Path | None = None) -> Path:
    """Create ``<timestamp>_<sim>`` exclusively (a second run in the same second gets ``<timestamp>b_<sim>``)."""
    return create_unique_dir(runs_folder(algo, task_class, root), datetime.now().strftime("%Y%m%d_%H%M%S"), f"_{sim}")


def run_folders(algo: str, task_class: str, sim: str, root: Path | None = None) -> list[Path]:
    """The runs of one algorithm, task and simulator, oldest first."""
    parent = runs_folder(algo, task_class, root)
    return sorted(p for p in parent.glob(f"*_{sim}") if p.is_dir()) if parent.is_dir() else []


def find_run(algo: str, task_class: str, sim: str, selector: str, root: Path | None = None) -> Path:
    """A run folder: ``-1`` is the newest, ``-2`` the one before, else a folder name or a path.

    ``-N`` counts only runs that saved a checkpoint: a fit that failed or was stopped before its first
    epoch ended leaves a folder with nothing to evaluate or resume.
    """
    parent = runs_folder(algo, task_class, root)
    runs = run_folders(algo, task_class, sim, root)
    if selector.lstrip("-").isdigit() and int(selector) < 0:
        saved = [run for run in runs if any((run / "checkpoints").glob("*.ckpt"))]
        if len(saved) < -int(selector):
            unsaved = f" ({len(runs) - len(saved)} without checkpoints)" if len(runs) > len(saved) else ""
            raise RunError(
                f"no run of {algo}/{task_class}/{sim} with checkpoints under {parent}{unsaved}; train one first"
            )
        return saved[int(selector)]
    run = parent / selector
    if not run.is_dir() and (Path(selector) / "config.yaml").is_file():  # a run folder given by its path
        run = Path(selector)
    if not run.is_dir():
        names = [p.name for p in runs] or ["none"]
        raise RunError(f"run {selector!r} not found under {parent}; runs there: {', '.join(names)}")
    return run


def checkpoint_file(run: Path, which: str) -> Path:
    """``last``, ``best`` or an epoch number N (``epoch_N.ckpt``) of a run.

    ``last`` is the newest checkpoint that loads: a ``last.ckpt`` that is missing or unreadable (a crash
    of an older unilab, a damaged disk) gives way to the newest other checkpoint of the run, with a warning.
    """
    folder = run / "checkpoints"
    name = {"last": "last.ckpt", "best": "best.ckpt"}.get(which, f"epoch_{which}.ckpt")
    path = folder / name
    if which == "last":
        others = sorted((p for p in folder.glob("*.ckpt") if p.name != name), key=lambda p: p.stat().st_mtime)
        for candidate in [path, *reversed(others)]:
            if candidate.exists() and loads(candidate):
                if candidate != path:
                    log.warning("%s is missing or unreadable; continuing from %s", path, candidate.name)
                return candidate
    if not path.exists():
        have = sorted(p.name for p in folder.glob("*.ckpt")) or ["none"]
        raise RunError(f"checkpoint {path} does not exist; checkpoints of this run: {', '.join(have)}")
    return path


def newest_last_checkpoint(algo: str, task_class: str, sim: str) -> Path:
    """``last.ckpt`` of the newest run that has one (what ``--ckpt_path last`` continues)."""
    parent = runs_folder(algo, task_class)
    found = sorted(parent.glob(f"*_{sim}/checkpoints/last.ckpt"))
    if not found:
        raise RunError(f"--ckpt_path last: no run with a last.ckpt under {parent}; train one first")
    return found[-1]


def run_of_checkpoint(ckpt_path: str | Path | None) -> Path | None:
    """The run folder of ``<run>/checkpoints/<name>.ckpt``, or None for a checkpoint kept anywhere else."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return None
    path = Path(ckpt_path)
    return (
        path.parent.parent
        if path.parent.name == "checkpoints" and (path.parent.parent / "config.yaml").is_file()
        else None
    )


def trained_sim(run: Path) -> str:
    """The simulator a run was trained on (its config's ``data.env.sim``; ``mujoco`` when unset)."""
    import yaml

    try:
        config = yaml.safe_load((run / "config.yaml").read_text())
        return str(config["data"]["init_args"]["env"].get("init_args", {}).get("sim", "mujoco"))
    except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        return run.name.rsplit("_", 1)[-1]


def task_of_run(run: Path, num_envs: int, **overrides):
    """The run's task (its config's ``data.env``) with ``num_envs`` envs and ``overrides`` of its init args."""
    import yaml
    from jsonargparse import ArgumentParser

    from unilab.data.rollout import EnvFactory

    config = yaml.safe_load((run / "config.yaml").read_text())
    env = dict(config["data"]["init_args"]["env"])
    env["init_args"] = dict(env.get("init_args") or {}) | overrides
    parser = ArgumentParser()
    parser.add_argument("--env", type=EnvFactory)
    return parser.instantiate_classes(parser.parse_object({"env": env})).env(num_envs)


def loads(path: Path) -> bool:
    """Whether ``path`` is a readable Lightning checkpoint (its tensors are mapped, not read)."""
    from unilab.user_errors import CheckpointError, check_checkpoint

    try:
        check_checkpoint(path)
    except CheckpointError:
        return False
    return True


def ended(run: Path) -> bool:
    """Whether the run's ``run.json`` says its last fit finished (an interrupted run keeps ``ended`` null)."""
    try:
        return json.loads((run / "run.json").read_text()).get("ended") is not None
    except (OSError, ValueError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    """``newest`` prints the newest run folder (any, with or without checkpoints); ``ended`` tests one."""
    parser = argparse.ArgumentParser(prog="python -m unilab.runs", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    newest = commands.add_parser("newest", help="print the newest run folder, or nothing")
    newest.add_argument("--algo", required=True, help="folder name, e.g. ppo, hora_appo, hora_distill")
    newest.add_argument("--task", required=True)
    newest.add_argument("--sim", default="mujoco")
    finished = commands.add_parser("ended", help="exit 0 when the run's last fit finished")
    finished.add_argument("run", type=Path)
    args = parser.parse_args(argv)
    if args.command == "ended":
        return 0 if ended(args.run) else 1
    from unilab.tasks import get_task

    try:
        task_class = get_task(args.task).__name__
    except (KeyError, ValueError) as error:
        parser.error(str(error))
    runs = run_folders(args.algo, task_class, args.sim)
    if runs:
        print(runs[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
