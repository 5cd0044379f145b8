"""jaxrep: functional JAX reimplementations of representation-learning papers."""

__version__ = "0.1.0"  # keep in step with pyproject.toml

__all__ = ["__version__", "causal", "compression", "core", "data", "groups", "nn", "probe", "registry", "stats",
           "diffusion", "generative", "lazy", "shift", "ssl", "symmetry", "theory"]
