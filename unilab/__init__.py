"""unilab: dexterous in-hand rotation policies on CPU-batched physics with PyTorch Lightning."""

__version__ = "0.1.0"
