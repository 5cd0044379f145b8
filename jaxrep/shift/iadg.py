r"""IADG: instance-aware domain generalisation for face anti-spoofing (components).

Q. Zhou et al. (Tencent Youtu Lab / SJTU), "Instance-Aware Domain Generalization
for Face Anti-Spoofing", CVPR 2023. Official code:
github.com/qianyuzqy/IADG (PyTorch): ``models/dkg_module.py`` (DKG),
``models/framework.py`` (CSA, the shader), ``losses/aiaw_loss.py`` and
``utils/cov_settings.py`` (AIAW). Written from the paper's equations and those
files (no code copied). Feature maps here are NHWC.

* **Dynamic kernel generator (DKG)** — the input channels are split in halves
  x = [x₁, x₂]. A per-instance depthwise k×k kernel is generated from the global
  average g_c = mean_{h,w} x₁[h, w, c] of each channel of x₁ by a 1×1 convolution
  over a one-channel map (kernel_c = a·(g_c w + b) + a₀: the code's conv2 then
  conv2'), and convolves x₁ of *that instance only*; x₂ goes through a static 3×3
  convolution; a 1×1 convolution fuses the two halves.
  ``dynamic_depthwise_conv`` is the per-instance convolution, vmapped.
* **Categorical style assembly (CSA)** — per class (live/spoof) a bank of N base
  styles (μ_k, σ_k) ∈ R^C is kept (the code fills it by farthest-point sampling
  of instance statistics: ``farthest_point_sampling``). A new style is a
  Dirichlet(α·1_N) mixture of the instance's class's base styles,
  μ̃ = Σ_k w_k μ_k, σ̃ = Σ_k w_k σ_k, and the feature map is re-styled:

      CSA(x) = σ̃ ⊙ (x − μ(x)) / √(Var(x) + ε) + μ̃,

  with μ(x), Var(x) per instance and channel over H, W (unbiased variance, as
  ``torch.var``), statistics without gradient. So CSA(x)'s per-channel mean is μ̃
  and its (unbiased) std is σ̃ up to ε (the property test). The block adds it
  residually: x + CSA(x) (the code's ``CSABlock``), twice.
* **Asymmetric instance-adaptive whitening (AIAW)** — per instance the channel
  covariance Cov_i = F_i F_iᵀ/(HW − 1) + εI (F_i the C×HW features, not centred,
  as the code); the *sensitive* entries are the top fraction (0.3% live, 0.06%
  spoof: asymmetric) of the upper-triangular entries ranked by their variance
  across the original and style-assembled copies of the class's instances; the
  loss is, per class, mean_i max(0, Σ|Cov_i ⊙ M| / |M|), averaged over the classes.

Only the components are implemented here; the face anti-spoofing experiment
(procedural live/spoof renders in 4 style domains, leave-one-domain-out HTER) is
not written yet.
"""
from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


# ---------------------------------------------------------------------------
# Dynamic kernels


def depthwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """One instance: x (H, W, C) convolved channel by channel with kernel (k, k, C),
  zero 'SAME' padding, stride 1 → (H, W, C)."""
  chex.assert_rank((x, kernel), 3)
  out = lax.conv_general_dilated(
      x[None], kernel[:, :, None, :], window_strides=(1, 1), padding="SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])
  return out[0]


def dynamic_depthwise_conv(x: jax.Array, kernels: jax.Array) -> jax.Array:
  """Per-instance depthwise convolution: x (n, H, W, C), kernels (n, k, k, C) →
  (n, H, W, C); instance i sees only its own kernel (``jax.vmap`` of
  ``depthwise_conv``)."""
  return jax.vmap(depthwise_conv)(x, kernels)


class DynamicKernelGenerator(nn.Module):
  """DKG block: (n, H, W, C) → (n, H, W, features); C must be even."""

  features: int
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    k2 = self.kernel_size ** 2
    g = x1.mean(axis=(1, 2))                                         # (n, C/2)
    w = self.param("kernel_weight", nn.initializers.normal(1.0), (k2,))
    b = self.param("kernel_bias", nn.initializers.zeros, (k2,))
    scale = self.param("kernel_scale", nn.initializers.ones, ())
    offset = self.param("kernel_offset", nn.initializers.zeros, ())
    kernel = scale * (g[..., None] * w + b) + offset                 # (n, C/2, k²)
    kernel = kernel.reshape(x.shape[0], half, self.kernel_size, self.kernel_size)
    dynamic = dynamic_depthwise_conv(x1, kernel.transpose(0, 2, 3, 1))
    static = nn.Conv(x.shape[-1] - half, (3, 3), padding="SAME")(x2)
    return nn.Conv(self.features, (1, 1))(jnp.concatenate([dynamic, static], axis=-1))


# ---------------------------------------------------------------------------
# Categorical style assembly


def instance_statistics(x: jax.Array, eps: float = 1e-5) -> tuple[jax.Array, jax.Array]:
  """Per-instance, per-channel mean and √(unbiased Var + eps) over H, W:
  x (n, H, W, C) → (n, C), (n, C)."""
  chex.assert_rank(x, 4)
  mean = x.mean(axis=(1, 2))
  var = x.var(axis=(1, 2), ddof=1)
  return mean, jnp.sqrt(var + eps)


def csa_restyle(x: jax.Array, style_mean: jax.Array, style_std: jax.Array,
                eps: float = 1e-5) -> jax.Array:
  """Re-style each instance: σ̃ ⊙ (x − μ(x))/√(Var(x) + ε) + μ̃ (statistics of x
  without gradient, as the code detaches them). x (n, H, W, C); styles (n, C)."""
  mean, std = jax.lax.stop_gradient(instance_statistics(x, eps))
  normalised = (x - mean[:, None, None]) / std[:, None, None]
  return normalised * style_std[:, None, None] + style_mean[:, None, None]


def assemble_styles(key: jax.Array, labels: jax.Array, base_mean: jax.Array,
                    base_std: jax.Array, concentration: float
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Dirichlet mixtures of each instance's class's base styles.

  Args:
    labels: (n,) class of each instance; base_mean, base_std: (num_classes, N, C).
  Returns:
    (μ̃ (n, C), σ̃ (n, C), weights (n, N)) with weights ~ Dirichlet(concentration·1_N).
  """
  num_base = base_mean.shape[1]
  weights = jax.random.dirichlet(key, jnp.full((num_base,), concentration),
                                 (labels.shape[0],))
  mean = jnp.einsum("nk,nkc->nc", weights, base_mean[labels])
  std = jnp.einsum("nk,nkc->nc", weights, base_std[labels])
  return mean, std, weights


def farthest_point_sampling(points: jax.Array, num: int) -> jax.Array:
  """Indices (num,) of greedy farthest-point sampling from points (m, d), starting
  at index 0: each next index maximises the distance to the chosen set."""
  chex.assert_rank(points, 2)

  def body(i, state):
    chosen, dist = state
    nxt = jnp.argmax(dist)
    new = jnp.sum((points - points[nxt]) ** 2, axis=-1)
    return chosen.at[i].set(nxt), jnp.minimum(dist, new)

  first = jnp.sum((points - points[0]) ** 2, axis=-1)
  chosen = jnp.zeros((num,), jnp.int32)
  chosen, _ = lax.fori_loop(1, num, body, (chosen, first))
  return chosen


# ---------------------------------------------------------------------------
# Asymmetric instance-adaptive whitening


def instance_covariance(f: jax.Array, eps: float = 1e-5) -> jax.Array:
  """Cov_i = F_i F_iᵀ/(HW − 1) + εI of each instance, F_i the (C, HW) features
  (not centred, as the code): f (n, H, W, C) → (n, C, C)."""
  chex.assert_rank(f, 4)
  flat = f.reshape(f.shape[0], -1, f.shape[-1])
  cov = jnp.einsum("npc,npd->ncd", flat, flat) / (flat.shape[1] - 1)
  return cov + eps * jnp.eye(f.shape[-1], dtype=f.dtype)


def sensitive_covariance_mask(f_original: jax.Array, f_styled: jax.Array,
                              fraction: float) -> jax.Array:
  """AIAW's mask M (C, C): the ⌊fraction·C²⌋ strictly-upper-triangular entries
  with the largest variance of Cov_i over the 2n original and re-styled instances."""
  cov = instance_covariance(jnp.concatenate([f_original, f_styled]))
  channels = cov.shape[-1]
  upper = jnp.triu(jnp.ones((channels, channels)), k=1)
  variance = jnp.var(cov * upper, axis=0).reshape(-1)
  count = max(1, int(fraction * channels * channels))
  _, index = lax.top_k(variance, count)
  return jnp.zeros(channels * channels).at[index].set(1.0).reshape(channels, channels)


def whitening_loss(f: jax.Array, mask: jax.Array) -> jax.Array:
  """mean_i max(0, Σ|Cov_i ⊙ M| / |M|) for one class's features f (n, H, W, C)."""
  cov = instance_covariance(f)
  per_instance = jnp.sum(jnp.abs(cov * mask), axis=(1, 2)) / jnp.maximum(mask.sum(), 1.0)
  return jnp.mean(jnp.maximum(per_instance, 0.0))


def aiaw_loss(f_live: jax.Array, f_spoof: jax.Array, mask_live: jax.Array,
              mask_spoof: jax.Array) -> jax.Array:
  """Asymmetric instance-adaptive whitening: the mean of the two classes'
  ``whitening_loss`` with their own masks (live: 0.3%, spoof: 0.06% in the code)."""
  return 0.5 * (whitening_loss(f_live, mask_live) + whitening_loss(f_spoof, mask_spoof))
