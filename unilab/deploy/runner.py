"""A robot-side policy runner: ``policy.onnx`` + ``policy.json`` with onnxruntime and NumPy only (no torch).

    runner = PolicyRunner.load("logs/ppo/AllegroInhandRotation/<run>")
    runner.reset(current_targets)                       # (E, J) rad, one row per hand driven
    targets = runner.step(joint_positions, object_position=...)   # every control period

``step`` takes the sensor readings named by the contract's frame channels (each (E, size)), keeps the
observation history, runs the policy and returns the new joint targets (rad). ``last_action`` holds the
policy's raw output of that step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unilab.deploy.contract import CONTRACT_NAME, ContractError, read_contract

POLICY_NAME = "policy.onnx"


class PolicyRunner:
    """Turns sensor readings into joint targets with an exported policy."""

    def __init__(self, onnx_path: Path, contract: dict) -> None:
        import onnxruntime

        self.contract = contract
        self.session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        names = [node.name for node in self.session.get_inputs()]
        declared = [entry["name"] for entry in contract["inputs"]]
        if names != declared:
            raise ContractError(f"{onnx_path} takes inputs {names}, its policy.json declares {declared}")
        self.inputs = {entry["name"]: entry for entry in contract["inputs"]}
        if "privileged" in self.inputs:
            raise ContractError(
                "this policy is a HORA teacher: it reads privileged simulator values no robot measures; "
                "deploy its student (`train --algo hora_distill`)"
            )
        frame = contract["frame"]
        self.channels = [
            channel for channel in frame["channels"] if channel["name"] not in ("joint_positions", "targets")
        ]
        self.frame_size, self.frame_clip = frame["size"], frame["clip"]
        self.frames = max(entry.get("frames", 1) for entry in contract["inputs"])
        self.lower = np.asarray(contract["joint_range"]["lower"], dtype=np.float32)
        self.upper = np.asarray(contract["joint_range"]["upper"], dtype=np.float32)
        self.target_lower = np.asarray(contract["target_limits"]["lower"], dtype=np.float32)
        self.target_upper = np.asarray(contract["target_limits"]["upper"], dtype=np.float32)
        self.action_scale = np.float32(contract["action"]["scale"])
        self.targets: np.ndarray | None = None
        self.history: np.ndarray | None = None
        self.fresh: np.ndarray | None = None
        self.last_action: np.ndarray | None = None

    @classmethod
    def load(cls, folder: str | Path) -> PolicyRunner:
        """The runner of ``<folder>/policy.onnx`` and ``<folder>/policy.json``."""
        folder = Path(folder)
        onnx_path = folder / POLICY_NAME
        if not onnx_path.is_file():
            raise ContractError(f"{onnx_path} does not exist; `python -m unilab eval ... --load-run <run>` writes it")
        return cls(onnx_path, read_contract(folder / CONTRACT_NAME))

    @property
    def num_joints(self) -> int:
        return len(self.lower)

    def reset(self, targets: np.ndarray) -> None:
        """Start new episodes on every hand: targets (E, J) in rad; the next ``step``'s frame fills the
        whole history, as the simulator does at a reset."""
        targets = np.asarray(targets, dtype=np.float32)
        count = targets.shape[0]
        self.targets = targets.copy()
        self.history = np.zeros((count, self.frames, self.frame_size), dtype=np.float32)
        self.fresh = np.ones(count, dtype=bool)

    def reset_envs(self, envs: np.ndarray, targets: np.ndarray) -> None:
        """Start new episodes on the hands ``envs`` only, with their targets (len(envs), J)."""
        if self.targets is None:
            raise RuntimeError("call reset(targets) for every hand first")
        self.targets[envs] = np.asarray(targets, dtype=np.float32)
        self.fresh[envs] = True

    def frame(self, joint_positions: np.ndarray, **readings: np.ndarray) -> np.ndarray:
        """One (E, frame size) observation frame from the readings and the current targets."""
        missing = [channel["name"] for channel in self.channels if channel["name"] not in readings]
        if missing:
            raise ValueError(f"step() needs the readings {missing} (policy.json frame channels)")
        joints = 2.0 * (np.asarray(joint_positions, dtype=np.float32) - self.lower) / (self.upper - self.lower) - 1.0
        parts = [joints, self.targets, *(np.asarray(readings[c["name"]], dtype=np.float32) for c in self.channels)]
        frame = np.concatenate(parts, axis=-1).astype(np.float32)
        return np.clip(frame, -self.frame_clip, self.frame_clip) if self.frame_clip is not None else frame

    def step(self, joint_positions: np.ndarray, **readings: np.ndarray) -> np.ndarray:
        """Push this control period's frame, run the policy, return the new joint targets (E, J) in rad."""
        if self.targets is None:
            raise RuntimeError("call reset(targets) before the first step")
        frame = self.frame(joint_positions, **readings)
        self.history[:, :-1] = np.where(self.fresh[:, None, None], frame[:, None], self.history[:, 1:])
        self.history[:, -1] = frame
        self.fresh[:] = False
        feed = {}
        for name, entry in self.inputs.items():
            frames = self.history[:, -entry["frames"] :]
            feed[name] = frames.reshape(frames.shape[0], *entry["shape"])
        action = self.session.run(None, feed)[0]
        self.last_action = action
        step = np.clip(action, -1.0, 1.0) * self.action_scale
        self.targets = np.clip(self.targets + step, self.target_lower, self.target_upper).astype(np.float32)
        return self.targets.copy()
