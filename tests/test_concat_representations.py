"""CAT_n: vmapped member features equal per-member application, column layout,
the ridge objective against NumPy/scikit-learn, monotonicity of the probe
objective over subsets, and a quick-mode smoke test."""
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import Ridge

from jaxrep.probe import concat_representations as cat

N_MEMBERS, N, D_IN, D_OUT, K = 4, 60, 7, 3, 5


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


class Tiny(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(D_OUT)(jnp.tanh(nn.Dense(6)(x)))


def _members():
  model = Tiny()
  x = jnp.asarray(np.random.default_rng(0).normal(size=(N, D_IN)))
  keys = jax.random.split(jax.random.PRNGKey(1), N_MEMBERS)
  stacked = jax.vmap(lambda k: model.init(k, x[:1]))(keys)
  labels = jnp.asarray(np.random.default_rng(2).integers(0, K, N))
  return model, stacked, x, labels


def test_concat_features_equal_per_member_application_in_order():
  model, stacked, x, _ = _members()
  features = cat.concat_features(model.apply, stacked, x)
  assert features.shape == (N, N_MEMBERS * D_OUT)
  for k in range(N_MEMBERS):
    params_k = jax.tree.map(lambda a: a[k], stacked)
    np.testing.assert_allclose(features[:, k * D_OUT:(k + 1) * D_OUT], model.apply(params_k, x),
                               atol=1e-12)
  subset = cat.concat_features(model.apply, stacked, x, members=[2, 0])
  np.testing.assert_array_equal(subset, np.concatenate([features[:, 6:9], features[:, 0:3]], 1))


@pytest.mark.reference
def test_ridge_objective_matches_sklearn_ridge():
  _, _, x, labels = _members()
  x = np.asarray(x)
  l2 = 3e-2
  y = np.eye(K)[np.asarray(labels)]
  # sklearn minimises ‖y − Xw − b‖² + α‖w‖²; ours is that divided by N with α = l2·N.
  ridge = Ridge(alpha=l2 * N, fit_intercept=True).fit(x, y)
  expected = (np.sum((ridge.predict(x) - y) ** 2) + l2 * N * np.sum(ridge.coef_**2)) / N
  np.testing.assert_allclose(cat.ridge_objective(jnp.asarray(x), labels, K, l2), expected,
                             rtol=1e-9)


def test_probe_objective_of_cat_is_at_most_every_member_and_subset():
  model, stacked, x, labels = _members()
  full = float(cat.ridge_objective(cat.concat_features(model.apply, stacked, x), labels, K))
  for size in range(1, N_MEMBERS):
    for subset in itertools.combinations(range(N_MEMBERS), size):
      part = cat.concat_features(model.apply, stacked, x, members=list(subset))
      assert full <= float(cat.ridge_objective(part, labels, K)) + 1e-8, subset
  # Strictly better than a single member here: the members are not redundant.
  single = float(cat.ridge_objective(cat.concat_features(model.apply, stacked, x, [0]),
                                     labels, K))
  assert full < single - 1e-3
