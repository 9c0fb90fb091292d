"""Torch threads wait passively when other processes keep cores busy (OMP_WAIT_POLICY, chosen before torch loads)."""

import subprocess
import sys

import pytest

from unilab import cpu_share


def fake_ticks(monkeypatch, busy_fraction: float, cores: int = 2) -> None:
    readings = iter([(0, 0), (int(1000 * busy_fraction), 1000)])
    monkeypatch.setattr(cpu_share, "cpu_ticks", lambda: next(readings))
    monkeypatch.setattr(cpu_share.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(cpu_share.time, "sleep", lambda seconds: None)


@pytest.mark.parametrize(("busy_fraction", "expected"), [(0.05, None), (0.5, "PASSIVE"), (0.9, "PASSIVE")])
def test_passive_waiting_only_when_other_processes_hold_cores(monkeypatch, busy_fraction, expected):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    fake_ticks(monkeypatch, busy_fraction)
    note = cpu_share.choose_wait_policy()
    assert cpu_share.os.environ.get("OMP_WAIT_POLICY") == expected
    assert (note is not None) == (expected is not None)


def test_an_explicit_wait_policy_is_kept(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    fake_ticks(monkeypatch, 0.9)
    assert cpu_share.choose_wait_policy() is None and cpu_share.os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_busy_core_makes_a_fresh_unilab_process_wait_passively():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import os, unilab; print(os.environ.get('OMP_WAIT_POLICY'))"],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in cpu_share.os.environ.items() if k != "OMP_WAIT_POLICY"},
        )
    finally:
        hog.kill()
        hog.wait()
    assert probe.stdout.strip() == "PASSIVE", probe.stderr
