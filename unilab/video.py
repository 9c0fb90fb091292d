"""Watch a policy: render the episodes ``predict`` recorded to GIFs with MuJoCo's offscreen renderer.

    python -m unilab render --run <run folder> [--episodes 2] [--width 480] [--height 360]

reads ``<run>/predictions.npz`` and the run's ``config.yaml`` (for the hand and object) and writes
``<run>/episode_<i>.gif``, one frame per control step at real-time speed. Headless machines render
through EGL: ``unilab`` sets ``MUJOCO_GL=egl`` when no display is present, libEGL exists and it is unset.
"""

from __future__ import annotations

import os
from pathlib import Path

import mujoco
import numpy as np
import yaml
from jsonargparse import ArgumentParser
from jsonargparse.typing import PositiveInt
from PIL import Image

from unilab.data.rollout import EnvFactory
from unilab.errors import UnilabError
from unilab.files import atomic_write
from unilab.sim.scene import OBJECT_BODY, SceneLayout, build_scene
from unilab.tasks.base import InHandRotationEnv


class RenderingError(UnilabError, RuntimeError):
    """Offscreen rendering is not available on this machine."""


CAMERA_DISTANCE = 0.36  # m from the object's nominal position
CAMERA_AZIMUTH = 150.0  # deg
CAMERA_ELEVATION = -30.0  # deg


def task_of_run(config_path: Path) -> InHandRotationEnv:
    """The run's task with one env on MuJoCo (only its hand, object and physics options are used)."""
    config = yaml.safe_load(config_path.read_text())
    env = config["data"]["init_args"]["env"]
    env["init_args"] = env.get("init_args", {}) | {"sim": "mujoco", "num_threads": 1}
    parser = ArgumentParser()
    parser.add_argument("--env", type=EnvFactory)
    factory = parser.instantiate_classes(parser.parse_object({"env": env})).env
    return factory(1)


def scene_for_video(task: InHandRotationEnv, scale: float) -> mujoco.MjModel:
    """The task's scene with visuals, and coloured dots on the object's +x, +y, +z faces to show it turn."""
    spec = build_scene(task.hand, task.obj, task.physics, scale)
    size = np.asarray(task.obj.size) * scale
    radius, half_height = size[0], size[1] if len(size) > 1 else size[0]
    for axis, rgba in enumerate(((0.9, 0.1, 0.1, 1.0), (0.1, 0.8, 0.1, 1.0), (0.1, 0.3, 0.9, 1.0))):
        surface = np.zeros(3)
        surface[axis] = half_height if axis == 2 else radius
        spec.body(OBJECT_BODY).add_geom(
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=[0.25 * radius, 0, 0],
            pos=surface,
            rgba=rgba,
            contype=0,
            conaffinity=0,
            mass=0.0,
        )
    return spec.compile()


def episode_frames(
    model: mujoco.MjModel, layout: SceneLayout, states: np.ndarray, camera: mujoco.MjvCamera, width: int, height: int
) -> np.ndarray:
    """(T, height, width, 3) uint8 frames of ``states`` (T, J + 7): hand joints, object xyz, quat wxyz."""
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, height)
    data = mujoco.MjData(model)
    joints = len(layout.hand_qpos)
    frames = np.empty((len(states), height, width, 3), dtype=np.uint8)
    with offscreen_renderer(model, width, height) as renderer:
        for t, row in enumerate(states):
            data.qpos[layout.hand_qpos] = row[:joints]
            data.qpos[layout.object_qpos : layout.object_qpos + 7] = row[joints:]
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera)
            frames[t] = renderer.render()
    return frames


def offscreen_renderer(model: mujoco.MjModel, width: int, height: int) -> mujoco.Renderer:
    try:
        return mujoco.Renderer(model, height, width)
    except Exception as error:
        raise RenderingError(
            f"no OpenGL context for offscreen rendering (MUJOCO_GL={os.environ.get('MUJOCO_GL', 'unset')}: "
            f"{type(error).__name__}: {error}). Without a display install libEGL (Debian: libegl1) and set "
            "MUJOCO_GL=egl, or use MUJOCO_GL=osmesa with libosmesa6"
        ) from error


def save_gif(frames: np.ndarray, path: Path, frame_seconds: float) -> None:
    images = [Image.fromarray(frame) for frame in frames]
    atomic_write(
        path,
        lambda tmp: images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 * frame_seconds), loop=0
        ),
    )


def render(run: str, episodes: PositiveInt = 2, width: PositiveInt = 480, height: PositiveInt = 360) -> list[Path]:
    """Render the first ``episodes`` recorded episodes of ``run`` to ``episode_<i>.gif`` files in it.

    Args:
        run: The run folder (logs/<algo>/<Task>/<timestamp>_<sim>) holding predictions.npz.
        episodes: How many episodes to render, from the first.
        width: Frame width in pixels.
        height: Frame height in pixels.
    """
    folder = Path(run)
    predictions, config = folder / "predictions.npz", folder / "config.yaml"
    if not predictions.is_file():
        raise ValueError(
            f"{predictions} does not exist; record episodes first: python -m unilab predict --config {config} "
            f"--ckpt_path {folder / 'checkpoints' / 'last.ckpt'}"
        )
    recorded = np.load(predictions)
    task = task_of_run(config)
    camera = mujoco.MjvCamera()
    camera.lookat[:] = task.obj.pos
    camera.distance, camera.azimuth, camera.elevation = CAMERA_DISTANCE, CAMERA_AZIMUTH, CAMERA_ELEVATION
    models: dict[float, mujoco.MjModel] = {}
    written = []
    for episode in range(min(episodes, recorded["alive"].shape[1])):
        scale = float(recorded["object_scale"][episode])
        if scale not in models:
            models[scale] = scene_for_video(task, scale)
        model = models[scale]
        steps = int(recorded["alive"][:, episode].sum())
        frames = episode_frames(
            model, SceneLayout.from_model(model, task.hand), recorded["state"][:steps, episode], camera, width, height
        )
        path = folder / f"episode_{episode}.gif"
        save_gif(frames, path, float(recorded["ctrl_dt"]))
        print(f"{path}: {steps} steps ({'dropped' if recorded['dropped'][episode] else 'kept'}, scale {scale:g})")
        written.append(path)
    return written


def render_main(args: list[str]) -> list[Path]:
    parser = ArgumentParser(prog="python -m unilab render", description=render.__doc__)
    parser.add_function_arguments(render)
    return render(**vars(parser.parse_args(args)))
