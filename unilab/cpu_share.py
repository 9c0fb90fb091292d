"""Torch threads on a shared machine: wait passively when other processes already keep cores busy.

OpenMP worker threads spin while they wait for each other. When another process holds one of the
cores, a spinning team waits for its member that has no core: PPO's update took 2-3.6x longer on this
project's 2-core box with one core busy, and waiting passively halved that (docs/results.md), while on
an idle machine spinning is faster. So the choice is made once, at import, from what the other
processes are using then. The OpenMP runtime reads ``OMP_WAIT_POLICY`` when torch loads, so this must
run before ``import torch``; an explicit ``OMP_WAIT_POLICY`` is always kept.
"""

from __future__ import annotations

import os
import sys
import time


def default_num_threads() -> int:
    """Cores this process may use: the thread count of the simulator and of torch (they alternate)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


BUSY_CORES_FOR_PASSIVE = 0.5
"""Cores kept busy by other processes from which waiting passively pays."""


def cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores since boot, from /proc/stat; None where it cannot be read."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(window: float = 0.1) -> float | None:
    """Cores kept busy by every process during ``window`` seconds (this one sleeps meanwhile)."""
    first = cpu_ticks()
    time.sleep(window)
    second = cpu_ticks()
    if first is None or second is None or second[1] <= first[1]:
        return None
    return (second[0] - first[0]) / (second[1] - first[1]) * (os.cpu_count() or 1)


def choose_wait_policy() -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` when other processes keep cores busy; return why, or None."""
    if "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules:
        return None
    busy = busy_cores()
    if busy is None or busy < BUSY_CORES_FOR_PASSIVE:
        return None
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return f"{busy:.1f} cores busy with other processes: torch threads wait passively (OMP_WAIT_POLICY=PASSIVE)"
