"""Causal de Finetti: the bivariate rule, its symmetry, the generator and the baseline
(its pairwise LiNGAM measure against lingam.DirectLiNGAM)."""

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


def _linear_non_gaussian_pairs():
  """12 two-variable linear SEMs cause → effect = c·cause + 0.7·noise with uniform,
  Laplace and centred exponential noise; the odd ones returned as (effect, cause)."""
  pairs = []
  for seed in range(12):
    rng = np.random.default_rng(seed)
    noise = (lambda n: rng.uniform(-1, 1, n), lambda n: rng.laplace(size=n),
             lambda n: rng.exponential(size=n) - 1)[seed % 3]
    cause = noise(400)
    effect = rng.uniform(0.5, 1.5) * rng.choice([-1, 1]) * cause + 0.7 * noise(400)
    pairs.append((cause, effect, df.X_TO_Y) if seed % 2 == 0 else (effect, cause, df.Y_TO_X))
  return pairs


@pytest.mark.reference
def test_lingam_pairwise_measure_equals_direct_lingam():
  """Our closed-form R equals lingam.DirectLiNGAM's pairwise likelihood-ratio measure
  (its ``_diff_mutual_info`` on its own ``_residual``s) to rounding, and the direction
  R > 0 ⇒ X → Y is DirectLiNGAM's causal order on every pair (and the truth); the
  pooled i.i.d. baseline orients each (dependent) pair the same way.

  Catches: the two residual entropies swapped in R, dropping the residuals'
  standardisation (``maxent_entropy(r_x)``), a wrong maximum-entropy constant (γ =
  0.3746), and the pooled baseline orienting by R < 0."""
  import lingam
  reference = lingam.DirectLiNGAM()
  pairs = _linear_non_gaussian_pairs()
  with jax.enable_x64(True):
    xs, ys = (jnp.asarray(np.stack([p[i] for p in pairs])) for i in (0, 1))
    measures = np.asarray(jax.jit(jax.vmap(df.lingam_pairwise_measure))(xs, ys))
    pooled = np.asarray(jax.jit(jax.vmap(df.pooled_iid_baseline))(
        xs.reshape(len(pairs), -1, 2), ys.reshape(len(pairs), -1, 2)))
  for (x, y, truth), ours, pooled_direction in zip(pairs, measures, pooled):
    x_std, y_std = (x - x.mean()) / x.std(), (y - y.mean()) / y.std()
    expected = reference._diff_mutual_info(x_std, y_std, reference._residual(x_std, y_std),
                                           reference._residual(y_std, x_std))
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)
    order = list(lingam.DirectLiNGAM().fit(np.stack([x, y], 1)).causal_order_)
    lingam_direction = df.X_TO_Y if order == [0, 1] else df.Y_TO_X
    assert (df.X_TO_Y if ours > 0 else df.Y_TO_X) == lingam_direction == truth
    assert pooled_direction == lingam_direction


def test_rule_beats_chance_with_many_environments():
  with jax.enable_x64(True):
    keys = jax.random.split(jax.random.PRNGKey(3), 12)
    def one(k):
      s = df.sample_bivariate_scm(k, 200)
      return df.causal_de_finetti_bivariate(s.x, s.y, truncate=False) == s.structure
    correct = jax.jit(lambda ks: jax.lax.map(one, ks))(keys)
  assert float(jnp.mean(correct)) >= 0.6
