"""Writing files so that a reader, or a crash, never sees half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _new_file_mode() -> int:
    """What ``open`` would give a new file under the current umask (``mkstemp`` alone gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


NEW_FILE_MODE = _new_file_mode()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, flush it to disk, then rename it onto ``path``.

    The temporary file lives in the target's own folder, so the rename never crosses a filesystem: a
    crash or a full disk leaves either the old file or the new one, plus at most a hidden ``.tmp``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, NEW_FILE_MODE)
        _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
        _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_unique_dir(parent: Path, stem: str, suffix: str = "") -> Path:
    """Create ``parent/<stem><suffix>`` exclusively; on a clash (two runs started in the same second) try
    ``<stem>b<suffix>``, ``<stem>c<suffix>``, ... which sort after the first, so "newest" stays the last."""
    parent.mkdir(parents=True, exist_ok=True)
    for mark in ["", *"bcdefghijklmnopqrstuvwxyz"]:
        candidate = parent / f"{stem}{mark}{suffix}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free folder name for {stem}<letter>{suffix} under {parent}")
