r"""Causal de Finetti for several binary variables: sink layers, then edges.

Guo, Tóth, Schölkopf & Huszár, "Causal de Finetti: On the Identification of
Invariant Causal Structure in Exchangeable Data", NeurIPS 2023 (multivariate
algorithm; official code: syguo96/Causal-de-Finetti, ``src/models/causaldf.py``).

Each environment contributes two exchangeable samples X^(1), X^(2) ∈ {0,1}^V.

1. **Sink layers.** Among the variables R not yet placed, v joins layer S_i when
   X_v^(1) ⊥ X_k^(2) | X_{R∖v}^(1) for every k ∈ R∖v (G-test p ≥ α), i = 1 … V;
   S_1 holds the sinks and higher layers lie upstream.
2. **Edges.** For d = 1 … V−1 and n = d+1 … V, for X_j ∈ S_n and X_k ∈ S_{n−d}:
   X_j → X_k when X_j^(1) ⊥̸ X_k^(1) | C (p ≤ α), with C = S_{>n} for d = 1 and,
   for d ≥ 2, S_{>n} plus the parents of X_k already found outside S_{>n} ∪ S_n.
   (The official code's co-parent term is always empty — ``list.remove`` returns
   None — and we follow it.) Every test is the G-test of ``jaxrep.stats.gtest``,
   with the official code's 2^|C| degrees of freedom.

The generator is the paper's ``scm_multivariate_binary``: a random DAG on V nodes
(each edge u < v with probability ½, redrawn until every node has an edge), per
environment θ ~ Beta(1, 3)^V, and X_v = Bernoulli(θ_v) XOR Π_{parents} X_p.
Structures are sets of (parent, child); the error is the official normalised
structural Hamming distance.
"""
from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.stats.gtest import g_test

Edges = set[tuple[int, int]]


class BinarySamples(NamedTuple):
  x: jax.Array          # (2, num_env, num_var) in {0, 1}: the two samples per environment
  adjacency: jax.Array  # (num_var, num_var) bool, adjacency[p, c] for p → c


def sample_binary_scm(key: jax.Array, num_env: int, num_var: int = 3,
                      edge_prob: float = 0.5, max_tries: int = 64) -> BinarySamples:
  """One SCM of the paper's binary generator and two samples per environment."""
  k_graph, k_theta, k_noise = jax.random.split(key, 3)
  upper = jnp.triu(jnp.ones((num_var, num_var), bool), 1)
  graphs = jax.random.bernoulli(k_graph, edge_prob, (max_tries, num_var, num_var)) & upper
  every_node_has_an_edge = (graphs.any(1) | graphs.any(2)).all(-1)
  adjacency = graphs[jnp.argmax(every_node_has_an_edge)]
  theta = jax.random.beta(k_theta, 1.0, 3.0, (num_env, num_var))
  factor = jax.random.bernoulli(k_noise, theta, (2, num_env, num_var)).astype(jnp.int32)
  columns = []
  for v in range(num_var):
    parents = adjacency[:v, v]
    if v == 0:
      columns.append(factor[..., 0])
      continue
    product = jnp.prod(jnp.where(parents, jnp.stack(columns, -1), 1), axis=-1)
    columns.append(jnp.where(parents.any(), factor[..., v] ^ product, factor[..., v]))
  x = jnp.stack(columns, -1)
  chex.assert_shape(x, (2, num_env, num_var))
  return BinarySamples(x, adjacency)


def true_edges(adjacency) -> Edges:
  return {(int(p), int(c)) for p, c in zip(*np.nonzero(np.asarray(adjacency)))}


_g_test = jax.jit(g_test)


def _p_value(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
  return float(_g_test(x, y, z.reshape(len(x), -1))[1])


def sink_layers(x: np.ndarray, alpha: float = 0.05) -> list[list[int]]:
  """Layers S_1 … S_V (index 0 is S_1, the sinks; a layer may be empty)."""
  num_var = x.shape[-1]
  remaining, layers = list(range(num_var)), []
  for _ in range(num_var):
    layer = []
    for v in remaining:
      others = [k for k in remaining if k != v]
      if all(_p_value(x[0, :, v], x[1, :, k], x[0][:, others]) >= alpha for k in others):
        layer.append(v)
    layers.append(layer)
    remaining = [v for v in remaining if v not in layer]
  return layers


def layer_edges(x: np.ndarray, layers: list[list[int]], alpha: float = 0.05) -> Edges:
  """Directed edges (parent, child) between layers, step 2 of the algorithm."""
  num_layers, edges = len(layers), set()
  for d in range(1, num_layers):
    for n in range(d + 1, num_layers + 1):
      upstream = [v for layer in layers[n:] for v in layer]  # S_{>n}
      for j in layers[n - 1]:
        for k in layers[n - d - 1]:
          intermediaries = [p for p, c in edges if c == k and p not in upstream
                            and p not in layers[n - 1]] if d >= 2 else []
          cond = sorted(set(upstream) | set(intermediaries))
          if _p_value(x[0, :, j], x[0, :, k], x[0][:, cond]) <= alpha:
            edges.add((j, k))
  return edges


def causal_de_finetti_binary(x, alpha: float = 0.05) -> Edges:
  """The estimated structure from samples x (2, num_env, num_var)."""
  x = np.asarray(x)
  return layer_edges(x, sink_layers(x, alpha), alpha)


def structural_hamming_distance(estimated: Edges, true: Edges) -> float:
  """(|est ∖ true| + |true ∖ est|) / (|true| + |est|), the official normalisation."""
  return (len(estimated - true) + len(true - estimated)) / max(len(true) + len(estimated), 1)


def valid_structures(num_var: int) -> list[Edges]:
  """Every structure the generator can draw: DAGs with edges u < v touching every node."""
  pairs = [(u, v) for u in range(num_var) for v in range(u + 1, num_var)]
  structures = []
  for mask in range(1, 2 ** len(pairs)):
    edges = {pair for i, pair in enumerate(pairs) if mask >> i & 1}
    if {node for pair in edges for node in pair} == set(range(num_var)):
      structures.append(edges)
  return structures
