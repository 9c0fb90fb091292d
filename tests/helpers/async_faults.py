"""Code run inside spawned collector processes by tests/test_appo.py (must be importable by name)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback

from unilab.data.ring import RolloutRing
from unilab.tasks.allegro import AllegroInhandRotation


def write_numbered_rollouts(ring: RolloutRing, count: int) -> None:
    """Write ``count`` rollouts as fast as possible, every value of rollout k equal to k."""
    rollout = ring.layout.allocate()
    for k in range(count):
        for name, tensor in rollout.items():
            if name != "stamp":
                tensor.fill_(k % 2 == 1 if tensor.dtype == torch.bool else k)
        rollout["stamp"][0] = k
        ring.write(rollout)


def hold_the_ring_lock_and_die(ring: RolloutRing) -> None:
    """Take the ring's lock and die by SIGKILL without releasing it."""
    ring.lock.acquire()
    os.kill(os.getpid(), signal.SIGKILL)


class FailingAllegro(AllegroInhandRotation):
    """Allegro env whose physics raises after ``fail_after`` control steps."""

    def __init__(self, num_envs: int, fail_after: int = 3, **kwargs) -> None:
        super().__init__(num_envs, **kwargs)
        self.fail_after = fail_after
        self.steps_taken = 0

    def step(self, actions):
        self.steps_taken += 1
        if self.steps_taken > self.fail_after:
            raise FloatingPointError("injected physics failure in the collector")
        return super().step(actions)


class KillCollectorAfter(Callback):
    """SIGKILL the collector process after ``steps`` learner steps; write its pid and the time to ``record``."""

    def __init__(self, steps: int, record: str) -> None:
        self.steps, self.record = steps, record

    def on_train_batch_end(self, trainer, module, *args) -> None:
        if int(module.iteration) == self.steps:
            pid = trainer.datamodule.collector.pid
            os.kill(pid, signal.SIGKILL)
            Path(self.record).write_text(json.dumps({"pid": pid, "killed_at": time.time()}))
