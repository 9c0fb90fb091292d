"""The grasp-cache side of an in-hand rotation env: cache names, collection, loading (docs/spec.md §4).

``InHandRotationEnv`` inherits it; everything here reads the env's hand, models, object, simulator and
``cache_source`` and fills ``grasps`` / ``grasp_offsets`` (one block of cached rows per object scale).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from unilab import caches
from unilab.sim import contiguous_assignment, make_backend
from unilab.sim.scene import hand_fingerprint
from unilab.tasks.grasp import GraspCollector, GraspCriteria, GraspProgressBar

log = logging.getLogger(__name__)


class GraspCacheMixin:
    """Cache names, the hold test's collector, and resolving one cache per object scale."""

    def regenerate_command(self) -> str:
        return f"python -m unilab train --task {self.task_name}_grasp --sim {self.sim}"

    def generated_cache_name(self, count: int) -> str:
        """File name of a cache of ``count`` grasps (``<prefix>_<N>.npy``)."""
        prefix = Path(self.cache_name).stem.rsplit("_", 1)[0]
        return f"{prefix}_{caches.count_tag(count)}.npy"

    def cache_files(self, count: int | None = None) -> list[tuple[str, str]]:
        """Per object scale: (file looked up locally and on Hugging Face, file a collection of ``count``
        grasps writes; ``count`` defaults to the configured generation size)."""
        count = self.cache_source.generate_count if count is None else count
        return [(self.cache_name, self.generated_cache_name(count))]

    def counted_cache_prefix(self) -> str | None:
        """Prefix of the ``<prefix>_<N>.npy`` caches that ``collect --count N`` writes and training also reads."""
        return Path(self.cache_name).stem.rsplit("_", 1)[0]

    def home_pose(self) -> np.ndarray:
        """Joint positions (rad, model convention) around which grasps are sampled."""
        return self.hand.home_array()

    def cache_expectation(self, scale_index: int = 0) -> caches.CacheExpectation:
        return caches.CacheExpectation(
            hand=self.hand.name,
            fingerprint=hand_fingerprint(self.models[scale_index], self.hand),
            joint_names=self.hand.joint_names,
            object_scale=self.object_scales[scale_index],
            regenerate_command=self.regenerate_command(),
            backend=self.sim,
        )

    def grasp_criteria(self) -> GraspCriteria:
        """Grasp-collection criteria for this task (docs/spec.md)."""
        raise NotImplementedError

    def collect_grasps(
        self, count: int, num_envs: int = 256, progress: Callable | None = None, scale_index: int = 0
    ) -> np.ndarray:
        """Collect ``count`` grasps for object scale ``object_scales[scale_index]`` on a fresh backend."""
        scale = slice(scale_index, scale_index + 1)
        backend = make_backend(
            self.sim, self.models[scale], num_envs, self.physics.substeps, self.backend.num_threads,
            specs=self.specs[scale],
        )  # fmt: skip
        collector = GraspCollector(
            backend,
            self.layout,
            self.home_pose(),
            np.asarray(self.obj.pos),
            self.grasp_criteria(),
            target_limits=np.stack([self.target_lower.numpy(), self.target_upper.numpy()], axis=1),
            seed=int(self.rng.integers(2**31)),
        )
        grasps = collector.collect(count, progress)
        self.last_collection_stats = collector.stats
        return grasps

    def write_grasp_cache(
        self, path: Path, count: int, num_envs: int = 256, progress: Callable | None = None, scale_index: int = 0
    ) -> Path:
        grasps = self.collect_grasps(count, num_envs, progress, scale_index)
        meta = caches.CacheMeta(
            hand=self.hand.name,
            model_id=f"{self.hand.menagerie_id}/{self.hand.menagerie_entry}",
            fingerprint=self.cache_expectation(scale_index).fingerprint,
            joint_names=list(self.hand.joint_names),
            object=asdict(self.obj),
            object_scale=self.object_scales[scale_index],
            rows=len(grasps),
            made_by={
                "task": f"{self.task_name}_grasp",
                "backend": self.sim,
                "acceptance_rate": self.last_collection_stats.acceptance_rate,
                "command": self.regenerate_command(),
            },
        )
        return caches.save_cache(path, grasps, meta)

    def load_grasps(self, training_envs: int | None = None, control_steps_per_epoch: int | None = None) -> None:
        """Resolve one cache per object scale (local -> Hugging Face -> generation) and keep them for resets.

        ``training_envs`` and ``control_steps_per_epoch`` (from the data module) size the warning about caches
        so small that episode starts repeat within an epoch; without them it is about one reset of this env.
        """
        source = self.cache_source
        files = self.cache_files()
        if source.generate_count <= 0 and not source.hf_repo_id and not source.path:
            directory = source.directory()
            prefix = self.counted_cache_prefix()
            counted = caches.counted_caches(directory, prefix) if prefix else []
            missing = [
                f"{scale:g} ({name})"
                for scale, (name, generated) in zip(self.object_scales, files, strict=True)
                if not counted
                and not any(
                    p.exists() for p in (directory / name, directory / generated, caches.LEGACY_CACHE_DIR / name)
                )
            ]
            if missing:
                raise caches.CacheError(
                    f"no grasp cache in {directory} for object scales {', '.join(missing)} and generation is off. "
                    f"Collect them with: {self.regenerate_command()} (one scale per run)"
                )
        blocks = []
        for index, (name, generated) in enumerate(files):

            def generate(target: Path, n: int, index: int = index) -> None:
                label = f"collecting grasps (scale {self.object_scales[index]:g})"
                with GraspProgressBar(n, label) as bar:
                    self.write_grasp_cache(target, n, progress=bar.update, scale_index=index)

            grasps, path = caches.resolve_cache(
                name,
                source,
                self.cache_expectation(index),
                generate=generate,
                generated_name=generated,
                counted_prefix=self.counted_cache_prefix(),
            )
            log.info("scale %g: using %d grasps from %s", self.object_scales[index], len(grasps), path)
            self._warn_if_starts_repeat(index, len(grasps), path, training_envs, control_steps_per_epoch)
            blocks.append(torch.from_numpy(grasps))
        counts = torch.tensor([len(block) for block in blocks])
        self.grasp_counts = counts
        self.grasp_offsets = torch.cumsum(counts, 0) - counts
        self.grasps = torch.cat(blocks)

    def _warn_if_starts_repeat(
        self, scale_index: int, rows: int, path: Path, training_envs: int | None, control_steps: int | None
    ) -> None:
        """Warn when a cache is so small that episode starts repeat within one epoch (or one reset of all envs)."""
        assignment = contiguous_assignment(training_envs or self.num_envs, len(self.object_scales))
        envs = int((assignment == scale_index).sum())
        if control_steps:
            resets = envs * max(1, control_steps // self.episode_length)  # time-outs alone
            period = "within one epoch"
        else:
            resets, period = envs, "at the first reset"
        if rows < resets:
            log.warning(
                "grasp cache %s holds %d grasps, but its %d envs start at least %d episodes %s: starts repeat. "
                "Collect more with: %s",
                path,
                rows,
                envs,
                resets,
                period,
                self.regenerate_command(),
            )
