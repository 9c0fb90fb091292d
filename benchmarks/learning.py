"""Learning benchmark: fit for a budget of env-steps, evaluate the final and best checkpoints (one JSON line).

Takes the arguments of ``python -m unilab train`` (``--algo --task --sim --profile`` and any LightningCLI
override) plus a budget. The fit stops at ``--env-steps`` (and ``--minutes`` if given); the ``last`` and
``best`` checkpoints are then evaluated on one fixed seeded manifest of ``--episodes`` episodes (the
task's evaluation manifest: envs spread over the object scales in contiguous blocks, policy mean, full
domain randomisation). For a HORA student the teacher it was distilled from is evaluated on the same
manifest and the student/teacher ratios are reported. The learning curves (episode length,
``reward/rotate``, rotation speed and drop rate against env-steps) are drawn into ``<run>/learning_curves.png``;
the fit's own drop rate over its last 10 % of env-steps, overall and per object scale, is reported beside the
manifest's (``training_tail_drop_rate``).

    python benchmarks/learning.py --algo ppo --task sharpa_inhand --profile hora --env-steps 8200000
    python benchmarks/learning.py --algo ppo --task allegro_inhand --env-steps 2000000 --seed_everything 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CURVES = (
    ("episode/length", "episode length"),
    ("reward/rotate", "reward/rotate"),
    ("episode/rotation_speed", "rad/s"),
    ("episode/drop_rate", "drop rate"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--sim", default="mujoco")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--env-steps", type=int, required=True, help="training budget in env-steps")
    parser.add_argument("--minutes", type=float, default=None, help="optional wall-clock limit as well")
    parser.add_argument("--episodes", type=int, default=240, help="evaluation manifest size")
    args, overrides = parser.parse_known_args()
    if args.env_steps < 1 or args.episodes < 1 or (args.minutes is not None and args.minutes <= 0):
        parser.error("--env-steps and --episodes must be >= 1 and --minutes > 0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from unilab.cli import main as unilab

    route = ["--algo", args.algo, "--task", args.task, "--sim", args.sim]
    route += ["--profile", args.profile] if args.profile else []
    budget = [
        "--trainer.max_epochs=1000000",
        "--trainer.callbacks+=unilab.callbacks.EnvStepBudget",
        f"--trainer.callbacks.env_steps={args.env_steps}",
        "--trainer.enable_progress_bar=false",
    ]
    if args.minutes is not None:
        seconds = int(args.minutes * 60)
        budget.append(f"--trainer.max_time=00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}")
    started = time.perf_counter()
    cli = unilab(["train", *route, *budget, *overrides])
    wall = time.perf_counter() - started
    run = Path(cli.trainer.logger.log_dir)
    env_steps = int(cli.model.env_steps)
    result = {
        "command": " ".join(sys.argv),
        "run": str(run),
        "env_steps": env_steps,
        "wall_seconds": round(wall, 1),
        "env_steps_per_second": round(env_steps / wall, 1),
        "episodes": args.episodes,
    }
    for which in ("last", "best"):
        if (run / "checkpoints" / f"{which}.ckpt").exists():
            result[which] = evaluate(unilab, route, run, which, args.episodes)
    if args.algo == "hora_distill":
        result["teacher"], result["student_over_teacher"] = teacher_figures(unilab, cli.model, args, result)
    result["training_tail_drop_rate"] = training_tail_drop_rates(run)
    result["curves_png"] = str(draw_curves(run))
    print(json.dumps(result))


def evaluate(unilab, route: list[str], run: Path, which: str, episodes: int) -> dict:
    """``eval`` of one checkpoint of ``run`` on the fixed manifest; the overall and per-scale figures."""
    unilab(["eval", *route, "--load-run", str(run), "--checkpoint", which, f"--data.test_episodes={episodes}"])
    report = json.loads((run / "eval.json").read_text())
    return {"overall": report["overall"], "per_scale": report.get("per_scale", {})}


def teacher_figures(unilab, student, args, result: dict) -> tuple[dict, dict]:
    """The student's teacher on the same manifest, and student / teacher for RotR, TTF and rotation speed."""
    teacher_path = Path(student.teacher_record["path"])
    run = teacher_path.parent.parent
    family = "appo" if run.parents[1].name == "hora_appo" else "ppo"
    which = teacher_path.stem if teacher_path.stem in ("last", "best") else teacher_path.stem.removeprefix("epoch_")
    route = ["--algo", family, "--task", args.task, "--sim", args.sim, "--profile", "hora"]
    teacher = evaluate(unilab, route, run, which, args.episodes)
    mine = result.get("last", {}).get("overall", {})
    ratios = {
        name: round(mine[name] / teacher["overall"][name], 4) if teacher["overall"].get(name) else None
        for name in ("RotR", "TTF", "rotation_speed")
        if name in mine
    }
    return {"checkpoint": str(teacher_path), **teacher}, ratios


def read_curves(run: Path, wanted=lambda tag: tag in dict(CURVES)) -> dict[str, list[tuple[float, float]]]:
    """(env-steps, value) pairs of each scalar the ``wanted`` predicate picks (the curves drawn by default)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    if "perf/env_steps" not in tags:
        return {}
    steps = {event.step: event.value for event in events.Scalars("perf/env_steps")}
    curves = {}
    for tag in filter(wanted, tags):  # a resumed run logs again the steps after its last checkpoint: keep the newest
        newest = {event.step: event.value for event in events.Scalars(tag) if event.step in steps}
        curves[tag] = [(steps[step], newest[step]) for step in sorted(newest)]
    return curves


def training_tail_drop_rates(run: Path, fraction: float = 0.1) -> dict[str, float]:
    """The fit's own drop rate over its last ``fraction`` of env-steps, overall and per object scale (means of the
    logged iterations). The fit's policy changed after every rollout; the manifest's rows are the frozen one's."""
    curves = read_curves(run, lambda tag: tag == "episode/drop_rate" or tag.startswith("drop_rate_by_scale/"))
    if not curves:
        return {}
    end = max(x for points in curves.values() for x, _ in points)
    tail = {tag: [y for x, y in points if x >= (1.0 - fraction) * end] for tag, points in curves.items()}
    names = {tag: "overall" if tag == "episode/drop_rate" else tag.split("/", 1)[1] for tag in tail}
    return {names[tag]: round(float(np.mean(values)), 4) for tag, values in tail.items() if values}


def binned_means(points: list[tuple[float, float]], bins: int = 60) -> list[tuple[float, float]]:
    """Mean of the points in each of ``bins`` equal env-step windows (per-iteration episode figures are noisy)."""
    xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    edges = np.linspace(xs.min(), xs.max(), bins + 1)
    which = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    filled = counts > 0
    centres = np.bincount(which, xs, bins)[filled] / counts[filled]
    means = np.bincount(which, ys, bins)[filled] / counts[filled]
    return list(zip(centres.tolist(), means.tolist(), strict=True))


def draw_curves(run: Path, width: int = 420, height: int = 300) -> Path:
    """One panel per curve, side by side, against env-steps: each iteration's value (light) and window means (dark).

    Plain PIL: no plotting library needed.
    """
    curves = read_curves(run)
    image = Image.new("RGB", (width * len(CURVES), height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 60, 15, 30, 40
    for panel, (tag, label) in enumerate(CURVES):
        x0 = panel * width
        box = (x0 + left, top, x0 + width - right, height - bottom)
        draw.rectangle(box, outline="black")
        draw.text((x0 + left, 8), label, fill="black")
        points = curves.get(tag, [])
        if len(points) < 2:
            draw.text((box[0] + 10, box[1] + 10), "no data", fill="gray")
            continue
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)
        y_hi = y_hi if y_hi > y_lo else y_lo + 1.0
        x_hi = x_hi if x_hi > x_lo else x_lo + 1.0

        def to_pixel(x: float, y: float, box=box, x_lo=x_lo, x_hi=x_hi, y_lo=y_lo, y_hi=y_hi) -> tuple[float, float]:
            return (
                box[0] + (x - x_lo) / (x_hi - x_lo) * (box[2] - box[0]),
                box[3] - (y - y_lo) / (y_hi - y_lo) * (box[3] - box[1]),
            )

        draw.line([to_pixel(x, y) for x, y in points], fill=(200, 215, 235), width=1)
        draw.line([to_pixel(x, y) for x, y in binned_means(points)], fill=(31, 119, 180), width=2)
        draw.text((x0 + 4, top), f"{y_hi:.3g}", fill="black")
        draw.text((x0 + 4, height - bottom - 10), f"{y_lo:.3g}", fill="black")
        draw.text((box[0], height - bottom + 6), f"{x_lo / 1e6:.2f} M", fill="black")
        draw.text((box[2] - 60, height - bottom + 6), f"{x_hi / 1e6:.2f} M env-steps", fill="black")
    path = run / "learning_curves.png"
    image.save(path)
    return path


if __name__ == "__main__":
    main()
