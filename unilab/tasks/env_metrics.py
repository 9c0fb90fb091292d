"""What an env reports between two ``pop_metrics`` calls: means of per-step values and finished-episode figures."""

from __future__ import annotations

import numpy as np
import torch


class EnvMetrics:
    """Running sums of per-step values and the episodes that ended since the last :meth:`pop`."""

    def __init__(self, object_scales: tuple[float, ...]) -> None:
        self.object_scales = object_scales
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._episodes: dict[str, list[float]] = {"length": [], "rotation_speed": [], "dropped": [], "scale": []}

    def add_step(self, values: dict[str, float]) -> None:
        """One step's values (a key missing from a step is averaged over the steps that had it)."""
        for key, value in values.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
            self._counts[key] = self._counts.get(key, 0) + 1

    def add_episodes(
        self, length: torch.Tensor, rotation_speed: torch.Tensor, dropped: torch.Tensor, scale: torch.Tensor
    ) -> None:
        """Episodes that just ended: their control steps, mean rad/s, whether they dropped, object scale index."""
        self._episodes["length"] += length.tolist()
        self._episodes["rotation_speed"] += rotation_speed.tolist()
        self._episodes["dropped"] += dropped.float().tolist()
        self._episodes["scale"] += scale.tolist()

    def pop(self) -> dict[str, float]:
        """Means since the last call (``episode/*`` only if an episode ended; with several object scales also
        ``drop_rate_by_scale/<scale>``, the smallest cylinders being the hardest to keep: docs/results.md)."""
        metrics = {key: total / self._counts[key] for key, total in self._sums.items()}
        episodes = self._episodes
        if episodes["length"]:
            metrics["episode/length"] = float(np.mean(episodes["length"]))
            metrics["episode/rotation_speed"] = float(np.mean(episodes["rotation_speed"]))
            metrics["episode/drop_rate"] = float(np.mean(episodes["dropped"]))
            metrics["episode/count"] = float(len(episodes["length"]))
            if len(self.object_scales) > 1:
                metrics |= self._drop_rates_by_scale()
        self._sums, self._counts = {}, {}
        self._episodes = {key: [] for key in episodes}
        return metrics

    def _drop_rates_by_scale(self) -> dict[str, float]:
        scales = len(self.object_scales)
        episodes = np.bincount(self._episodes["scale"], minlength=scales)
        drops = np.bincount(self._episodes["scale"], weights=self._episodes["dropped"], minlength=scales)
        return {
            f"drop_rate_by_scale/{self.object_scales[i]:g}": float(drops[i] / episodes[i])
            for i in np.flatnonzero(episodes)
        }
