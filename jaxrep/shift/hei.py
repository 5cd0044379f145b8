r"""HEI: invariant learning over environments inferred from heterophily patterns.

Wang, Yang, Zhang et al., "Leveraging Invariant Principle for Heterophilic Graph
Structure Distribution Shifts" (HEI), WWW 2025; official code Yangjinluan/HEI
(PyTorch Geometric; we follow its ``neighbor_pattern`` / environment-inference /
soft-IRM structure, not its code).

Graph: nodes v with features x_v, labels y_v and in-neighbours N(v) (edges u → v).
Local homophily h_v = |{u ∈ N(v): y_u = y_v}| / |N(v)| (``node_homophily``), the
quantity whose train/test shift the paper studies; it needs labels, so HEI
estimates the neighbour pattern from features instead:

    s_v = (1/|N(v)|) Σ_{u∈N(v)} ‖x_v − x_u‖₂                      (``neighbour_pattern``)

Environment inference: q_v = softmax(MLP(standardise(s_v))) ∈ Δ^K (1 → 16 → K),
a soft assignment of each node to K latent environments. Soft IRMv1 penalty with
a dummy scale w on the logits f_v and per-node loss ℓ_v:

    P(θ, q) = Σ_k ( ∂/∂w  Σ_v q_vk ℓ_v(w·f_v) / Σ_v q_vk |_{w=1} )²      (``soft_irm_penalty``)

Training (official defaults): the environment net runs gradient *ascent* on P for
the first ``ascent_steps`` epochs (it seeks the most variant split), then is
frozen; the GNN minimises (NLL + λ·P)/(1 + λ) (+ weight decay in the optimizer).

Backbone: a 2-layer GNN with separate ego and neighbour weights (H2GCN-style
separation, as the official backbones for heterophily):
h = ReLU(W₁ˢ x_v + W₁ⁿ mean_{u∈N(v)} x_u), f = W₂ˢ h_v + W₂ⁿ mean_{u∈N(v)} h_u,
with neighbour means by ``jax.ops.segment_sum``.

Data (``csbm_graph``): a contextual stochastic block model with per-node
homophily: class means μ_c, x_v = μ_{y_v} + σ ε; node v draws ``degree``
in-neighbours, each from its own class with probability ρ_v and otherwise from a
uniformly chosen other class; ρ_v comes from a two-component Beta mixture
(homophilic and heterophilic nodes).
"""
from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

__all__ = ["Graph", "csbm_graph", "edge_mean", "neighbour_mean", "node_homophily", "neighbour_pattern",
           "EgoNeighbourGNN", "EnvironmentNet", "soft_irm_penalty", "hei_objectives"]


class Graph(NamedTuple):
  x: jax.Array          # (n, d) features
  y: jax.Array          # (n,) labels
  senders: jax.Array    # (m,) source u of edge u → v
  receivers: jax.Array  # (m,) target v
  rho: jax.Array        # (n,) the homophily probability each node was drawn with


def csbm_graph(key: jax.Array, num_nodes: int, num_classes: int, dim: int, degree: int,
               feature_noise: float, heterophilic_fraction: float,
               beta_high: tuple[float, float] = (8.0, 2.0),
               beta_low: tuple[float, float] = (2.0, 8.0)) -> Graph:
  """A contextual SBM with per-node homophily ρ_v (Beta mixture); each node has
  exactly ``degree`` in-neighbours."""
  k_mu, k_y, k_x, k_mix, k_hi, k_lo, k_same, k_pick, k_other = jax.random.split(key, 9)
  means = jax.random.normal(k_mu, (num_classes, dim))
  y = jax.random.randint(k_y, (num_nodes,), 0, num_classes)
  x = means[y] + feature_noise * jax.random.normal(k_x, (num_nodes, dim))
  low = jax.random.uniform(k_mix, (num_nodes,)) < heterophilic_fraction
  rho = jnp.where(low, jax.random.beta(k_lo, *beta_low, (num_nodes,)),
                  jax.random.beta(k_hi, *beta_high, (num_nodes,)))
  same = jax.random.uniform(k_same, (num_nodes, degree)) < rho[:, None]
  shift = jax.random.randint(k_other, (num_nodes, degree), 1, num_classes)
  want = jnp.where(same, y[:, None], (y[:, None] + shift) % num_classes)   # (n, degree)
  # a uniformly random node of the wanted class: rank among that class's members
  order = jnp.argsort(y)
  counts = jnp.bincount(y, length=num_classes)
  starts = jnp.cumsum(counts) - counts
  u = jax.random.uniform(k_pick, (num_nodes, degree))
  senders = order[starts[want] + jnp.floor(u * counts[want]).astype(jnp.int32)]
  receivers = jnp.repeat(jnp.arange(num_nodes), degree)
  return Graph(x, y, senders.reshape(-1), receivers, rho)


def edge_mean(edge_values: jax.Array, receivers: jax.Array, num_nodes: int) -> jax.Array:
  """Per node v, the mean of ``edge_values`` over its in-edges (0 without any)."""
  total = jax.ops.segment_sum(edge_values, receivers, num_nodes)
  count = jax.ops.segment_sum(jnp.ones_like(receivers, edge_values.dtype), receivers, num_nodes)
  count = jnp.maximum(count, 1)
  return total / (count[:, None] if edge_values.ndim > 1 else count)


def neighbour_mean(values: jax.Array, senders: jax.Array, receivers: jax.Array,
                   num_nodes: int) -> jax.Array:
  """mean_{u∈N(v)} values_u for node values (num_nodes, ...)."""
  return edge_mean(values[senders], receivers, num_nodes)


def node_homophily(y: jax.Array, senders: jax.Array, receivers: jax.Array) -> jax.Array:
  """h_v = fraction of v's in-neighbours with v's label."""
  same = (y[senders] == y[receivers]).astype(jnp.float32)
  return edge_mean(same, receivers, y.shape[0])


def neighbour_pattern(x: jax.Array, senders: jax.Array, receivers: jax.Array) -> jax.Array:
  """s_v = mean_{u∈N(v)} ‖x_v − x_u‖₂ (HEI's label-free heterophily estimate)."""
  dist = jnp.linalg.norm(x[receivers] - x[senders], axis=-1)
  return edge_mean(dist, receivers, x.shape[0])


class EgoNeighbourGNN(nn.Module):
  """Two layers, ego and neighbour-mean inputs with separate weights."""
  hidden: int
  num_classes: int

  @nn.compact
  def __call__(self, x, senders, receivers):
    n = x.shape[0]
    agg = lambda h: neighbour_mean(h, senders, receivers, n)
    h = nn.relu(nn.Dense(self.hidden)(x) + nn.Dense(self.hidden, use_bias=False)(agg(x)))
    return nn.Dense(self.num_classes)(h) + nn.Dense(self.num_classes, use_bias=False)(agg(h))


class EnvironmentNet(nn.Module):
  """q_v = softmax(MLP(s_v)), 1 → hidden → K."""
  num_envs: int
  hidden: int = 16

  @nn.compact
  def __call__(self, s):
    return jax.nn.softmax(nn.Dense(self.num_envs)(nn.relu(nn.Dense(self.hidden)(s[:, None]))))


def soft_irm_penalty(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
  """Σ_k (∂_w Σ_v q_vk ℓ_v(w f_v) / Σ_v q_vk |_{w=1})².

  Args: logits (n, C); labels (n,); weights q (n, K) (soft environment assignment).
  """
  def env_risks(w):
    losses = optax.softmax_cross_entropy_with_integer_labels(w * logits, labels)  # (n,)
    return (weights.T @ losses) / jnp.maximum(weights.sum(0), 1e-8)               # (K,)
  return jnp.sum(jax.jacfwd(env_risks)(jnp.ones((), logits.dtype)) ** 2)


def hei_objectives(logits: jax.Array, labels: jax.Array, env_weights: jax.Array,
                   penalty_weight: float) -> tuple[jax.Array, jax.Array]:
  """(GNN loss, environment-net ascent objective) with the gradients kept apart:
  the GNN sees (NLL + λ P(θ, sg q))/(1 + λ); the environment net sees P(sg θ, q)."""
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  pen_gnn = soft_irm_penalty(logits, labels, jax.lax.stop_gradient(env_weights))
  pen_env = soft_irm_penalty(jax.lax.stop_gradient(logits), labels, env_weights)
  return (nll + penalty_weight * pen_gnn) / (1 + penalty_weight), pen_env
