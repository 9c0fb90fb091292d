"""Watch a policy: render the episodes ``predict`` recorded to GIF and MP4 with MuJoCo's offscreen renderer.

    python -m unilab render --run <run folder> [--episodes 2] [--width 480] [--height 360]

reads ``<run>/predictions.npz`` and the run's ``config.yaml`` (for the hand and object) and writes
``<run>/episode_<i>.gif`` and ``<run>/episode_<i>.mp4`` (H.264), one frame per control step at real-time
speed. Headless machines render through EGL: ``unilab`` sets ``MUJOCO_GL=egl`` when no display is present,
libEGL exists and it is unset.
"""

from __future__ import annotations

import io
import logging
import os
from fractions import Fraction
from pathlib import Path

import mujoco
import numpy as np
import torch
from jsonargparse import ArgumentParser
from jsonargparse.typing import PositiveInt
from lightning.pytorch import Callback
from PIL import Image

from unilab.errors import UnilabError
from unilab.files import atomic_write
from unilab.prediction import record_trajectories
from unilab.runs import task_of_run
from unilab.sim.scene import OBJECT_BODY, SceneLayout, build_scene
from unilab.tasks.base import InHandRotationEnv

log = logging.getLogger(__name__)


class RenderingError(UnilabError, RuntimeError):
    """Offscreen rendering is not available on this machine."""


CAMERA_DISTANCE = 0.24  # m from the object: hand and object fill most of the frame
CAMERA_AZIMUTH = 150.0  # deg
CAMERA_ELEVATION = -30.0  # deg
BACKGROUND = (0.55, 0.6, 0.65)  # a light grey-blue: dark fingers read against it
LOOKAT_BELOW_OBJECT = np.array([0.0, 0.0, -0.03])  # m: frame the fingers under the object too


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
    spec.worldbody.add_light(pos=[0.0, 0.0, 1.5], dir=[0.0, 0.0, -1.0], diffuse=[0.7, 0.7, 0.7], castshadow=False)
    spec.add_texture(
        name="unilab_sky",
        type=mujoco.mjtTexture.mjTEXTURE_SKYBOX,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
        rgb1=list(BACKGROUND),
        rgb2=[0.9 * c for c in BACKGROUND],
        width=64,
        height=64,
    )
    model = spec.compile()
    model.vis.headlight.ambient[:] = 0.45
    model.vis.headlight.diffuse[:] = 0.6
    return model


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
            camera.lookat[:] = row[joints : joints + 3] + LOOKAT_BELOW_OBJECT  # follow the object and the hand under it
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


def turned_about_z(quats: np.ndarray) -> np.ndarray:
    """(T,) rad the object has turned about world z after each of ``quats`` (T, 4) wxyz, from the first."""
    w, x, y, z = (quats[:, i].astype(np.float64) for i in range(4))
    yaw = np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
    steps = np.diff(yaw, prepend=yaw[:1])
    return np.cumsum((steps + np.pi) % (2.0 * np.pi) - np.pi)


def annotate(frames: np.ndarray, turned: np.ndarray, frame_seconds: float) -> np.ndarray:
    """Frames with the episode time and the angle turned about z written in the top-left corner."""
    from PIL import ImageDraw

    out = np.empty_like(frames)
    for t, frame in enumerate(frames):
        image = Image.fromarray(frame)
        text = f"t {t * frame_seconds:4.1f} s   turned {turned[t]:+5.2f} rad"
        ImageDraw.Draw(image).text((6, 4), text, fill=(20, 20, 20))
        out[t] = np.asarray(image)
    return out


def save_gif(frames: np.ndarray, path: Path, frame_seconds: float) -> None:
    images = [Image.fromarray(frame) for frame in frames]
    atomic_write(
        path,
        lambda tmp: images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 * frame_seconds), loop=0
        ),
    )


def save_mp4(frames: np.ndarray, path: Path, frame_seconds: float) -> None:
    """H.264 in MP4 (yuv420p, which players expect; odd sizes are padded by one edge pixel)."""
    import av

    height, width = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")

    def write(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(1 / frame_seconds).limit_denominator(1000))
            stream.height, stream.width = frames.shape[1:3]
            stream.pix_fmt = "yuv420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())  # flush the encoder

    atomic_write(path, write)


def render(run: str, episodes: PositiveInt = 2, width: PositiveInt = 480, height: PositiveInt = 360) -> list[Path]:
    """Render the first ``episodes`` recorded episodes of ``run`` to ``episode_<i>.gif`` and ``.mp4`` files in it.

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
    task = task_of_run(folder, 1, sim="mujoco", num_threads=1)  # only its hand, object and physics are used
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
        states = recorded["state"][:steps, episode]
        turned = turned_about_z(states[:, -4:])
        frames = annotate(frames, turned, float(recorded["ctrl_dt"]))
        gif, mp4 = folder / f"episode_{episode}.gif", folder / f"episode_{episode}.mp4"
        save_gif(frames, gif, float(recorded["ctrl_dt"]))
        save_mp4(frames, mp4, float(recorded["ctrl_dt"]))
        outcome = "dropped" if recorded["dropped"][episode] else "kept"
        print(f"{gif} and .mp4: {steps} steps ({outcome}, scale {scale:g}, turned {turned[-1]:+.2f} rad about z)")
        written += [gif, mp4]
    return written


def render_main(args: list[str]) -> list[Path]:
    parser = ArgumentParser(prog="python -m unilab render", description=render.__doc__)
    parser.add_function_arguments(render)
    return render(**vars(parser.parse_args(args)))


class ValidationVideo(Callback):
    """Log rendered validation episodes to TensorBoard (Images tab, animated), headless; off by default.

        python -m unilab train ... --trainer.callbacks+=unilab.video.ValidationVideo --trainer.callbacks.episodes=1

    After each validation the first ``episodes`` episodes of the validation manifest are played again with
    the deployed policy, rendered offscreen (EGL or OSMesa) and logged as ``video/episode_<i>``. Where no
    OpenGL context can be made it warns once and stays off; training never needs a display.
    """

    def __init__(self, episodes: PositiveInt = 1, width: PositiveInt = 320, height: PositiveInt = 240) -> None:
        self.episodes, self.width, self.height = episodes, width, height
        self.disabled = False
        self._models: dict[float, mujoco.MjModel] = {}

    def on_validation_end(self, trainer, pl_module) -> None:
        writer = getattr(trainer.logger, "experiment", None)
        if self.disabled or trainer.sanity_checking or not trainer.is_global_zero or writer is None:
            return
        datamodule = trainer.datamodule
        env = datamodule.evaluation_env(self.episodes)

        actor = pl_module.deterministic_actor()

        def act(obs):  # the deployed policy: what policy.onnx computes
            obs = {name: value.to(pl_module.device) for name, value in obs.items()}
            with torch.no_grad(), torch.autocast(pl_module.device.type, enabled=False):
                return actor(*pl_module.export_inputs(obs).values()), {}

        recorded = record_trajectories(env, act, datamodule.eval_seed)
        try:
            for episode in range(self.episodes):
                gif = self._episode_gif(env, recorded, episode)
                log_gif(writer, f"video/episode_{episode}", gif, self.width, self.height, trainer.global_step)
        except RenderingError as error:
            self.disabled = True
            log.warning("validation videos are off: %s", error)

    def _episode_gif(self, env, recorded: dict[str, np.ndarray], episode: int) -> bytes:
        scale = float(recorded["object_scale"][episode])
        if scale not in self._models:
            self._models[scale] = scene_for_video(env, scale)
        model = self._models[scale]
        steps = int(recorded["alive"][:, episode].sum())
        states = recorded["state"][:steps, episode]
        camera = mujoco.MjvCamera()
        camera.distance, camera.azimuth, camera.elevation = CAMERA_DISTANCE, CAMERA_AZIMUTH, CAMERA_ELEVATION
        layout = SceneLayout.from_model(model, env.hand)
        frames = episode_frames(model, layout, states, camera, self.width, self.height)
        frames = annotate(frames, turned_about_z(states[:, -4:]), float(recorded["ctrl_dt"]))
        buffer = io.BytesIO()
        images = [Image.fromarray(frame) for frame in frames]
        duration = round(1000 * float(recorded["ctrl_dt"]))
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
        return buffer.getvalue()


def log_gif(writer, tag: str, gif: bytes, width: int, height: int, step: int) -> None:
    """An animated GIF as a TensorBoard image summary (what ``add_video`` writes, without moviepy)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
