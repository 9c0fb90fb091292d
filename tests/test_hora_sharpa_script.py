"""scripts/hora_sharpa.sh end to end at toy budgets: caches -> teacher -> student -> table, then a rerun that skips.

On the one object scale whose real grasps the session has collected (``SCALES=1``; nine scales would take
minutes to collect), so the script's cache stage must find that cache and collect nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = "--data.num_envs=18 --data.iterations_per_epoch=2"


def run_script(cache_dir: Path, log_root: Path, workdir: Path) -> subprocess.CompletedProcess:
    env = os.environ | {
        "UNILAB_CACHE_DIR": str(cache_dir),
        "SCALES": "1.0",
        "UNILAB_LOG_ROOT": str(log_root),
        "PYTHON": sys.executable,
        "TEACHER_STEPS": "288",
        "STUDENT_STEPS": "288",
        "TEACHER_ARGS": TINY,
        "STUDENT_ARGS": TINY,
        "EVAL_ARGS": "--data.test_episodes=9 --data.num_envs=9",
    }
    return subprocess.run(
        ["bash", str(workdir / "scripts" / "hora_sharpa.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=workdir,
    )


def test_hora_sharpa_runs_every_stage_once_and_a_rerun_skips_the_finished_fits(sharpa_cache, tmp_path):
    workdir = tmp_path / "repo"  # a copy, so that nothing is written into the checkout
    shutil.copytree(REPO / "scripts", workdir / "scripts")
    shutil.copytree(REPO / "configs", workdir / "configs")
    log_root = tmp_path / "logs"

    first = run_script(sharpa_cache, log_root, workdir)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "all present" in first.stdout and "== done: this invocation took 0 h" in first.stdout
    assert "== hora_ppo: training" in first.stdout and "== hora_distill: training" in first.stdout
    teacher = next((log_root / "hora_ppo" / "SharpaInhandRotation").iterdir())
    student = next((log_root / "hora_distill" / "SharpaInhandRotation").iterdir())
    for run in (teacher, student):
        assert json.loads((run / "eval.json").read_text())["overall"]["episodes"] == 9
    table = first.stdout[first.stdout.rindex("RotR") :].splitlines()  # the comparison table closes the output
    assert [row.split()[0] for row in table[1:3]] == ["teacher", "student"]
    assert [row.split()[-1] for row in table[1:3]] == ["9", "9"]  # episodes

    second = run_script(sharpa_cache, log_root, workdir)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"== hora_ppo: {teacher} has ended, skipping" in second.stdout
    assert f"== hora_distill: {student} has ended, skipping" in second.stdout
    assert len(list(teacher.parent.iterdir())) == 1 and len(list(student.parent.iterdir())) == 1
