"""Shared memory between the APPO learner and its collector process: the rollout ring and the policy board.

The ring has ``size`` slots of one rollout each; a slot is written only when free or holding an unread
rollout (which is then dropped and counted) and never while the learner copies it, so a read never
returns a torn rollout. The board holds the newest weights with a version counter.

A process killed or stopped while it holds one of the shared locks never releases it, so no side
waits on a lock blindly: each wait polls and calls the caller's ``on_wait`` check, which raises when
the other process is dead or hung.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from unilab.data.record import RolloutLayout

FREE, WRITING, READY, READING = 0, 1, 2, 3
# Indices into the shared control vector.
STOP, PAUSED, READY_FLAG, HEARTBEAT, WRITTEN, DROPPED, READ = range(7)
LOCK_POLL_SECONDS = 0.25

Check = Callable[[], None] | None


@contextmanager
def holding(lock, on_wait: Check) -> Iterator[None]:
    """Hold ``lock``; while it is taken, call ``on_wait`` every ``LOCK_POLL_SECONDS`` (it raises to give up)."""
    while not lock.acquire(timeout=LOCK_POLL_SECONDS):
        if on_wait is not None:
            on_wait()
    try:
        yield
    finally:
        lock.release()


class RolloutRing:
    """``size`` shared slots; FIFO for the reader, the oldest unread slot is overwritten when full."""

    def __init__(self, layout: RolloutLayout, size: int, context) -> None:
        if size < 2:
            raise ValueError(f"the ring needs at least 2 slots, got {size}")
        self.layout = layout
        self.slots = [layout.allocate(shared=True) for _ in range(size)]
        self.state = torch.zeros(size, dtype=torch.int64).share_memory_()
        self.sequence = torch.zeros(size, dtype=torch.int64).share_memory_()
        self.control = torch.zeros(8, dtype=torch.float64).share_memory_()
        self.lock = context.Lock()

    # Writer side (collector) -------------------------------------------------------------------
    def write(self, rollout: dict[str, torch.Tensor], on_wait: Check = None) -> None:
        """Publish a rollout; drops (and counts) the oldest unread one when no slot is free."""
        with holding(self.lock, on_wait):
            free = (self.state == FREE).nonzero().flatten()
            if len(free):
                slot = int(free[0])
            else:
                ready = (self.state == READY).nonzero().flatten()
                slot = int(ready[self.sequence[ready].argmin()])
                self.control[DROPPED] += 1
            self.state[slot] = WRITING
            sequence = int(self.control[WRITTEN])
        target = self.slots[slot]
        for key, value in rollout.items():
            target[key].copy_(value)
        target["stamp"][1] = sequence
        with holding(self.lock, on_wait):
            self.sequence[slot] = sequence
            self.state[slot] = READY
            self.control[WRITTEN] += 1

    # Reader side (learner) ---------------------------------------------------------------------
    def try_read(self, into: dict[str, torch.Tensor], on_wait: Check = None) -> bool:
        """Copy the oldest ready rollout into ``into``; False when none is ready."""
        with holding(self.lock, on_wait):
            ready = (self.state == READY).nonzero().flatten()
            if not len(ready):
                return False
            slot = int(ready[self.sequence[ready].argmin()])
            self.state[slot] = READING
        for key, value in self.slots[slot].items():
            into[key].copy_(value)
        with holding(self.lock, on_wait):
            self.state[slot] = FREE
            self.control[READ] += 1
        return True

    def counters(self, on_wait: Check = None) -> dict[str, int]:
        with holding(self.lock, on_wait):
            written, dropped, read = (int(self.control[i]) for i in (WRITTEN, DROPPED, READ))
            pending = int((self.state == READY).sum())
        return {"written": written, "dropped": dropped, "read": read, "pending": pending}


class PolicyBoard:
    """The learner's newest acting weights in shared memory, with a version counter."""

    def __init__(self, policy: nn.Module, context) -> None:
        self.shared = copy.deepcopy(policy).cpu().share_memory()
        self.version = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.lock = context.Lock()

    def publish(self, policy: nn.Module, on_wait: Check = None) -> int:
        with holding(self.lock, on_wait), torch.no_grad():
            for target, source in zip(self.shared.state_dict().values(), policy.state_dict().values(), strict=True):
                target.copy_(source)
            self.version += 1
            return int(self.version)

    def pull(self, local: nn.Module, known_version: int, on_wait: Check = None) -> int:
        """Copy the shared weights into ``local`` if newer than ``known_version``; return the version held."""
        if int(self.version) == known_version:
            return known_version
        with holding(self.lock, on_wait), torch.no_grad():
            local.load_state_dict(self.shared.state_dict())
            return int(self.version)
