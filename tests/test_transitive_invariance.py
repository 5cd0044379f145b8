"""Property tests of jaxrep.ssl.transitive (transitive-invariance graph and ranking loss)."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.ssl import transitive as ti


def _graph(seed=0, num_instances=6, views=3, dim=5, k=2):
  rng = np.random.default_rng(seed)
  instance = np.repeat(np.arange(num_instances), views)
  features = rng.normal(size=(instance.size, dim)).astype(np.float32)
  return instance, features, k


def _reference_graph(instance, features, k):
  """Loops over nodes: intra, kNN (cosine) inter, and the inter∘intra composition."""
  n = instance.size
  intra = np.array([[instance[i] == instance[j] and i != j for j in range(n)] for i in range(n)])
  unit = features / np.linalg.norm(features, axis=1, keepdims=True)
  inter = np.zeros((n, n), bool)
  for i in range(n):
    others = [j for j in range(n) if instance[j] != instance[i]]
    best = sorted(others, key=lambda j: -unit[i] @ unit[j])[:k]
    inter[i, best] = True
  trans = np.zeros((n, n), bool)
  for i in range(n):
    for j in range(n):
      if inter[i, j]:
        for l in range(n):
          if intra[j, l]:
            trans[i, l] = True
  return intra, inter, trans


def test_graph_matches_loop_reference():
  """Intra, kNN inter and transitive edges (dense JAX and sparse edge-list versions)
  equal a loop reference on a random graph. Catches: self loops kept, kNN over the
  anchor's own instance, the composition in the wrong order (intra then inter)."""
  instance, features, k = _graph()
  intra, inter, trans = _reference_graph(instance, features, k)
  got_intra = np.asarray(ti.intra_instance_edges(jnp.asarray(instance)))
  got_inter = np.asarray(ti.inter_instance_edges(jnp.asarray(features), jnp.asarray(instance), k))
  np.testing.assert_array_equal(got_intra, intra)
  np.testing.assert_array_equal(got_inter, inter)
  np.testing.assert_array_equal(np.asarray(ti.transitive_edges(got_inter, got_intra)), trans)
  listed = ti.transitive_pair_list(ti.edge_list(inter), ti.edge_list(intra), instance.size)
  np.testing.assert_array_equal(listed, ti.edge_list(trans))
  assert not np.array_equal(trans, _compose(intra, inter))   # the order matters here


def _compose(first, second):
  return (first.astype(int) @ second.astype(int)) > 0


def test_hand_built_graph():
  """Hand-built: instances {0,1}, {2,3}, {4}; inter 0→2 and 4→1 ⇒ transitive pairs
  exactly (0,3) and (4,0). Catches: including the inter edge itself, or j's own view."""
  instance = np.array([0, 0, 1, 1, 2])
  intra = ti.intra_instance_edges(jnp.asarray(instance))
  inter = np.zeros((5, 5), bool)
  inter[0, 2] = inter[4, 1] = True
  got = ti.edge_list(np.asarray(ti.transitive_edges(jnp.asarray(inter), intra)))
  np.testing.assert_array_equal(got, [[0, 3], [4, 0]])


def _reference_rank_loss(a, p, mask, margin, k):
  """The caffe loop: D = −⟨u, v⟩, two hinges per (pair, selected negative), / 2KP."""
  ua = a / np.linalg.norm(a, axis=1, keepdims=True)
  up = p / np.linalg.norm(p, axis=1, keepdims=True)
  items = np.concatenate([ua, up])
  total = 0.0
  for i in range(len(a)):
    d_ap = -ua[i] @ up[i]
    for j in range(len(items)):
      if mask[i, j]:
        total += max(0.0, d_ap + ua[i] @ items[j] + margin)
        total += max(0.0, d_ap + up[i] @ items[j] + margin)
  return total / (2 * k * len(a))


def test_rank_loss_and_mining_match_reference():
  """The loss equals the caffe loop for the mined mask; the mask takes only other
  pairs' violating items, all of them when ≤ K, else exactly K with ⌊K/2⌋ among the K
  hardest. Catches: the positive-side hinge missing, D without normalisation, the
  pair's own items as negatives, the wrong normaliser, hard negatives not hard."""
  key = jax.random.PRNGKey(0)
  a, p = jax.random.normal(key, (2, 12, 6))
  for margin in (1.0, 0.2):
    mask = np.asarray(ti.select_negatives(jax.random.PRNGKey(1), a, p, margin))
    d_ap, d_an, _ = (np.asarray(x) for x in ti.pair_distances(a, p))
    own = np.tile(np.eye(12, dtype=bool), (1, 2))
    candidate = ~own & (d_ap[:, None] - d_an + margin > 0)
    assert not (mask & ~candidate).any()
    for i in range(12):
      c = candidate[i].sum()
      assert mask[i].sum() == min(c, ti.NUM_NEGATIVES)
      if c > ti.NUM_NEGATIVES:
        hardest = np.argsort(np.where(candidate[i], d_an[i], np.inf))[:ti.NUM_NEGATIVES]
        assert mask[i, hardest].sum() >= ti.NUM_NEGATIVES // 2
    got = float(ti.rank_loss(a, p, jnp.asarray(mask), margin))
    want = _reference_rank_loss(np.asarray(a, np.float64), np.asarray(p, np.float64), mask,
                                margin, ti.NUM_NEGATIVES)
    np.testing.assert_allclose(got, want, rtol=1e-5)
  assert (candidate.sum(1) > ti.NUM_NEGATIVES).any()    # the K-of-many branch ran


def test_rank_loss_gradient_matches_finite_differences():
  """∂L/∂(anchors, positives) for a fixed mask equals central differences (float32,
  ε = 1e-3, away from hinge kinks). Catches: a stop_gradient on a branch, a wrong
  sign in D, normalisation not differentiated through."""
  a, p = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 5))
  mask = ti.select_negatives(jax.random.PRNGKey(3), a, p, 0.5)
  loss = lambda a, p: ti.rank_loss(a, p, mask, 0.5)
  grad_a, grad_p = jax.grad(loss, argnums=(0, 1))(a, p)
  direction = jax.random.normal(jax.random.PRNGKey(4), (2, 8, 5))
  eps = 1e-3
  fd = (loss(a + eps * direction[0], p + eps * direction[1])
        - loss(a - eps * direction[0], p - eps * direction[1])) / (2 * eps)
  analytic = jnp.sum(grad_a * direction[0]) + jnp.sum(grad_p * direction[1])
  np.testing.assert_allclose(float(fd), float(analytic), rtol=2e-2, atol=1e-4)
  assert abs(float(analytic)) > 1e-3
