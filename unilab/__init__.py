"""unilab: dexterous in-hand rotation policies on CPU-batched physics with PyTorch Lightning."""

import os

__version__ = "0.1.0"

# Rendering (``python -m unilab render``) on a machine without a display goes through EGL. MuJoCo
# reads the variable once, when it is first imported, so it is set here, before unilab imports it.
if "MUJOCO_GL" not in os.environ and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ["MUJOCO_GL"] = "egl"
