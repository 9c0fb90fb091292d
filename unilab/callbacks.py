"""Lightning callbacks: run metadata (run.json) and ONNX policy export with a parity check."""

from __future__ import annotations

import copy
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch import nn

import unilab
from unilab import runs
from unilab.deploy.contract import CONTRACT_NAME, build_contract, write_contract
from unilab.files import atomic_write

PACKAGES = ("torch", "lightning", "mujoco", "motrixsim", "mujoco-menagerie", "numpy", "jsonargparse")


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(unilab.__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_directory(trainer: L.Trainer) -> Path | None:
    """The run folder of this fit (the logger's), or the folder of the checkpoint being tested."""
    if trainer.logger is not None and trainer.logger.log_dir:
        return Path(trainer.logger.log_dir)
    return runs.run_of_checkpoint(trainer.ckpt_path)


class TrainingProgressBar(TQDMProgressBar):
    """Lightning's bar without the logger version (``v_num``), which says nothing here."""

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        formats = {"it": "{:.0f}", "sps": "{:.0f}", "ep_len": "{:.1f}", "rew": "{:.3f}", "rot": "{:.2f}"}
        return {k: formats[k].format(float(v)) if k in formats else v for k, v in metrics.items()}


class RunMetadata(L.Callback):
    """Writes ``run.json``: versions, commit, machine, seed, env-steps, final metrics, and the run's history.

    A resumed run keeps its first ``started`` and adds one entry to ``sessions`` per fit (its command-line
    flags, start and end, env-steps at both); ``final_metrics`` are replaced only by a session that has some.
    Ctrl-C ends the session too: ``last.ckpt`` is saved and the entry is closed with ``interrupted``, while the
    run's own ``ended`` stays null until a fit finishes.
    """

    def __init__(self, seed: int | None = None, command: list[str] | None = None) -> None:
        self.seed = seed
        self.command = list(command or [])
        self.path: Path | None = None
        self.record: dict = {}

    def _static(self, trainer: L.Trainer) -> dict:
        return {
            "unilab_version": unilab.__version__,
            "git_commit": git_commit(),
            "packages": package_versions(),
            "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
            "seed": self.seed,
            "world_size": trainer.world_size,
        }

    def _flush(self) -> None:
        text = json.dumps(self.record, indent=2)
        atomic_write(self.path, lambda tmp: tmp.write_text(text))

    def on_fit_start(self, trainer, pl_module) -> None:
        directory = run_directory(trainer) if trainer.is_global_zero else None
        if directory is None:
            return
        self.path = directory / "run.json"
        previous = read_json_object(self.path)
        now = datetime.now(timezone.utc).isoformat()
        env_steps = int(getattr(pl_module, "env_steps", 0))
        session = {"started": now, "command": self.command, "env_steps_at_start": env_steps}
        self.record = {
            **previous,
            **self._static(trainer),
            "started": previous.get("started", now),
            "ended": None,
            "env_steps": env_steps,
            "iterations": int(getattr(pl_module, "iteration", 0)),
            "sessions": [*previous.get("sessions", []), session],
        }
        self._flush()

    def _close(self, trainer, pl_module, interrupted: str | None) -> None:
        if self.path is None:
            return
        now = datetime.now(timezone.utc).isoformat()
        env_steps = int(getattr(pl_module, "env_steps", 0))
        session = self.record["sessions"][-1]
        session |= {"ended": now, "env_steps_at_end": env_steps}
        if interrupted:
            session["interrupted"] = interrupted
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        # "ended" marks a fit that finished; an interrupted one stays open for --resume (scripts test it)
        self.record |= {"ended": None if interrupted else now, "env_steps": env_steps}
        self.record["iterations"] = int(getattr(pl_module, "iteration", 0))
        if metrics:
            self.record["final_metrics"] = metrics
        self._flush()
        self.path = None

    def on_fit_end(self, trainer, pl_module) -> None:
        self._close(trainer, pl_module, interrupted=None)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.path is None or trainer.state.fn != "fit":
            return
        if isinstance(exception, KeyboardInterrupt):
            started_at = self.record["sessions"][-1]["env_steps_at_start"]
            if int(getattr(pl_module, "env_steps", 0)) > started_at and trainer.checkpoint_callback is not None:
                # weights and counters as they are; the rollout in flight, if any, is not counted
                trainer.save_checkpoint(Path(trainer.checkpoint_callback.dirpath) / "last.ckpt")
        self._close(trainer, pl_module, interrupted=type(exception).__name__)


def read_json_object(path: Path) -> dict:
    """The JSON object in ``path``; an empty dict when the file is missing or not a JSON object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def export_onnx(actor: nn.Module, inputs: dict[str, torch.Tensor], path: Path) -> float:
    """Export ``actor`` (named inputs, in order -> action) to ONNX; return max |onnx - torch| on ``inputs``."""
    import onnxruntime

    actor = copy.deepcopy(actor).eval().cpu()
    inputs = {name: value.detach().float().cpu() for name, value in inputs.items()}
    atomic_write(
        path,
        lambda tmp: torch.onnx.export(
            actor,
            tuple(value[:1] for value in inputs.values()),
            str(tmp),
            input_names=list(inputs),
            output_names=["actions"],
            dynamic_axes={name: {0: "batch"} for name in [*inputs, "actions"]},
            dynamo=False,
        ),
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_actions = session.run(None, {name: value.numpy() for name, value in inputs.items()})[0]
    with torch.no_grad():
        torch_actions = actor(*inputs.values()).numpy()
    return float(np.abs(onnx_actions - torch_actions).max())


class EvaluationReport(L.Callback):
    """After ``test``: print the metrics table, write ``eval.json`` and ``policy.onnx`` into the run folder."""

    def on_test_end(self, trainer, pl_module) -> None:
        from unilab.evaluation import METRICS, format_table

        result = getattr(pl_module, "test_result", None)
        if result is None or not trainer.is_global_zero:
            return
        rows = {"overall": result["overall"]} | result.get("per_scale", {})
        print("\n" + format_table(rows))
        for name, value in result["overall"].items():
            if name not in METRICS:  # algorithm-specific figures, e.g. a student's latent error
                print(f"{name}: {value:.4g}")
        directory = run_directory(trainer)
        if directory is None:
            print("eval.json and policy.onnx not written: the checkpoint is not in a run's checkpoints/ folder")
            return
        env = trainer.datamodule.env
        report = dict(result) | {"trained_on": runs.trained_sim(directory), "evaluated_on": env.sim}
        if report["evaluated_on"] != report["trained_on"]:  # a cross-simulator check: keep the run's own eval.json
            write_cross_simulator_report(directory, report)
            return
        actor = pl_module.deterministic_actor()
        inputs = pl_module.recorded_observations
        if actor is not None and inputs is not None:
            onnx_path = directory / "policy.onnx"
            max_diff = export_onnx(actor, inputs, onnx_path)
            count = len(next(iter(inputs.values())))
            report["onnx"] = {
                "path": str(onnx_path),
                "inputs": {name: list(value.shape[1:]) for name, value in inputs.items()},
                "max_abs_diff": max_diff,
                "checked_observations": count,
            }
            verdict = "OK" if max_diff < 1e-4 else "MISMATCH"
            print(
                f"policy.onnx written to {onnx_path}; max |onnx - torch| = {max_diff:.3g} on {count} "
                f"recorded observations ({verdict}, bar 1e-4)"
            )
            shapes = {name: tuple(value.shape[1:]) for name, value in inputs.items()}
            contract = build_contract(env, shapes, report["trained_on"], pl_module.algo_name)
            write_contract(contract, directory / CONTRACT_NAME)
            print(f"{CONTRACT_NAME} (what a robot-side runner needs) written to {directory / CONTRACT_NAME}")
        atomic_write(directory / "eval.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
        print(f"eval.json written to {directory / 'eval.json'}")


def write_cross_simulator_report(directory: Path, report: dict) -> None:
    """``eval_<sim>.json``, and the table beside the run's own ``eval.json`` with the ratio per metric."""
    from unilab.evaluation import METRICS, format_table

    sim = report["evaluated_on"]
    path = directory / f"eval_{sim}.json"
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
    print(f"{path.name} written to {path} (trained on {report['trained_on']}, evaluated on {sim})")
    own = directory / "eval.json"
    if not own.is_file():
        return
    trained = json.loads(own.read_text()).get("overall", {})
    if not all(name in trained for name in METRICS):
        return
    cross = report["overall"]
    ratio = {name: (cross[name] / trained[name] if trained[name] else float("nan")) for name in METRICS}
    print(format_table({report["trained_on"]: trained, sim: cross, f"{sim}/{report['trained_on']}": ratio}))


class PredictionReport(L.Callback):
    """After ``predict``: write the recorded episodes (``unilab.prediction``) to ``predictions.npz`` in the run."""

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.is_global_zero:
            return
        directory = run_directory(trainer)
        if directory is None:
            print("predictions not written: no run folder (pass --ckpt_path <run>/checkpoints/<name>.ckpt)")
            return
        path = directory / "predictions.npz"

        def write_arrays(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, **outputs)

        atomic_write(path, write_arrays)
        alive = outputs["alive"]
        print(
            f"predictions.npz written to {path}: {alive.shape[1]} episodes, {int(alive.sum())} policy steps, "
            f"{int(outputs['dropped'].sum())} dropped"
        )


class EnvStepBudget(L.Callback):
    """Stops a fit once it has trained ``env_steps`` env-steps (the study budget, independent of wall time)."""

    def __init__(self, env_steps: int) -> None:
        if env_steps < 1:
            raise ValueError(f"EnvStepBudget env_steps must be >= 1, got {env_steps}")
        self.env_steps = env_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if int(getattr(pl_module, "env_steps", 0)) >= self.env_steps:
            trainer.should_stop = True
