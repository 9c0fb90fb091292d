"""Deployment: policy.json next to policy.onnx, the torch-free runner, `play`, cross-simulator `eval`."""

import json
import subprocess
import sys
import textwrap

import pytest

from tests.test_cli_fit import ROUTE, run_dirs, tiny_overrides
from unilab.cli import main
from unilab.deploy.contract import ContractError, read_contract

MANIFEST = ["--data.test_episodes=4"]


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory, cache_dir):
    """A tiny Allegro PPO run, evaluated on MuJoCo (eval.json, policy.onnx, policy.json)."""
    root = tmp_path_factory.mktemp("deploy")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        main(["train", *ROUTE, *tiny_overrides(cache_dir)])
        main(["eval", *ROUTE, "--load-run", "-1", *MANIFEST])
    (run,) = run_dirs(root)
    return run


def test_eval_writes_a_contract_that_describes_the_onnx_inputs(exported_run):
    contract = read_contract(exported_run / "policy.json")
    assert contract["format"] == 1 and contract["task"] == "allegro_inhand" and contract["trained_on"] == "mujoco"
    assert contract["joint_names"][:2] == ["ffj0", "ffj1"] and len(contract["joint_names"]) == 16
    assert contract["control_period_s"] == pytest.approx(0.05)
    assert contract["action"]["scale"] == pytest.approx(1 / 24)
    assert [entry["name"] for entry in contract["inputs"]] == ["obs"]
    assert contract["inputs"][0]["shape"] == [105] and contract["inputs"][0]["frames"] == 3
    assert [c["name"] for c in contract["frame"]["channels"]] == ["joint_positions", "targets", "object_position"]
    assert contract["frame"]["size"] == 35
    report = json.loads((exported_run / "eval.json").read_text())
    assert report["trained_on"] == report["evaluated_on"] == "mujoco"


def test_a_damaged_contract_is_refused_naming_the_file(tmp_path, exported_run):
    contract = json.loads((exported_run / "policy.json").read_text())
    for broken in ({**contract, "format": 99}, {k: v for k, v in contract.items() if k != "action"}, [1, 2]):
        (tmp_path / "policy.json").write_text(json.dumps(broken))
        with pytest.raises(ContractError, match="policy.json"):
            read_contract(tmp_path / "policy.json")
    (tmp_path / "policy.json").write_text(json.dumps({**contract, "default_pose": [0.0] * 3}))
    with pytest.raises(ContractError, match="default_pose"):
        read_contract(tmp_path / "policy.json")


def test_play_with_the_runner_matches_eval_on_the_training_simulator(exported_run, capsys):
    result = main(["play", "--run", str(exported_run), "--episodes", "4"])
    assert result["played"] == {"run": str(exported_run), "sim": "mujoco", "trained_on": "mujoco", "episodes": 4}
    assert result["max_target_difference"] < 1e-5
    evaluated = json.loads((exported_run / "eval.json").read_text())["overall"]
    for name in ("TTF", "RotR", "drop_rate", "rotation_speed"):
        assert result["overall"][name] == pytest.approx(evaluated[name], abs=1e-4), name
    assert "max |runner targets - simulator targets|" in capsys.readouterr().out


def test_play_and_eval_on_the_other_simulator(exported_run, monkeypatch, capsys):
    pytest.importorskip("motrixsim")
    played = main(["play", "--run", str(exported_run), "--episodes", "4", "--sim", "motrix"])
    assert played["played"]["sim"] == "motrix" and played["played"]["trained_on"] == "mujoco"
    monkeypatch.chdir(exported_run.parents[3])
    capsys.readouterr()
    main(["eval", *ROUTE[:-1], "motrix", "--load-run", exported_run.name, *MANIFEST])
    out = capsys.readouterr().out
    cross = json.loads((exported_run / "eval_motrix.json").read_text())
    assert cross["trained_on"] == "mujoco" and cross["evaluated_on"] == "motrix"
    assert json.loads((exported_run / "eval.json").read_text())["evaluated_on"] == "mujoco"  # kept
    assert "motrix/mujoco" in out  # the ratio row of the side-by-side table


def test_runner_imports_and_runs_without_torch(exported_run):
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now fails
        import numpy as np
        from unilab.deploy.runner import PolicyRunner
        runner = PolicyRunner.load({str(exported_run)!r})
        lower = np.array(runner.contract["joint_range"]["lower"], dtype=np.float32)
        upper = np.array(runner.contract["joint_range"]["upper"], dtype=np.float32)
        pose = np.tile((lower + upper) / 2, (2, 1))
        runner.reset(pose)
        for _ in range(5):
            targets = runner.step(pose, object_position=np.zeros((2, 3), np.float32))
        assert targets.shape == (2, 16) and np.isfinite(targets).all()
        assert (targets >= np.array(runner.contract["target_limits"]["lower"]) - 1e-6).all()
        assert "torch" not in [name for name, module in sys.modules.items() if module is not None]
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_play_refuses_a_folder_without_a_policy(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        main(["play", "--run", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "policy.onnx does not exist" in capsys.readouterr().err


def test_play_refuses_a_contract_whose_joint_order_is_not_the_models(exported_run, tmp_path, capsys):
    import shutil

    run = tmp_path / exported_run.name
    shutil.copytree(exported_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    contract = json.loads((run / "policy.json").read_text())
    names = contract["joint_names"]
    names[0], names[1] = names[1], names[0]
    (run / "policy.json").write_text(json.dumps(contract))
    with pytest.raises(SystemExit) as exit_info:
        main(["play", "--run", str(run), "--episodes", "1"])
    assert exit_info.value.code == 2
    assert "joint order" in capsys.readouterr().err


def test_cross_simulator_eval_refuses_a_checkpoint_of_another_layout(exported_run, tmp_path, monkeypatch, capsys):
    import shutil

    import yaml

    pytest.importorskip("motrixsim")
    run = tmp_path / "logs" / "ppo" / "AllegroInhandRotation" / exported_run.name
    shutil.copytree(exported_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["trainer"]["callbacks"] = None
    config["data"]["init_args"]["env"]["init_args"]["episode_length"] = 5
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    state = __import__("torch").load(run / "checkpoints" / "last.ckpt", weights_only=False)
    state["unilab"]["observation_dims"]["policy"] = 99  # as if trained on another observation layout
    __import__("torch").save(state, run / "checkpoints" / "last.ckpt")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", *ROUTE[:-1], "motrix", "--load-run", run.name, "--data.test_episodes=1"])
    assert exit_info.value.code == 2
    assert "does not match this task" in capsys.readouterr().err
