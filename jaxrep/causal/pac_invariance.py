r"""ε-approximate invariance of linear representations across SEM interventions.

Parulekar, Shanmugam & Shakkottai, "PAC Generalization via Invariant
Representations", ICML 2023 (theory paper, no official code).

Setting. A linear SEM over d nodes (``jaxrep.data.sem``) with a target node y;
an environment e is a soft intervention on a fixed site set S ∌ y (new incoming
weights and noise variances at S), drawn from a parametric family. A
representation Φ ∈ R^{k×d} (here: a selection of k ≤ K covariates, Φ_{:,y} = 0)
has population regression coefficients
    β_e(Φ) = (Φ Σ_e Φᵀ)⁻¹ Φ Σ_e e_y,   Σ_e = (I − B_e)⁻¹ D_e (I − B_e)⁻ᵀ.
Φ is ε-approximately invariant on environments E when
    gap_E(Φ) = max_{e∈E} ‖β_e(Φ) − β̄_E(Φ)‖₂ ≤ ε,   β̄_E = mean_{e∈E} β_e.
The paper's guarantee: if Φ is ε-invariant on T i.i.d. training interventions,
then with probability ≥ 1 − δ it is 2ε-invariant (‖β_e − β̄_T‖ ≤ 2ε) on all but
a fraction ≲ (VC dim + log 1/δ)/T of unseen interventions, with a VC dimension
of the polynomial threshold class that depends on |S| and the in-degree bound,
not on d. The causal parents Φ = pa(y) have gap 0 whenever y ∉ S.

Candidates are fixed-size index sets (K,) with a validity mask, so every
covariance solve is K × K and everything vmaps over SEMs, candidates and
environments.
"""
from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from jaxrep.core import linalg
from jaxrep.data import sem as sem_lib


class InterventionFamily(NamedTuple):
  base: sem_lib.LinearSEM
  target: jax.Array  # () int
  sites: jax.Array  # (s,) int
  low: float = 0.5
  high: float = 2.0


def population_coefficients(sigma: jax.Array, rep: jax.Array, target: jax.Array) -> jax.Array:
  """β = (Φ Σ Φᵀ)⁻¹ Φ Σ e_y for a dense representation Φ (k, d)."""
  return jnp.linalg.solve(rep @ sigma @ rep.T, rep @ sigma[:, target])


def subset_coefficients(sigma: jax.Array, indices: jax.Array, valid: jax.Array,
                        target: jax.Array) -> jax.Array:
  """β of y on the covariates ``indices[valid]``; invalid slots get coefficient 0.

  indices, valid: (K,). Invalid rows/columns of Φ Σ Φᵀ are replaced by the identity.
  """
  sub = sigma[indices][:, indices]
  pair = valid[:, None] & valid[None, :]
  gram = jnp.where(pair, sub, jnp.eye(indices.shape[0], dtype=sigma.dtype))
  cross = jnp.where(valid, sigma[indices, target], 0.0)
  # vmapped over candidates × environments: the vmap-safe solve (jaxrep.core.linalg).
  return linalg.solve(gram, cross)


def invariance_gap(betas: jax.Array) -> jax.Array:
  """max_e ‖β_e − mean_e β_e‖₂ for betas (num_env, k)."""
  return jnp.max(jnp.linalg.norm(betas - betas.mean(0), axis=-1))


def sample_environment(key: jax.Array, family: InterventionFamily
                       ) -> tuple[jax.Array, jax.Array]:
  """Incoming weights (s, d) and noise variances (s,) of one intervention at the sites."""
  k_w, k_n = jax.random.split(key)
  parent_mask = family.base.weights[family.sites] != 0
  weights = sem_lib.random_weights(k_w, parent_mask, family.low, family.high)
  noise_std = jax.random.uniform(k_n, family.sites.shape, minval=family.low,
                                 maxval=family.high)
  return weights, noise_std**2


def environment_coefficients(keys: jax.Array, family: InterventionFamily,
                             indices: jax.Array, valid: jax.Array,
                             batch_size: int = 500) -> jax.Array:
  """β_e of every candidate in every environment: (M, E, K).

  keys: (E,) environment keys; indices, valid: (M, K). Per environment the total
  effects come from Woodbury (O(|S| d²)), then each candidate needs only the
  (K+1) rows of A_e for y and its covariates.
  """
  base_effects = sem_lib.total_effects(family.base.weights)
  local = jnp.arange(1, indices.shape[1] + 1)

  def one(key):
    site_weights, site_noise = sample_environment(key, family)
    effects = sem_lib.intervened_total_effects(base_effects, family.base.weights,
                                               family.sites, site_weights)
    noise_var = family.base.noise_var.at[family.sites].set(site_noise)

    def per_candidate(idx, ok):
      a = effects[jnp.concatenate([family.target[None], idx])]
      sigma = (a * noise_var) @ a.T
      return subset_coefficients(sigma, local, ok, 0)

    return jax.vmap(per_candidate)(indices, valid)

  betas = jax.lax.map(one, keys, batch_size=min(batch_size, keys.shape[0]))  # (E, M, K)
  return jnp.swapaxes(betas, 0, 1)


def violation_rates(train_betas: jax.Array, test_betas: jax.Array, epsilon: float,
                    num_train: int) -> tuple[jax.Array, jax.Array]:
  """Selection and 2ε-violation for each candidate, using the first ``num_train`` envs.

  train_betas: (M, T_max, K), test_betas: (M, E, K). Returns (selected (M,) bool,
  fraction of test environments with ‖β_e − β̄_T‖ > 2ε (M,)).
  """
  chex.assert_rank([train_betas, test_betas], 3)
  train = train_betas[:, :num_train]
  center = train.mean(1)
  gap = jnp.max(jnp.linalg.norm(train - center[:, None], axis=-1), axis=1)
  test_dev = jnp.linalg.norm(test_betas - center[:, None], axis=-1)
  return gap <= epsilon, jnp.mean(test_dev > 2 * epsilon, axis=1)


def random_family(key: jax.Array, d: int, max_in_degree: int = 2, num_sites: int = 2
                  ) -> InterventionFamily:
  """Random SEM, target y = d // 2, sites: an ancestor of y and a descendant of y
  (another relative of y when y has no descendant)."""
  k_sem, k_s1, k_s2 = jax.random.split(key, 3)
  base = sem_lib.random_linear_sem(k_sem, d, max_in_degree)
  target = d // 2
  reach = sem_lib.ancestor_matrix(base.weights)
  ancestors = reach[target]
  descendants = reach[:, target]
  s1 = jax.random.choice(k_s1, d, p=ancestors / ancestors.sum())
  others = (ancestors | descendants) & (jnp.arange(d) != s1)
  pool = jnp.where(descendants.any(), descendants, others)
  pool = jnp.where(pool.any(), pool, (jnp.arange(d) != s1) & (jnp.arange(d) != target))
  s2 = jax.random.choice(k_s2, d, p=pool / pool.sum())
  sites = jnp.stack([s1, s2])[:num_sites]
  return InterventionFamily(base, jnp.asarray(target), sites)


def candidate_pool(key: jax.Array, family: InterventionFamily, num_candidates: int,
                   max_size: int = 4) -> tuple[jax.Array, jax.Array]:
  """Candidate covariate sets (M, K) with validity (M, K).

  Slots 0–1: the parents of y, each kept with probability 3/4; slots 2..K−1: random
  relatives of y (ancestors or descendants), each present with probability 1/2.
  Candidate 0 is exactly pa(y). Duplicated indices are masked out.
  """
  weights = family.base.weights
  d = weights.shape[0]
  y = family.target
  parents = weights[y] != 0
  reach = sem_lib.ancestor_matrix(weights)
  relatives = (reach[y] | reach[:, y]) & (jnp.arange(d) != y)
  parent_idx = jnp.argsort(~parents)[:2]
  parent_ok = parents[parent_idx]
  k_keep, k_rel, k_on = jax.random.split(key, 3)
  extra = max_size - 2
  keep = jax.random.bernoulli(k_keep, 0.75, (num_candidates, 2))
  rel_idx = jax.random.choice(k_rel, d, (num_candidates, extra), p=relatives / relatives.sum())
  rel_on = jax.random.bernoulli(k_on, 0.5, (num_candidates, extra))
  keep = keep.at[0].set(True)
  rel_on = rel_on.at[0].set(False)
  indices = jnp.concatenate([jnp.broadcast_to(parent_idx, (num_candidates, 2)), rel_idx], 1)
  valid = jnp.concatenate([keep & parent_ok, rel_on], 1)
  first = jnp.argmax(indices[:, :, None] == indices[:, None, :], axis=2)
  earlier_valid_duplicate = jax.vmap(
      lambda idx, ok, f: jnp.array([jnp.any(ok[:j] & (idx[:j] == idx[j]))
                                    for j in range(idx.shape[0])]))(indices, valid, first)
  return indices, valid & ~earlier_valid_duplicate
