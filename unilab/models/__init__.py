"""Plain nn.Modules: MLPs, actor-critic, normaliser."""
