"""Causal de Finetti: the bivariate rule, its symmetry, the generator and the baseline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.causal import de_finetti as df


@pytest.mark.parametrize("p, expected", [
    ((0.5, 0.01, 0.01), df.X_TO_Y), ((0.01, 0.5, 0.01), df.Y_TO_X),
    ((0.5, 0.6, 0.7), df.NO_EDGE), ((0.01, 0.02, 0.03), df.NO_EDGE),
    ((0.2, 0.01, 0.3), df.NO_EDGE), ((0.3, 0.4, 0.01), df.Y_TO_X)])
def test_decision_rule_truth_table(p, expected):
  assert int(df.decide_direction(jnp.asarray(p))) == expected


def test_rule_is_mirror_symmetric():
  """Swapping the roles of X and Y swaps the estimated direction (exact)."""
  mirror = np.array([df.Y_TO_X, df.X_TO_Y, df.NO_EDGE])
  with jax.enable_x64(True):
    for seed in range(4):
      s = df.sample_bivariate_scm(jax.random.PRNGKey(seed), 60)
      p_xy = df.direction_p_values(s.x, s.y)
      p_yx = df.direction_p_values(s.y, s.x)
      np.testing.assert_allclose(np.asarray(p_yx), np.asarray(p_xy)[[1, 0, 2]], rtol=1e-8)
      assert int(df.causal_de_finetti_bivariate(s.y, s.x)) == mirror[
          int(df.causal_de_finetti_bivariate(s.x, s.y))]


def test_generator_structures_are_uniform_and_root_is_pure_noise():
  keys = jax.random.split(jax.random.PRNGKey(0), 600)
  s = jax.vmap(lambda k: df.sample_bivariate_scm(k, 50))(keys)
  counts = np.bincount(np.asarray(s.structure), minlength=3)
  assert (np.abs(counts - 200) < 4 * np.sqrt(600 * 2 / 9)).all(), counts
  # X → Y: the root X is latent + Laplace(1) noise, so its within-environment
  # difference X₁ − X₂ is a difference of two unit Laplace variables (variance 4).
  diff = np.asarray(s.x[:, :, 0] - s.x[:, :, 1])[np.asarray(s.structure) == df.X_TO_Y]
  assert np.var(diff) == pytest.approx(4.0, rel=0.1)


def test_lingam_pairwise_measure_orients_linear_non_gaussian_pair():
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  x = jax.random.laplace(k1, (5000,))
  y = x + 0.7 * jax.random.laplace(k2, (5000,))
  assert float(df.lingam_pairwise_measure(x, y)) > 0
  assert float(df.lingam_pairwise_measure(y, x)) < 0


def test_rule_beats_chance_with_many_environments():
  with jax.enable_x64(True):
    keys = jax.random.split(jax.random.PRNGKey(3), 12)
    def one(k):
      s = df.sample_bivariate_scm(k, 200)
      return df.causal_de_finetti_bivariate(s.x, s.y, truncate=False) == s.structure
    correct = jax.jit(lambda ks: jax.lax.map(one, ks))(keys)
  assert float(jnp.mean(correct)) >= 0.6
