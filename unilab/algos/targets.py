"""Return and advantage targets as pure functions over (T, N) tensors: GAE for PPO, V-trace for APPO.

The collectors only record what happened (rewards, values, bootstrap values, episode ends); each
algorithm turns the record into its targets here.
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over (T, N) tensors; returns (advantages, returns).

    delta_t = r_t + gamma * V'_t * (1 - terminated_t) - V(s_t)           (Schulman et al. 2016, eq. 11)
    A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}
    ``next_values[t]`` is V(s_{t+1}), or V(final_obs_t) where the episode was cut by a time-out,
    so truncated steps bootstrap while terminal steps do not.
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    not_terminal = 1.0 - terminated.float()
    not_done = 1.0 - dones.float()
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * next_values[t] * not_terminal[t] - values[t]
        running = delta + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values


def vtrace(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    dones: torch.Tensor,
    log_rhos: torch.Tensor,
    gamma: float,
    lam: float = 1.0,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """V-trace value targets and policy-gradient advantages over (T, N) tensors.

    ``log_rhos`` is log pi(a_t|x_t) - log mu(a_t|x_t) (target over behaviour policy);
    ``next_values[t]`` is V(x_{t+1}), or V(final_obs_t) where a time-out cut the episode.

        rho_t = min(rho_bar, pi/mu),  c_t = lam * min(c_bar, pi/mu)
        delta_t = rho_t (r_t + gamma V(x_{t+1}) (1 - terminated_t) - V(x_t))          (eq. 1)
        v_t - V(x_t) = delta_t + gamma c_t (1 - done_t) (v_{t+1} - V(x_{t+1}))        (remark 1)
        A_t = rho_t (r_t + gamma v_{t+1} (1 - terminated_t) - V(x_t))                 (section 4.2)

    where v_{t+1} is replaced by ``next_values[t]`` at the rollout's last step and at episode ends.
    Returns (v, A), both (T, N).
    """
    ratios = log_rhos.exp()
    rhos = ratios.clamp(max=rho_bar)
    cs = lam * ratios.clamp(max=c_bar)
    not_terminal = 1.0 - terminated.float()
    not_done = 1.0 - dones.float()
    deltas = rhos * (rewards + gamma * next_values * not_terminal - values)
    corrections = torch.zeros_like(values)
    running = torch.zeros_like(values[0])
    for t in reversed(range(values.shape[0])):
        running = deltas[t] + gamma * cs[t] * not_done[t] * running
        corrections[t] = running
    targets = values + corrections
    next_targets = next_values.clone()
    next_targets[:-1] = torch.where(dones[:-1], next_values[:-1], targets[1:])
    advantages = rhos * (rewards + gamma * next_targets * not_terminal - values)
    return targets, advantages
