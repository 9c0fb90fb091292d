"""Checkpoints written atomically in the run folder itself, so a kill or a full disk never destroys one.

Lightning's own writer goes through fsspec, which stages the file in the system temporary folder and
copies it into place when that folder is on another filesystem (a tmpfs ``/tmp``): a kill during the
copy leaves a truncated ``last.ckpt``. Here the bytes go to a hidden temporary file beside the target,
are flushed to disk, and replace the target with one rename.
"""

from __future__ import annotations

import time
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
        path = Path(path)
        remove_stale_partials(path)
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


STALE_SECONDS = 60.0
"""A temporary file nobody has written to for this long belongs to a save that was killed."""


def remove_stale_partials(path: Path) -> None:
    """Delete the hidden temporary files that killed saves of ``path`` left behind (never a live one)."""
    now = time.time()
    for partial in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if now - partial.stat().st_mtime > STALE_SECONDS:
                partial.unlink()
        except FileNotFoundError:
            pass
