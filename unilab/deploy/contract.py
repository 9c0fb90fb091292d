"""``policy.json``: everything a robot-side runner needs to drive ``policy.onnx``, and nothing to guess.

Written next to every exported ``policy.onnx`` by ``eval``; read and validated by
``unilab.deploy.runner`` (so this module imports neither torch nor the simulator).

The policy reads frames of sensor readings, oldest first. A frame is the concatenation of the
``frame`` channels; ``joint_positions`` arrive in radians and are normalised to [-1, 1] by
``joint_range`` before they enter the frame, ``targets`` are the runner's own current joint targets,
the remaining channels enter as they are. The ONNX graph holds the observation normalisation. Its
output is a delta: ``targets = clip(targets + action_scale * clip(action, -1, 1), target_limits)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unilab.errors import UnilabError

FORMAT = 1
CONTRACT_NAME = "policy.json"
REQUIRED = (
    "format", "task", "hand", "joint_names", "control_period_s", "action", "joint_range", "target_limits",
    "default_pose", "frame", "inputs", "output", "normalization", "units",
)  # fmt: skip


class ContractError(UnilabError):
    """A ``policy.json`` that is missing, of another format, or that contradicts its ``policy.onnx``."""


def build_contract(env, input_shapes: dict[str, tuple[int, ...]], trained_on: str, algo: str) -> dict:
    """The contract of a policy trained on ``env``'s task, whose ONNX inputs have ``input_shapes`` (no batch)."""
    joints = env.num_actions
    frame = [
        {"name": "joint_positions", "size": joints, "enters_as": "normalised to [-1, 1] by joint_range"},
        {"name": "targets", "size": joints, "enters_as": "rad: the runner's current joint targets"},
        *env.deployed_channels(),
    ]
    inputs = []
    for name, shape in input_shapes.items():
        entry: dict = {"name": name, "shape": list(shape)}
        if name == "obs":
            entry |= {"frames": env.policy_frames, "layout": "frames oldest first, each frame as in 'frame'"}
        elif name == "history":
            entry |= {"frames": shape[0], "layout": "(frames, frame size), oldest first"}
        elif name == "privileged":
            entry |= {"layout": "simulation only: the privileged group of a HORA teacher"}
        inputs.append(entry)
    return {
        "format": FORMAT,
        "task": env.task_name,
        "algo": algo,
        "trained_on": trained_on,
        "hand": {"name": env.hand.name, "menagerie": f"{env.hand.menagerie_id}/{env.hand.menagerie_entry}"},
        "joint_names": list(env.hand.joint_names),
        "control_period_s": float(env.ctrl_dt),
        "action": {"meaning": "delta on joint targets", "scale": float(env.action_scale), "clip": [-1.0, 1.0]},
        "joint_range": {"lower": env.joint_lower.tolist(), "upper": env.joint_upper.tolist()},
        "target_limits": {"lower": env.target_lower.tolist(), "upper": env.target_upper.tolist()},
        "default_pose": [float(x) for x in env.home_pose()],
        "frame": {"channels": frame, "size": env.frame_dim, "clip": env.frame_clip},
        "inputs": inputs,
        "output": {"name": "actions", "shape": [joints]},
        "normalization": "inside the ONNX graph",
        "units": "SI: rad, m, N, s",
    }


def write_contract(contract: dict, path: Path) -> None:
    from unilab.files import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(contract, indent=2)))


def read_contract(path: Path) -> dict:
    """Load and check ``policy.json``; every problem names the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"{path} does not exist; `python -m unilab eval ... --load-run <run>` writes it")
    try:
        contract = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ContractError(f"{path} is not JSON ({error}); export it again with `python -m unilab eval`") from None
    if not isinstance(contract, dict):
        raise ContractError(f"{path} holds no JSON object; export it again with `python -m unilab eval`")
    if contract.get("format") != FORMAT:
        raise ContractError(
            f"{path} has format {contract.get('format')!r}; this unilab reads format {FORMAT}. Export it again"
        )
    missing = [key for key in REQUIRED if key not in contract]
    if missing:
        raise ContractError(f"{path} lacks {', '.join(missing)}; export it again with `python -m unilab eval`")
    joints = len(contract["joint_names"])
    frame = contract["frame"]
    sizes = {
        "joint_range.lower": len(contract["joint_range"]["lower"]),
        "joint_range.upper": len(contract["joint_range"]["upper"]),
        "target_limits.lower": len(contract["target_limits"]["lower"]),
        "target_limits.upper": len(contract["target_limits"]["upper"]),
        "default_pose": len(contract["default_pose"]),
        "output": contract["output"]["shape"][-1],
    }
    wrong = {key: size for key, size in sizes.items() if size != joints}
    if wrong:
        raise ContractError(f"{path}: {wrong} should all be {joints} (one per joint in joint_names)")
    if sum(channel["size"] for channel in frame["channels"]) != frame["size"]:
        raise ContractError(f"{path}: the frame channels do not add up to frame.size {frame['size']}")
    lower, upper = np.asarray(contract["joint_range"]["lower"]), np.asarray(contract["joint_range"]["upper"])
    if not (upper > lower).all():
        raise ContractError(f"{path}: joint_range.upper must exceed joint_range.lower for every joint")
    return contract
