"""Deploying trained policies: the policy.json contract, a torch-free runner, and `play`."""
