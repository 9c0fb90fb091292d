"""Policy evaluation on a fixed manifest of deterministic episodes (docs/spec.md §6).

One env per episode, every episode starts at step 0 from a seeded reset and runs until it
drops the object or reaches the time-out; the policy acts with its mean. Metrics follow HORA:
RotR, TTF, ObjVel, Torque, Work, plus rotation speed (rad/s), drop rate and per-scale rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from unilab.tasks.base import EnvStep, InHandRotationEnv

ROTATE_CLIP = 0.5
METRICS = ("RotR", "TTF", "ObjVel", "Torque", "Work", "rotation_speed", "drop_rate", "episodes")


@dataclass(frozen=True)
class EpisodeRecord:
    """Per-step traces of E episodes over T steps; ``alive[t, e]`` marks steps inside episode e."""

    omega_z: torch.Tensor  # (T, E)
    linvel: torch.Tensor  # (T, E, 3)
    torque: torch.Tensor  # (T, E, J)
    qvel: torch.Tensor  # (T, E, J)
    alive: torch.Tensor  # (T, E) bool
    dropped: torch.Tensor  # (E,) bool
    ctrl_dt: float
    max_steps: int


def summarize(record: EpisodeRecord, episodes: torch.Tensor | None = None) -> dict[str, float]:
    """HORA metrics over the episodes selected by ``episodes`` (an (E,) mask; all by default)."""
    select = torch.ones_like(record.dropped) if episodes is None else episodes
    alive = record.alive[:, select].float()
    steps = alive.sum(dim=0)
    step_count = steps.sum().clamp_min(1.0)
    omega = record.omega_z[:, select] * alive
    per_step = lambda value: (value * alive).sum() / step_count  # noqa: E731  mean over alive steps
    return {
        "RotR": float(omega.clamp(-ROTATE_CLIP, ROTATE_CLIP).sum(dim=0).mean()),
        "TTF": float((steps / record.max_steps).mean()),
        "ObjVel": float(100.0 * per_step(record.linvel[:, select].square().sum(-1))),
        "Torque": float(per_step(record.torque[:, select].abs().sum(-1))),
        "Work": float(per_step((record.torque[:, select] * record.qvel[:, select]).sum(-1).square())),
        "rotation_speed": float((omega.sum(dim=0) / steps.clamp_min(1.0)).mean()),
        "drop_rate": float(record.dropped[select].float().mean()),
        "episodes": int(select.sum()),
    }


@torch.no_grad()
def run_episodes(
    env: InHandRotationEnv,
    act: Callable[[dict], torch.Tensor],
    seed: int,
    observe: Callable[[EnvStep], None] | None = None,
) -> EpisodeRecord:
    """Run one deterministic episode per env with ``act(obs) -> actions`` from a seeded reset.

    ``observe``, if given, sees every ``EnvStep`` (all envs, also those whose episode has ended).
    """
    steps, count = env.episode_length, env.num_envs
    obs = env.reset(seed=seed, spread_episodes=False)
    traces = {"omega_z": [], "linvel": [], "torque": [], "qvel": []}
    alive = torch.zeros(steps, count, dtype=torch.bool)
    running = torch.ones(count, dtype=torch.bool)
    dropped = torch.zeros(count, dtype=torch.bool)
    for t in range(steps):
        step = env.step(act(obs))
        if observe is not None:
            observe(step)
        alive[t] = running
        for name in traces:
            traces[name].append(step.kinematics[name].clone())
        dropped |= running & step.terminated
        running &= ~(step.terminated | step.truncated)
        obs = step.obs
        if not running.any():
            alive = alive[: t + 1]
            break
    stacked = {name: torch.stack(values) for name, values in traces.items()}
    return EpisodeRecord(**stacked, alive=alive, dropped=dropped, ctrl_dt=env.ctrl_dt, max_steps=steps)


def evaluate(env: InHandRotationEnv, act: Callable[[dict], torch.Tensor], seed: int = 0) -> dict:
    """Overall metrics and one row per object scale."""
    record = run_episodes(env, act, seed)
    result = {"overall": summarize(record)}
    if len(env.object_scales) > 1:
        result["per_scale"] = {
            f"{scale:g}": summarize(record, env.env_scale == index) for index, scale in enumerate(env.object_scales)
        }
    return result


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """Plain-text table: one row per named result, one column per metric."""
    header = f"{'':>12}" + "".join(f"{name:>15}" for name in METRICS)
    lines = [header]
    for label, metrics in rows.items():
        lines.append(f"{label:>12}" + "".join(f"{metrics[name]:>15.4g}" for name in METRICS))
    return "\n".join(lines)
