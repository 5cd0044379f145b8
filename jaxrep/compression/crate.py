r"""CRATE: white-box transformer layers unrolled from sparse rate reduction.

Yu, Buchanan, Pai, Chu, Wu, Tong, Zhai, Ma, "White-Box Transformers via Sparse Rate
Reduction", NeurIPS 2023 (and "… Compression Is All There Is?", JMLR 2024),
Eq. 7–17; the layers as in the official code, Ma-Lab-Berkeley/CRATE
``model/crate.py`` (``Attention``: one shared projection per head serves as query,
key and value; ``FeedForward``: one ISTA step with η = λ = 0.1), and the measures as
in ``vis_utils/coding_rate.py`` / ``vis_utils/crate_hook.py``.

Tokens are the rows of Z ∈ R^{N×d}. The coding rate of Z at precision ε is

    R(Z) = ½ logdet(I_d + α ZᵀZ),       α = d/(N ε²),                  (Eq. 7)

with gradient ∇_Z R = α Z (I_d + α ZᵀZ)⁻¹. Against K subspaces U_k ∈ R^{d×p} the
compression term sums the rates of the projected tokens,

    R^c(Z; U) = Σ_k R(Z U_k) = Σ_k ½ logdet(I_p + p/(N ε²) (ZU_k)ᵀ(ZU_k)).   (Eq. 10)

A CRATE layer takes one gradient step on R^c (approximated by softmax attention:
multi-head subspace self-attention, MSSA) and one proximal step on the sparse code:

    MSSA(Z) = [ softmax(s·(ZU_k)(ZU_k)ᵀ) (ZU_k) ]_{k=1..K} W_out + b,   s = p^{-1/2}
    Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))                                        (Eq. 12)
    Z^{ℓ+1} = ReLU(X + η Dᵀ(X − D X) − ηλ),   X = LN(Z^{ℓ+½})              (Eq. 16)

(row form: ReLU(X + η(X D − X Dᵀ D) − ηλ), D ∈ R^{d×d}). The ISTA step is one
step, started at z = X, of projected ISTA on the non-negative Lasso

    min_{z ≥ 0}  ½ ‖x − D z‖² + λ ‖z‖₁,                                   (Eq. 15)

whose iteration ``ista_solve`` runs to convergence (a property test against
scikit-learn's ``Lasso(positive=True)``, whose objective is (1/2d)‖x − Dz‖² + α‖z‖₁,
so α = λ/d).

Measures (official hooks): per layer ℓ, the compression term of the tokens each head
sees, Z̃_k = LN(Z^ℓ) U_k^ℓ with every token scaled to unit norm, at ε² = 0.01
(``subspace_compression``); and the sparsity of the ISTA output, the fraction of
exact zeros (``zero_fraction``).
"""
from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxrep.diffusion.dit import patchify
from jaxrep.probe.encoders import TransformerBlock

# Official ISTA step size η and sparsity weight λ (``FeedForward``: step_size=ista=0.1,
# lambd=0.1) and the measure's ε² (``CodingRate(eps=0.01)``).
STEP_SIZE, SPARSITY_WEIGHT, MEASURE_EPS_SQ = 0.1, 0.1, 0.01


# ------------------------------------------------------------------ rates

def coding_rate(z: jax.Array, eps_sq: float) -> jax.Array:
  """R(Z) = ½ logdet(I_d + d/(N ε²) ZᵀZ) for tokens Z (N, d); a scalar."""
  chex.assert_rank(z, 2)
  n, d = z.shape
  alpha = d / (n * eps_sq)
  _, logdet = jnp.linalg.slogdet(jnp.eye(d, dtype=z.dtype) + alpha * z.T @ z)
  return 0.5 * logdet


def coding_rate_gradient(z: jax.Array, eps_sq: float) -> jax.Array:
  """Closed form ∇_Z R = α Z (I_d + α ZᵀZ)⁻¹, α = d/(N ε²); (N, d)."""
  n, d = z.shape
  alpha = d / (n * eps_sq)
  gram = jnp.eye(d, dtype=z.dtype) + alpha * z.T @ z
  return alpha * jnp.linalg.solve(gram, z.T).T  # gram is symmetric


def compression_term(z: jax.Array, subspaces: jax.Array, eps_sq: float) -> jax.Array:
  """R^c(Z; U) = Σ_k R(Z U_k): tokens z (N, d), subspaces (K, d, p); a scalar."""
  chex.assert_rank(subspaces, 3)
  return jnp.sum(jax.vmap(lambda u: coding_rate(z @ u, eps_sq))(subspaces))


def subspace_compression(head_tokens: jax.Array, eps_sq: float = MEASURE_EPS_SQ
                         ) -> jax.Array:
  """The official per-layer measure: Σ_k R of each head's tokens scaled to unit norm.

  Args:
    head_tokens: (K, N, p), the tokens LN(Z) U_k each head sees.
    eps_sq: ε² (0.01 in ``vis_utils/coding_rate.py``).

  Returns:
    A scalar Σ_k ½ logdet(I + p/(N ε²) Z̃_kᵀ Z̃_k) with unit-norm rows Z̃_k.
  """
  unit = head_tokens / jnp.linalg.norm(head_tokens, axis=-1, keepdims=True)
  return jnp.sum(jax.vmap(lambda t: coding_rate(t, eps_sq))(unit))


def zero_fraction(z: jax.Array) -> jax.Array:
  """Sparsity: the fraction of exactly-zero entries of z (any shape)."""
  return jnp.mean(z == 0)


# ------------------------------------------------------------------ ISTA

def ista_step(z: jax.Array, x: jax.Array, dictionary: jax.Array, step_size: float,
              lam: float) -> jax.Array:
  """One projected ISTA step on ½‖x − Dz‖² + λ‖z‖₁, z ≥ 0, for row vectors:
  ReLU(z + η (x − z Dᵀ) D − ηλ) = ReLU(z + η Dᵀ(x − Dz) − ηλ) per row.
  z, x (..., d); dictionary D (d, d)."""
  residual = x - z @ dictionary.T
  return jax.nn.relu(z + step_size * residual @ dictionary - step_size * lam)


def ista_block(x: jax.Array, dictionary: jax.Array, step_size: float = STEP_SIZE,
               lam: float = SPARSITY_WEIGHT) -> jax.Array:
  """CRATE's ISTA block: one step from z = x, ReLU(x + η Dᵀ(x − Dx) − ηλ)."""
  return ista_step(x, x, dictionary, step_size, lam)


def ista_solve(x: jax.Array, dictionary: jax.Array, step_size: float, lam: float,
               num_steps: int) -> jax.Array:
  """``num_steps`` ISTA steps from z = x: tends to the non-negative Lasso solution
  when η < 1/‖D‖₂². ``num_steps`` is static."""
  return lax.fori_loop(0, num_steps,
                       lambda _, z: ista_step(z, x, dictionary, step_size, lam), x)


# ------------------------------------------------------------------ layers

def mssa(z: jax.Array, subspaces: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Multi-head subspace self-attention before the output map.

  Args:
    z: (N, d) tokens (already layer-normalised).
    subspaces: (K, d, p), U_k shared by query, key and value.

  Returns:
    ``(heads, projected)``: (N, K·p) the concatenated softmax((ZU_k)(ZU_k)ᵀ/√p) ZU_k,
    and (K, N, p) the projections ZU_k (for the compression measure).
  """
  projected = jnp.einsum("nd,kdp->knp", z, subspaces)
  scale = subspaces.shape[-1] ** -0.5
  attention = jax.nn.softmax(scale * projected @ projected.transpose(0, 2, 1), axis=-1)
  heads = attention @ projected                                   # (K, N, p)
  return heads.transpose(1, 0, 2).reshape(z.shape[0], -1), projected


class CRATEBlock(nn.Module):
  """Z ↦ Z^{ℓ+1}: MSSA with a residual, then one ISTA step (both pre-LN). Sows
  ``head_tokens`` (K, N, p) and ``ista_output`` (N, d) under "intermediates"."""

  num_heads: int
  step_size: float = STEP_SIZE
  lam: float = SPARSITY_WEIGHT

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    n, dim = z.shape[-2:]
    head_dim = dim // self.num_heads
    # Official: U = qkv Linear(dim, heads·dim_head, bias=False) (torch default init).
    subspaces = self.param("subspaces", nn.initializers.lecun_uniform(in_axis=1, out_axis=(0, 2)),
                           (self.num_heads, dim, head_dim))
    x = nn.LayerNorm()(z)
    heads, projected = jax.vmap(mssa, in_axes=(0, None))(x, subspaces)
    self.sow("intermediates", "head_tokens", projected)
    z = z + nn.Dense(dim, name="out")(heads)
    x = nn.LayerNorm()(z)
    dictionary = self.param("dictionary", nn.initializers.kaiming_uniform(), (dim, dim))
    out = ista_block(x, dictionary, self.step_size, self.lam)
    self.sow("intermediates", "ista_output", out)
    return out


class PatchEmbed(nn.Module):
  """(n, H, W, C) → (n, 1 + T, dim): patches (LN, Dense, LN, as the official
  ``to_patch_embedding``), a CLS token and learned positions."""

  dim: int
  patch: int

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    tokens, _ = patchify(images, self.patch)
    tokens = nn.LayerNorm()(nn.Dense(self.dim)(nn.LayerNorm()(tokens)))
    n, num_tokens, _ = tokens.shape
    cls = self.param("cls", nn.initializers.normal(1.0), (1, 1, self.dim))
    positions = self.param("positions", nn.initializers.normal(1.0),
                           (1, num_tokens + 1, self.dim))
    return jnp.concatenate([jnp.broadcast_to(cls, (n, 1, self.dim)), tokens], 1) + positions


class CRATE(nn.Module):
  """CRATE classifier: patch embedding, ``depth`` CRATE blocks, LN + linear head on
  the CLS token (official ``pool='cls'``). images (n, H, W, C) → logits (n, K)."""

  num_classes: int
  dim: int = 64
  depth: int = 6
  num_heads: int = 4
  patch: int = 2

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    z = PatchEmbed(self.dim, self.patch)(images)
    for i in range(self.depth):
      z = CRATEBlock(self.num_heads, name=f"block_{i}")(z)
    return nn.Dense(self.num_classes)(nn.LayerNorm()(z[:, 0]))


class ViT(nn.Module):
  """The baseline: the same embedding and head around standard pre-LN transformer
  blocks (separate Q, K, V; GELU MLP of width ``mlp_ratio``·dim)."""

  num_classes: int
  dim: int = 32
  depth: int = 6
  num_heads: int = 4
  patch: int = 2
  mlp_ratio: int = 4

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    z = PatchEmbed(self.dim, self.patch)(images)
    for _ in range(self.depth):
      z = TransformerBlock(self.num_heads, self.mlp_ratio)(z)
    return nn.Dense(self.num_classes)(nn.LayerNorm()(z[:, 0]))


def layer_measures(model: CRATE, params, images: jax.Array,
                   eps_sq: float = MEASURE_EPS_SQ) -> dict[str, jax.Array]:
  """Per layer, averaged over images: the compression term of the tokens each head of
  layer ℓ sees (``compression``) and the zero fraction of its ISTA output
  (``sparsity``); each (depth,)."""
  _, state = model.apply(params, images, mutable=["intermediates"])
  inter = state["intermediates"]
  blocks = [inter[f"block_{i}"] for i in range(model.depth)]
  compression = jnp.stack([
      jnp.mean(jax.vmap(lambda t: subspace_compression(t, eps_sq))(b["head_tokens"][0]))
      for b in blocks])
  sparsity = jnp.stack([zero_fraction(b["ista_output"][0]) for b in blocks])
  return {"compression": compression, "sparsity": sparsity}


def count_params(params) -> int:
  """Number of scalars in a params tree."""
  return int(sum(x.size for x in jax.tree.leaves(params)))


def matched_vit_width(crate_model: CRATE, image_shape: Sequence[int], mlp_ratio: int = 4,
                      ) -> tuple[int, int, int]:
  """The ViT width (a multiple of the heads) whose parameter count is closest to the
  CRATE's at the same depth and heads: ``(width, vit_params, crate_params)``."""
  x = jnp.zeros((1, *image_shape))
  shapes = lambda m: jax.eval_shape(m.init, jax.random.PRNGKey(0), x)
  target = count_params(shapes(crate_model))
  vit = lambda w: ViT(crate_model.num_classes, w, crate_model.depth, crate_model.num_heads,
                      crate_model.patch, mlp_ratio)
  # The count grows with the width: bisect for the first multiple of the heads at
  # or above the target, then take the closer of it and its predecessor.
  step = crate_model.num_heads
  counts: dict[int, int] = {}
  count = lambda w: counts.setdefault(w, count_params(shapes(vit(w))))
  low, high = 1, 2 * crate_model.dim // step                # in units of `step`
  while low < high:
    mid = (low + high) // 2
    low, high = (mid + 1, high) if count(mid * step) < target else (low, mid)
  candidates = [w for w in (low * step, (low - 1) * step) if w >= step]
  width = min(candidates, key=lambda w: abs(count(w) - target))
  return width, count(width), target
