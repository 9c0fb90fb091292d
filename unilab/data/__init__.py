"""Rollout data: the only code that steps envs during training."""
