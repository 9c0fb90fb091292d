"""Asynchronous collection for APPO: a spawned collector process feeding a shared-memory ring buffer.

    learner (Lightning process)                       collector (spawned process)
    ---------------------------                       ---------------------------
    PolicyBoard.publish(weights, version += 1)  -->   pull the newest weights before each rollout
    RolloutRing.read() <-- oldest ready slot    <--   RolloutRing.write(rollout stamped with version)

All shared state is torch tensors in shared memory, allocated by the learner and handed to the
child at spawn, so nothing outlives the two processes. A slot is written only when it is free or
holds an unread rollout (which is then dropped and counted) and never while the learner copies it,
so a read never returns a torn rollout. The learner checks the collector's liveness and heartbeat
while it waits and raises ``CollectorError`` with the collector's traceback.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import pickle
import queue
import signal
import time
import traceback
from collections.abc import Callable

import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader

from unilab.data.collector import RolloutCollector
from unilab.data.record import Rollout, RolloutLayout
from unilab.data.ring import HEARTBEAT, PAUSED, READY_FLAG, STOP, PolicyBoard, RolloutRing
from unilab.data.rollout import (
    EnvDataModule,
    EnvFactory,
    RolloutDataset,
    in_process_loader,
    mean_metrics,
)

log = logging.getLogger(__name__)


class CollectorError(RuntimeError):
    """The collector process died, hung or raised; the message carries its traceback."""


class LearnerGone(Exception):
    """Raised inside the collector when its learner process has exited."""


def portable_env_factory(factory: EnvFactory, **overrides) -> Callable[[int], object]:
    """A picklable ``num_envs -> env`` factory (jsonargparse's partials hold unpicklable state)."""
    func, args, keywords = factory, (), {}
    if isinstance(factory, functools.partial):
        func, args, keywords = factory.func, factory.args, dict(factory.keywords)
        if args and isinstance(args[-1], type) and not isinstance(func, type):  # jsonargparse wrapper
            func, args = args[-1], ()
    portable = functools.partial(func, *args, **{**keywords, **overrides})
    try:
        pickle.dumps(portable)
    except Exception as error:
        raise TypeError(f"the env factory {factory!r} cannot be sent to a collector process: {error}") from error
    return portable


def collector_main(
    env_factory: Callable[[int], object],
    num_envs: int,
    seed: int,
    ring: RolloutRing,
    board: PolicyBoard,
    errors,
    metrics,
    parent_pid: int,
) -> None:
    """Entry point of the collector process: step the env with the newest policy, forever.

    Ctrl-C reaches the whole process group; the learner owns it (it saves and stops this process), so
    the collector ignores SIGINT instead of dying with a traceback of its own.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        torch.set_num_threads(1)
        layout = ring.layout
        collector = RolloutCollector(env_factory(num_envs), layout, seed)
        rollout = layout.allocate()
        policy = copy.deepcopy(board.shared)
        control = ring.control

        def heartbeat() -> None:
            control[HEARTBEAT] = time.time()

        def learner_alive() -> None:
            if os.getppid() != parent_pid:
                raise LearnerGone

        version = board.pull(policy, -1, learner_alive)

        collector.start()
        written = 0
        heartbeat()
        control[READY_FLAG] = 1
        while control[STOP] == 0:
            learner_alive()
            if control[PAUSED] != 0:
                heartbeat()
                time.sleep(0.005)
                continue
            version = board.pull(policy, version, learner_alive)
            env_metrics = collector.collect(policy, rollout, on_step=heartbeat)
            rollout["stamp"][0] = version
            metrics.put((written, env_metrics))  # queued before the rollout is readable
            ring.write(rollout, learner_alive)
            written += 1
    except LearnerGone:  # nobody will read or stop us
        return
    except BaseException:
        errors.put(traceback.format_exc())
        raise


class AsyncCollector:
    """Starts, watches and stops the collector process (learner side)."""

    def __init__(
        self,
        env_factory: Callable[[int], object],
        layout: RolloutLayout,
        policy: nn.Module,
        ring_size: int,
        seed: int,
        startup_timeout: float,
        hang_timeout: float,
    ) -> None:
        self.context = mp.get_context("spawn")
        self.layout = layout
        self.ring = RolloutRing(layout, ring_size, self.context)
        self.board = PolicyBoard(policy, self.context)
        self.errors = self.context.Queue()
        self.metrics = self.context.Queue()
        self.startup_timeout, self.hang_timeout = startup_timeout, hang_timeout
        self._newest_metrics = -1
        self.process = self.context.Process(
            target=collector_main,
            args=(env_factory, layout.num_envs, seed, self.ring, self.board, self.errors, self.metrics, os.getpid()),
            name="unilab-collector",
            daemon=True,
        )
        self.started_at = time.time()
        self.process.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def publish(self, policy: nn.Module) -> int:
        return self.board.publish(policy, self.check_health)

    def counters(self) -> dict[str, int]:
        """Rollouts written, dropped and read so far, and those ready now."""
        return self.ring.counters(self.check_health)

    def set_paused(self, paused: bool) -> None:
        self.ring.control[PAUSED] = float(paused)

    def read(self, into: dict[str, torch.Tensor]) -> float:
        """Block until a rollout is copied into ``into``; returns the seconds waited."""
        started = time.perf_counter()
        while not self.ring.try_read(into, self.check_health):
            self.check_health()
            time.sleep(0.002)
        return time.perf_counter() - started

    def drain_metrics(self, sequence: int) -> list[dict[str, float]]:
        """Env metrics of every rollout written since the last call, up to at least rollout ``sequence``."""
        drained, newest = [], self._newest_metrics
        while True:
            try:
                newest, metrics = self.metrics.get(timeout=1.0) if newest < sequence else self.metrics.get_nowait()
            except queue.Empty:
                break
            drained.append(metrics)
        self._newest_metrics = newest
        return drained

    def check_health(self) -> None:
        control = self.ring.control
        if not self.process.is_alive():
            raise CollectorError(self._failure(f"the collector process died (exit code {self.process.exitcode})"))
        if control[READY_FLAG] == 0:
            if time.time() - self.started_at > self.startup_timeout:
                raise CollectorError(self._failure(f"the collector did not start within {self.startup_timeout:.0f} s"))
        elif time.time() - float(control[HEARTBEAT]) > self.hang_timeout:
            raise CollectorError(self._failure(f"the collector made no progress for {self.hang_timeout:.0f} s"))

    def _failure(self, reason: str) -> str:
        try:
            details = self.errors.get(timeout=1.0)
        except queue.Empty:
            details = "(no Python traceback: the process was killed or crashed in native code)"
        self.stop(grace=0.0)
        return f"{reason}\n--- collector traceback ---\n{details}"

    def stop(self, grace: float = 5.0) -> None:
        """Ask the process to stop, kill it after ``grace`` seconds, and release the queues."""
        self.ring.control[STOP] = 1
        self.process.join(timeout=grace)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        for channel in (self.errors, self.metrics):
            channel.cancel_join_thread()
            channel.close()


class AsyncRolloutDataModule(EnvDataModule):
    """Owns the collector process; the algorithm starts it with its policy in ``on_train_start``."""

    local_envs = 1  # the collector process builds the full batch

    def __init__(
        self,
        env: EnvFactory,
        num_envs: int = 512,
        ring_size: int = 4,
        collector_threads: int | None = None,
        startup_timeout: float = 300.0,
        hang_timeout: float = 20.0,
        **kwargs,
    ) -> None:
        """
        Args:
            env: The task (class path + init args); the collector builds it with ``num_envs`` envs.
            num_envs: Parallel environments in the collector.
            ring_size: Slots of the shared ring buffer; when all hold unread rollouts the oldest is dropped.
            collector_threads: Simulator threads of the collector (default: the cores this process may use).
            startup_timeout: Seconds the collector may take to build its env before the fit fails.
            hang_timeout: Seconds without an env step after which the collector counts as hung.
            **kwargs: The rollout sizes and manifests of ``EnvDataModule`` (``horizon``, ``iterations_per_epoch``,
                ``seed``, ``val_episodes``, ``test_episodes``, ``eval_seed``).
        """
        if ring_size < 2:
            raise ValueError(f"data.ring_size must be >= 2, got {ring_size}")
        super().__init__(env, num_envs, **kwargs)
        self.ring_size = ring_size
        self.collector_threads = collector_threads
        self.startup_timeout, self.hang_timeout = startup_timeout, hang_timeout
        self.collector: AsyncCollector | None = None
        self.buffers: list[dict[str, torch.Tensor]] = []
        self._next_buffer = 0

    def start_collector(self, policy: nn.Module, bootstrap_group: str | None, learner_buffers: int) -> None:
        """Spawn the collector with a copy of ``policy`` (an ``Actor``); ``bootstrap_group`` is the group its
        critic reads; ``learner_buffers`` rollouts stay readable at once."""
        if self.collector is not None:
            return
        layout = RolloutLayout(self.horizon, self.num_envs, self.observation_dims, self.num_actions, bootstrap_group)
        factory = portable_env_factory(self.env_factory, num_threads=self.collector_threads)
        self.buffers = [layout.allocate() for _ in range(learner_buffers)]
        self.collector = AsyncCollector(
            factory, layout, policy, self.ring_size, self.seed, self.startup_timeout, self.hang_timeout
        )
        log.info(
            "collector process %d started (%d envs, ring of %d)", self.collector.pid, self.num_envs, self.ring_size
        )

    def next_rollout(self) -> Rollout:
        if self.collector is None:
            raise RuntimeError("no collector: the algorithm must call datamodule.start_collector() in on_train_start")
        buffer = self.buffers[self._next_buffer]
        self._next_buffer = (self._next_buffer + 1) % len(self.buffers)
        waited = self.collector.read(buffer)
        metrics = self.collector.drain_metrics(int(buffer["stamp"][1]))
        return Rollout(buffer, mean_metrics(metrics), waited)

    def stop_collector(self) -> None:
        if self.collector is not None:
            self.collector.stop()
            self.collector = None

    def train_dataloader(self) -> DataLoader:
        return in_process_loader(RolloutDataset(self, self.iterations_per_epoch))

    def teardown(self, stage: str) -> None:
        self.stop_collector()

    def on_exception(self, exception: BaseException) -> None:
        self.stop_collector()
