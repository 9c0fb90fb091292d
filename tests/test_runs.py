"""Where runs live (unilab.runs): one log root for fits, resumes, teachers and the shell scripts."""

import json
import subprocess
import sys

from tests.test_cli_fit import fit_args
from unilab import runs
from unilab.cli import main
from unilab.router import route_train


def test_unilab_log_root_moves_every_run_and_the_lookups_follow(tmp_path, monkeypatch, cache_dir):
    work, root = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("UNILAB_LOG_ROOT", str(root))
    cli = main(fit_args(cache_dir))
    run = runs.find_run("ppo", "AllegroInhandRotation", "mujoco", "-1")
    assert run.parent == root / "ppo" / "AllegroInhandRotation"
    assert cli.trainer.logger.log_dir == str(run)
    assert not (work / "logs").exists()
    assert runs.ended(run)
    resume = route_train(["--algo", "ppo", "--task", "allegro_inhand", "--resume"])
    assert f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}" in resume.args
    newest = subprocess.run(
        [sys.executable, "-m", "unilab.runs", "newest", "--algo", "ppo", "--task", "allegro_inhand"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert newest.stdout.strip() == str(run)


def test_run_of_checkpoint_only_for_checkpoints_kept_in_a_run(tmp_path):
    run = tmp_path / "ppo" / "AllegroInhandRotation" / "20261207_000000_mujoco"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert runs.run_of_checkpoint(run / "checkpoints" / "last.ckpt") is None  # no config.yaml: not a run
    (run / "config.yaml").write_text("{}")
    assert runs.run_of_checkpoint(run / "checkpoints" / "last.ckpt") == run
    (tmp_path / "loose.ckpt").write_bytes(b"x")
    assert runs.run_of_checkpoint(tmp_path / "loose.ckpt") is None
    assert runs.run_of_checkpoint(tmp_path / "missing.ckpt") is None


def test_ended_reads_run_json_and_treats_damage_as_not_ended(tmp_path):
    assert not runs.ended(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"ended": None}))
    assert not runs.ended(tmp_path)
    (tmp_path / "run.json").write_text("[1, 2")
    assert not runs.ended(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"ended": "2026-12-07T03:00:00"}))
    assert runs.ended(tmp_path)
    assert subprocess.run([sys.executable, "-m", "unilab.runs", "ended", str(tmp_path)]).returncode == 0
