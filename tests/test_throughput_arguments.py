"""benchmarks/train_throughput.py's arguments: which reach which algorithm, and the precision it reports."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from train_throughput import overrides_for, precision_of  # noqa: E402


def test_prefixed_arguments_reach_only_their_algorithm():
    arguments = ["--data.num_envs=64", "appo:--model.num_mini_batches=1", "ppo:--trainer.precision=32-true"]
    assert overrides_for("ppo", arguments) == ["--data.num_envs=64", "--trainer.precision=32-true"]
    assert overrides_for("appo", arguments) == ["--data.num_envs=64", "--model.num_mini_batches=1"]


def test_the_precision_reported_is_the_last_one_given_in_either_spelling():
    assert precision_of([]) == "32-true"
    assert precision_of(["--trainer.precision=bf16-mixed"]) == "bf16-mixed"
    assert precision_of(["--trainer.precision=bf16-mixed", "--trainer.precision", "32-true"]) == "32-true"
