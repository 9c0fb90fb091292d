"""The one rollout record: ``horizon`` control steps of ``num_envs`` envs, as named tensors.

PPO, APPO and the HORA student all train from it. It records only what happened (observations,
what the actor stored, rewards, episode ends, and the bootstrap group's observation where a time-out
cut an episode and after the last step); each algorithm turns it into its own targets. Being a flat
dict of tensors, one layout serves a private buffer and a shared-memory ring slot alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

ACTOR_FIELDS = ("actions", "action_mean", "log_prob")
"""Fields an actor may fill (``actions`` always; the others where the algorithm needs them)."""


@dataclass(frozen=True)
class RolloutLayout:
    """Shapes of one rollout: ``horizon`` steps of ``num_envs`` envs.

    ``bootstrap_group`` is the observation group the algorithm's critic reads (None: no critic, so
    nothing is kept to bootstrap from).
    """

    horizon: int
    num_envs: int
    obs_dims: dict[str, int]
    num_actions: int
    bootstrap_group: str | None

    def allocate(self, shared: bool = False) -> dict[str, torch.Tensor]:
        t, n, a = self.horizon, self.num_envs, self.num_actions
        tensors = {f"obs/{name}": torch.zeros(t, n, dim) for name, dim in self.obs_dims.items()}
        tensors |= {
            "actions": torch.zeros(t, n, a),
            "action_mean": torch.zeros(t, n, a),
            "log_prob": torch.zeros(t, n),
            "rewards": torch.zeros(t, n),
            "terminated": torch.zeros(t, n, dtype=torch.bool),
            "dones": torch.zeros(t, n, dtype=torch.bool),
            # [policy version, sequence number]; [collect seconds]
            "stamp": torch.zeros(2, dtype=torch.int64),
            "collect_seconds": torch.zeros(1, dtype=torch.float64),
        }
        if self.bootstrap_group is not None:
            dim = self.obs_dims[self.bootstrap_group]
            tensors["final_obs"] = torch.zeros(t, n, dim)  # the observation a time-out cut off (where one did)
            tensors["last_obs"] = torch.zeros(n, dim)  # the observation after the last step
        if shared:
            for tensor in tensors.values():
                tensor.share_memory_()
        return tensors


def _field(name: str, doc: str) -> property:
    return property(lambda rollout: rollout.tensors[name], doc=doc)


@dataclass
class Rollout:
    """One rollout as the algorithm receives it: the record's tensors, the env metrics and the timing."""

    tensors: dict[str, torch.Tensor]
    metrics: dict[str, float] = field(default_factory=dict)
    wait_seconds: float = 0.0

    actions = _field("actions", "(T, N, A) actions sent to the env")
    action_mean = _field("action_mean", "(T, N, A) the actor's mean actions")
    log_prob = _field("log_prob", "(T, N) log-prob of the actions under the acting policy (0 for the student)")
    rewards = _field("rewards", "(T, N)")
    terminated = _field("terminated", "(T, N) the episode ended by failure after this step")
    dones = _field("dones", "(T, N) terminated or cut by a time-out")
    final_obs = _field("final_obs", "(T, N, dim) the bootstrap group's observation a time-out cut off")
    last_obs = _field("last_obs", "(N, dim) the bootstrap group's observation after the last step")

    @property
    def obs(self) -> dict[str, torch.Tensor]:
        """(T, N, dim) per observation group."""
        return {key[4:]: value for key, value in self.tensors.items() if key.startswith("obs/")}

    @property
    def truncated(self) -> torch.Tensor:
        """(T, N): the episode was cut by a time-out after this step."""
        return self.dones & ~self.terminated

    @property
    def version(self) -> int:
        """Version of the weights that collected it (APPO's policy board; 0 in process)."""
        return int(self.tensors["stamp"][0])

    @property
    def sequence(self) -> int:
        return int(self.tensors["stamp"][1])

    @property
    def env_steps(self) -> int:
        return self.rewards.numel()

    @property
    def collect_seconds(self) -> float:
        return float(self.tensors["collect_seconds"][0])

    def __len__(self) -> int:
        return self.env_steps
