r"""A tester-learner for homogeneous halfspaces under Massart noise.

Gollakota, Klivans, Stavropoulos & Vasilyan, "An Efficient Tester-Learner for
Halfspaces", ICLR 2024 (arXiv 2302.14853). No official code; this is an
executable instantiation of the algorithm's structure with tolerances set by
simulation rather than the theorem's constants.

Learner (the non-convex SGD of Diakonikolas, Kontonis, Tzamos & Zarifis 2020,
which the paper runs "testably"): projected SGD on the unit sphere for the
smoothed-ramp surrogate

    L_σ(w) = E[ℓ_σ(−y ⟨w, x⟩)],  ‖w‖ = 1,
    ℓ_σ(t) = S((t + σ) / (2σ)),  S(u) = 3u² − 2u³ on [0, 1] (0 below, 1 above),

whose gradient ∇L_σ(w) = −E[ℓ'_σ(−y⟨w,x⟩) y x] only sees the band
|⟨w, x⟩| ≤ σ; each step w ← (w − η P_{w⊥} ĝ) / ‖·‖. The iterates form the
candidate list, and the output ŵ is the candidate with the least empirical
0-1 error on a fresh split.

Testers (on the second split; ŵ comes from PSGD on the first split and the
second only chooses among its iterates, so under the target distribution the
label-free nulls below hold for ŵ up to that choice):

* T1 — global moment matching: all orthonormal Hermite moments of x of degree
  1 … k vanish (``jaxrep.stats.moments``; Gollakota–Klivans–Kothari 2023).
* T2 — band mass: P̂[|⟨ŵ, x⟩| ≤ b] equals 2Φ(b) − 1 (binomial z-test).
* T3 — band-conditional moments of the projection x_⊥ = Q_ŵᵀ x onto ŵ⊥
  (Q_ŵ an orthonormal basis of ŵ⊥), on the band B = {|⟨ŵ, x⟩| ≤ b}:
  (a) label-free: E[H_α(x_⊥) | B] = 0 for 1 ≤ |α| ≤ 2;
  (b) label-aware: |E[y H_α(x_⊥) | B]| ≤ τ for 0 ≤ |α| ≤ 2. For ŵ at angle θ
      from w*, Gaussian x and noise rate η, E[y ⟨v, x_⊥⟩ | B] ≈ (1 − 2η) θ / b,
      so accepting certifies a small angle, hence error ≈ opt + O(θ).
Each test has a statistical slack c·se (Šidák over its statistics). Accept iff
all four pass; the tester-learner then returns ŵ, otherwise it rejects.
"""
from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from jax.scipy.stats import norm

from jaxrep.core import fit as fit_lib
from jaxrep.core import tasks, train
from jaxrep.nn import l2_normalize
from jaxrep.stats import moments


class TesterConfig(NamedTuple):
  sigma: float            # surrogate smoothing σ
  learning_rate: float
  num_steps: int
  batch_size: int
  record_every: int       # candidate list = every record_every-th iterate
  band_width: float       # b, the band of T2 and T3
  moment_degree: int      # k of T1
  label_tolerance: float  # τ of T3(b)
  level: float            # family-wise level of each test


class TesterOutcome(NamedTuple):
  w_hat: jax.Array            # (d,)
  candidates: jax.Array       # (C, d)
  accept: jax.Array           # () bool
  reject_moments: jax.Array   # T1
  reject_band_mass: jax.Array  # T2
  reject_band_moments: jax.Array  # T3(a)
  reject_label_moments: jax.Array  # T3(b)
  band_mass: jax.Array
  label_deviation: jax.Array  # max_α |E[y H_α(x_⊥) | B]|


# ---------------------------------------------------------------- learner

def smoothed_ramp(t: jax.Array, sigma: float) -> jax.Array:
  """ℓ_σ(t) = S((t + σ)/(2σ)), S(u) = 3u² − 2u³ clipped to [0, 1]: a C¹ ramp."""
  u = jnp.clip((t + sigma) / (2.0 * sigma), 0.0, 1.0)
  return u * u * (3.0 - 2.0 * u)


def surrogate_loss(w: jax.Array, x: jax.Array, y: jax.Array, sigma: float) -> jax.Array:
  """L_σ(w) = mean ℓ_σ(−y ⟨w/‖w‖, x⟩)."""
  chex.assert_rank(x, 2)
  margins = y * (x @ w) / jnp.linalg.norm(w)
  return jnp.mean(smoothed_ramp(-margins, sigma))


def sphere_gradient(w: jax.Array, x: jax.Array, y: jax.Array, sigma: float) -> jax.Array:
  """Riemannian gradient P_{w⊥} ∇L_σ(w) at a unit w."""
  g = jax.grad(surrogate_loss)(w, x, y, sigma)
  return g - (g @ w) * w


def psgd_task(config: TesterConfig) -> tasks.Task:
  """The learner as a task for ``jaxrep.core.fit``: projected SGD on the sphere.

  A run's inputs: ``key`` (split into the init key, w₀ = normalise(N(0, I)), and
  the minibatch key) and the learning split ``x`` (n, d), ``y`` (n,). Step t:
  ``config.batch_size`` indices drawn i.i.d. uniform (with replacement, as in the
  DKTZ analysis) by ``tasks.minibatch_indices``, then
  w ← normalise(w − η P_{w⊥} ∇L̂_σ(w)). Metrics per step: ``loss`` (the batch
  surrogate) and ``w`` (the iterate after the step; the candidates are every
  ``record_every``-th, see ``candidates``).
  """

  def init(inputs):
    key_init, _ = jax.random.split(inputs["key"])
    w0 = jax.random.normal(key_init, (inputs["x"].shape[1],))
    return train.init_train_state(l2_normalize(w0), optax.identity(), key_init)

  def step(state, inputs):
    _, key_batches = jax.random.split(inputs["key"])
    idx = tasks.minibatch_indices(key_batches, state.step, inputs["x"].shape[0],
                                  config.batch_size, replace=True)
    batch = tasks.shard_batch({"x": inputs["x"][idx], "y": inputs["y"][idx]})
    w = state.params
    loss = surrogate_loss(w, batch["x"], batch["y"], config.sigma)
    w = l2_normalize(w - config.learning_rate * sphere_gradient(w, batch["x"], batch["y"],
                                                                config.sigma))
    return state.replace(params=w, step=state.step + 1), {"loss": loss, "w": w}

  return tasks.Task(init, step)


def candidates(iterates: jax.Array, record_every: int) -> jax.Array:
  """Every ``record_every``-th PSGD iterate (..., steps, d) → (..., C, d)."""
  return iterates[..., record_every - 1::record_every, :]


def zero_one_error(w: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
  """P̂[sign⟨w, x⟩ ≠ y] (sign 0 counts as +1)."""
  return jnp.mean(jnp.where(x @ w >= 0, 1.0, -1.0) != y)


# ---------------------------------------------------------------- testers

def orthonormal_complement(w: jax.Array) -> jax.Array:
  """Q (d, d − 1) with orthonormal columns spanning w⊥ (Householder reflection)."""
  d = w.shape[0]
  u = l2_normalize(w)
  e = jnp.zeros(d).at[0].set(1.0)
  sign = jnp.where(u[0] >= 0, 1.0, -1.0)
  v = u + sign * e
  householder = jnp.eye(d) - 2.0 * jnp.outer(v, v) / (v @ v)   # maps e ↦ −sign·u
  return householder[:, 1:]


def band_mass_test(projections: jax.Array, width: float, level: float
                   ) -> tuple[jax.Array, jax.Array]:
  """Two-sided z-test of P̂[|t| ≤ b] = 2Φ(b) − 1 for t ~ N(0, 1); (mass, reject)."""
  n = projections.shape[0]
  expected = 2.0 * norm.cdf(width) - 1.0
  mass = jnp.mean(jnp.abs(projections) <= width)
  std_error = jnp.sqrt(expected * (1.0 - expected) / n)
  threshold = moments.sidak_threshold(1, level)
  return mass, jnp.abs(mass - expected) > threshold * std_error


def band_conditional_tests(x: jax.Array, y: jax.Array, w: jax.Array, config: TesterConfig
                           ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """T3(a), T3(b) on the band of w: (reject_label_free, reject_label_aware, deviation)."""
  x_perp = x @ orthonormal_complement(w)
  band = (jnp.abs(x @ w) <= config.band_width).astype(x.dtype)
  label_free = moments.moment_matching_test(x_perp, 2, config.level, weights=band)
  label_aware = moments.moment_matching_test(
      x_perp, 2, config.level, weights=band * y, tolerance=config.label_tolerance,
      min_degree=0)
  return label_free.reject, label_aware.reject, jnp.max(jnp.abs(label_aware.moments))


def select_and_test(candidate_ws: jax.Array, x_test: jax.Array, y_test: jax.Array,
                    config: TesterConfig) -> TesterOutcome:
  """ŵ = the candidate (C, d) of least 0-1 error on the test split; then T1–T3 on it."""
  chex.assert_rank(x_test, 2)
  errors = jax.vmap(zero_one_error, in_axes=(0, None, None))(candidate_ws, x_test, y_test)
  w_hat = candidate_ws[jnp.argmin(errors)]
  t1 = moments.moment_matching_test(x_test, config.moment_degree, config.level).reject
  mass, t2 = band_mass_test(x_test @ w_hat, config.band_width, config.level)
  t3a, t3b, deviation = band_conditional_tests(x_test, y_test, w_hat, config)
  accept = ~(t1 | t2 | t3a | t3b)
  return TesterOutcome(w_hat, candidate_ws, accept, t1, t2, t3a, t3b, mass, deviation)


def tester_learner(key: jax.Array, x: jax.Array, y: jax.Array,
                   config: TesterConfig) -> TesterOutcome:
  """Learn on the first half of (x, y) (PSGD through ``fit``, one run), select and
  test on the second half. Host-level (``fit`` is); experiments stack many runs
  into one ``fit`` of ``psgd_task`` and vmap ``select_and_test``."""
  half = x.shape[0] // 2
  result = fit_lib.fit(psgd_task(config), {"key": key[None], "x": x[None, :half],
                                           "y": y[None, :half]},
                       config.num_steps, progress=False)
  return select_and_test(candidates(result.curves["w"][0], config.record_every),
                         x[half:], y[half:], config)


# ---------------------------------------------------------------- distributions

def massart_labels(key: jax.Array, x: jax.Array, w_star: jax.Array, noise_direction: jax.Array,
                   eta_max: float) -> jax.Array:
  """y = sign⟨w*, x⟩ flipped with probability η(x) = η_max·1[⟨u, x⟩ > 0] ≤ η_max < ½.

  The rate depends on x through u ⊥ w*, so the noise is Massart but not
  random-classification noise (E[y x] is not parallel to w*).
  """
  clean = jnp.where(x @ w_star >= 0, 1.0, -1.0)
  eta = eta_max * (x @ noise_direction > 0)
  flip = jax.random.uniform(key, x.shape[:1]) < eta
  return jnp.where(flip, -clean, clean)


def gaussian_marginal(key: jax.Array, n: int, d: int) -> jax.Array:
  return jax.random.normal(key, (n, d))


def student_t_marginal(key: jax.Array, n: int, d: int, dof: float) -> jax.Array:
  """Heavy tails: i.i.d. Student-t(ν) coordinates scaled to unit variance (ν > 2)."""
  return jax.random.t(key, dof, (n, d)) * jnp.sqrt((dof - 2.0) / dof)


def uniform_cube_marginal(key: jax.Array, n: int, d: int) -> jax.Array:
  """Uniform on [−√3, √3]^d: mean 0, identity covariance, 4th moments 9/5 ≠ 3."""
  return jax.random.uniform(key, (n, d), minval=-jnp.sqrt(3.0), maxval=jnp.sqrt(3.0))


def band_barrier_sample(key: jax.Array, n: int, w_star: jax.Array, noise_direction: jax.Array,
                        eta_max: float, fraction: float) -> tuple[jax.Array, jax.Array]:
  """Mass piled at ±w* with flipped labels: a barrier in the band of every w ⊥ w*.

  A fraction p of the points sits at x = ±w* with label ∓1 (each is an error
  of w*); the rest is N(0, diag) with Massart labels, the variance of x_⊥
  raised to 1/(1 − p) so that means and covariances match N(0, I) exactly
  (E[(w*·x)²] = (1 − p) + p = 1). Any w with ⟨w, w*⟩ > 0 errs on the whole
  barrier, so PSGD started on the far hemisphere stalls near the equator,
  where these points sit inside its band, at error ≈ ½ while opt ≈ err(w*).
  """
  d = w_star.shape[0]
  key_x, key_flip, key_side, key_which = jax.random.split(key, 4)
  z = jax.random.normal(key_x, (n, d))
  along = z @ w_star
  perp = (z - along[:, None] * w_star) / jnp.sqrt(1.0 - fraction)
  x_bulk = perp + along[:, None] * w_star
  y_bulk = massart_labels(key_flip, x_bulk, w_star, noise_direction, eta_max)
  side = jnp.where(jax.random.uniform(key_side, (n,)) < 0.5, 1.0, -1.0)
  on_barrier = jax.random.uniform(key_which, (n,)) < fraction
  x = jnp.where(on_barrier[:, None], side[:, None] * w_star, x_bulk)
  y = jnp.where(on_barrier, -side, y_bulk)
  return x, y
