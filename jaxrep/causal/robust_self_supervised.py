r"""Robust self-supervised (RSS) training with out-of-domain unlabeled data.

Saberi, Najafi, Heidari, Movasaghinia, Motahari & Khalaj, "Out-Of-Domain
Unlabeled Data Improves Generalization", ICLR 2024 (arXiv 2310.00027).

Robust loss (a Wasserstein-penalised DRO loss with cost c(z, x) = ‖z − x‖²):

    φ_γ(x, y; θ) = sup_z  ℓ(z, y; θ) − γ ‖z − x‖².

RSS estimator, with m labeled samples (x_i, y_i) ~ P_0 and n unlabeled
out-of-domain samples x'_j ~ P_{1,X} pseudo-labeled by the model itself,
h_θ(x') = sign(θᵀx'):

    θ̂ = argmin_θ (1/m) Σ_i φ_γ(x_i, y_i; θ) + (λ/n) Σ_j φ_γ'(x'_j, h_θ(x'_j); θ)
          + κ ‖θ‖²                                  (κ: the weight decay of the
                                                    authors' simulation code).

Loss of the paper's linear simulation: the truncated hinge of the margin
v = y θᵀx, ℓ(v) = min(1, max(0, 1 − v)) (the authors' margin scale is a
rescaling of θ). For a linear model the inner sup is one-dimensional: the best
z moves x by δ ≥ 0 along −yθ/‖θ‖, which lowers the margin by δ‖θ‖, so

    φ_γ = max_{δ ≥ 0} ℓ(v − δ s) − γ δ²,   s = ‖θ‖.

ℓ is piecewise linear with kinks at v − δs ∈ {0, 1}; on each piece the
objective is concave, so the maximum is at δ = 0, at the kink δ = v⁺/s (where
ℓ reaches 1; value 1 − γ (v⁺/s)²), or at the stationary point δ = s/(2γ) of the
linear piece clipped to [(v − 1)⁺/s, v⁺/s]. ``robust_truncated_hinge``
evaluates the exact objective at these three candidates and takes the max.
Hence ℓ ≤ φ_γ ≤ 1, and φ_γ → ℓ as γ → ∞.

Data (the paper's isotropic two-Gaussian simulation): x | y ~ N(y μ₀, σ² I_d),
P(y = 1) = ½, ‖μ₀‖ = 1; unlabeled x' ~ ½ Σ_{u=±1} N(u μ₁, σ² I) with
μ₁ = μ₀ + α ‖μ₀‖ v, v a random unit vector. The in-domain accuracy of θ is
exactly Φ(θᵀμ₀ / (σ ‖θ‖)).
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax
from jax.scipy.stats import norm

from jaxrep.core import tasks, train
from jaxrep.nn import l2_normalize

Batch = dict[str, jax.Array]  # x (m, d), y (m,), x_unlabeled (n, d), w_unlabeled (n,)


def truncated_hinge(margin: jax.Array) -> jax.Array:
  """ℓ(v) = min(1, max(0, 1 − v)) of the margin v = y θᵀx."""
  return jnp.clip(1.0 - margin, 0.0, 1.0)


def _safe_norm(theta: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.sum(theta ** 2) + 1e-12)


def robust_truncated_hinge(margin: jax.Array, weight_norm: jax.Array,
                           gamma: float) -> jax.Array:
  """φ_γ = max_{δ≥0} ℓ(v − δ s) − γ δ² (the inner sup, in closed form); γ > 0."""
  s = jnp.maximum(weight_norm, 1e-12)
  upper = jnp.maximum(margin, 0.0) / s
  lower = jnp.maximum(margin - 1.0, 0.0) / s
  stationary = jnp.clip(s / (2.0 * gamma), lower, upper)
  deltas = jnp.stack([jnp.zeros_like(margin), upper, stationary])
  return jnp.max(truncated_hinge(margin - s * deltas) - gamma * deltas ** 2, axis=0)


def pseudo_label_margins(theta: jax.Array, x_unlabeled: jax.Array) -> jax.Array:
  """Margins h_θ(x')·θᵀx' = |θᵀx'| of the self-labeled samples, shape (n,)."""
  return jnp.abs(x_unlabeled @ theta)


def rss_objective(theta: jax.Array, batch: Batch, *, gamma: float,
                  gamma_unlabeled: float, lam: float, weight_decay: float) -> jax.Array:
  """(1/m) Σ φ_γ(x_i, y_i) + λ Σ_j w_j φ_γ'(x'_j, sign θᵀx'_j) + κ‖θ‖².

  ``batch`` = {"x" (m, d), "y" (m,) in ±1, "x_unlabeled" (n, d), "w_unlabeled"
  (n,)}; w_j = 1/n, or 0 for padding rows.
  """
  x, y = batch["x"], batch["y"]
  chex.assert_equal_shape_prefix([x, y], 1)
  s = _safe_norm(theta)
  labeled = jnp.mean(robust_truncated_hinge(y * (x @ theta), s, gamma))
  unlabeled = jnp.sum(batch["w_unlabeled"] * robust_truncated_hinge(
      pseudo_label_margins(theta, batch["x_unlabeled"]), s, gamma_unlabeled))
  return labeled + lam * unlabeled + weight_decay * s ** 2


def erm_objective(theta: jax.Array, batch: Batch, *, weight_decay: float) -> jax.Array:
  """(1/m) Σ ℓ(y_i θᵀx_i) + κ‖θ‖²: the supervised baseline (plain loss)."""
  margins = batch["y"] * (batch["x"] @ theta)
  return jnp.mean(truncated_hinge(margins)) + weight_decay * jnp.sum(theta ** 2)


def objective_loss_fn(objective) -> train.LossFn:
  """``loss_fn(params, batch, rng)`` of ``objective(θ, batch)``; params = {"theta"}."""

  def loss_fn(params: dict[str, jax.Array], batch: Batch, rng: jax.Array):
    del rng
    value = objective(params["theta"], batch)
    return value, {"objective": value}

  return loss_fn


def linear_gd_task(objective, *, learning_rate: float, momentum: float) -> tasks.Task:
  """Full-batch heavy-ball GD on ``objective(θ, inputs["batch"])`` from θ₀ =
  ``inputs["theta0"]``, a task for ``jaxrep.core.fit`` (runs: seeds).

  GD is rotation-equivariant, so it respects the isotropy of the problem.
  Args: objective(theta (d,), batch) -> scalar; the optax heavy-ball SGD step.
  Returns: ``Task``; its metrics are ``loss`` = ``objective`` per step.
  """
  optimizer = optax.sgd(learning_rate, momentum=momentum)
  step_fn = train.make_train_step(objective_loss_fn(objective), optimizer, jit=False)

  def init(inputs):
    return train.init_train_state({"theta": inputs["theta0"]}, optimizer,
                                  jax.random.PRNGKey(0))

  def step(state, inputs):
    return step_fn(state, tasks.shard_batch(inputs["batch"]))

  return tasks.Task(init, step)


def random_unit_vector(key: jax.Array, dim: int) -> jax.Array:
  return l2_normalize(jax.random.normal(key, (dim,)))


def shifted_mean(key: jax.Array, mean: jax.Array, alpha: float) -> jax.Array:
  """μ₁ = μ₀ + α ‖μ₀‖ v with v uniform on the sphere."""
  return mean + alpha * jnp.linalg.norm(mean) * random_unit_vector(key, mean.shape[0])


def two_gaussian_sample(key: jax.Array, mean: jax.Array, num: int,
                        std: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """num samples, half with y = +1, half y = −1 (as in the paper), x ~ N(yμ, σ²I)."""
  y = jnp.where(jnp.arange(num) < (num + 1) // 2, 1.0, -1.0)
  x = y[:, None] * mean + std * jax.random.normal(key, (num, mean.shape[0]))
  return x, y


def population_accuracy(theta: jax.Array, mean: jax.Array, std: float = 1.0) -> jax.Array:
  """P(y θᵀx > 0) = Φ(θᵀμ / (σ‖θ‖)) for x | y ~ N(yμ, σ²I)."""
  return norm.cdf(theta @ mean / (std * _safe_norm(theta)))


def bayes_accuracy(mean: jax.Array, std: float = 1.0) -> jax.Array:
  """Φ(‖μ‖/σ), the accuracy of θ = μ."""
  return norm.cdf(jnp.linalg.norm(mean) / std)


def sample_problem(key: jax.Array, *, dim: int, num_labeled: int, num_unlabeled: int,
                   alpha: float, std: float) -> dict[str, jax.Array]:
  """One draw of the paper's simulation: μ₀ (unit, random), μ₁ = μ₀ + α v, m labeled
  samples from N(yμ₀, σ²I) and n unlabeled ones from ½ Σ_u N(uμ₁, σ²I).

  Returns {"mean", "mean_unlabeled", "batch"} with ``batch`` as ``rss_objective``
  takes it (w_j = 1/n). The labeled sample and the means do not depend on n.
  """
  key_mean, key_shift, key_labeled, key_unlabeled = jax.random.split(key, 4)
  mean = random_unit_vector(key_mean, dim)
  mean_unlabeled = shifted_mean(key_shift, mean, alpha)
  x, y = two_gaussian_sample(key_labeled, mean, num_labeled, std)
  x_unlabeled, _ = two_gaussian_sample(key_unlabeled, mean_unlabeled, num_unlabeled, std)
  batch = {"x": x, "y": y, "x_unlabeled": x_unlabeled,
           "w_unlabeled": jnp.full((num_unlabeled,), 1.0 / num_unlabeled)}
  return {"mean": mean, "mean_unlabeled": mean_unlabeled, "batch": batch}
