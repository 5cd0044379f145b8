"""Feature normalisation shared by the probes, losses and samplers."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
  """x / max(‖x‖₂, eps) along ``axis`` (kept), any shape; zero vectors stay zero."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), eps)
