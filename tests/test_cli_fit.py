"""End-to-end: LightningCLI fit in-process on real physics, tiny sizes."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from unilab.cli import main

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "ppo" / "allegro_inhand" / "mujoco.yaml"


def fit_args(cache_dir: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config",
        str(CONFIG),
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--data.num_envs=8",
        "--data.horizon=4",
        "--data.iterations_per_epoch=2",
        f"--data.env.cache.cache_dir={cache_dir}",
        "--data.env.cache.generate_count=0",
        "--data.env.num_threads=2",
        "--model.actor_hidden_dims=[32, 32]",
        "--model.critic_hidden_dims=[32, 32]",
        *extra,
    ]


def run_dirs(root: Path) -> list[Path]:
    return sorted((root / "logs" / "ppo" / "AllegroInhandRotation").iterdir())


def test_fit_trains_and_writes_run_directory(tmp_path, monkeypatch, cache_dir):
    monkeypatch.chdir(tmp_path)
    cli = main(fit_args(cache_dir))
    model = cli.model
    assert int(model.iteration) == 2 and int(model.env_steps) == 2 * 4 * 8
    (run,) = run_dirs(tmp_path)
    assert run.name.endswith("_mujoco")
    assert (run / "checkpoints" / "last.ckpt").exists()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["init_args"]["num_envs"] == 8
    assert list(run.glob("events.out.tfevents*"))
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["unilab"]["observation_dims"]["policy"] == 105


def test_seeded_fits_are_reproducible(tmp_path, monkeypatch, cache_dir):
    params = []
    for attempt in range(2):
        workdir = tmp_path / str(attempt)
        workdir.mkdir()
        monkeypatch.chdir(workdir)
        cli = main(fit_args(cache_dir, "--trainer.enable_checkpointing=false", "--trainer.logger=false"))
        params.append(torch.cat([p.detach().flatten() for p in cli.model.parameters()]))
    torch.testing.assert_close(params[0], params[1], rtol=0, atol=0)


def test_minibatches_must_divide_the_batch(tmp_path, monkeypatch, cache_dir):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="not divisible"):
        main(fit_args(cache_dir, "--model.num_mini_batches=3", "--trainer.logger=false"))


def test_bad_config_value_is_rejected(tmp_path, monkeypatch, cache_dir, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(fit_args(cache_dir, "--data.horizon=eight"))


def test_collect_writes_a_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "mine.npy"
    config = REPO / "configs" / "ppo" / "allegro_inhand_grasp" / "mujoco.yaml"
    path = main(["collect", "--config", str(config), "--count=4", "--num_envs=32", f"--output={output}"])
    assert path == output
    grasps = np.load(output)
    assert grasps.shape == (4, 23) and (tmp_path / "mine.npy.json").exists()
