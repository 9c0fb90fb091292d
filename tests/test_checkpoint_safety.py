"""A kill while ``last.ckpt`` is being written never costs the previous checkpoint, whatever the filesystems."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.test_cli_fit import ROUTE, fit_args

TMPFS = Path("/dev/shm")
# Big enough networks that a save takes long enough to be caught in the act (a checkpoint of ~40 MB).
WIDE = ["--model.actor_hidden_dims=[1024, 1024]", "--model.critic_hidden_dims=[1024, 1024]"]


def wait_for_a_save_in_progress(checkpoints: Path, process: subprocess.Popen, after: float) -> bool:
    """Poll until a hidden temporary file of last.ckpt appears (a save is under way) or ``last.ckpt`` changes."""
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if any(checkpoints.glob(".last.ckpt*")):
            return True
        last = checkpoints / "last.ckpt"
        if last.exists() and last.stat().st_mtime > after:  # a writer without temporary files: caught mid-copy
            return True
        time.sleep(0.0005)
    return False


@pytest.mark.skipif(not TMPFS.is_dir(), reason="needs a tmpfs at /dev/shm for the temporary folder")
def test_kill_during_checkpoint_save_with_tmp_on_another_filesystem_always_resumes(tmp_path, cache_dir):
    temporary = Path(os.environ.get("TEST_TMPFS", TMPFS)) / f"unilab-test-{os.getpid()}"
    temporary.mkdir(parents=True, exist_ok=True)
    assert temporary.stat().st_dev != tmp_path.stat().st_dev, "the test needs two filesystems"
    env = {**os.environ, "TMPDIR": str(temporary)}
    base = [sys.executable, "-m", "unilab"]
    first = [*base, *fit_args(cache_dir, "--trainer.max_epochs=1000", *WIDE)]
    resume = [*base, "train", *ROUTE, "--resume", "--trainer.max_epochs=1000"]
    kills = 0
    try:
        for round_index in range(3):
            command = first if round_index == 0 else resume
            started = time.time()
            log = tmp_path / f"round_{round_index}.log"
            with open(log, "wb") as output:
                process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT)
            try:
                checkpoints = next(iter(tmp_path.glob("logs/ppo/*/*/checkpoints")), None)
                while checkpoints is None and time.time() < started + 120 and process.poll() is None:
                    time.sleep(0.05)
                    checkpoints = next(iter(tmp_path.glob("logs/ppo/*/*/checkpoints")), None)
                assert checkpoints is not None, log.read_text()[-2000:]
                if round_index == 0:  # let one save finish, so that there is a previous checkpoint to lose
                    while not (checkpoints / "last.ckpt").exists() and time.time() < started + 120:
                        time.sleep(0.01)
                    started = time.time()
                if wait_for_a_save_in_progress(checkpoints, process, started):
                    os.kill(process.pid, signal.SIGKILL)
                    kills += 1
                process.wait(timeout=30)
            finally:
                if process.poll() is None:
                    process.kill()
            for saved in checkpoints.glob("*.ckpt"):
                checkpoint = torch.load(saved, map_location="cpu", weights_only=False)
                assert "state_dict" in checkpoint, saved
        assert kills == 3
        assert list(temporary.iterdir()) == []  # nothing staged in the temporary folder
        finish = subprocess.run(
            [*base, "train", *ROUTE, "--resume", f"--trainer.max_epochs={epochs_saved(checkpoints) + 1}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert finish.returncode == 0, finish.stderr[-2000:]
    finally:
        for leftover in temporary.iterdir():
            leftover.unlink()
        temporary.rmdir()


def epochs_saved(checkpoints: Path) -> int:
    saved = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    return int(saved["epoch"]) + 1


def test_partial_files_of_killed_saves_are_cleared_at_the_next_save(tmp_path):
    from unilab.checkpoint_io import STALE_SECONDS, AtomicCheckpointIO

    target = tmp_path / "last.ckpt"
    stale, live = tmp_path / ".last.ckpt.dead1234.tmp", tmp_path / ".last.ckpt.busy5678.tmp"
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written right now")
    old = time.time() - 2 * STALE_SECONDS
    os.utime(stale, (old, old))
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, target)
    assert torch.load(target, weights_only=False) == {"state_dict": {}}
    assert not stale.exists() and live.exists()
