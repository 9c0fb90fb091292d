"""The actor-critic skeleton PPO and APPO share: settings and their checks, the optimiser, the adaptive
learning-rate rule, minibatches, time-out bootstrapping, normaliser folding and the iteration logs.

A subclass declares only what differs: its trace lambda, its own settings, and the defaults it changes
(APPO's gentler lr rule and smaller update), then passes the rest on as ``**kwargs``; LightningCLI
(jsonargparse) follows ``**kwargs`` to this constructor, so ``--model.init_args.<name>`` and
``--print_config`` list every setting.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from lightning.pytorch.cli import OptimizerCallable

from unilab.algos.base import PolicyAlgorithm, check_groups, check_optimizer
from unilab.algos.losses import KLAdaptiveLR
from unilab.data.record import Rollout
from unilab.user_errors import refuse_invalid


def check_trace_lambda(name: str, value: float) -> None:
    """A GAE or V-trace lambda: in [0, 1]."""
    refuse_invalid([(name, value, 0 <= value <= 1, "in [0, 1]")])


class ActorCriticAlgorithm(PolicyAlgorithm):
    """Base of PPO and APPO: owns the settings every actor-critic algorithm has and what they drive."""

    def __init__(
        self,
        observation_dims: dict[str, int],
        num_actions: int,
        actor_hidden_dims: Sequence[int] = (512, 256, 128),
        critic_hidden_dims: Sequence[int] = (512, 256, 128),
        activation: str = "elu",
        init_std: float = 1.0,
        actor_output_gain: float = 1.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        schedule: str = "adaptive",
        desired_kl: float = 0.02,
        lr_bounds: tuple[float, float] = (1e-5, 1e-2),
        lr_factor: float = 1.5,
        kl_band: tuple[float, float] = (0.5, 2.0),
        gamma: float = 0.99,
        clip_param: float = 0.2,
        value_loss_coef: float = 4.0,
        entropy_coef: float = 0.01,
        num_learning_epochs: int = 5,
        num_mini_batches: int = 4,
        max_grad_norm: float = 1.0,
        actor_group: str = "policy",
        critic_group: str = "critic",
        privileged_group: str | None = None,
        latent_dim: int = 9,
        encoder_hidden_dims: Sequence[int] = (256, 128),
    ) -> None:
        """
        Args:
            observation_dims: Size of each observation group (linked from the data module).
            num_actions: Action size (linked from the data module).
            actor_hidden_dims: Actor MLP widths.
            critic_hidden_dims: Critic MLP widths.
            activation: Hidden activation (elu, relu, tanh, silu).
            init_std: Initial action standard deviation.
            actor_output_gain: Scale of the actor's initial output weights (its bias starts at zero unless 1.0,
                PyTorch's default initialisation); a small gain starts from near-zero mean actions.
            optimizer: Optimiser factory (e.g. ``torch.optim.Adam`` with ``lr``); its lr is the initial one.
            schedule: ``adaptive`` (KL-driven) or ``fixed``.
            desired_kl: KL target of the adaptive schedule.
            lr_bounds: Bounds of the adaptive learning rate.
            lr_factor: Factor by which the adaptive schedule divides or multiplies lr.
            kl_band: (low, high) multiples of ``desired_kl``: a step's KL above high divides lr, below low multiplies.
            gamma: Discount factor.
            clip_param: Ratio and value clip.
            value_loss_coef: Weight of the value loss.
            entropy_coef: Weight of the entropy bonus.
            num_learning_epochs: Passes over each update's data.
            num_mini_batches: Minibatches per pass; must divide the rows of an update.
            max_grad_norm: Gradient-norm clip.
            actor_group: Observation group the actor reads.
            critic_group: Observation group the critic reads.
            privileged_group: HORA teacher (``--profile hora``): group encoded into the extrinsics latent z
                that the actor reads besides its own group; runs log under ``logs/hora_<algo>/``.
            latent_dim: Size of z.
            encoder_hidden_dims: Widths of the privileged encoder MLP.
        """
        super().__init__()
        check_groups(observation_dims, *(group for group in (actor_group, critic_group, privileged_group) if group))
        if schedule not in ("adaptive", "fixed"):
            raise ValueError(f"model.schedule must be 'adaptive' or 'fixed', got {schedule!r}")
        band, bounds = tuple(kl_band), tuple(lr_bounds)
        refuse_invalid(
            [
                ("init_std", init_std, init_std > 0, "> 0"),
                ("actor_output_gain", actor_output_gain, actor_output_gain > 0, "> 0"),
                ("desired_kl", desired_kl, desired_kl > 0, "> 0"),
                ("lr_factor", lr_factor, lr_factor > 1, "> 1"),
                ("kl_band", band, len(band) == 2 and 0 < band[0] <= 1 <= band[1], "(low, high), 0 < low <= 1 <= high"),
                ("num_learning_epochs", num_learning_epochs, num_learning_epochs >= 1, ">= 1"),
                ("num_mini_batches", num_mini_batches, num_mini_batches >= 1, ">= 1"),
                ("lr_bounds", bounds, len(bounds) == 2 and 0 < bounds[0] <= bounds[1], "(low, high), 0 < low <= high"),
                ("gamma", gamma, 0 < gamma <= 1, "in (0, 1]"),
                ("clip_param", clip_param, clip_param > 0, "> 0"),
                ("value_loss_coef", value_loss_coef, value_loss_coef >= 0, ">= 0"),
                ("entropy_coef", entropy_coef, entropy_coef >= 0, ">= 0"),
                ("max_grad_norm", max_grad_norm, max_grad_norm > 0, "> 0"),
            ]
        )
        check_optimizer(optimizer)
        # Collects the subclass's settings too (Lightning walks the chain of __init__ frames).
        self.save_hyperparameters(ignore=["optimizer"])
        self.automatic_optimization = False
        self._init_policy()
        self.optimizer_factory = optimizer
        self.lr_rule = KLAdaptiveLR(desired_kl, lr_factor, band, bounds)

    def configure_optimizers(self):
        return self.optimizer_factory(self.policy.parameters())

    def on_fit_start(self) -> None:
        self.check_data(self.trainer.datamodule)
        if self.trainer.world_size > 1:  # every rank starts from the same (initial or restored) statistics
            for normalizer in self.policy.normalizers():
                normalizer.mark_synchronised()

    def _fold_observations(self, rollout: Rollout) -> None:
        """The normaliser rule of every algorithm (``unilab.data.collector``): fold a rollout's observations
        in once, after the update on it; under DDP every rank then merges all ranks' rollouts, so all ranks
        act on the same statistics."""
        self.policy.update_normalizers({name: value.to(self.device) for name, value in rollout.obs.items()})
        if self.trainer.world_size > 1:
            for normalizer in self.policy.normalizers():
                normalizer.merge_over_ranks(self.all_gather)

    @torch.no_grad()
    def _next_values(
        self, values: torch.Tensor, last_obs: torch.Tensor, final_obs: torch.Tensor, truncated: torch.Tensor
    ) -> torch.Tensor:
        """V(s_{t+1}) for every (T, N) step with the current critic, the one place time-outs are bootstrapped:
        the next step's value, V(``last_obs``) after the last step, V(``final_obs``) where a time-out cut the
        episode (terminated steps are masked by the targets)."""
        critic = self.policy.critic_group
        next_values = torch.empty_like(values)
        next_values[:-1] = values[1:]
        next_values[-1] = self.policy.value({critic: last_obs})
        if truncated.any():
            next_values[truncated] = self.policy.value({critic: final_obs[truncated]})
        return next_values

    def _adapt_learning_rate(self, optimizer, kl: float) -> None:
        """Apply the KL rule (``schedule: adaptive``) to every parameter group."""
        if self.hparams.schedule != "adaptive":
            return
        lr = self.lr_rule(optimizer.param_groups[0]["lr"], kl)
        for group in optimizer.param_groups:
            group["lr"] = lr

    def _minibatches(self, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
        """Row indices of ``num_learning_epochs`` shuffled passes of ``num_mini_batches`` equal minibatches."""
        minibatch = batch_size // self.hparams.num_mini_batches
        for _ in range(self.hparams.num_learning_epochs):
            permutation = torch.randperm(batch_size, device=device)
            for start in range(0, batch_size, minibatch):
                yield permutation[start : start + minibatch]

    def _iteration_logs(self, optimizer, env_steps: int) -> dict[str, float]:
        """Count ``env_steps`` and one iteration; the figures every actor-critic algorithm logs."""
        self.env_steps += env_steps
        self.iteration += 1
        return {
            "policy/learning_rate": optimizer.param_groups[0]["lr"],
            "policy/action_std": self.policy.log_std.exp().mean().item(),
            "perf/env_steps": float(self.env_steps),
        }
