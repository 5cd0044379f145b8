r"""DiTi: time-step-stratified features that compensate a frozen diffusion model.

Yue, Wang, Sun, Hua, Zhang, "Exploring Diffusion Time-steps for Unsupervised
Representation Learning", ICLR 2024 (official code: github.com/yue-zhongqi/diti,
``trainer/diti_trainer.py`` (masks, ``t_to_idx``) and
``model/diffusion/gaussian_diffusion.py`` (``pdae_timestep_loss``, ``shift_coef``,
``weight``)); built on PDAE (Zhang et al., "Unsupervised Representation Learning
from Pre-trained Diffusion Probabilistic Models", NeurIPS 2022).

A frozen pretrained DDPM ε_θ loses more attributes of x₀ as t grows. An encoder
E gives z = E(x₀) ∈ R^D, cut into k blocks with end dimensions d_1 < … < d_k = D;
the time axis is cut into k equal stages, idx(t) = min(⌊k t⌋, k − 1) for
t ∈ (0, 1], and the nested mask m_t keeps the first idx(t) + 1 blocks:

    m_t[j] = 1  iff  j < d_{idx(t)+1},     m_s ≤ m_t for s ≤ t,  m_1 = 1.

A decoder G compensates the DDPM's error with the masked features (PDAE's
mean shift):

    L = E_{x₀, ε, t} w(t) ‖ε − (ε_θ(x_t, t) + c(t) G(x_t, t, z ⊙ m_t))‖²,
    c(t) = −√α_t (1 − ᾱ_{t−Δ}) / √(1 − ᾱ_t),    α_t = ᾱ_t / ᾱ_{t−Δ},
    w(t) = SNR(t)^γ / (1 + SNR(t)),  SNR = ᾱ/(1 − ᾱ),  γ = 0.1,

with Δ = 1/T the DDPM step (the official tables at integer steps, here on the
core's continuous ``VPLinear.from_ddpm(T)``, ᾱ = α(t)²). ε_θ enters through a
stop-gradient (the DDPM is frozen). So block 0 alone must carry what the DDPM
loses at small t (fine details); later blocks add what is lost at larger t
(coarse attributes). With k = 1 every mask is 1: this is PDAE, DiTi's unmasked
baseline. Mode "stop_grad" (the official option) detaches the blocks of earlier
stages, z ⊙ m_t = sg(z ⊙ m_{t, earlier}) + z ⊙ (m_t − m_{t, earlier}).

The random draws are ``parameterization.denoising_loss_fn``'s, so with G ≡ 0 the
loss equals that function's ε-loss with ``diti_weighting`` for the same key.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.diffusion import parameterization, schedules
from jaxrep.diffusion.schedules import Coefficients, NoiseProcess

PyTree = Any


def block_ends(latent_dim: int, num_blocks: int,
               dims_per_block: Sequence[int] | None = None) -> np.ndarray:
  """End dimensions d_1 < … < d_k = D of the k blocks: equal blocks
  ⌊D(i + 1)/k⌋ (the official default), or cumulative ``dims_per_block``."""
  if dims_per_block is not None:
    if len(dims_per_block) != num_blocks or sum(dims_per_block) != latent_dim:
      raise ValueError(f"dims_per_block {dims_per_block} must have {num_blocks} entries "
                       f"summing to {latent_dim}")
    return np.cumsum(dims_per_block)
  if not 1 <= num_blocks <= latent_dim:
    raise ValueError(f"need 1 ≤ num_blocks ≤ latent_dim, got {num_blocks}, {latent_dim}")
  return np.array([latent_dim * (i + 1) // num_blocks for i in range(num_blocks)])


def nested_masks(latent_dim: int, num_blocks: int,
                 dims_per_block: Sequence[int] | None = None) -> np.ndarray:
  """(k, D) 0/1 masks; row i keeps the first i + 1 blocks (rows are nested, the
  last is all ones)."""
  ends = block_ends(latent_dim, num_blocks, dims_per_block)
  return (np.arange(latent_dim)[None, :] < ends[:, None]).astype(np.float32)


def stage_index(t: jax.Array, num_blocks: int) -> jax.Array:
  """idx(t) = min(⌊k t⌋, k − 1) for t ∈ [0, 1]: the stage of each time."""
  return jnp.minimum(jnp.floor(t * num_blocks).astype(jnp.int32), num_blocks - 1)


def diti_weighting(gamma: float = 0.1):
  """w(t) = SNR^γ/(1 + SNR) (the official ``weight``) as a core ``Weighting``."""

  def weighting(t, c: Coefficients):
    snr = c.alpha**2 / c.sigma**2
    return snr**gamma / (1.0 + snr)

  return weighting


def shift_coefficient(process: NoiseProcess, t: jax.Array, num_steps: int) -> jax.Array:
  """c(t) = −√(ᾱ_t/ᾱ_{t−Δ}) (1 − ᾱ_{t−Δ}) / √(1 − ᾱ_t), Δ = 1/T (ᾱ = α(t)²;
  ᾱ_{t−Δ} = 1 at t − Δ ≤ 0, as the official ``alphas_cumprod_prev``)."""
  alpha_bar = process.alpha(t)**2
  prev = jnp.where(t - 1.0 / num_steps > 0, process.alpha(t - 1.0 / num_steps)**2, 1.0)
  return -jnp.sqrt(alpha_bar / prev) * (1.0 - prev) / process.sigma(t)


def masked_features(z: jax.Array, t: jax.Array, masks: jax.Array, mode: str = "base"
                    ) -> jax.Array:
  """z ⊙ m_t for z (batch, D), t (batch,); "stop_grad" detaches earlier stages' blocks."""
  idx = stage_index(t, masks.shape[0])
  mask = masks[idx]
  if mode == "base":
    return z * mask
  if mode != "stop_grad":
    raise ValueError(f"mode must be 'base' or 'stop_grad', got {mode!r}")
  earlier = jnp.where((idx > 0)[:, None], masks[jnp.maximum(idx - 1, 0)], 0.0)
  return jax.lax.stop_gradient(z * earlier) + z * (mask - earlier)


def diti_loss_fn(ddpm_apply: Callable[..., jax.Array], encode_apply: Callable[..., jax.Array],
                 decode_apply: Callable[..., jax.Array], process: NoiseProcess,
                 num_steps: int, masks: jax.Array, *, gamma: float = 0.1,
                 mode: str = "base") -> Callable[..., Any]:
  """DiTi's (k > 1 masks) or PDAE's (one all-ones mask) loss as ``loss_fn``.

  Args:
    ddpm_apply: ``ddpm_apply(ddpm_params, x_t, t)`` → ε̂, the frozen pretrained DDPM.
    encode_apply: ``encode_apply(encoder_params, x₀)`` → z (batch, D).
    decode_apply: ``decode_apply(decoder_params, x_t, t, z_masked)`` → G (x's shape).
    process: the DDPM's noise process (``VPLinear.from_ddpm(num_steps)``; its
      t_min should be ≥ 1/num_steps).
    num_steps: T, the DDPM's number of steps (Δ = 1/T in c(t)).
    masks: (k, D) ``nested_masks``.
  Returns:
    ``loss_fn(params, batch, rng, axis_name=None) → (loss, {"compensated_mse",
    "ddpm_mse"})``, params ``{"encoder", "decoder"}``, batch ``{"x": x₀, "ddpm":
    frozen DDPM params}`` (through ``minibatch_task``'s "hparams").
  """
  weighting = diti_weighting(gamma)
  masks = jnp.asarray(masks)

  def loss_fn(params, batch, rng, axis_name=None):
    del axis_name
    x0 = batch["x"]
    t, eps, x_t, _ = parameterization.noisy_inputs(process, x0, rng)   # its draws
    eps_ddpm = jax.lax.stop_gradient(ddpm_apply(batch["ddpm"], x_t, t))
    z = masked_features(encode_apply(params["encoder"], x0), t, masks, mode)
    shift = schedules.expand_time(shift_coefficient(process, t, num_steps), x0)
    prediction = eps_ddpm + shift * decode_apply(params["decoder"], x_t, t, z)
    c = schedules.coefficients(process, t, x0)
    weights = jnp.reshape(weighting(t, c), (-1,))
    errors = parameterization.denoising_errors(prediction, "eps", x_t, x0, eps, c)
    ddpm_errors = parameterization.denoising_errors(eps_ddpm, "eps", x_t, x0, eps, c)
    return jnp.mean(weights * errors), {"compensated_mse": jnp.mean(errors),
                                        "ddpm_mse": jnp.mean(ddpm_errors)}

  return loss_fn


def block_features(z: jax.Array, latent_dim: int, num_blocks: int) -> list[jax.Array]:
  """z (n, D) cut into its k blocks (for per-block attribute probes)."""
  ends = block_ends(latent_dim, num_blocks)
  starts = np.concatenate([[0], ends[:-1]])
  return [z[:, s:e] for s, e in zip(starts, ends)]
