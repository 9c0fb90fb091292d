"""HORA: teacher latent, adaptation module, student independence from privileged inputs, distillation."""

from __future__ import annotations

import json
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from unilab.algos.hora import Student, TeacherSource, load_teacher, load_teacher_and_hparams
from unilab.cli import main
from unilab.data.record import Rollout
from unilab.models.actor_critic import ActorCritic
from unilab.models.hora import AdaptationModule
from unilab.router import compose, config_args

REPO = Path(__file__).resolve().parents[1]
DIMS = {"policy": 147, "critic": 156, "privileged": 9, "proprio_hist": 1470}


def hora_teacher() -> ActorCritic:
    torch.manual_seed(0)
    return ActorCritic(147, 156, 22, (64, 32), (64, 32), privileged_group="privileged", privileged_obs_dim=9)


def observations(batch: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(batch, dim, generator=generator) for name, dim in DIMS.items()}


def test_teacher_latent_comes_only_from_the_privileged_group():
    teacher = hora_teacher()
    obs = observations()
    z = teacher.latent(obs)
    assert z.shape == (5, 9) and z.abs().max() <= 1.0
    assert teacher.action_mean(obs).shape == (5, 22)
    others = {**observations(seed=1), "privileged": obs["privileged"]}
    torch.testing.assert_close(teacher.latent(others), z)
    moved = {**obs, "privileged": obs["privileged"] + 1.0}
    assert not torch.allclose(teacher.latent(moved), z)
    assert not torch.allclose(teacher.action_mean(moved), teacher.action_mean(obs))  # z reaches the actor


def test_adaptation_module_maps_a_30_frame_history_to_the_latent():
    module = AdaptationModule(frames=30, frame_dim=49, latent_dim=9)
    z = module(torch.randn(7, 30, 49))
    assert z.shape == (7, 9) and z.abs().max() <= 1.0
    with pytest.raises(ValueError, match="at least 17 history frames"):
        AdaptationModule(frames=10, frame_dim=49)


def test_student_actions_do_not_depend_on_privileged_inputs():
    student = Student(hora_teacher(), "proprio_hist", frames=30, frame_dim=49, channels=16)
    obs = observations()
    actions = student.action_mean(obs)
    perturbed = {**obs, "privileged": torch.randn(5, 9) * 10, "critic": torch.randn(5, 156)}
    torch.testing.assert_close(student.action_mean(perturbed), actions)
    history = {**obs, "proprio_hist": obs["proprio_hist"] + 1.0}
    assert not torch.allclose(student.action_mean(history), actions)


# Real fits on Sharpa (one scale, tiny sizes) -----------------------------------------------------------
def sharpa_args(config: str, cache_dir: Path, *extra: str) -> list[str]:
    """``config``: ``<algo>`` or ``<algo>+<profile>`` on Sharpa, MuJoCo."""
    algo, _, profile = config.partition("+")
    return [
        "fit",
        *config_args(compose(algo, "sharpa_inhand", "mujoco", profile or None)),
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--data.num_envs=4",
        "--data.horizon=4",
        "--data.val_episodes=2",
        "--data.test_episodes=2",
        "--data.env.scale_list=[1.0]",
        f"--data.env.cache.cache_dir={cache_dir}",
        "--data.env.cache.generate_count=0",
        "--data.env.num_threads=1",
        *extra,
    ]


TEACHER_SIZES = ("--model.actor_hidden_dims=[32, 32]", "--model.critic_hidden_dims=[32, 32]")


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, sharpa_cache) -> Path:
    """A folder whose logs/ hold one HORA teacher run of each family (ppo, appo)."""
    root = tmp_path_factory.mktemp("hora")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        main(sharpa_args("ppo+hora", sharpa_cache, "--data.iterations_per_epoch=2",
                         *TEACHER_SIZES))  # fmt: skip
        main(sharpa_args("appo+hora", sharpa_cache, "--data.iterations_per_epoch=2",
                         "--data.collector_threads=1", *TEACHER_SIZES))  # fmt: skip
        main(sharpa_args("ppo", sharpa_cache, "--data.iterations_per_epoch=1",
                         *TEACHER_SIZES))  # fmt: skip
    return root


def test_teacher_profiles_log_under_hora_folders_and_both_families_load(teachers):
    for family in ("ppo", "appo"):
        path = TeacherSource(algo_family=family, log_root=str(teachers / "logs")).resolve("sharpa_inhand", "mujoco")
        assert path.parts[-5] == f"hora_{family}" and path.name == "last.ckpt"
        teacher = load_teacher(path, DIMS, 22)
        assert teacher.privileged_group == "privileged" and not any(p.requires_grad for p in teacher.parameters())
    assert multiprocessing.active_children() == []


def test_teacher_eval_reports_teacher_metrics_and_exports_obs_plus_privileged(teachers, monkeypatch):
    monkeypatch.chdir(teachers)
    main(["eval", "--algo", "ppo", "--profile", "hora", "--task", "sharpa_inhand", "--sim", "mujoco",
          "--load-run", "-1", "--data.test_episodes=2"])  # fmt: skip
    (run,) = (teachers / "logs" / "hora_ppo" / "SharpaInhandRotation").iterdir()
    report = json.loads((run / "eval.json").read_text())
    assert report["overall"]["episodes"] == 2 and "latent_mse" not in report["overall"]
    assert report["onnx"]["inputs"] == {"obs": [147], "privileged": [9]}
    assert report["onnx"]["max_abs_diff"] < 1e-4


def test_teacher_problems_fail_clearly(teachers, tmp_path):
    path = TeacherSource(log_root=str(teachers / "logs")).resolve("sharpa_inhand", "mujoco")
    with pytest.raises(ValueError, match="observation layout"):
        load_teacher(path, {**DIMS, "policy": 100}, 22)
    (plain,) = (teachers / "logs" / "ppo" / "SharpaInhandRotation").iterdir()
    with pytest.raises(ValueError, match="no privileged encoder.*--profile hora"):
        load_teacher(plain / "checkpoints" / "last.ckpt", DIMS, 22)
    with pytest.raises(FileNotFoundError, match=r"(?s)looked for run '-1'.*hora_appo.*--profile hora"):
        TeacherSource(algo_family="appo", log_root=str(tmp_path)).resolve("sharpa_inhand", "mujoco")
    with pytest.raises(ValueError, match="algo_family must be one of"):
        TeacherSource(algo_family="sac", log_root=str(tmp_path)).resolve("sharpa_inhand", "mujoco")


def test_latent_probe_feeds_the_teacher_what_each_mode_says(teachers, tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import hora_latent

    path = TeacherSource(log_root=str(teachers / "logs")).resolve("sharpa_inhand", "mujoco")
    teacher, hparams = load_teacher_and_hparams(path, DIMS, 22)
    student = Student(teacher, "proprio_hist", 30, 49, 16)
    old_student = {key: value for key, value in student.state_dict().items() if not key.startswith("actor.")}
    torch.save(
        {
            "unilab": {"teacher": {"path": str(path), "hparams": hparams}},
            "hyper_parameters": {"history_frames": 30, "history_group": "proprio_hist", "channels": 16},
            "state_dict": {f"student.{key}": value for key, value in old_student.items()},
        },
        tmp_path / "student.ckpt",
    )
    loaded = hora_latent.load_student(tmp_path / "student.ckpt", DIMS, 22)
    obs = observations(6)
    torch.testing.assert_close(loaded.action_mean(obs), student.action_mean(obs))

    probe = hora_latent.Probe(loaded, env=None, privileged_group="privileged")
    privileged = obs["privileged"]
    torch.testing.assert_close(probe.latent("keep", slice(0, 9), obs), teacher.latent(obs))
    for mode, span, replaced in (("hide", slice(0, 3), slice(0, 3)), ("keep", slice(0, 3), slice(3, 9))):
        expected = privileged.clone()
        expected[:, replaced] = privileged[:, replaced].mean(dim=0)
        torch.testing.assert_close(probe.latent(mode, span, obs), teacher.latent({**obs, "privileged": expected}))
    assert hora_latent.parse_mode("hide:4", 9) == ("hide", slice(4, 5))
    for nonsense in ("hide:3-1", "keep", "keep:0-9", "student:1", "zero"):
        with pytest.raises(ValueError, match="not teacher, student, constant"):
            hora_latent.parse_mode(nonsense, 9)


def scalars(run: Path, tag: str) -> list[float]:
    (events,) = run.glob("events.out.tfevents*")
    accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [event.value for event in accumulator.Scalars(tag)]


def test_distillation_reduces_the_latent_error_and_the_student_evaluates(teachers, sharpa_cache, monkeypatch):
    monkeypatch.chdir(teachers)
    cli = main(sharpa_args("hora_distill", sharpa_cache, "--data.iterations_per_epoch=30",
                           "--data.num_envs=8", "--model.teacher.algo_family=appo", "--model.num_learning_epochs=4",
                           "--model.optimizer.init_args.lr=0.002"))  # fmt: skip
    model = cli.model
    assert model.teacher_path.parts[-5] == "hora_appo"
    (run,) = (teachers / "logs" / "hora_distill" / "SharpaInhandRotation").iterdir()
    assert len(scalars(run, "distill/latent_mse")) == 30
    # On one fixed batch of states the trained student's latent is closer to the teacher's than fresh students'
    student, datamodule = model.student, cli.datamodule
    datamodule.collector.collect(student, datamodule.record)
    obs = {name: value.flatten(0, 1) for name, value in Rollout(datamodule.record).obs.items()}
    target = student.teacher.latent(obs)
    history = obs["proprio_hist"]
    with torch.no_grad():
        trained = (student.latent(history) - target).square().mean()
        fresh = []
        for seed in range(3):
            torch.manual_seed(seed)
            untrained = Student(student.teacher, "proprio_hist", 30, 49, 32)
            untrained.history_normalizer.load_state_dict(student.history_normalizer.state_dict())
            fresh.append((untrained.latent(history) - target).square().mean())
    assert trained < 0.8 * min(fresh), (trained, fresh)
    # The default distillation also fine-tunes the student's copy of the actor; the teacher stays as saved.
    assert len(scalars(run, "distill/action_mse")) == 30
    teacher_state = torch.load(model.teacher_path, weights_only=False)["state_dict"]
    for name, value in student.teacher.actor.state_dict().items():
        torch.testing.assert_close(value, teacher_state[f"policy.actor.{name}"])
    pairs = zip(student.actor.parameters(), student.teacher.actor.parameters(), strict=True)
    moved = [not torch.equal(mine, teachers_own) for mine, teachers_own in pairs]
    assert all(moved) and not any(p.requires_grad for p in student.teacher.parameters())
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["unilab"]["teacher"]["path"] == str(model.teacher_path)
    assert checkpoint["unilab"]["teacher"]["hparams"]["privileged_group"] == "privileged"

    # The student run is self-contained: it evaluates with no teacher run left, and names the one it learnt from.
    teacher_runs = teachers / "logs" / "hora_appo"
    hidden = teachers / "hidden_teacher_runs"
    teacher_runs.rename(hidden)
    try:
        main(["eval", "--algo", "hora_distill", "--task", "sharpa_inhand", "--sim", "mujoco", "--load-run", "-1",
              "--data.test_episodes=2"])  # fmt: skip
    finally:
        hidden.rename(teacher_runs)
    report = json.loads((run / "eval.json").read_text())
    assert report["overall"]["latent_mse"] >= 0 and report["teacher_checkpoint"] == str(model.teacher_path)
    assert report["teacher_sha256"] == checkpoint["unilab"]["teacher"]["sha256"]
    assert report["onnx"]["inputs"] == {"obs": [147], "history": [30, 49]}
    assert report["onnx"]["max_abs_diff"] < 1e-4
    # The torch-free runner drives the student from the contract (tactile channel, 30-frame history, frame clip).
    played = main(["play", "--run", str(run), "--episodes", "2"])
    assert played["max_target_difference"] < 1e-4
    assert played["overall"]["TTF"] == pytest.approx(report["overall"]["TTF"], abs=1e-6)

    ckpt = run / "checkpoints" / "last.ckpt"
    main(["predict", "--config", str(run / "config.yaml"), f"--ckpt_path={ckpt}", "--data.test_episodes=2",
          "--data.env.episode_length=10"])  # fmt: skip
    predictions = np.load(run / "predictions.npz")
    steps = len(predictions["alive"])
    assert predictions["input_history"].shape == (steps, 2, 30, 49) and predictions["state"].shape == (steps, 2, 29)


def test_a_student_without_the_action_loss_keeps_the_teachers_actor(teachers, sharpa_cache, monkeypatch, tmp_path):
    monkeypatch.chdir(teachers)
    log_root = tmp_path / "logs"
    monkeypatch.setenv("UNILAB_LOG_ROOT", str(log_root))
    teacher = TeacherSource(log_root=str(teachers / "logs")).resolve("sharpa_inhand", "mujoco")
    cli = main(sharpa_args("hora_distill", sharpa_cache, "--data.iterations_per_epoch=3",
                           "--model.action_loss_weight=0", f"--model.teacher.checkpoint_path={teacher}"))  # fmt: skip
    student = cli.model.student
    for mine, teachers_own in zip(student.actor.parameters(), student.teacher.actor.parameters(), strict=True):
        torch.testing.assert_close(mine, teachers_own)
    (run,) = (log_root / "hora_distill" / "SharpaInhandRotation").iterdir()
    assert "distill/action_mse" not in EventAccumulator(str(next(run.glob("events*")))).Reload().Tags()["scalars"]

    # A student saved before it had its own actor drove the teacher's: it loads with that actor.
    old = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    for key in [key for key in old["state_dict"] if key.startswith("student.actor.")]:
        del old["state_dict"][key]
    del old["hyper_parameters"]["action_loss_weight"]
    torch.save(old, tmp_path / "old_student.ckpt")
    cli = main(["validate", "--config", str(run / "config.yaml"), f"--ckpt_path={tmp_path / 'old_student.ckpt'}",
                "--data.val_episodes=1"])  # fmt: skip
    restored = cli.model.student
    for mine, teachers_own in zip(restored.actor.parameters(), restored.teacher.actor.parameters(), strict=True):
        torch.testing.assert_close(mine, teachers_own)
    # Resumed from an older run's config (no action_loss_weight: today's default, > 0), it goes on as it was trained.
    lines = (run / "config.yaml").read_text().splitlines(keepends=True)
    older = [line for line in lines if line.strip() != "action_loss_weight: 0.0"]
    assert len(older) == len(lines) - 1
    (tmp_path / "old_config.yaml").write_text("".join(older))
    cli = main(["fit", "--config", str(tmp_path / "old_config.yaml"), f"--ckpt_path={tmp_path / 'old_student.ckpt'}",
                "--trainer.max_epochs=2"])  # fmt: skip
    assert cli.model.hparams.action_loss_weight == 0 and cli.model.iteration == 6
    resumed = cli.model.student
    for mine, teachers_own in zip(resumed.actor.parameters(), resumed.teacher.actor.parameters(), strict=True):
        torch.testing.assert_close(mine, teachers_own)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("--model.action_loss_weight=-1", "model.action_loss_weight must be >= 0 and finite, got -1"),
        ("--model.num_learning_epochs=0", "model.num_learning_epochs must be >= 1, got 0"),
        ("--model.history_frames=10", "model.history_frames must be >= 17, got 10"),
        ("--model.optimizer.init_args.lr=-1", "model.optimizer: Invalid learning rate: -1"),
        ("--data.env.tactile_latency_probability=2", "env.tactile_latency_probability must be in [0, 1], got 2"),
        ("--data.env.scale_list=[1.0, -0.5]", "env.scale_list must be object scales > 0, got [1.0, -0.5]"),
        (
            "--data.env.privileged_position_noise=-0.01",
            "env.privileged_position_noise must be >= 0 and finite (m), got -0.01",
        ),
    ],
)
def test_nonsense_student_or_sharpa_settings_stop_before_a_run_folder_is_made(
    sharpa_cache, tmp_path, monkeypatch, capsys, override, message
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(sharpa_args("hora_distill", sharpa_cache, override))
    assert exit_info.value.code == 2
    assert f"error: {message}" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()
