"""What a HORA teacher's latent carries, and what the student's estimate of it costs (one JSON line).

Loads a student checkpoint (it holds its teacher), lets the student drive ``--num-envs`` envs of the task
for ``--steps`` control steps under full domain randomisation, and reports:

- open loop, on the states the student visits: the variance of each latent dimension, the student's
  error on it, and the correlation of each dimension with each privileged input (for Sharpa: object
  position - anchor (3), friction scale, mass, COM offset (3), object scale);
- closed loop, one run per ``--modes`` entry from the same seeded reset: drops per 1 000 env-steps,
  overall and per object scale, with the teacher's actor fed ``teacher`` (its own latent),
  ``student`` (the student, its actor included), ``constant`` (the teacher latent's mean),
  ``hide:I-J`` (privileged inputs I..J replaced by their batch mean) or ``keep:I-J`` (all others so).

    python benchmarks/hora_latent.py --checkpoint logs/hora_distill/SharpaInhandRotation/<run>/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import composed_cli  # noqa: E402

from unilab.algos.hora import Student, add_student_actor, teacher_from_hparams  # noqa: E402
from unilab.cpu_share import default_num_threads  # noqa: E402

DEFAULT_MODES = "teacher,student,constant,hide:0-2,keep:0-2"


def teacher_record(checkpoint: dict, checkpoint_path: Path) -> dict:
    record = checkpoint.get("unilab", {}).get("teacher")
    if not isinstance(record, dict) or "hparams" not in record:
        raise ValueError(f"{checkpoint_path} is not a HORA student checkpoint (it names no teacher)")
    return record


def load_student(checkpoint_path: Path, observation_dims: dict[str, int], num_actions: int) -> Student:
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    record = teacher_record(checkpoint, checkpoint_path)
    hp = checkpoint["hyper_parameters"]
    teacher = teacher_from_hparams(record["hparams"], observation_dims, num_actions, record["path"])
    frames = hp["history_frames"]
    frame_dim = observation_dims[hp["history_group"]] // frames
    student = Student(teacher, hp["history_group"], frames, frame_dim, hp["channels"])
    state = {key: value for key, value in checkpoint["state_dict"].items() if key.startswith("student.")}
    add_student_actor(state)
    student.load_state_dict({key[len("student.") :]: value for key, value in state.items()})
    return student.eval()


def parse_mode(mode: str, privileged_size: int) -> tuple[str, slice | None]:
    """``teacher``, ``student``, ``constant``, ``hide:I-J`` or ``keep:I-J`` (I <= J < privileged_size)."""
    name, _, span = mode.partition(":")
    if name in ("teacher", "student", "constant") and not span:
        return name, None
    if name in ("hide", "keep") and span:
        first, _, last = span.partition("-")
        last = last or first
        if first.isdigit() and last.isdigit() and int(first) <= int(last) < privileged_size:
            return name, slice(int(first), int(last) + 1)
    raise ValueError(
        f"--modes entry {mode!r} is not teacher, student, constant, hide:I-J or keep:I-J "
        f"with 0 <= I <= J < {privileged_size} (the privileged inputs)"
    )


class Probe:
    """The student, its teacher and the env, with the latents each mode feeds the teacher's actor."""

    def __init__(self, student: Student, env, privileged_group: str) -> None:
        self.student, self.env, self.group = student, env, privileged_group
        self.teacher = student.teacher
        self.latent_mean: torch.Tensor | None = None

    def latent(self, mode: str, span: slice | None, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        if mode == "teacher":
            return self.teacher.latent(obs)
        if mode == "constant":
            return self.latent_mean.expand(obs[self.group].shape[0], -1)
        privileged = obs[self.group]
        mean = privileged.mean(dim=0, keepdim=True).expand_as(privileged)
        replaced, kept = (privileged.clone(), mean) if mode == "hide" else (mean.clone(), privileged)
        replaced[:, span] = kept[:, span]
        return self.teacher.latent({**obs, self.group: replaced})

    def actions(self, mode: str, span: slice | None, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        if mode == "student":
            return self.student.action_mean(obs)
        return self.teacher.action_mean(obs, latent=self.latent(mode, span, obs))

    @torch.no_grad()
    def open_loop(self, steps: int, seed: int) -> dict:
        obs = self.env.reset(seed=seed)
        teacher_latents, student_latents, privileged = [], [], []
        for _ in range(steps):
            teacher_latents.append(self.teacher.latent(obs))
            student_latents.append(self.student.latent(obs[self.student.history_group]))
            privileged.append(obs[self.group])
            obs = self.env.step(self.student.action_mean(obs)).obs
        z, estimate, inputs = (torch.cat(rows) for rows in (teacher_latents, student_latents, privileged))
        self.latent_mean = z.mean(dim=0)
        standardise = lambda x: (x - x.mean(0)) / x.std(0).clamp_min(1e-9)  # noqa: E731
        correlation = standardise(z).T @ standardise(inputs) / len(z)
        return {
            "latent_variance": rounded(z.var(dim=0)),
            "student_mse_per_dim": rounded((estimate - z).square().mean(dim=0)),
            "student_mse": round(float((estimate - z).square().mean()), 4),
            "constant_mse": round(float(z.var(dim=0).mean()), 4),
            "correlation_latent_by_privileged": [rounded(row, 2) for row in correlation],
        }

    @torch.no_grad()
    def closed_loop(self, mode: str, span: slice | None, steps: int, seed: int) -> dict:
        obs = self.env.reset(seed=seed)
        drops = torch.zeros(self.env.num_envs)
        for _ in range(steps):
            step = self.env.step(self.actions(mode, span, obs))
            drops += step.terminated.float()
            obs = step.obs
        scales = self.env.env_object_scale
        per_scale = {f"{s:g}": per_thousand(drops[scales == s], steps) for s in sorted(set(scales.tolist()))}
        return {"drops_per_1000_env_steps": per_thousand(drops, steps), "per_scale": per_scale}


def rounded(values: torch.Tensor, digits: int = 4) -> list[float]:
    return [round(float(v), digits) for v in values]


def per_thousand(drops: torch.Tensor, steps: int) -> float:
    return round(1000.0 * float(drops.sum()) / (len(drops) * steps), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="a HORA student checkpoint")
    parser.add_argument("--task", default="sharpa_inhand")
    parser.add_argument("--sim", default="mujoco")
    parser.add_argument("--num-envs", type=int, default=144)
    parser.add_argument("--steps", type=int, default=400, help="control steps per pass")
    parser.add_argument("--modes", default=DEFAULT_MODES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=default_num_threads())
    args = parser.parse_args()
    if args.num_envs < 1 or args.steps < 1 or args.threads < 1:
        parser.error("--num-envs, --steps and --threads must be >= 1")
    if not args.checkpoint.is_file():
        parser.error(f"--checkpoint {args.checkpoint} does not exist")
    try:
        record = teacher_record(torch.load(args.checkpoint, map_location="cpu", weights_only=False), args.checkpoint)
        privileged_size = record["hparams"]["observation_dims"][record["hparams"]["privileged_group"]]
        modes = {mode: parse_mode(mode, privileged_size) for mode in args.modes.split(",")}
    except ValueError as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    cli = composed_cli(
        "hora_distill",
        args.task,
        args.sim,
        [f"--data.num_envs={args.num_envs}", f"--data.env.num_threads={args.threads}"],
    )
    env = cli.datamodule.env
    student = load_student(args.checkpoint, env.observation_dims, env.num_actions)
    probe = Probe(student, env, student.teacher.privileged_group)
    result = {"checkpoint": str(args.checkpoint), "num_envs": args.num_envs, "steps": args.steps, "seed": args.seed}
    result["open_loop"] = probe.open_loop(args.steps, args.seed)
    result["closed_loop"] = {
        text: probe.closed_loop(mode, span, args.steps, args.seed) for text, (mode, span) in modes.items()
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
