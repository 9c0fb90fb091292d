"""benchmarks/learning.py's curves of a resumed run: one point per logged step, the newest, in env-step order."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from learning import binned_means, read_curves, training_tail_drop_rates  # noqa: E402


def write_events(folder: Path, steps: range, length: float, name: str) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder), filename_suffix=name)
    for step in steps:
        writer.add_scalar("perf/env_steps", 100.0 * (step + 1), step)
        writer.add_scalar("episode/length", length + step, step)
    writer.close()


def test_a_resumed_run_keeps_the_newest_value_of_each_step_in_env_step_order(tmp_path):
    write_events(tmp_path, range(0, 10), 0.0, "a")  # the first fit logged steps 0-9
    write_events(tmp_path, range(6, 12), 1000.0, "b")  # resumed from the checkpoint of step 5
    curve = read_curves(tmp_path)["episode/length"]
    assert [x for x, _ in curve] == [100.0 * (step + 1) for step in range(12)]
    assert [y for _, y in curve[:6]] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert [y for _, y in curve[6:]] == [1006.0, 1007.0, 1008.0, 1009.0, 1010.0, 1011.0]


def test_binned_means_average_each_window():
    points = [(0.0, 1.0), (1.0, 3.0), (9.0, 10.0), (10.0, 20.0)]
    assert binned_means(points, bins=2) == [(0.5, 2.0), (9.5, 15.0)]
    assert binned_means(points, bins=2)[0][1] == pytest.approx(2.0)


def test_the_training_tail_averages_the_last_tenth_of_env_steps_per_scale(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for step in range(20):  # env-steps 100 ... 2000; the last tenth is 1800 and later: steps 17, 18, 19
        writer.add_scalar("perf/env_steps", 100.0 * (step + 1), step)
        writer.add_scalar("episode/drop_rate", 1.0 if step < 17 else 0.1 * (step - 16), step)
        writer.add_scalar("drop_rate_by_scale/0.8", 0.5, step)
    writer.close()
    assert training_tail_drop_rates(tmp_path) == {"overall": 0.2, "0.8": 0.5}
