"""The interaction basis: a representation invariant to degenerate reparameterisations.

Paper: Bushnaq, Mendel, Heimersheim, Braun, Goldowsky-Dill, Hänni, Wu & Hobbhahn,
"Using Degeneracy in the Loss Landscape for Mechanistic Interpretability", 2024
(arXiv:2405.10927). Reference code: ApolloResearch/rib,
``rib.interaction_algos.calculate_interaction_rotations`` (RIB uses integrated
gradients; the paper's interaction basis, implemented here, uses plain Jacobians).

A network is a list of sections; section k maps the bias-augmented node layer
f̃_k = [f_k, 1] (d_k + 1,) to f_{k+1} (d_{k+1},) — e.g. ``dense_section``:
f_{k+1} = σ(f̃_k W̃_k) with W̃_k = [W_k; b_k], the bias folded in. Working back
from the output layer K, whose basis is the eigenbasis of E[f_K f_Kᵀ]:

    G  = E[f̃ f̃ᵀ] = U D Uᵀ                 (drop D_i ≤ rtol·max D: linearly
                                              dependent activations)
    J  = ∂ f̂_{k+1} / ∂ f̃_k,  f̂_{k+1} = C_{k+1}ᵀ f̃_{k+1}
    M' = E[Jᵀ J];   D^{1/2} Uᵀ M' U D^{1/2} = V Λ Vᵀ
                                             (drop Λ_i ≤ rtol·max Λ: linearly
                                              dependent gradients)
    C  = U D^{-1/2} V Λ^{1/2},  C⁺ = Λ^{-1/2} Vᵀ D^{1/2} Uᵀ,   f̂_k = Cᵀ f̃_k.

Directions are sorted by Λ (descending); dropped ones are zero columns of C,
so shapes stay static (jit/vmap friendly) and ``num_directions`` counts the
rest. If a random invertible (affine) map A is inserted after a layer and the
next section compensates (f̃ → Ã f̃, W̃ → Ã⁻¹ W̃), G → Ã G Ãᵀ and M' → Ã⁻ᵀ M' Ã⁻¹,
so f̂ is unchanged up to the sign of each direction, while PCA features change.

``ablate_to_top_k`` keeps the top-k directions of a basis and replaces the
others by their mean over the data (mean ablation; identical treatment for the
interaction, PCA and neuron bases); ``retention_curves`` is the accuracy of the
network as a function of k for the three bases. ``inject_into_hidden_layers``
adds function-preserving degenerate units to every hidden layer of an MLP.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp

from jaxrep.core.evaluate import accuracy

Section = Callable[[jax.Array], jax.Array]  # f̃_k (d_k + 1,) → f_{k+1} (d_{k+1},)


class Basis(NamedTuple):
  """A basis of a node layer: features f̂ = ``rotation``ᵀ f̃ (columns sorted by
  importance, dropped ones zero) and the reconstruction f̃ ≈ ``inverse``ᵀ f̂."""

  rotation: jax.Array  # (d_in, r) with d_in = d + 1 for augmented node layers
  inverse: jax.Array  # (r, d_in)
  eigenvalues: jax.Array  # (r,) Λ (interaction), variance (PCA), importance (neurons)
  keep: jax.Array  # (r,) bool

  @property
  def num_directions(self) -> jax.Array:
    return jnp.sum(self.keep)


def augment(features: jax.Array) -> jax.Array:
  """[f, 1] along the last axis."""
  return jnp.concatenate([features, jnp.ones_like(features[..., :1])], axis=-1)


def dense_section(kernel: jax.Array, bias: jax.Array,
                  activation: Callable[[jax.Array], jax.Array] | None = None) -> Section:
  """f̃ ↦ σ(f̃[:-1] W + f̃[-1] b): a dense layer with its bias folded into f̃."""
  def section(augmented: jax.Array) -> jax.Array:
    out = augmented[..., :-1] @ kernel + augmented[..., -1:] * bias
    return out if activation is None else activation(out)
  return section


def node_layers(sections: Sequence[Section], x: jax.Array) -> list[jax.Array]:
  """[f_0 = x, f_1, ..., f_K] with f_{k+1} = section_k([f_k, 1]); each (n, d_k)."""
  layers = [x]
  for section in sections:
    layers.append(jax.vmap(section)(augment(layers[-1])))
  return layers


def _descending_eigh(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
  values, vectors = jnp.linalg.eigh(matrix)
  return jnp.abs(values[::-1]), vectors[:, ::-1]


def _relative_keep(values: jax.Array, rtol: float) -> jax.Array:
  return values > rtol * jnp.max(values)


def gram(features: jax.Array) -> jax.Array:
  """E[f fᵀ] over the rows of features (n, d)."""
  return features.T @ features / features.shape[0]


def jacobian_gram(fn: Callable[[jax.Array], jax.Array], inputs: jax.Array,
                  chunk_size: int = 256) -> jax.Array:
  """M' = E_n[J(x_n)ᵀ J(x_n)] with J = ∂fn/∂x, accumulated over chunks of inputs (n, d)."""
  chex.assert_rank(inputs, 2)
  n, d = inputs.shape
  chunk = min(chunk_size, n)
  num_chunks = -(-n // chunk)
  padded = jnp.zeros((num_chunks * chunk, d), inputs.dtype).at[:n].set(inputs)
  weight = (jnp.arange(num_chunks * chunk) < n).astype(inputs.dtype)

  def body(total, batch):
    xs, ws = batch
    jac = jax.vmap(jax.jacrev(fn))(xs)  # (chunk, out, d)
    return total + jnp.einsum("b,bij,bik->jk", ws, jac, jac), None

  total, _ = jax.lax.scan(body, jnp.zeros((d, d), inputs.dtype),
                          (padded.reshape(num_chunks, chunk, d),
                           weight.reshape(num_chunks, chunk)))
  return total / n


def numerical_rank(psd_matrix: jax.Array, rtol: float = 1e-8) -> jax.Array:
  """The number of eigenvalues > rtol·max (e.g. of G: activation degeneracy only)."""
  return jnp.sum(_relative_keep(jnp.abs(jnp.linalg.eigvalsh(psd_matrix)), rtol))


def eigen_basis(features: jax.Array, rtol: float = 1e-8) -> Basis:
  """The eigenbasis of E[f fᵀ] (used for the output layer): orthonormal, f̂ = Uᵀ f."""
  values, vectors = _descending_eigh(gram(features))
  keep = _relative_keep(values, rtol)
  vectors = vectors * keep
  return Basis(rotation=vectors, inverse=vectors.T, eigenvalues=values, keep=keep)


def interaction_basis_from_grams(activation_gram: jax.Array, jacobian_gram_: jax.Array,
                                 rtol: float = 1e-8) -> Basis:
  """C = U D^{-1/2} V Λ^{1/2} from G = E[f̃ f̃ᵀ] and M' = E[JᵀJ] (both (d, d))."""
  chex.assert_equal_shape([activation_gram, jacobian_gram_])
  d_values, u = _descending_eigh(activation_gram)
  keep_d = _relative_keep(d_values, rtol)
  safe = jnp.where(keep_d, d_values, 1.0)
  u_sqrt = u * jnp.where(keep_d, jnp.sqrt(safe), 0.0)  # U D^{1/2}
  u_inv_sqrt = u * jnp.where(keep_d, 1.0 / jnp.sqrt(safe), 0.0)  # U D^{-1/2}
  lam, v = _descending_eigh(u_sqrt.T @ jacobian_gram_ @ u_sqrt)
  keep = _relative_keep(lam, rtol)
  lam_safe = jnp.where(keep, lam, 1.0)
  rotation = (u_inv_sqrt @ v) * jnp.where(keep, jnp.sqrt(lam_safe), 0.0)
  inverse = (jnp.where(keep, 1.0 / jnp.sqrt(lam_safe), 0.0)[:, None] * (u_sqrt @ v).T)
  return Basis(rotation=rotation, inverse=inverse, eigenvalues=lam * keep, keep=keep)


def nondegenerate_rank(activation_gram: jax.Array, jacobian_gram_: jax.Array,
                       rtol: float = 1e-8) -> jax.Array:
  """rank(M'^{1/2} G^{1/2}) by SVD, without whitening or truncation: the number of
  directions that are neither activation- nor gradient-degenerate. Singular values
  s_i with s_i² ≤ rtol·max s² (the Λ threshold) count as zero."""
  def psd_sqrt(m):
    values, vectors = jnp.linalg.eigh(m)
    return (vectors * jnp.sqrt(jnp.clip(values, 0.0, None))) @ vectors.T
  singular = jnp.linalg.svd(psd_sqrt(jacobian_gram_) @ psd_sqrt(activation_gram),
                            compute_uv=False)
  return jnp.sum(singular**2 > rtol * jnp.max(singular) ** 2)


def next_features_fn(sections: Sequence[Section], layer: int,
                     next_basis: Basis) -> Callable[[jax.Array], jax.Array]:
  """f̃_layer ↦ f̂_{layer+1} = C_{layer+1}ᵀ f̃_{layer+1} (the constant 1 has zero derivative)."""
  rotation = next_basis.rotation
  if layer + 1 < len(sections):  # non-output node layers are augmented
    rotation = rotation[:-1]
  return lambda augmented: sections[layer](augmented) @ rotation


def layer_grams(sections: Sequence[Section], layer: int, node: jax.Array,
                next_basis: Basis, chunk_size: int = 256) -> tuple[jax.Array, jax.Array]:
  """G = E[f̃ f̃ᵀ] and M' = E[JᵀJ], J = ∂f̂_{layer+1}/∂f̃_layer, for node activations (n, d)."""
  augmented = augment(node)
  return gram(augmented), jacobian_gram(next_features_fn(sections, layer, next_basis),
                                        augmented, chunk_size)


def interaction_bases_and_grams(sections: Sequence[Section], x: jax.Array,
                                rtol: float = 1e-8, chunk_size: int = 256
                                ) -> tuple[list[Basis], list[tuple[jax.Array, jax.Array]]]:
  """``interaction_bases`` plus (G_k, M'_k) of every non-output node layer k."""
  layers = node_layers(sections, x)
  bases, grams = [eigen_basis(layers[-1], rtol)], []
  for k in range(len(sections) - 1, -1, -1):
    grams.insert(0, layer_grams(sections, k, layers[k], bases[0], chunk_size))
    bases.insert(0, interaction_basis_from_grams(*grams[0], rtol))
  return bases, grams


def interaction_bases(sections: Sequence[Section], x: jax.Array, rtol: float = 1e-8,
                      chunk_size: int = 256) -> list[Basis]:
  """Bases of node layers 0..K (inputs x (n, d_0) included), computed back from the output.

  Layer K (the output) gets the eigenbasis of its Gram matrix; every other layer
  the interaction basis of its augmented activations.
  """
  return interaction_bases_and_grams(sections, x, rtol, chunk_size)[0]


def features_in_basis(basis: Basis, node: jax.Array, augmented: bool = True) -> jax.Array:
  """f̂ = Cᵀ f̃ for node activations (n, d): (n, r)."""
  return (augment(node) if augmented else node) @ basis.rotation


def pca_basis(features: jax.Array, rtol: float = 1e-8) -> tuple[Basis, jax.Array]:
  """Principal components of centred features (n, d) and the mean (d,); every
  component is kept in the rotation (``keep`` marks variance > rtol·max)."""
  mean = features.mean(0)
  values, vectors = _descending_eigh(gram(features - mean))
  return Basis(rotation=vectors, inverse=vectors.T, eigenvalues=values,
               keep=_relative_keep(values, rtol)), mean


def neuron_basis(features: jax.Array, next_jacobian_gram: jax.Array) -> Basis:
  """Neurons ranked by Var(f_i)·M'_ii, the variance-weighted mean squared gradient
  the next layer passes back to unit i (M' over the augmented layer)."""
  importance = features.var(0) * jnp.diag(next_jacobian_gram)[:features.shape[1]]
  order = jnp.argsort(-importance)
  eye = jnp.eye(features.shape[1], dtype=features.dtype)[:, order]
  return Basis(rotation=eye, inverse=eye.T, eigenvalues=importance[order],
               keep=jnp.ones(features.shape[1], bool))


def ablate_to_top_k(basis: Basis, inputs: jax.Array, k: jax.Array,
                    mean_features: jax.Array) -> jax.Array:
  """Keeps the first k basis features of ``inputs`` (n, d_in), replaces the rest
  by ``mean_features`` (r,) and maps back: (n, d_in). k may be traced."""
  features = inputs @ basis.rotation
  kept = jnp.arange(features.shape[-1]) < k
  return jnp.where(kept, features, mean_features) @ basis.inverse


def run_from(sections: Sequence[Section], layer: int, node: jax.Array) -> jax.Array:
  """The network output from node layer ``layer`` activations (n, d_layer)."""
  for section in sections[layer:]:
    node = jax.vmap(section)(augment(node))
  return node


def run_from_augmented(sections: Sequence[Section], layer: int,
                       augmented: jax.Array) -> jax.Array:
  """As ``run_from`` but from augmented activations f̃ (n, d_layer + 1) as they are."""
  node = jax.vmap(sections[layer])(augmented)
  return run_from(sections, layer + 1, node)


def inject_degenerate_units(layers: Sequence[tuple[jax.Array, jax.Array]], hidden: int,
                            key: jax.Array, inputs: jax.Array, *, num_duplicate: int = 0,
                            num_dead: int = 0, num_unused: int = 0
                            ) -> list[tuple[jax.Array, jax.Array]]:
  """Adds function-preserving degenerate units to the output of dense layer ``hidden``.

  ``layers`` lists (kernel (d_in, d_out), bias) of a ReLU MLP; ``inputs`` are
  that layer's inputs (n, d_in) on the data of interest. Added units:
  duplicates (copies of random units; the outgoing weights w of the original are
  split as αw and (1 − α)w, α ~ U(¼, ¾)); dead units (random incoming weights, a
  bias that keeps the pre-activation ≤ −1 on ``inputs``, random outgoing
  weights); unused units (random incoming weights, zero outgoing weights).
  The first two are linear dependences among activations, the third among gradients.
  """
  (kernel, bias), (next_kernel, next_bias) = layers[hidden], layers[hidden + 1]
  width = kernel.shape[1]
  k_dup, k_alpha, k_dead_in, k_dead_out, k_unused, k_unused_bias = jax.random.split(key, 6)
  scale_in, scale_out = jnp.std(kernel), jnp.std(next_kernel)
  source = jax.random.choice(k_dup, width, (num_duplicate,), replace=False)
  alpha = jax.random.uniform(k_alpha, (num_duplicate,), minval=0.25, maxval=0.75)
  next_kernel = next_kernel.at[source].multiply(alpha[:, None])
  dup_out = next_kernel[source] * ((1 - alpha) / alpha)[:, None]
  dead_in = scale_in * jax.random.normal(k_dead_in, (kernel.shape[0], num_dead), kernel.dtype)
  dead_bias = -jnp.max(inputs @ dead_in, axis=0) - 1.0
  dead_out = scale_out * jax.random.normal(k_dead_out, (num_dead, next_kernel.shape[1]),
                                           kernel.dtype)
  unused_in = scale_in * jax.random.normal(k_unused, (kernel.shape[0], num_unused), kernel.dtype)
  unused_bias = bias[jax.random.choice(k_unused_bias, width, (num_unused,))]
  new_kernel = jnp.concatenate([kernel, kernel[:, source], dead_in, unused_in], axis=1)
  new_bias = jnp.concatenate([bias, bias[source], dead_bias, unused_bias])
  new_next = jnp.concatenate([next_kernel, dup_out, dead_out,
                              jnp.zeros((num_unused, next_kernel.shape[1]), kernel.dtype)])
  out = list(layers)
  out[hidden], out[hidden + 1] = (new_kernel, new_bias), (new_next, next_bias)
  return out


def mlp_sections(layers: Sequence[tuple[jax.Array, jax.Array]]) -> list[Section]:
  """ReLU dense sections for every layer but the last, which is linear."""
  return [dense_section(k, b, jax.nn.relu if i + 1 < len(layers) else None)
          for i, (k, b) in enumerate(layers)]


def inject_into_hidden_layers(layers: Sequence[tuple[jax.Array, jax.Array]], key: jax.Array,
                              x: jax.Array, *, num_duplicate: int = 0, num_dead: int = 0,
                              num_unused: int = 0) -> list[tuple[jax.Array, jax.Array]]:
  """``inject_degenerate_units`` into every hidden layer of a ReLU MLP, first to
  last, with key ``fold_in(key, hidden)``; dead units are dead on inputs ``x`` (n, d_0)."""
  for hidden in range(len(layers) - 1):
    inputs = node_layers(mlp_sections(layers), x)[hidden]
    layers = inject_degenerate_units(layers, hidden, jax.random.fold_in(key, hidden), inputs,
                                     num_duplicate=num_duplicate, num_dead=num_dead,
                                     num_unused=num_unused)
  return list(layers)


def retention_curves(sections: Sequence[Section], layer: int, basis: Basis,
                     next_jacobian_gram: jax.Array, x_basis: jax.Array, x_eval: jax.Array,
                     y_eval: jax.Array, rtol: float = 1e-8) -> jax.Array:
  """Accuracy when keeping the top k directions of node layer ``layer``, k = 0 .. d + 1.

  Args:
    sections: the network (``mlp_sections``); ``layer`` a hidden node layer (≥ 1).
    basis: its interaction basis (over the augmented layer [f, 1]).
    next_jacobian_gram: its M' (``layer_grams``), which ranks the neurons.
    x_basis: (n, d_0) inputs the PCA and neuron bases and the ablation means come from.
    x_eval, y_eval: (n_eval, d_0) inputs and integer labels the accuracy is measured on.

  Returns:
    (3, d + 2): rows interaction (``ablate_to_top_k`` of [f, 1]), PCA (centred,
    ``pca_basis``) and neurons (``neuron_basis``), mean ablation for all three.
  """
  node_basis = node_layers(sections, x_basis)[layer]
  node_eval = node_layers(sections, x_eval)[layer]
  ks = jnp.arange(node_eval.shape[1] + 2)
  mean_hat = features_in_basis(basis, node_basis).mean(0)
  pca, _ = pca_basis(node_basis, rtol)
  neurons = neuron_basis(node_basis, next_jacobian_gram)

  def acc_interaction(k):
    kept = ablate_to_top_k(basis, augment(node_eval), k, mean_hat)
    return accuracy(run_from_augmented(sections, layer, kept), y_eval)

  def acc_orthonormal(b, k):
    mean = (node_basis @ b.rotation).mean(0)
    return accuracy(run_from(sections, layer, ablate_to_top_k(b, node_eval, k, mean)), y_eval)

  return jnp.stack([jax.lax.map(acc_interaction, ks),
                    jax.lax.map(lambda k: acc_orthonormal(pca, k), ks),
                    jax.lax.map(lambda k: acc_orthonormal(neurons, k), ks)])
