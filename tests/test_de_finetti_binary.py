"""The binary G-test and the multivariate causal de Finetti rules."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxrep.causal import de_finetti_binary as db
from jaxrep.stats.gtest import g_test


def _scipy_g(x, y):
  table = np.zeros((2, 2))
  np.add.at(table, (x, y), 1)
  table = table[table.sum(1) > 0][:, table.sum(0) > 0]
  if min(table.shape) < 2:
    return 0.0
  return stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")[0]


@pytest.mark.reference
@pytest.mark.parametrize("m", [0, 1, 2])
def test_g_test_matches_scipy_per_stratum(m):
  rng = np.random.default_rng(m)
  z = rng.integers(0, 2, (400, m))
  x = (rng.random(400) < 0.3 + 0.4 * (z.sum(1) > 0)).astype(int)
  y = (rng.random(400) < np.where(x == 1, 0.7, 0.4)).astype(int)
  strata = [np.all(z == s, axis=1) for s in itertools.product([0, 1], repeat=m)]
  expected = sum(_scipy_g(x[s], y[s]) for s in strata)
  g, p = g_test(jnp.asarray(x), jnp.asarray(y), jnp.asarray(z).reshape(400, m))
  np.testing.assert_allclose(g, expected, rtol=1e-4)
  np.testing.assert_allclose(p, stats.chi2.sf(expected, 2 ** m), rtol=1e-3, atol=1e-6)


def test_g_test_size_under_independence():
  def p_value(key):
    kx, ky, kz = jax.random.split(key, 3)
    z = jax.random.bernoulli(kz, 0.5, (500, 1)).astype(jnp.int32)
    x = jax.random.bernoulli(kx, 0.2 + 0.5 * z[:, 0]).astype(jnp.int32)
    y = jax.random.bernoulli(ky, 0.6 - 0.3 * z[:, 0]).astype(jnp.int32)
    return g_test(x, y, z)[1]
  p = jax.vmap(p_value)(jax.random.split(jax.random.PRNGKey(0), 400))
  assert 0.02 <= float(jnp.mean(p < 0.05)) <= 0.09


def test_sampler_graph_and_root_marginal():
  s = db.sample_binary_scm(jax.random.PRNGKey(3), 20000, 4)
  adj = np.asarray(s.adjacency)
  assert not np.tril(adj).any()
  assert (adj.any(0) | adj.any(1)).all()
  assert set(np.unique(np.asarray(s.x))) <= {0, 1}
  # X_0 is a root: Bernoulli(θ) with θ ~ Beta(1, 3), so P(X_0 = 1) = 1/4.
  mean = float(np.asarray(s.x)[..., 0].mean())
  assert abs(mean - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 40000) + 0.01


def test_rules_recover_every_three_variable_structure_with_many_environments():
  hits = []
  for i in range(12):
    s = db.sample_binary_scm(jax.random.PRNGKey(100 + i), 20000)
    hits.append(db.causal_de_finetti_binary(s.x) == db.true_edges(s.adjacency))
  assert np.mean(hits) >= 0.8


def test_structural_hamming_distance_and_valid_structures():
  assert db.structural_hamming_distance({(0, 1)}, {(0, 1)}) == 0
  assert db.structural_hamming_distance({(1, 0)}, {(0, 1)}) == 1
  assert db.structural_hamming_distance(set(), {(0, 1), (1, 2)}) == 1
  assert db.structural_hamming_distance({(0, 1), (0, 2)}, {(0, 1), (1, 2)}) == 0.5
  assert len(db.valid_structures(3)) == 4
