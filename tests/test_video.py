"""Rendering errors; the GIFs themselves are tested end to end in test_cli_fit (train -> eval --video)."""

import os
import subprocess
import sys

PROBE = """
import mujoco
from unilab.video import RenderingError, offscreen_renderer
try:
    offscreen_renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 8, 8)
except RenderingError as error:
    print(error)
"""


def test_a_machine_without_a_usable_opengl_gets_told_what_to_install():
    environment = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    environment["MUJOCO_GL"] = "glfw"  # a windowing backend, with no display to open a window on
    probe = subprocess.run([sys.executable, "-c", PROBE], env=environment, capture_output=True, text=True, timeout=120)
    assert "no OpenGL context for offscreen rendering (MUJOCO_GL=glfw" in probe.stdout, probe.stderr[-2000:]
    assert "libegl1" in probe.stdout
