"""FCN vs LCN vs CNN: locality and weight sharing as sample-complexity separations.

Lahoti, Karp, Winston, Singh, Li. "Role of Locality and Weight Sharing in
Image-Based Tasks: A Sample Complexity Separation between CNNs, LCNs, and FCNs",
ICLR 2024. On the DSD task (``jaxrep.data.dsd``) the paper proves
n_CNN = O(k + d), n_LCN = Ω(k·d) and n_FCN = Ω(k²·d) for orthogonally
equivariant training algorithms (gradient descent from rotation-invariant init).

All three models share one readout: C hidden units per patch position,
h_{i,c} = relu(⟨W_{i,c}, ·⟩ + b_{i,c}), pooled f(x) = Σ_c a_c Σ_i h_{i,c} + a_0.
They differ only in what a unit sees and which weights are tied:

* FCN: unit (i, c) sees the whole flattened input x ∈ R^{k·d}   (W ∈ R^{kd×k×C});
* LCN: unit (i, c) sees patch x_i only, untied across i        (W ∈ R^{k×d×C});
* CNN: unit (i, c) sees patch x_i with one filter shared by all i (W ∈ R^{d×C}).

Each hypothesis class contains the next, so differences in sample complexity
come from locality (FCN→LCN) and weight sharing (LCN→CNN).
"""
from __future__ import annotations

from typing import Literal

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

Kind = Literal["fcn", "lcn", "cnn"]
KINDS: tuple[Kind, ...] = ("cnn", "lcn", "fcn")


class PatchNet(nn.Module):
  """The FCN/LCN/CNN family on inputs of shape (n, k, d); returns logits (n,)."""

  kind: Kind
  channels: int = 2

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n, k, d = x.shape
    c = self.channels
    if self.kind == "fcn":
      kernel = self.param("kernel", nn.initializers.normal(1.0 / jnp.sqrt(k * d)), (k * d, k, c))
      pre = jnp.einsum("nf,fkc->nkc", x.reshape(n, k * d), kernel)
      bias = self.param("bias", nn.initializers.zeros, (k, c))
    elif self.kind == "lcn":
      kernel = self.param("kernel", nn.initializers.normal(1.0 / jnp.sqrt(d)), (k, d, c))
      pre = jnp.einsum("nkd,kdc->nkc", x, kernel)
      bias = self.param("bias", nn.initializers.zeros, (k, c))
    elif self.kind == "cnn":
      kernel = self.param("kernel", nn.initializers.normal(1.0 / jnp.sqrt(d)), (d, c))
      pre = jnp.einsum("nkd,dc->nkc", x, kernel)
      bias = self.param("bias", nn.initializers.zeros, (c,))
    else:
      raise ValueError(f"unknown model kind {self.kind!r}; use one of {KINDS}")
    hidden = nn.relu(pre + bias).sum(axis=1)
    chex.assert_shape(hidden, (n, c))
    readout = self.param("readout", nn.initializers.normal(1.0 / jnp.sqrt(c)), (c,))
    offset = self.param("offset", nn.initializers.zeros, ())
    return hidden @ readout / k + offset


class SequenceNet(nn.Module):
  """The three families on 1-D signals (n, length) → logits (n, classes).

  CNN and LCN follow the MNIST-1D authors' ConvBase geometry (three layers of
  25 channels, kernels 5, 3, 3, stride 2, padding 1): ``nn.Conv`` shares each
  filter across positions, ``nn.ConvLocal`` does not. The FCN is their MLP
  (two hidden layers of 100).
  """

  kind: Kind
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 2)
    if self.kind == "fcn":
      h = nn.relu(nn.Dense(100)(x))
      h = nn.relu(nn.Dense(100)(h))
      return nn.Dense(self.num_classes)(h)
    layer = {"cnn": nn.Conv, "lcn": nn.ConvLocal}[self.kind]
    h = x[..., None]
    for kernel in (5, 3, 3):
      h = nn.relu(layer(25, (kernel,), strides=2, padding=1)(h))
    return nn.Dense(self.num_classes)(h.reshape(h.shape[0], -1))


def logistic_loss(logits: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Mean of log(1 + exp(−y·f(x))) over the examples selected by ``mask``."""
  losses = jax.nn.softplus(-y * logits)
  if mask is None:
    return losses.mean()
  return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def classification_error(logits: jax.Array, y: jax.Array) -> jax.Array:
  """Fraction of sign(f(x)) ≠ y."""
  return jnp.mean(jnp.where(logits >= 0, 1.0, -1.0) != y)


def logistic_loss_fn(model: PatchNet):
  """``loss_fn(params, batch, rng)``: the (masked) logistic loss of ``model``.

  Args:
    model: a ``PatchNet``.

  Returns:
    ``loss_fn`` for a batch ``{"x": (n, k, d), "y": (n,) in {−1, +1}}`` with an
    optional ``"mask"`` (n,) selecting the examples that count (several training
    sizes share one program: size m trains on the first m rows); metrics hold
    the training error over the whole batch.
  """

  def loss_fn(params, batch, rng):
    del rng
    logits = model.apply(params, batch["x"])
    loss = logistic_loss(logits, batch["y"], batch.get("mask"))
    return loss, {"train_error": classification_error(logits, batch["y"])}

  return loss_fn


def gradient_descent(learning_rate: float, momentum: float = 0.9) -> optax.GradientTransformation:
  """Full-batch heavy-ball GD: a linear function of past gradients, hence
  orthogonally equivariant (Adam, being coordinate-wise, is not)."""
  return optax.sgd(learning_rate, momentum=momentum)


def first_crossing(sizes: jax.Array, errors: jax.Array, target: jax.Array) -> jax.Array:
  """Smallest n at which ``errors`` (over ascending ``sizes``) reaches ``target``.

  Interpolates log n linearly between the last grid point above the target and
  the first one at or below it; returns +inf when no grid point reaches it and
  sizes[0] when the first one already does.
  """
  below = errors <= target
  first = jnp.argmax(below)
  prev = jnp.maximum(first - 1, 0)
  e0, e1 = errors[prev], errors[first]
  frac = jnp.clip((e0 - target) / jnp.maximum(e0 - e1, 1e-12), 0.0, 1.0)
  log_n = jnp.log(sizes[prev]) + frac * (jnp.log(sizes[first]) - jnp.log(sizes[prev]))
  crossed = jnp.where(first == 0, sizes[0], jnp.exp(log_n))
  return jnp.where(below.any(), crossed, jnp.inf)
