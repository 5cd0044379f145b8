r"""The G-test of conditional independence for binary variables.

For binary x, y and binary conditioning variables z = (z_1 … z_m), with
O_{xys} the counts in stratum s of z and E_{xys} = O_{x·s} O_{·ys} / O_{··s},

    G = 2 Σ_{O_{xys} > 0} O_{xys} log(O_{xys} / E_{xys}),   p = P[χ²_{2^m} ≥ G],

one degree of freedom per stratum (2^m in all, empty strata included).
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def g_test(x: jax.Array, y: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(G, p-value) for H0: x ⊥ y | z; x, y (n,) and z (n, m) with entries in {0, 1}."""
  chex.assert_rank([x, y, z], [1, 1, 2])
  n, m = z.shape
  chex.assert_shape([x, y], (n,))
  stratum = (z.astype(jnp.int32) * (2 ** jnp.arange(m, dtype=jnp.int32))).sum(-1)
  counts = jnp.zeros((2, 2, 2 ** m)).at[x.astype(jnp.int32), y.astype(jnp.int32),
                                        stratum].add(1.0)
  expected = (counts.sum(1, keepdims=True) * counts.sum(0, keepdims=True)
              / jnp.maximum(counts.sum((0, 1), keepdims=True), 1.0))
  observed = counts > 0
  ratio = jnp.where(observed, counts / jnp.where(observed, expected, 1.0), 1.0)
  g = 2.0 * jnp.sum(counts * jnp.log(ratio))
  dof = 2.0 ** m
  return g, jax.scipy.special.gammaincc(dof / 2.0, jnp.maximum(g, 0.0) / 2.0)
