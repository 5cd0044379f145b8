r"""Diffusion U-Net activations as image representations, probed over (block, t).

Paper: Mukhopadhyay, Gwilliam, Agarwal, Padmanabhan, Swaminathan, Hegde, Zhou,
Shrivastava, "Diffusion Models Beat GANs on Image Classification" (2023);
official code ``soumik-kanad/diffssl`` (guided-diffusion; defaults t = 150 of
1000, a decoder block, adaptive average pooling to 2×2, a linear head).

Recipe: noise a clean image to x_t = α(t) x₀ + σ(t) ε with a fixed ε (the paper
noises once per image), run the trained denoiser once, read one block's
activation h_b(x_t, t) (the U-Net sows "down_i", "mid", "up_i" into the
"intermediates" collection), average-pool it to p×p cells and flatten:

    f_{b,t}(x₀) = vec(AdaptiveAvgPool_{p×p}(h_b(α(t) x₀ + σ(t) ε, t))).

A linear probe on f_{b,t} over a grid of (block, t) picks the representation;
the paper finds the best t at a small-to-intermediate noise level and a
middle/decoder block.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxrep.core import evaluate
from jaxrep.diffusion import schedules
from jaxrep.diffusion.schedules import NoiseProcess


def adaptive_average_pool(h: jax.Array, cells: int) -> jax.Array:
  """(batch, H, W, C) → (batch, cells, cells, C) by averaging equal blocks
  (H and W divisible by ``cells``); 1-D (batch, L, C) → (batch, cells, C)."""
  spatial = h.shape[1:-1]
  if any(n % cells for n in spatial):
    raise ValueError(f"spatial sizes {spatial} are not divisible by {cells}")
  shape = [h.shape[0]]
  for n in spatial:
    shape += [cells, n // cells]
  blocks = h.reshape(shape + [h.shape[-1]])
  return blocks.mean(axis=tuple(range(2, 2 + 2 * len(spatial), 2)))


def block_activations(apply_fn: Callable, params, x_t: jax.Array, t: jax.Array
                      ) -> dict[str, jax.Array]:
  """Every sown intermediate of ``apply_fn(params, x_t, t, mutable=["intermediates"])``
  by name (a flax U-Net such as ``jaxrep.diffusion.UNet``)."""
  _, state = apply_fn(params, x_t, t, mutable=["intermediates"])
  return {name: value[0] for name, value in state["intermediates"].items()}


def diffusion_features(apply_fn: Callable, params, process: NoiseProcess, x0: jax.Array,
                       t: float | jax.Array, noise: jax.Array, block: str, cells: int = 2
                       ) -> jax.Array:
  """f_{b,t}(x₀): (batch, cells^k · C) pooled activation of ``block`` at
  x_t = q_sample(x₀, ε, t).

  x0 and noise share a shape (batch, …); t is a scalar time of ``process``."""
  t_batch = jnp.full((x0.shape[0],), t, jnp.float32)
  x_t = schedules.q_sample(process, noise, x0, t_batch)
  h = block_activations(apply_fn, params, x_t, t_batch)[block]
  return adaptive_average_pool(h, cells).reshape(x0.shape[0], -1)


def probe_grid(apply_fn: Callable, params, process: NoiseProcess, train: dict, test: dict,
               blocks: Sequence[str], times: Sequence[float], key: jax.Array, *,
               num_classes: int, cells: int = 2, l2: float = 1e-3,
               num_steps: int = 200) -> jax.Array:
  """Linear-probe test accuracy (len(blocks), len(times)) of f_{b,t}.

  train/test: {"x": images, "y": int labels}. One fixed ε per image (drawn from
  ``key``, shared by every (block, t)); features standardised with the training
  statistics; L-BFGS logistic regression (``jaxrep.core.evaluate``)."""
  key_train, key_test = jax.random.split(key)
  eps_train = jax.random.normal(key_train, train["x"].shape)
  eps_test = jax.random.normal(key_test, test["x"].shape)

  def accuracy(block, t):
    feats = lambda x, eps: diffusion_features(apply_fn, params, process, x, t, eps, block,
                                              cells)
    f_train, f_test = evaluate.standardize(feats(train["x"], eps_train),
                                           feats(test["x"], eps_test))
    return evaluate.logistic_probe_accuracy(f_train, train["y"], f_test, test["y"],
                                            num_classes, l2, num_steps)

  return jnp.array([[accuracy(block, t) for t in times] for block in blocks])
