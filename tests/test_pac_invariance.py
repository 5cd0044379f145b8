"""PAC invariance: SEM moments, Woodbury interventions, invariance of the causal parents."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.causal import pac_invariance as pac
from jaxrep.data import sem


def test_woodbury_total_effects_equal_direct_inverse():
  with jax.enable_x64(True):
    family = pac.random_family(jax.random.PRNGKey(0), 12)
    w, nv = pac.sample_environment(jax.random.PRNGKey(1), family)
    env = sem.intervene(family.base, family.sites, w, nv)
    direct = np.linalg.inv(np.eye(12) - np.asarray(env.weights))
    fast = sem.intervened_total_effects(sem.total_effects(family.base.weights),
                                        family.base.weights, family.sites, w)
    np.testing.assert_allclose(np.asarray(fast), direct, atol=1e-10)


def test_dag_is_acyclic_with_bounded_in_degree():
  mask = np.asarray(sem.random_dag_mask(jax.random.PRNGKey(3), 30, 2))
  assert not np.triu(mask).any()
  assert mask.sum(1).max() <= 2 and (mask.sum(1)[1:] >= 1).all()


def test_causal_parents_have_zero_invariance_gap():
  with jax.enable_x64(True):
    for seed in range(3):
      family = pac.random_family(jax.random.PRNGKey(seed), 10)
      parents = np.flatnonzero(np.asarray(family.base.weights[family.target]))
      rep = np.zeros((len(parents), 10))
      rep[np.arange(len(parents)), parents] = 1.0

      def beta(key):
        w, nv = pac.sample_environment(key, family)
        sigma = sem.population_covariance(sem.intervene(family.base, family.sites, w, nv))
        return pac.population_coefficients(sigma, jnp.asarray(rep), family.target)

      betas = jax.vmap(beta)(jax.random.split(jax.random.PRNGKey(10 + seed), 40))
      assert float(pac.invariance_gap(betas)) < 1e-10
      np.testing.assert_allclose(np.asarray(betas[0]),
                                 np.asarray(family.base.weights[family.target, parents]),
                                 atol=1e-10)


def test_some_non_parent_representation_is_not_invariant():
  with jax.enable_x64(True):
    family = pac.random_family(jax.random.PRNGKey(0), 10)
    idx, ok = pac.candidate_pool(jax.random.PRNGKey(1), family, 16)
    betas = pac.environment_coefficients(jax.random.split(jax.random.PRNGKey(2), 50),
                                         family, idx, ok)
    gaps = np.asarray(jax.vmap(pac.invariance_gap)(betas))
  assert gaps[0] < 1e-10  # candidate 0 is pa(y)
  assert gaps.max() > 0.1


def test_population_coefficients_match_ols_on_many_samples():
  with jax.enable_x64(True):
    model = sem.random_linear_sem(jax.random.PRNGKey(5), 10)
    x = np.asarray(sem.sample_sem(jax.random.PRNGKey(6), model, 1_000_000))
    rep = np.zeros((3, 10))
    rep[[0, 1, 2], [1, 3, 7]] = 1.0
    beta = np.asarray(pac.population_coefficients(sem.population_covariance(model),
                                                  jnp.asarray(rep), 5))
    sub = pac.subset_coefficients(sem.population_covariance(model), jnp.array([1, 3, 7, 0]),
                                  jnp.array([True, True, True, False]), 5)
  ols, *_ = np.linalg.lstsq(x @ rep.T, x[:, 5], rcond=None)
  np.testing.assert_allclose(beta, ols, atol=1e-2)
  np.testing.assert_allclose(np.asarray(sub)[:3], beta, atol=1e-10)
  assert float(sub[3]) == 0.0
