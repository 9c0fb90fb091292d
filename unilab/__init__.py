"""unilab: dexterous in-hand rotation policies on CPU-batched physics with PyTorch Lightning."""

import ctypes.util
import os

from unilab.cpu_share import choose_wait_policy

__version__ = "0.1.0"

# Rendering (``python -m unilab render``) on a machine without a display goes through EGL. MuJoCo
# reads the variable once, when it is first imported, so it is set here, before unilab imports it;
# only where libEGL exists, since with MUJOCO_GL=egl and no libEGL ``import mujoco`` itself fails.
_HEADLESS = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
if "MUJOCO_GL" not in os.environ and _HEADLESS and ctypes.util.find_library("EGL"):
    os.environ["MUJOCO_GL"] = "egl"

# Before torch is imported anywhere in unilab: how its threads wait depends on the other processes.
WAIT_POLICY_NOTE = choose_wait_policy()
