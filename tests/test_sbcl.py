"""SBCL: the loss against a NumPy transcription of the official ``SupConLoss_rank``,
its reductions to SupCon and InfoNCE, 1 device = 8 devices, the subclass rule,
class temperatures, k-means subclasses and LDAM."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxrep.core import parallel
from jaxrep.ssl import infonce_loss, supcon_loss
from jaxrep.ssl import sbcl


def _official_reference(z, labels, sub, tau_c, tau=0.1, tau_base=0.07, gamma=0.25):
  """The official SupConLoss_rank (two views, masks built as there), NumPy float64."""
  z = np.asarray(z, np.float64)
  b = z.shape[0]
  f = np.concatenate([z[:, 0], z[:, 1]])
  f = f / np.linalg.norm(f, axis=1, keepdims=True)
  sub2, lab2 = np.tile(sub, 2), np.tile(labels, 2)
  logits_mask = 1 - np.eye(2 * b)
  mask = (sub2[:, None] == sub2[None, :]) * logits_mask
  logits = f @ f.T / tau
  log_prob = logits - np.log((np.exp(logits) * logits_mask).sum(1, keepdims=True))
  sub_term = (mask * log_prob).sum(1) / mask.sum(1)
  rank_logits = f @ f.T / np.asarray(tau_c, np.float64)[lab2][:, None]
  label_mask = (lab2[:, None] == lab2[None, :]).astype(float)
  logits_label_mask = (1 - mask) * logits_mask
  ad_mask = np.zeros((2 * b, 2 * b))
  ad_mask[np.r_[b:2 * b, 0:b], np.arange(2 * b)] = 1
  denominator = np.exp(rank_logits) * (ad_mask + logits_label_mask)
  log_prob_rank = rank_logits - np.log(denominator.sum(1, keepdims=True))
  positives = ad_mask + logits_label_mask * label_mask
  class_term = (positives * log_prob_rank).sum(1) / positives.sum(1)
  return float(np.mean(-(tau / tau_base) * sub_term - gamma * class_term))


def _problem(n=16, num_classes=3, key=0):
  k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
  z = jax.random.normal(k1, (n, 2, 5))
  labels = jax.random.randint(k2, (n,), 0, num_classes)
  sub = labels * 2 + jax.random.randint(k3, (n,), 0, 2)     # two subclasses per class
  return z, labels, sub, jnp.asarray([0.07, 0.1, 0.13])[:num_classes]


@pytest.mark.reference
def test_loss_matches_the_official_formula():
  """Mutations caught: the class term's denominator without the other view (or with
  same-subclass samples), positives of the same subclass, the global τ instead of
  the anchor's class temperature τ_{y_i}, or a missing τ/τ_base factor."""
  z, labels, sub, tau_c = _problem()
  got = jax.jit(sbcl.sbcl_loss)(z, labels, sub, tau_c)
  np.testing.assert_allclose(float(got), _official_reference(z, labels, sub, tau_c),
                             rtol=1e-5)


def test_subclasses_equal_to_classes_and_gamma_zero_is_supcon():
  """Mutation caught: a subclass term that is not SupCon on the subclass labels."""
  z, labels, _, tau_c = _problem(key=1)
  got, expected = jax.jit(lambda z, y, t: (
      sbcl.sbcl_loss(z, y, y, t, temperature=0.2, base_temperature=0.2, gamma=0.0),
      supcon_loss(z, y, 0.2)))(z, labels, tau_c)
  np.testing.assert_allclose(float(got), float(expected), rtol=1e-6)


def test_singleton_subclasses_and_gamma_zero_is_infonce():
  """Mutation caught: self-pairs counted as positives or in the denominator."""
  z, labels, _, tau_c = _problem(key=2)
  got, expected = jax.jit(lambda z, y, t: (
      sbcl.sbcl_loss(z, y, jnp.arange(z.shape[0]), t, temperature=0.1,
                     base_temperature=0.1, gamma=0.0),
      infonce_loss(z[:, 0], z[:, 1], 0.1)))(z, labels, tau_c)
  np.testing.assert_allclose(float(got), float(expected), rtol=1e-6)


def test_loss_on_8_devices_equals_the_global_batch_value():
  """Mutation caught: the class term's masks built from local (not gathered) labels
  or offsets, i.e. negatives and positives from one shard only."""
  z, labels, sub, tau_c = _problem(n=32)
  loss = lambda z, y, s, axis_name=None: sbcl.sbcl_loss(z, y, s, tau_c, axis_name=axis_name)
  mesh = parallel.make_mesh()

  def per_device(*shards):
    return lax.pmean(loss(*shards, axis_name="data"), "data")

  got = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P("data"),) * 3,
                              out_specs=P()))(z, labels, sub)
  np.testing.assert_allclose(float(got), float(jax.jit(loss)(z, labels, sub)), rtol=1e-5)


def test_subclass_rule_temperatures_and_kmeans():
  """Mutations caught: K_c from min_c n_c alone (ignoring the floor of 10); the
  density not clipped to its 20–80th percentiles; subclass ids that repeat across
  classes or ignore the feature clusters."""
  assert sbcl.subclass_counts((400, 100, 24, 4)) == (40, 10, 2, 1)
  rng = np.random.default_rng(0)
  centres = np.eye(4) * 5
  features = np.concatenate([centres[[0, 1, 0, 1] * 10] + 0.1 * rng.normal(size=(40, 4)),
                             centres[[2] * 5] + 0.1 * rng.normal(size=(5, 4))])
  labels = np.r_[np.zeros(40, int), np.ones(5, int)]
  sub = sbcl.subclass_labels(features, labels, (2, 1))
  assert set(sub[40:]) == {2} and set(sub[:40]) == {0, 1}
  first = sub[:40].reshape(10, 4)
  assert np.all(first[:, 0] == first[:, 2]) and np.all(first[:, 0] != first[:, 1])
  x = rng.normal(size=(50, 3)) * np.repeat([1.0, 2.0, 3.0, 4.0, 50.0], 10)[:, None]
  y = np.repeat(np.arange(5), 10)
  d = np.array([np.linalg.norm(x[y == c] - x[y == c].mean(0), axis=1).mean() / np.log(20)
                for c in range(5)])
  d = d.clip(np.percentile(d, 20), np.percentile(d, 80))
  got = sbcl.class_temperatures(x, y, (2, 2, 2, 1, 2), 0.1)
  np.testing.assert_allclose(got, np.where(np.arange(5) == 3, 0.1, 0.1 * d / d.mean()),
                             rtol=1e-5)


def test_ldam_margin_only_on_the_true_class_and_reduces_to_scaled_ce():
  """Mutations caught: margins ∝ n^{−1/2} (not n^{−1/4}), or subtracted from every logit."""
  logits = jax.random.normal(jax.random.key(5), (6, 3)) * 0.3
  labels = jnp.asarray([0, 1, 2, 0, 1, 2])
  counts = (100, 10, 1)
  got = jax.jit(lambda l, y: sbcl.ldam_loss(l, y, counts, max_margin=0.5, scale=30.0))(
      logits, labels)
  margins = 0.5 * np.asarray(counts, float) ** -0.25 / 1.0
  z = 30 * (np.asarray(logits, np.float64) - np.eye(3)[labels] * margins[labels][:, None])
  expected = np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(6), labels])
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)
  w = sbcl.class_balanced_weights(counts)
  np.testing.assert_allclose(w.sum(), 3, rtol=1e-6)
  assert w[2] > w[1] > w[0]
