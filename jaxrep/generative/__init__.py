"""Generative models that are not diffusion models: likelihood fits of singular
distributions, conditional VAEs.

* ``cvae`` — the conditional VAE (Sohn et al. 2015) with attribute conditions:
  prior, recognition and generation networks, the β-weighted ELBO, the
  importance-sampled conditional log-likelihood and closed-form diagonal KL.
* ``instance_noise`` — likelihood fits of a distribution on a low-dimensional
  manifold with instance noise (Chae et al. 2023): manifold samplers in R^D, a
  latent-variable generator fitted by the IWAE bound, W1 by ott-jax Sinkhorn.
"""
from jaxrep.generative import cvae, instance_noise

__all__: list[str] = ["cvae", "instance_noise"]  # submodules, one per paper or shared piece
