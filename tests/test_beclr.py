"""BECLR (jaxrep.ssl.beclr): OpTA's transport plan (marginals, a NumPy log-domain
Sinkhorn reference, the ε → 0 matching limit) and DyCE's memory (equipartition, FIFO,
centres as member means, positives from the nearest cluster)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.ssl import beclr


def _sinkhorn_reference(x, y, eps, iters=5000):
  """The official utils/sinkhorn.py loop (log domain, uniform marginals) in float64."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  c = ((x[:, None] - y[None]) ** 2).sum(-1)
  c = c / c.max()
  mu, nu = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
  u, v = np.zeros(len(x)), np.zeros(len(y))
  lse = lambda a, ax: np.log(np.exp(a - a.max(ax, keepdims=True)).sum(ax)) + a.max(ax)
  for _ in range(iters):
    u = eps * (np.log(mu) - lse((-c + u[:, None] + v[None]) / eps, 1)) + u
    v = eps * (np.log(nu) - lse((-c + u[:, None] + v[None]) / eps, 0)) + v
  return np.exp((-c + u[:, None] + v[None]) / eps)


@pytest.mark.reference
def test_opta_plan_marginals_and_numpy_sinkhorn():
  """Catches: a cost not normalised by its maximum, non-uniform marginals, the plan
  transposed, or ε not passed to the solver (ott-jax vs the official loop)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
  y = jax.random.normal(jax.random.PRNGKey(1), (15, 4)) + 0.5
  plan = np.asarray(beclr.transport_plan(x, y, epsilon=0.05))
  np.testing.assert_allclose(plan.sum(1), 1 / 5, atol=1e-4)
  np.testing.assert_allclose(plan.sum(0), 1 / 15, atol=1e-4)
  np.testing.assert_allclose(plan, _sinkhorn_reference(x, y, 0.05), atol=2e-4)
  moved = beclr.transport_prototypes(x, y, epsilon=0.05)
  np.testing.assert_allclose(moved, (plan / plan.sum(1, keepdims=True)) @ np.asarray(y),
                             atol=1e-5)


def test_opta_matches_prototypes_to_queries_as_epsilon_vanishes():
  """Catches: barycentres taken over the wrong axis or not normalised per prototype:
  with the support equal to a permutation of the queries and ε → 0, each prototype
  maps onto its own query."""
  q = jax.random.normal(jax.random.PRNGKey(2), (6, 3)) * 3
  perm = np.random.default_rng(0).permutation(6)
  moved = beclr.opta(q[perm], q, num_passes=2, epsilon=0.002, max_iterations=5000)
  np.testing.assert_allclose(moved, np.asarray(q)[perm], atol=1e-3)


def test_equipartition_balances_clusters():
  """Catches: a missing column/row normalisation (a batch collapsing onto one
  cluster): rows sum to 1 and every cluster receives B/K of the mass."""
  scores = jax.random.normal(jax.random.PRNGKey(3), (12, 4)) * 0.3
  scores = scores.at[:, 0].add(1.0)  # a cluster everyone prefers
  q = np.asarray(beclr.equipartition_assignments(scores, epsilon=0.05, num_iterations=200))
  np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-5)
  np.testing.assert_allclose(q.sum(0), 12 / 4, atol=1e-3)


def test_dyce_memory_fifo_centres_and_positives():
  """Catches: inserting at a fixed row, a pointer that does not wrap, centres that are
  not the means of their members, or positives drawn outside the nearest cluster."""
  key = jax.random.PRNGKey(4)
  emb = jax.random.normal(key, (8, 3))
  memory = beclr.ClusteredMemory(emb, jnp.arange(8) % 2, jnp.eye(3)[:2],
                                 jnp.asarray(6, jnp.int32))
  batch = jnp.asarray([[5.0, 0.1, 0.0], [0.1, 5.0, 0.0]])
  new = beclr.dyce_update(memory, batch, num_iterations=50)
  np.testing.assert_array_equal(new.embeddings[6:], batch)
  np.testing.assert_array_equal(new.embeddings[:6], emb[:6])
  assert int(new.pointer) == 0
  np.testing.assert_array_equal(new.labels[6:], [0, 1])
  for k in range(2):
    np.testing.assert_allclose(new.centers[k],
                               np.asarray(new.embeddings)[np.asarray(new.labels) == k].mean(0),
                               atol=1e-6)
  query = jnp.asarray([[1.0, 0.0, 0.0]])
  nearest = int(np.argmax(np.asarray(new.centers) @ np.asarray(query[0]) /
                          np.linalg.norm(new.centers, axis=1)))
  members = np.asarray(new.embeddings)[np.asarray(new.labels) == nearest]
  positives = np.asarray(beclr.dyce_positives(query, new, k=2))[0]
  for p in positives:
    assert np.any(np.all(np.isclose(members, p), axis=1))
