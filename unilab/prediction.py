"""``predict``: the deployed policy on the test manifest with every step kept, for replay and analysis.

``python -m unilab predict --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt`` writes
``predictions.npz`` into the run folder: one deterministic episode per manifest slot, as in ``test``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from unilab.evaluation import run_episodes
from unilab.tasks.base import EnvStep, InHandRotationEnv

PolicyStep = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def record_trajectories(env: InHandRotationEnv, act: PolicyStep, seed: int) -> dict[str, np.ndarray]:
    """Run the manifest with ``act(obs) -> (actions, policy inputs)`` and keep T steps of all E episodes.

    Returns:
        ``state`` (T, E, J + 7): hand joints (actuator order), object xyz, object quat wxyz after each step;
        ``action`` (T, E, A): the policy's actions; ``input_<name>`` (T, E, ...): what the deployed policy
        read (the ONNX inputs); ``reward`` (T, E); ``alive`` (T, E): the step belongs to the episode (a slot
        whose episode ended keeps stepping from a reset, marked False); ``dropped`` (E,); ``object_scale``
        (E,); ``ctrl_dt``; ``joint_names`` (J,).
    """
    traces: dict[str, list[torch.Tensor]] = {"action": [], "state": [], "reward": []}

    def acting(obs: dict[str, torch.Tensor]) -> torch.Tensor:
        actions, inputs = act(obs)
        traces["action"].append(actions.detach().cpu())
        for name, value in inputs.items():
            traces.setdefault(f"input_{name}", []).append(value.detach().cpu())
        return actions

    def observe(step: EnvStep) -> None:
        traces["state"].append(step.kinematics["state"].clone())
        traces["reward"].append(step.reward.clone())

    record = run_episodes(env, acting, seed, observe)
    arrays = {name: torch.stack(values).numpy() for name, values in traces.items()}
    return arrays | {
        "alive": record.alive.numpy(),
        "dropped": record.dropped.numpy(),
        "object_scale": np.asarray(env.object_scales)[env.env_scale.numpy()],
        "ctrl_dt": np.float64(env.ctrl_dt),
        "joint_names": np.array(env.hand.joint_names),
    }
