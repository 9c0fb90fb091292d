"""Algorithms as LightningModules."""
