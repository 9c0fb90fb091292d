"""End-to-end: LightningCLI fit in-process on real physics, tiny sizes."""

import json
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from unilab.cli import main
from unilab.router import compose, config_args
from unilab.user_errors import concise_user_errors

REPO = Path(__file__).resolve().parents[1]
CONFIG = config_args(compose("ppo", "allegro_inhand", "mujoco", None))  # --config <part> ...


def fit_args(cache_dir: Path, *extra: str) -> list[str]:
    return [
        "fit",
        *CONFIG,
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


def test_fit_on_a_many_core_machine_does_not_ask_for_loader_workers(tmp_path, monkeypatch, cache_dir):
    from lightning.pytorch.trainer.connectors import data_connector

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data_connector, "suggested_max_num_workers", lambda num_devices: 15)  # a 16-core machine
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(fit_args(cache_dir))
        main(["test", "--config", str(run_dirs(tmp_path)[0] / "config.yaml"), "--data.test_episodes=2"])
    assert not [w for w in caught if "num_workers" in str(w.message)]  # rollouts are made in this process


def test_a_fit_without_logger_writes_nothing_into_the_working_directory(tmp_path, monkeypatch, cache_dir):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        main(fit_args(cache_dir, "--trainer.enable_checkpointing=false", "--trainer.logger=false"))
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_seeded_fits_are_reproducible(tmp_path, monkeypatch, cache_dir):
    params = []
    for attempt in range(2):
        workdir = tmp_path / str(attempt)
        workdir.mkdir()
        monkeypatch.chdir(workdir)
        cli = main(fit_args(cache_dir, "--trainer.enable_checkpointing=false", "--trainer.logger=false"))
        params.append(torch.cat([p.detach().flatten() for p in cli.model.parameters()]))
    torch.testing.assert_close(params[0], params[1], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "--model.num_mini_batches=7",
            "data.horizon * data.num_envs = 32 is not divisible by model.num_mini_batches = 7",
        ),
        ("--model.gamma=1.5", "model.gamma must be in (0, 1], got 1.5"),
        ("--model.clip_param=-1", "model.clip_param must be > 0, got -1"),
        ("--model.gae_lambda=2", "model.gae_lambda must be in [0, 1], got 2"),
        ("--model.desired_kl=-0.1", "model.desired_kl must be > 0, got -0.1"),
        ("--model.init_std=-1", "model.init_std must be > 0, got -1"),
        ("--model.lr_factor=0.9", "model.lr_factor must be > 1, got 0.9"),
        ("--model.kl_band=[2.0, 0.5]", "model.kl_band must be (low, high), 0 < low <= 1 <= high, got (2.0, 0.5)"),
        ("--model.optimizer.init_args.lr=-1", "model.optimizer: Invalid learning rate: -1"),
        ("--data.env.episode_length=0", "env.episode_length must be >= 1 (control steps), got 0"),
        (
            "--data.env.action_scale=-0.1",
            "env.action_scale must be > 0 and finite (rad per unit action), got -0.1",
        ),
        ("--data.env.joint_noise=-1", "env.joint_noise must be >= 0 and finite, got -1"),
        ("--data.env.impratio=0", "env.impratio must be > 0 and finite, got 0"),
        ("--data.env.noslip_iterations=-2", "env.noslip_iterations must be >= 0, got -2"),
    ],
)
def test_nonsense_hyperparameters_stop_before_a_run_folder_is_made(
    tmp_path, monkeypatch, cache_dir, capsys, override, message
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(cache_dir, override))
    assert exit_info.value.code == 2
    assert f"error: {message}" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


def test_fits_started_in_the_same_second_get_their_own_run_folders(tmp_path):
    from unilab.files import create_unique_dir

    first = create_unique_dir(tmp_path, "20261207_010101", "_mujoco")
    second = create_unique_dir(tmp_path, "20261207_010101", "_mujoco")
    third = create_unique_dir(tmp_path, "20261207_010101", "_mujoco")
    assert len({first, second, third}) == 3 and all(p.is_dir() for p in (first, second, third))
    assert sorted(tmp_path.glob("*_mujoco")) == [first, second, third]  # the newest sorts last


def test_bad_config_value_is_rejected(tmp_path, monkeypatch, cache_dir, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(fit_args(cache_dir, "--data.horizon=eight"))


def test_invalid_value_gives_unilabs_message_and_exit_code_2(tmp_path, monkeypatch, cache_dir, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(cache_dir, "--data.num_envs=0"))
    assert exit_info.value.code == 2
    assert "error: data.num_envs must be >= 1, got 0\n(raised at unilab/" in capsys.readouterr().err


def test_errors_raised_outside_unilab_keep_their_traceback():
    with pytest.raises(ValueError, match="invalid literal"), concise_user_errors():
        int("eight")


def test_missing_or_truncated_checkpoint_is_refused_before_a_run_folder_is_made(
    tmp_path, monkeypatch, cache_dir, capsys
):
    monkeypatch.chdir(tmp_path)
    main(fit_args(cache_dir))
    (run,) = run_dirs(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    for path, reason in ((tmp_path / "missing.ckpt", "does not exist"), (truncated, "cannot be read")):
        with pytest.raises(SystemExit) as exit_info:
            main(fit_args(cache_dir, f"--ckpt_path={path}"))
        assert exit_info.value.code == 2
        assert f"error: checkpoint {path} {reason}" in capsys.readouterr().err
    assert run_dirs(tmp_path) == [run]


def test_collect_writes_a_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "mine.npy"
    config = REPO / "configs" / "grasp" / "allegro_inhand" / "mujoco.yaml"
    path = main(["collect", "--config", str(config), "--count=4", "--num_envs=32", f"--output={output}"])
    assert path == output
    grasps = np.load(output)
    assert grasps.shape == (4, 23) and (tmp_path / "mine.npy.json").exists()


def test_collect_refuses_a_count_below_one_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = REPO / "configs" / "grasp" / "allegro_inhand" / "mujoco.yaml"
    with pytest.raises(SystemExit):
        main(["collect", "--config", str(config), "--count=0", f"--output={tmp_path / 'empty.npy'}"])
    assert '"count"' in capsys.readouterr().err and not list(tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        main(["collect", "--config", str(config), "--env.episode_length=0", f"--output={tmp_path / 'bad.npy'}"])
    assert exit_info.value.code == 2 and not list(tmp_path.iterdir())
    err = capsys.readouterr().err
    assert "error: env.episode_length must be >= 1 (control steps), got 0\n(raised at unilab/tasks/base.py:" in err


ROUTE = ["--algo", "ppo", "--task", "allegro_inhand", "--sim", "mujoco"]


def tiny_overrides(cache_dir: Path) -> list[str]:
    return fit_args(cache_dir)[1 + len(CONFIG) :]  # everything after "fit --config <part> ..."


def test_train_then_eval_prints_metrics_writes_eval_json_and_onnx(tmp_path, monkeypatch, cache_dir, capsys):
    monkeypatch.chdir(tmp_path)
    main(["train", *ROUTE, *tiny_overrides(cache_dir)])
    (run,) = run_dirs(tmp_path)
    saved = {path.name: path.stat().st_mtime_ns for path in (run / "checkpoints").iterdir()}
    fit_config = (run / "config.yaml").read_text()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["eval", *ROUTE, "--load-run", "-1", "--data.test_episodes=4", "--data.env.episode_length=40"])
    assert not [w for w in caught if "dirpath" in str(w.message)]  # eval does not restore checkpoint callbacks
    assert {path.name: path.stat().st_mtime_ns for path in (run / "checkpoints").iterdir()} == saved
    assert not (tmp_path / "checkpoints").exists()
    assert (run / "config.yaml").read_text() == fit_config and not (tmp_path / "config.yaml").exists()
    report = json.loads((run / "eval.json").read_text())
    assert report["overall"]["episodes"] == 4 and 0.0 < report["overall"]["TTF"] <= 1.0
    assert (run / "policy.onnx").exists() and report["onnx"]["max_abs_diff"] < 1e-4
    out = capsys.readouterr().out
    assert "RotR" in out and "max |onnx - torch|" in out
    meta = json.loads((run / "run.json").read_text())
    assert meta["env_steps"] == 64 and meta["ended"] and meta["packages"]["mujoco"]


def test_resume_continues_counters_in_the_same_run(tmp_path, monkeypatch, cache_dir):
    monkeypatch.chdir(tmp_path)
    main(["train", *ROUTE, *tiny_overrides(cache_dir)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = main(["train", *ROUTE, "--resume", "--trainer.max_epochs=2"])
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]  # saving back into its own run
    assert int(cli.model.iteration) == 4 and int(cli.model.env_steps) == 4 * 4 * 8
    (run,) = run_dirs(tmp_path)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert int(checkpoint["state_dict"]["iteration"]) == 4 and checkpoint["global_step"] == cli.trainer.global_step


def test_resume_keeps_the_runs_provenance(tmp_path, monkeypatch, cache_dir):
    monkeypatch.chdir(tmp_path)
    main(["train", *ROUTE, *tiny_overrides(cache_dir), "--trainer.max_epochs=2"])
    (run,) = run_dirs(tmp_path)
    original = (run / "config.yaml").read_text()
    first = json.loads((run / "run.json").read_text())
    main(["train", *ROUTE, "--resume", "--trainer.max_epochs=2"])  # nothing left to do
    main(["train", *ROUTE, "--resume", "--trainer.max_epochs=3"])
    assert (run / "config.yaml").read_text() == original  # the run was made with max_epochs 2, and says so
    assert yaml.safe_load((run / "config.resume_2.yaml").read_text())["trainer"]["max_epochs"] == 3
    meta = json.loads((run / "run.json").read_text())
    assert meta["started"] == first["started"] and meta["final_metrics"]  # the no-op resume kept the metrics
    steps = [(s["env_steps_at_start"], s["env_steps_at_end"]) for s in meta["sessions"]]
    assert steps == [(0, 128), (128, 128), (128, 192)] and meta["env_steps"] == 192
    assert "--resume" in meta["sessions"][2]["command"] or "--ckpt_path" in " ".join(meta["sessions"][2]["command"])


def take_ctrl_c() -> None:
    """In a child before it execs: SIGINT back to its default, so the child's Python takes it as Ctrl-C even if
    this test run was started with SIGINT ignored (as a script's background job is), which children inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_a_running_fit(tmp_path: Path, cache_dir: Path, signal_number: int) -> list[str]:
    """Start an endless tiny fit, let it save a checkpoint and get into a later iteration, then signal it."""
    command = [sys.executable, "-m", "unilab", *fit_args(cache_dir, "--trainer.max_epochs=1000")]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=take_ctrl_c
    )
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob("logs/ppo/*/*/checkpoints/last.ckpt")) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # into a later iteration
        process.send_signal(signal_number)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return command


def test_ctrl_c_saves_the_last_iteration_and_closes_run_json(tmp_path, cache_dir):
    signal_a_running_fit(tmp_path, cache_dir, signal.SIGINT)
    (run,) = tmp_path.glob("logs/ppo/*/*")
    meta = json.loads((run / "run.json").read_text())
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert meta["ended"] is None and meta["sessions"][-1]["ended"]  # open for --resume, this session closed
    assert meta["sessions"][-1]["interrupted"] == "KeyboardInterrupt"
    assert meta["env_steps"] > 0 and int(saved["state_dict"]["env_steps"]) == meta["env_steps"]


def test_predict_records_the_test_manifest_step_by_step(tmp_path, monkeypatch, cache_dir, capsys):
    monkeypatch.chdir(tmp_path)
    main(["train", *ROUTE, *tiny_overrides(cache_dir)])
    (run,) = run_dirs(tmp_path)
    manifest = ["--data.test_episodes=3", "--data.env.episode_length=30"]
    main(["eval", *ROUTE, "--load-run", "-1", *manifest])
    ttf = json.loads((run / "eval.json").read_text())["overall"]["TTF"]
    before = sorted(path.name for path in run.iterdir())
    ckpt = run / "checkpoints" / "last.ckpt"
    cli = main(["predict", "--config", str(run / "config.yaml"), f"--ckpt_path={ckpt}", *manifest])
    assert sorted(path.name for path in run.iterdir()) == sorted([*before, "predictions.npz"])  # nothing else
    assert "predictions.npz written to" in capsys.readouterr().out
    data = np.load(run / "predictions.npz")
    steps, episodes = data["alive"].shape
    assert episodes == 3 and steps <= 30 and list(data["joint_names"][:2]) == ["ffj0", "ffj1"]
    assert data["state"].shape == (steps, 3, 16 + 7) and data["action"].shape == (steps, 3, 16)
    assert data["reward"].shape == (steps, 3) and data["input_obs"].shape == (steps, 3, 105)
    assert data["object_scale"].tolist() == [1.0, 1.0, 1.0]
    lengths = data["alive"].sum(axis=0)
    assert (data["alive"] == (np.arange(steps)[:, None] < lengths)).all()  # each episode is one prefix
    assert lengths.mean() / 30 == pytest.approx(ttf)  # the same seeded episodes as eval
    np.testing.assert_allclose(np.linalg.norm(data["state"][..., -4:], axis=-1), 1.0, atol=1e-4)
    with torch.no_grad():
        replayed = cli.model.policy.action_mean({"policy": torch.from_numpy(data["input_obs"][0])})
    np.testing.assert_allclose(replayed.numpy(), data["action"][0], atol=1e-6)


def offscreen_rendering_works() -> bool:
    import mujoco

    model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='0.1'/></worldbody></mujoco>")
    try:
        mujoco.Renderer(model, 8, 8).close()
    except Exception:
        return False
    return True


@pytest.mark.skipif(not offscreen_rendering_works(), reason="no OpenGL context (MUJOCO_GL=egl needs libEGL)")
def test_render_turns_recorded_episodes_into_gifs_and_mp4s(tmp_path, monkeypatch, cache_dir, capsys):
    import av
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    main(["train", *ROUTE, *tiny_overrides(cache_dir)])
    (run,) = run_dirs(tmp_path)
    with pytest.raises(SystemExit):
        main(["render", f"--run={run}"])
    assert "record episodes first: python -m unilab predict" in capsys.readouterr().err
    main(["eval", *ROUTE, "--video=1", "--data.test_episodes=2", "--data.env.episode_length=6"])
    assert (run / "eval.json").exists() and (run / "predictions.npz").exists()
    assert "episode_0.gif" in capsys.readouterr().out and not (run / "episode_1.gif").exists()
    gif, mp4 = main(["render", f"--run={run}", "--episodes=1", "--width=64", "--height=48"])
    lengths = np.load(run / "predictions.npz")["alive"].sum(axis=0)
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        assert stream.codec_context.name == "h264" and float(stream.average_rate) == 20.0
    assert len(decoded) == lengths[0] and decoded[0].shape == (48, 64, 3) and decoded[0].std() > 10
    with Image.open(gif) as image:
        assert image.size == (64, 48) and image.n_frames == lengths[0] and image.info["duration"] == 50
        frames = []
        for index in (0, image.n_frames - 1):
            image.seek(index)
            frames.append(np.asarray(image.convert("RGB"), dtype=np.int16))
    assert frames[0].std() > 10  # a scene, not a blank frame
    assert np.abs(frames[0] - frames[1]).mean() > 0.1  # the hand (or the ball) moved


@pytest.mark.skipif(not offscreen_rendering_works(), reason="no OpenGL context (MUJOCO_GL=egl needs libEGL)")
def test_validation_videos_reach_tensorboard(tmp_path, monkeypatch, cache_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    video = ["--trainer.callbacks+=unilab.video.ValidationVideo", "--trainer.callbacks.width=64"]
    video += ["--trainer.callbacks.height=48", "--trainer.check_val_every_n_epoch=1", "--data.val_episodes=1"]
    main(["train", *ROUTE, *tiny_overrides(cache_dir), *video, "--data.env.episode_length=8"])
    (run,) = run_dirs(tmp_path)
    events = EventAccumulator(str(run), size_guidance={"images": 0})
    events.Reload()
    assert "video/episode_0" in events.Tags()["images"]
    (image,) = events.Images("video/episode_0")
    assert image.encoded_image_string[:6] == b"GIF89a" and (image.width, image.height) == (64, 48)


def test_validate_with_the_run_config_leaves_it_resumable(tmp_path, monkeypatch, cache_dir):
    monkeypatch.chdir(tmp_path)
    main(["train", *ROUTE, *tiny_overrides(cache_dir)])
    (run,) = run_dirs(tmp_path)
    fit_config = (run / "config.yaml").read_text()
    ckpt = run / "checkpoints" / "last.ckpt"
    main(["validate", "--config", str(run / "config.yaml"), f"--ckpt_path={ckpt}", "--data.val_episodes=2"])
    assert (run / "config.yaml").read_text() == fit_config
    cli = main(["train", *ROUTE, "--resume", "--trainer.max_epochs=2"])
    assert int(cli.model.iteration) == 4


def test_fit_ckpt_path_last_continues_the_newest_run(tmp_path, monkeypatch, cache_dir):
    monkeypatch.chdir(tmp_path)
    main(fit_args(cache_dir))
    cli = main(fit_args(cache_dir, "--ckpt_path=last", "--trainer.max_epochs=2"))
    assert int(cli.model.iteration) == 4
    assert len(run_dirs(tmp_path)) == 1


def test_checkpoint_of_another_observation_layout_is_refused(tmp_path, monkeypatch, cache_dir, capsys):
    monkeypatch.chdir(tmp_path)
    main(["train", *ROUTE, *tiny_overrides(cache_dir)])
    (run,) = run_dirs(tmp_path)
    path = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["unilab"]["observation_dims"] = {"policy": 147, "critic": 156}
    torch.save(checkpoint, path)
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", *ROUTE, "--load-run", "-1", "--data.test_episodes=2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "different task or observation layout" in err and "Traceback" not in err


def test_sigkilled_fit_resumes_from_its_last_checkpoint(tmp_path, cache_dir):
    command = signal_a_running_fit(tmp_path, cache_dir, signal.SIGKILL)
    (ckpt,) = tmp_path.glob("logs/ppo/*/*/checkpoints/last.ckpt")
    saved = torch.load(ckpt, weights_only=False)
    epochs_done = int(saved["state_dict"]["iteration"]) // 2  # two iterations per epoch
    assert int(saved["state_dict"]["iteration"]) == 2 * epochs_done and epochs_done >= 1
    resume = subprocess.run(
        [*command[:3], "train", *ROUTE, "--resume", f"--trainer.max_epochs={epochs_done + 1}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resume.returncode == 0, resume.stderr[-2000:]
    resumed = torch.load(ckpt, weights_only=False)
    assert int(resumed["state_dict"]["iteration"]) == 2 * (epochs_done + 1)
    assert len(list(tmp_path.glob("logs/ppo/*/*"))) == 1


@pytest.mark.parametrize("config", ["ppo", "appo"])
def test_a_corrupt_cache_stops_ppo_and_appo_with_one_error_line(tmp_path, monkeypatch, cache_dir, capsys, config):
    from unilab import caches

    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "caches"
    broken.mkdir()
    for path in cache_dir.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (sidecar,) = broken.glob("*.npy.json")
    sidecar.write_bytes(bytes(range(256)))
    args = fit_args(broken)
    args[1 : 1 + len(CONFIG)] = config_args(compose(config, "allegro_inhand", "mujoco", None))
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: grasp cache {caches.Path(sidecar).with_suffix('')}" in err and "is not valid JSON" in err
    assert "Traceback" not in err and not (tmp_path / "logs").exists()


def test_learning_benchmark_stops_at_its_env_step_budget_and_reports_both_checkpoints(tmp_path, cache_dir):
    from PIL import Image

    command = [
        sys.executable, str(REPO / "benchmarks" / "learning.py"), *ROUTE, "--env-steps", "300", "--episodes", "4",
        *[arg for arg in tiny_overrides(cache_dir) if not arg.startswith("--trainer.max_epochs")],
        "--data.env.episode_length=20", "--data.val_episodes=2",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert 300 <= report["env_steps"] < 300 + 32  # one iteration is horizon 4 x 8 envs
    assert report["last"]["overall"]["episodes"] == 4 and "RotR" in report["best"]["overall"]
    image = Image.open(tmp_path / report["curves_png"])
    assert image.format == "PNG" and image.size[0] > image.size[1]


def test_closed_loop_benchmark_runs_a_checkpoint_frozen_and_writes_nothing(tmp_path, monkeypatch, cache_dir):
    monkeypatch.chdir(tmp_path)
    main(["train", *ROUTE, *tiny_overrides(cache_dir)])
    (run,) = run_dirs(tmp_path)
    before = {path.relative_to(run): path.stat().st_mtime_ns for path in run.rglob("*")}
    command = [
        sys.executable, str(REPO / "benchmarks" / "closed_loop.py"), *ROUTE, "--load-run", "-1",
        "--env-steps", "200", "--data.env.episode_length=20",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["checkpoint"] == str(run / "checkpoints" / "last.ckpt") and report["warmup_control_steps"] == 20
    assert 200 <= report["env_steps"] < 200 + 4 * 8  # whole rollouts of horizon 4 x 8 envs
    assert report["overall"]["episodes"] == sum(row["episodes"] for row in report["per_scale"].values()) > 0
    assert {path.relative_to(run): path.stat().st_mtime_ns for path in run.rglob("*")} == before
