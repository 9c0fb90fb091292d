"""Checkpoints written atomically in the run folder itself, so a kill or a full disk never destroys one.

Lightning's own writer goes through fsspec, which stages the file in the system temporary folder and
copies it into place when that folder is on another filesystem (a tmpfs ``/tmp``): a kill during the
copy leaves a truncated ``last.ckpt``. Here the bytes go to a hidden temporary file beside the target,
are flushed to disk, and replace the target with one rename.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from unilab.files import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are a temporary file beside the target + fsync + rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_write(Path(path), lambda tmp: torch.save(checkpoint, tmp))
