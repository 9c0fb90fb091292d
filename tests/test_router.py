import os
from pathlib import Path

import pytest

from unilab.router import REFERENCE_KEYS, RouterError, find_run, route_eval, route_train

BASE = ["--algo", "ppo", "--task", "allegro_inhand", "--sim", "mujoco"]
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_train_composes_the_algorithm_task_simulator_and_profile_configs():
    route = route_train(BASE)
    assert route.args[0] == "fit"
    assert route.args[1:] == [
        "--config",
        f"{CONFIGS}/algos/ppo.yaml",
        "--config",
        f"{CONFIGS}/tasks/allegro_inhand.yaml",
    ]
    parts = route_train(["--algo", "appo", "--task", "sharpa_inhand", "--sim", "motrix", "--profile", "hora"]).args[
        2::2
    ]
    assert [str(Path(p).relative_to(CONFIGS)) for p in parts] == [
        "algos/appo.yaml", "tasks/sharpa_inhand.yaml", "algos/appo/sharpa_inhand.yaml",
        "sims/motrix/sharpa_inhand.yaml", "profiles/hora.yaml",
    ]  # fmt: skip
    with pytest.raises(RouterError, match="unknown --sim 'bullet'; available: mujoco, motrix"):
        route_train([*BASE[:-1], "bullet"])


def test_grasp_tasks_need_no_algorithm():
    route = route_train(["--task", "allegro_inhand_grasp", "--sim", "motrix"])
    assert route.args[:3] == ["collect", "--config", f"{CONFIGS}/grasp/allegro_inhand/motrix.yaml"]
    with pytest.raises(RouterError, match="--algo is required"):
        route_train(["--task", "allegro_inhand"])


def test_lightning_flags_pass_through_and_reference_keys_translate():
    route = route_train(
        [
            *BASE,
            "--data.num_envs",
            "64",
            "algo.num_envs=32",
            "env.grasp_cache_path=caches/mine.npy",
            "training.no_play=true",
        ]
    )
    assert route.args[5:] == ["--data.num_envs", "64", "--data.num_envs=32", "--data.env.cache.path=caches/mine.npy"]


def test_max_iterations_becomes_whole_epochs():
    route = route_train([*BASE, "algo.max_iterations=45"])
    assert route.args[-1] == "--trainer.max_epochs=3"  # the config runs 20 iterations per epoch


def test_unknown_key_value_is_rejected_with_the_supported_list():
    with pytest.raises(RouterError) as error:
        route_train([*BASE, "algo.learning_rate=3"])
    for key in REFERENCE_KEYS:
        assert key in str(error.value)


def test_unknown_choices_list_what_exists():
    with pytest.raises(RouterError, match="unknown --algo 'sac'; available: appo, hora_distill, ppo"):
        route_train(["--algo", "sac", "--task", "allegro_inhand"])
    with pytest.raises(RouterError, match="unknown --task 'cube'; available: allegro_inhand, sharpa_inhand"):
        route_train(["--algo", "ppo", "--task", "cube"])
    with pytest.raises(RouterError, match="unknown --profile 'fast'; available: hora"):
        route_train(["--algo", "ppo", "--task", "allegro_inhand", "--profile", "fast"])


def test_grasp_task_routes_to_collection():
    route = route_train(["--algo", "ppo", "--task", "allegro_inhand_grasp", "env.grasp_collection_target=100"])
    assert route.args[0] == "collect" and route.args[-1] == "--count=100"


def make_run(root, name):
    run = root / "logs" / "ppo" / "AllegroInhandRotation" / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "config.yaml").write_text("{}")
    return run


def test_load_run_minus_one_picks_the_newest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_run(tmp_path, "20260101_120000_mujoco")
    newest = make_run(tmp_path, "20260102_090000_mujoco")
    make_run(tmp_path, "20260103_090000_motrix")
    assert find_run("ppo", "allegro_inhand", "mujoco", "-1").resolve() == newest
    assert find_run("ppo", "allegro_inhand", "mujoco", str(newest.relative_to(tmp_path))).resolve() == newest
    route = route_eval([*BASE, "--load-run", "-1"])
    assert route.args[0] == "test" and "20260102_090000_mujoco" in route.args[2]
    assert route.args[3].endswith("last.ckpt") and "--trainer.logger=false" in route.args


def test_load_run_minus_one_skips_runs_that_saved_no_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saved = make_run(tmp_path, "20260101_120000_mujoco")
    failed = tmp_path / "logs" / "ppo" / "AllegroInhandRotation" / "20260102_090000_mujoco"
    failed.mkdir()
    (failed / "config.yaml").write_text("{}")
    assert find_run("ppo", "allegro_inhand", "mujoco", "-1").resolve() == saved
    assert find_run("ppo", "allegro_inhand", "mujoco", failed.name).resolve() == failed
    with pytest.raises(RouterError, match=r"with checkpoints .*\(1 without checkpoints\)"):
        find_run("ppo", "allegro_inhand", "mujoco", "-2")


def test_eval_video_records_the_same_episodes_then_renders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = make_run(tmp_path, "20260101_120000_mujoco")
    route = route_eval([*BASE, "--video", "3", "--data.test_episodes=8"])
    predict, render = route.then
    assert route.args[0] == "test" and predict[0] == "predict"
    assert predict[1:] == [a for a in route.args[1:] if a != "--trainer.logger=false"]  # same run, ckpt, overrides
    assert render == ["render", f"--run={run.relative_to(tmp_path)}", "--episodes=3"]
    assert route_eval(BASE).then == ()


def test_missing_run_and_checkpoint_are_clear(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RouterError, match="train one first"):
        route_eval([*BASE, "--load-run", "-1"])
    make_run(tmp_path, "20260101_120000_mujoco")
    with pytest.raises(RouterError, match="last.ckpt"):
        route_eval([*BASE, "--checkpoint", "7"])


def test_resume_continues_the_newest_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = make_run(tmp_path, "20260101_120000_mujoco")
    route = route_train([*BASE, "--resume"])
    assert route.args[:2] == ["fit", "--config"] and route.args[2].endswith(f"{run.name}/config.yaml")
    assert route.args[3] == f"--ckpt_path={run.relative_to(tmp_path)}/checkpoints/last.ckpt"


def test_help_lists_the_algorithms_tasks_and_configs(capsys):
    with pytest.raises(SystemExit):
        route_train(["--help"])
    out = capsys.readouterr().out
    assert "appo, hora_distill, ppo" in out and "sharpa_inhand" in out
    assert "configs/algos/<algo>.yaml, configs/tasks/<task>.yaml" in " ".join(out.split())
    assert "allegro_inhand_grasp" in out and "mujoco, motrix" in out


def test_router_errors_exit_2_with_an_error_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "unilab", "eval", "--algo", "ppo", "--task", "allegro_inhand", "--load-run", "nothere"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: run 'nothere' not found")
    assert not (tmp_path / "logs").exists()


def test_resume_passes_over_an_unreadable_last_checkpoint(tmp_path, monkeypatch, caplog):
    import torch

    from unilab.router import checkpoint_file

    monkeypatch.chdir(tmp_path)
    run = make_run(tmp_path, "20260101_120000_mujoco")
    folder = run / "checkpoints"
    torch.save({"state_dict": {}}, folder / "epoch_9.ckpt")
    torch.save({"state_dict": {}}, folder / "epoch_19.ckpt")
    (folder / "last.ckpt").write_bytes(b"truncated by a crash of an older version")
    os.utime(folder / "epoch_9.ckpt", (1, 1))  # epoch_19 is the newest that loads
    assert checkpoint_file(run, "last") == folder / "epoch_19.ckpt"
    assert "unreadable; continuing from epoch_19.ckpt" in caplog.text
    route = route_train([*BASE, "--resume"])
    assert route.args[3].endswith("checkpoints/epoch_19.ckpt")
    torch.save({"state_dict": {}}, folder / "last.ckpt")
    assert checkpoint_file(run, "last") == folder / "last.ckpt"
