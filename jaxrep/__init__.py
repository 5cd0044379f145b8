"""jaxrep: functional JAX reimplementations of representation-learning papers."""
