"""Two-process DDP fit on CPU (gloo): both ranks end with identical parameters."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.test_cli_fit import fit_args

HELPERS = Path(__file__).resolve().parent / "helpers"


def test_two_rank_ddp_fit_keeps_ranks_identical(tmp_path, cache_dir):
    args = fit_args(
        cache_dir,
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
        "--trainer.callbacks+=ddp_probe.SaveRankParameters",
        f"--trainer.callbacks.folder={tmp_path}",
        "--data.env.num_threads=1",
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HELPERS), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-m", "unilab", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    torch.testing.assert_close(rank0["params"], rank1["params"], rtol=0, atol=0)
    # the observation normalisers too: merged over ranks each update, not rank 0's alone
    assert rank0["buffers"].keys() == rank1["buffers"].keys()
    for name, value in rank0["buffers"].items():
        torch.testing.assert_close(value, rank1["buffers"][name], rtol=0, atol=0, msg=name)
    assert rank0["env_steps"] == 2 * 2 * 4 * 8  # two ranks x two iterations x horizon x envs
    assert len(list(tmp_path.glob("logs/ppo/*/*/checkpoints/last.ckpt"))) == 1
