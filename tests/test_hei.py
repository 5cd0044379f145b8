"""HEI: node homophily and neighbour pattern against Python loops, the soft IRM penalty against
a finite-difference derivative, its reduction to IRMv1 on hard environments, and the CSBM
sampler's homophily law."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrep.shift import baselines, hei


def _graph(seed=0, n=40):
  return hei.csbm_graph(jax.random.PRNGKey(seed), n, 3, 4, 5, 1.0, 0.5)


def test_homophily_and_pattern_match_loops():
  """Catches a sender/receiver swap or a wrong normaliser in the segment sums."""
  g = _graph()
  y, x = np.asarray(g.y), np.asarray(g.x)
  snd, rcv = np.asarray(g.senders), np.asarray(g.receivers)
  # drop some edges so degrees differ (and one node has none)
  keep = (np.arange(len(snd)) % 7 != 0) & (rcv != 3)
  snd, rcv = snd[keep], rcv[keep]
  h_loop, s_loop = np.zeros(len(y)), np.zeros(len(y))
  for v in range(len(y)):
    nb = snd[rcv == v]
    if len(nb):
      h_loop[v] = np.mean(y[nb] == y[v])
      s_loop[v] = np.mean([np.linalg.norm(x[v] - x[u]) for u in nb])
  np.testing.assert_allclose(hei.node_homophily(g.y, jnp.asarray(snd), jnp.asarray(rcv)), h_loop,
                             atol=1e-6)
  np.testing.assert_allclose(hei.neighbour_pattern(g.x, jnp.asarray(snd), jnp.asarray(rcv)),
                             s_loop, rtol=1e-5, atol=1e-6)


def test_soft_penalty_equals_finite_difference_and_irm_on_hard_envs():
  """P = Σ_k (∂_w R_k(w))² by central differences; with one-hot q it equals the shared
  ``baselines.irm_penalty`` summed over environments. Catches a missing square, an
  unnormalised weighted risk or a derivative taken at the wrong point."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(12, 3)))
    labels = jnp.asarray(rng.integers(0, 3, 12))
    q = jax.nn.softmax(jnp.asarray(rng.normal(size=(12, 4))))

    def risks(w):
      loss = optax.softmax_cross_entropy_with_integer_labels(w * logits, labels)
      return (q.T @ loss) / q.sum(0)
    eps = 1e-5
    fd = (risks(1 + eps) - risks(1 - eps)) / (2 * eps)
    np.testing.assert_allclose(hei.soft_irm_penalty(logits, labels, q), np.sum(fd ** 2),
                               rtol=1e-7)
    hard = jax.nn.one_hot(jnp.arange(12) % 4, 4)
    stacked = jnp.stack([logits[k::4] for k in range(4)])
    ref = baselines.irm_penalty(stacked, jnp.stack([labels[k::4] for k in range(4)])).sum()
    np.testing.assert_allclose(hei.soft_irm_penalty(logits, labels, hard), ref, rtol=1e-9)


def test_csbm_homophily_follows_rho():
  """Mean measured homophily equals mean ρ (binomial law); the two node groups differ."""
  g = hei.csbm_graph(jax.random.PRNGKey(3), 4000, 5, 4, 10, 1.0, 0.4)
  h, rho = np.asarray(hei.node_homophily(g.y, g.senders, g.receivers)), np.asarray(g.rho)
  se = np.sqrt(np.mean(rho * (1 - rho)) / 10 / 4000) + np.std(rho) / np.sqrt(4000)
  assert abs(h.mean() - rho.mean()) < 4 * se, (h.mean(), rho.mean(), se)
  assert np.corrcoef(h, rho)[0, 1] > 0.8
  assert (np.asarray(g.y)[np.asarray(g.senders)] >= 0).all()
