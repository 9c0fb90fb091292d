"""Bad input on the command line: a clear ``error: <what to do>`` instead of a wrapped traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from unilab.errors import UnilabError

PACKAGE_DIR = Path(__file__).resolve().parent
# What unilab raises for a bad config value, cache, model or checkpoint; the message says what to do.
USER_ERRORS = (ValueError, UnilabError)


class CheckpointError(UnilabError, ValueError):
    """A ``ckpt_path`` that does not exist, is not a Lightning checkpoint, or was trained on another layout."""


def refuse_invalid(checks: list[tuple[str, object, bool, str]], prefix: str = "model.") -> None:
    """Raise for the first ``(name, value, valid, expected)`` that is not valid (or NaN), naming ``<prefix><name>``."""
    for name, value, valid, expected in checks:
        if not valid or value != value:  # value != value: NaN
            raise ValueError(f"{prefix}{name} must be {expected}, got {value}")


def check_checkpoint(path: Path) -> None:
    """Fail fast, naming the file, when ``path`` is missing or not a readable Lightning checkpoint."""
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; `python -m unilab train --algo <algo> --task <task> --resume` "
            "continues the newest run, --ckpt_path=last does the same for fit"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # tensors stay on disk
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(error).__name__}); the file is truncated or not a "
            "checkpoint. Pick another one of the run (`--checkpoint best` or an epoch number N for epoch_N.ckpt)"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (it holds no state_dict)")


@contextmanager
def concise_user_errors(kinds: tuple[type[BaseException], ...] = USER_ERRORS) -> Iterator[None]:
    """Turn an error unilab raised about the config into ``error: <message>`` (exit 2) without the traceback.

    jsonargparse wraps errors raised while it builds the classes in its own, burying the message under
    the whole resolved config. Anything else, or an error raised outside unilab's code, propagates.
    ``kinds`` narrows what counts (while a command runs, only ``UnilabError``: a plain ValueError there
    is a bug and keeps its traceback).
    """
    try:
        yield
    except Exception as error:
        cause = next((e for e in exception_chain(error) if isinstance(e, kinds) and raise_site(e)), None)
        if cause is None:
            raise
        message = cause.args[0] if cause.args else type(cause).__name__
        print(f"error: {message}\n(raised at {raise_site(cause)})", file=sys.stderr)
        raise SystemExit(2) from error


def exception_chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what it was raised from or during, outermost first."""
    while error is not None:
        yield error
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)


def raise_site(error: BaseException) -> str | None:
    """``unilab/<module>.py:<line>`` where ``error`` was raised, or None when that was outside unilab.

    A check raised by a helper of this module (``refuse_invalid``) is placed at the helper's caller.
    """
    frames = []
    trace = error.__traceback__
    while trace is not None:
        frames.append((Path(trace.tb_frame.f_code.co_filename).resolve(), trace.tb_lineno))
        trace = trace.tb_next
    if not frames or not frames[-1][0].is_relative_to(PACKAGE_DIR):
        return None
    this_module = Path(__file__).resolve()
    file, line = next(((f, n) for f, n in reversed(frames) if f != this_module), frames[-1])
    return f"{file.relative_to(PACKAGE_DIR.parent)}:{line}"
