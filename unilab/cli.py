"""Command line: ``python -m unilab fit|validate|test|predict|collect --config <yaml>``, ``render --run <run>``.

``fit`` and friends are LightningCLI subcommands. ``collect`` runs grasp collection for a task
(configs/grasp/<task>/<sim>.yaml) and writes a cache file with its sidecar. ``render`` turns
the episodes ``predict`` recorded into GIFs (``unilab.video``).
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from jsonargparse.typing import PositiveInt
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger

import unilab
from unilab import runs
from unilab.callbacks import EvaluationReport, PredictionReport, RunMetadata, TrainingProgressBar
from unilab.checkpoint_io import AtomicCheckpointIO
from unilab.cpu_share import default_num_threads
from unilab.data.rollout import EnvFactory
from unilab.errors import UnilabError
from unilab.router import RouterError, route_eval, route_train
from unilab.user_errors import check_checkpoint, concise_user_errors

log = logging.getLogger("unilab")
# ckpt_path values Lightning resolves itself ("last" is resolved here: the newest run's last.ckpt).
LIGHTNING_CKPT_KEYWORDS = ("best", "hpc", "registry")
DESCRIPTION = """Train and evaluate in-hand rotation policies (LightningCLI: fit, validate, test, predict).
Also: `python -m unilab train|eval --algo A --task T --sim S` (the reference tool's flags; --help lists
them), `python -m unilab collect --config configs/grasp/<task>/<sim>.yaml` (grasp caches) and
`python -m unilab render --run <run folder>` (GIFs of the episodes `predict` recorded)."""
# Warnings that say nothing a unilab user can act on, each with the reason; silenced once, in ``main``.
QUIET_WARNINGS = (
    # Lightning 2.6 builds torch's deprecated LeafSpec at every fit start.
    (r"`isinstance\(treespec, LeafSpec\)`", FutureWarning),
    # A resumed run saves back into its own checkpoints/ folder; new runs get a fresh folder.
    (r"Checkpoint directory .* exists and is not empty", UserWarning),
    # test/validate/predict leave the checkpoint callbacks out on purpose (they train nothing).
    (r"Be aware that when using `ckpt_path`, callbacks used", UserWarning),
    # train/eval replace the command line with the routed arguments on purpose.
    (r"LightningCLI's args parameter is intended", UserWarning),
    # A HORA student's frozen teacher is in eval mode on purpose.
    (r"Found \d+ module\(s\) in eval mode at the start of training", UserWarning),
    # Rollouts are made in this process: ``__len__`` of an iterable dataset can only be wrong across
    # worker processes, and loader workers would copy the envs instead of speeding anything up.
    (r"Your `IterableDataset` has `__len__` defined", UserWarning),
    (r"The '.*' does not have many workers", UserWarning),
)
TRAINER_DEFAULTS = {
    "log_every_n_steps": 1,
    "check_val_every_n_epoch": 5,
    "num_sanity_val_steps": 0,
    "inference_mode": False,
}


class RunConfigSaver(SaveConfigCallback):
    """Saves the fit's config as ``config.yaml``; a resumed fit keeps that file and writes
    ``config.resume_<N>.yaml`` beside it, so the run's original settings are never overwritten."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not trainer.loggers:  # no run folder (--trainer.logger=false): never write into the working directory
            return
        if not self.already_saved and trainer.log_dir and (Path(trainer.log_dir) / "config.yaml").exists():
            index = 1
            while (Path(trainer.log_dir) / f"config.resume_{index}.yaml").exists():
                index += 1
            self.config_filename = f"config.resume_{index}.yaml"
        super().setup(trainer, pl_module, stage)


class UnilabCLI(LightningCLI):
    """LightningCLI with observation sizes linked from the env and runs in ``unilab.runs`` folders."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.observation_dims", "model.init_args.observation_dims", apply_on="instantiate")
        parser.link_arguments("data.num_actions", "model.init_args.num_actions", apply_on="instantiate")

    def parse_arguments(self, parser, args) -> None:
        """Parse, then refuse a missing or unreadable checkpoint before any env is built or run folder made."""
        self.command = [str(arg) for arg in args] if isinstance(args, list | tuple) else sys.argv[1:]
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in ("last", *LIGHTNING_CKPT_KEYWORDS):
            with concise_user_errors():
                check_checkpoint(Path(ckpt_path))

    def instantiate_classes(self) -> None:
        with concise_user_errors():
            super().instantiate_classes()

    def _run_subcommand(self, subcommand: str) -> None:
        with concise_user_errors(kinds=(UnilabError,)):  # e.g. a checkpoint of another observation layout
            super()._run_subcommand(subcommand)

    def instantiate_trainer(self, **kwargs):
        check_data = getattr(self.model, "check_data", None)
        if check_data is not None and self.datamodule is not None:
            with concise_user_errors():
                check_data(self.datamodule)  # before the logger makes a run folder
        trainer_config = self._get(self.config_init, "trainer", default={})
        ckpt_path = self._get(self.config, "ckpt_path") if self.subcommand else None
        if ckpt_path == "last":  # the newest run of this algo/task/sim, continued in its own folder
            ckpt_path = str(newest_last_checkpoint(self.model, self.datamodule))
            self.config_init[self.subcommand]["ckpt_path"] = ckpt_path
        if hasattr(self.model, "restoring_from"):  # a HORA student rebuilds its teacher from the checkpoint
            self.model.restoring_from = ckpt_path
        if self.subcommand == "predict" and trainer_config.get("logger") is None:
            kwargs["logger"] = False  # it has nothing to log; predictions.npz goes to the checkpoint's run folder
        elif trainer_config.get("logger") in (None, True):
            resumed = resumed_logger(ckpt_path)
            kwargs["logger"] = resumed or default_logger(self.model, self.datamodule)
        callbacks = trainer_config.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, list) else [callbacks]
        if self.subcommand in ("validate", "test", "predict"):
            # Nothing is trained, so nothing is saved (and no checkpoint callback looks for its old folder).
            kwargs["enable_checkpointing"] = False
            callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
            # Nor is the config: it would replace the run's fit config.yaml, which `train --resume` reads.
            self.save_config_callback = None
        elif trainer_config.get("enable_checkpointing") is not False and not any(
            isinstance(c, ModelCheckpoint) for c in callbacks
        ):
            callbacks += default_checkpoints()
        if self.subcommand == "fit":  # the others evaluate in float32 whatever the precision
            if trainer_config.get("precision") is None:
                kwargs["precision"] = default_precision(trainer_config.get("accelerator"))
                log.info("trainer.precision=%s (bfloat16 where it is native; say --trainer.precision to choose)",
                         kwargs["precision"])  # fmt: skip
            warn_if_bf16_is_emulated(trainer_config.get("precision"), trainer_config.get("accelerator"))
        if not trainer_config.get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        seed = self._get(self.config, "seed_everything")
        metadata = RunMetadata(seed=seed, command=self.command)
        kwargs["callbacks"] = [*callbacks, metadata, EvaluationReport(), PredictionReport()]
        if trainer_config.get("enable_progress_bar") is not False:
            kwargs["callbacks"].append(TrainingProgressBar())
        return super().instantiate_trainer(**kwargs)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX: AMD Zen 4+, Intel Cooper Lake+)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def default_precision(accelerator: str | None) -> str:
    """``bf16-mixed`` where bfloat16 is native (a CUDA GPU that has it, a CPU with AVX512-BF16 or AMX), else
    ``32-true``: the learner is then several times cheaper and learns alike (docs/results.md, mixed precision)."""
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator in (None, "auto") and torch.cuda.is_available())
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def warn_if_bf16_is_emulated(precision: str | int | None, accelerator: str | None) -> None:
    """bf16-mixed makes the learner about 3x faster where bfloat16 is native, and 10x slower where it is emulated."""
    on_cpu = accelerator == "cpu" or (accelerator in (None, "auto") and not torch.cuda.is_available())
    if str(precision).startswith("bf16") and on_cpu and not cpu_has_native_bf16():
        log.warning(
            "trainer.precision=%s on a CPU without native bfloat16 (no AVX512-BF16 or AMX): the learner will "
            "be several times slower than in float32; use --trainer.precision 32-true",
            precision,
        )


def newest_last_checkpoint(model: LightningModule, datamodule: LightningDataModule) -> Path:
    """``last.ckpt`` of the newest run of this algorithm, task and simulator."""
    algo = getattr(model, "algo_name", type(model).__name__.lower())
    env = datamodule.env
    try:
        return runs.newest_last_checkpoint(algo, type(env).__name__, env.sim)
    except runs.RunError as error:
        raise RouterError(str(error)) from None


def default_logger(model: LightningModule, datamodule: LightningDataModule) -> TensorBoardLogger:
    """TensorBoard logger writing into a new run folder (``unilab.runs.new_run``)."""
    env = datamodule.env
    algo = getattr(model, "algo_name", type(model).__name__.lower())
    run = runs.new_run(algo, type(env).__name__, env.sim)
    return run_logger(run)


def resumed_logger(ckpt_path: str | None) -> TensorBoardLogger | None:
    """Keep logging into the run folder of a checkpoint kept in ``<run>/checkpoints/``."""
    run = runs.run_of_checkpoint(ckpt_path)
    return None if run is None or len(run.parents) < 3 else run_logger(run)


def run_logger(run: Path) -> TensorBoardLogger:
    """A TensorBoard logger whose ``log_dir`` is ``run`` (``<root>/<algo>/<Task>/<run>``)."""
    return TensorBoardLogger(
        save_dir=str(run.parents[2]), name=f"{run.parents[1].name}/{run.parent.name}", version=run.name
    )


def default_checkpoints() -> list[ModelCheckpoint]:
    """``last.ckpt`` every epoch, a kept ``epoch_<N>.ckpt`` every 10 epochs, ``best.ckpt`` by eval RotR.

    Version counters are off: a resumed run overwrites its own ``last.ckpt`` instead of adding ``last-v1``.
    """
    common = {"enable_version_counter": False, "auto_insert_metric_name": False}
    periodic = {"save_on_train_epoch_end": True, **common}
    return [
        ModelCheckpoint(filename="last", save_top_k=1, every_n_epochs=1, **periodic),
        ModelCheckpoint(filename="epoch_{epoch}", save_top_k=-1, every_n_epochs=10, **periodic),
        ModelCheckpoint(filename="best", monitor="eval/RotR", mode="max", save_top_k=1, **common),
    ]


def collect(
    env: EnvFactory,
    count: PositiveInt = 50000,
    num_envs: PositiveInt = 256,
    output: str | None = None,
    seed: int = 0,
) -> Path:
    """Collect ``count`` grasps for ``env`` and write ``<prefix>_<count>.npy`` + sidecar atomically.

    Args:
        env: The rotation task whose scene and grasp criteria are used.
        count: Grasps to accept.
        num_envs: Parallel candidate envs.
        output: Output file (default: the task's cache folder and name).
        seed: Seed of the pose perturbations.
    """
    from unilab.tasks.grasp import GraspProgressBar

    with concise_user_errors():  # building the task checks its settings
        task = env(1)
    task.rng = np.random.default_rng(seed)
    path = Path(output) if output else task.cache_source.directory() / task.cache_files(count)[0][1]
    with GraspProgressBar(count, f"{task.task_name}_grasp") as bar:
        task.write_grasp_cache(path, count, num_envs=num_envs, progress=bar.update)
    stats = task.last_collection_stats
    print(
        f"wrote {count} grasps to {path} (acceptance {100 * stats.acceptance_rate:.2f}%, "
        f"{stats.grasps_per_second:.1f} grasps/s)"
    )
    return path


def collect_main(args: list[str]) -> Path:
    parser = ArgumentParser(prog="python -m unilab collect", description=collect.__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(collect)
    config = parser.parse_args(args)
    with concise_user_errors():
        init = parser.instantiate(config)
    return collect(**{k: v for k, v in vars(init).items() if k != "config"})


def built_cli(args: list[str], trainer_defaults: dict | None = None) -> UnilabCLI:
    """The model, data module and trainer that ``args`` (configs and flags, no subcommand) compose, built but not
    run: for benchmarks that drive them themselves."""
    return UnilabCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        save_config_callback=None,
        trainer_defaults=trainer_defaults or {},
        args=args,
    )


def train() -> None:
    """Console script ``train`` (same as ``python -m unilab train``)."""
    _route_script("train")


def eval_script() -> None:
    """Console script ``unilab-eval`` (same as ``python -m unilab eval``)."""
    _route_script("eval")


def _route_script(command: str) -> None:
    try:
        main([command, *sys.argv[1:]])
    except RouterError as error:
        print(f"error: {command}: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def main(args: list[str] | None = None) -> UnilabCLI | Path | list[Path]:
    """Entry point of ``python -m unilab``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if unilab.WAIT_POLICY_NOTE:
        log.info(unilab.WAIT_POLICY_NOTE)
    torch.set_num_threads(default_num_threads())
    for message, category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    argv = sys.argv[1:] if args is None else list(args)
    if argv and argv[0] == "collect":
        return collect_main(argv[1:])
    if argv and argv[0] == "play":
        from unilab.deploy.play import play_main

        with concise_user_errors():
            return play_main(argv[1:])
    if argv and argv[0] == "render":
        from unilab.video import render_main

        with concise_user_errors():
            return render_main(argv[1:])
    if argv and argv[0] in ("train", "eval"):
        route = (route_train if argv[0] == "train" else route_eval)(argv[1:])
        log.info("%s -> python -m unilab %s", argv[0], " ".join(route.args))
        result = main(route.args)
        for args in route.then:
            log.info("then -> python -m unilab %s", " ".join(args))
            main(args)
        return result
    return UnilabCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_callback=RunConfigSaver,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "python -m unilab", "description": DESCRIPTION}
        | {name: {"prog": f"python -m unilab {name}"} for name in LightningCLI.subcommands()},
        args=args,
    )
