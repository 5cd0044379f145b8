r"""MLE pretraining on unlabeled data, then ERM on labels, vs supervised learning.

Ge, Tang, Fan & Jin, "On the Provable Advantage of Unsupervised Pretraining",
ICLR 2024 (arXiv 2303.01566). No official code.

Framework: a latent-variable model p_φ(x, z) (φ ∈ Φ) is fitted by maximum
likelihood on m unlabeled samples; the representation is the posterior mean
E_φ̂[z | x]; a downstream predictor ψ ∈ Ψ is fitted by ERM on n labels. The
excess risk is Õ(√(C_Φ/m) + √(C_Ψ/n)), vs Õ(√(C_{Φ∘Ψ}/n)) for supervised
learning over the composed class.

Factor model (probabilistic PCA; Tipping & Bishop 1999):
    z ~ N(0, I_r),  x = B z + μ + σ ε,  ε ~ N(0, I_d),  y = βᵀz + ν,  ν ~ N(0, τ²).
MLE from the sample covariance S = (1/m) Σ (x − x̄)(x − x̄)ᵀ = U Λ Uᵀ:
    μ̂ = x̄,  σ̂² = (1/(d − r)) Σ_{j>r} λ_j,  Ŵ = U_r (Λ_r − σ̂² I)^{1/2}
(up to a rotation, which no downstream quantity sees), with log-likelihood
    ℓ = −(m/2) [d log 2π + log|C| + tr(C⁻¹S)],  C = ŴŴᵀ + σ̂² I.
Posterior features: E[z | x] = M⁻¹ Ŵᵀ (x − μ̂), M = ŴᵀŴ + σ̂² I.
ERM: least squares of y on [E[z|x], 1]. Every predictor here is linear in x,
θᵀx + c, and its excess squared risk is exact:
    R(θ, c) − R* = (θ − θ*)ᵀ Σ_x (θ − θ*) + (c + θᵀμ)²,
    Σ_x = BBᵀ + σ²I,  θ* = Σ_x⁻¹ B β   (E[y] = 0, E[y | x] = θ*ᵀ(x − μ)).
Supervised baselines: ERM over Φ∘Ψ = all linear maps of x (minimum-norm least
squares), and ridge regression on x with the penalty chosen by exact
leave-one-out CV (a regularised learner outside the paper's comparison).

Gaussian mixture (K spherical components, shared variance):
    z ~ Cat(π),  x | z = k ~ N(μ_k, σ² I),  y | z = k ~ Bernoulli(q_k).
MLE by EM (best of several restarts); features are the responsibilities
r_k(x) = P̂(z = k | x); ERM is logistic regression of y on r(x) (logit
Σ_k w_k r_k). Excess logistic risk = E_x KL(Ber(p*(x)) ‖ Ber(p̂(x))) with
p*(x) = Σ_k r*_k(x) q_k. Supervised baselines: L2 logistic regression on x
(penalty by K-fold CV), and ERM over the composed class (all of π, μ, σ, w fitted
on the n labels by Adam: ``composed_erm_task``, trained with ``jaxrep.core.fit``).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrep.core import linalg, tasks, train

# ------------------------------------------------------------------ factor model


class FactorModel(NamedTuple):
  loadings: jax.Array   # B (d, r)
  mean: jax.Array       # μ (d,)
  noise_std: float      # σ
  beta: jax.Array       # β (r,)
  label_noise_std: float  # τ


class PPCA(NamedTuple):
  loadings: jax.Array   # Ŵ (d, r)
  mean: jax.Array       # μ̂ (d,)
  noise_var: jax.Array  # σ̂²


def factor_sample(key: jax.Array, model: FactorModel, num: int
                  ) -> tuple[jax.Array, jax.Array]:
  """(x (num, d), y (num,)) from the factor model."""
  d, r = model.loadings.shape
  key_z, key_e, key_y = jax.random.split(key, 3)
  z = jax.random.normal(key_z, (num, r))
  x = z @ model.loadings.T + model.mean + model.noise_std * jax.random.normal(key_e, (num, d))
  y = z @ model.beta + model.label_noise_std * jax.random.normal(key_y, (num,))
  return x, y


def ppca_fit(x: jax.Array, rank: int) -> PPCA:
  """Closed-form PPCA maximum likelihood (Tipping & Bishop 1999, eqs. 7–8)."""
  chex.assert_rank(x, 2)
  if x.shape[1] <= rank:
    raise ValueError(f"PPCA needs dimension > rank, got d={x.shape[1]}, r={rank}")
  mean = x.mean(0)
  centered = x - mean
  cov = centered.T @ centered / x.shape[0]
  eigvals, eigvecs = jnp.linalg.eigh(cov)
  eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
  noise_var = jnp.mean(eigvals[rank:])
  scale = jnp.sqrt(jnp.maximum(eigvals[:rank] - noise_var, 0.0))
  return PPCA(eigvecs[:, :rank] * scale, mean, noise_var)


def ppca_log_likelihood(params: PPCA, x: jax.Array) -> jax.Array:
  """Σ_i log N(x_i; μ, WWᵀ + σ²I)."""
  d = x.shape[1]
  cov = params.loadings @ params.loadings.T + params.noise_var * jnp.eye(d)
  centered = x - params.mean
  _, logdet = jnp.linalg.slogdet(cov)
  quad = jnp.sum(centered * jnp.linalg.solve(cov, centered.T).T)
  return -0.5 * (x.shape[0] * (d * math.log(2 * math.pi) + logdet) + quad)


def ppca_posterior_map(params: PPCA) -> jax.Array:
  """A (d, r) with E[z | x] = Aᵀ (x − μ̂): A = Ŵ M⁻¹, M = ŴᵀŴ + σ̂² I."""
  r = params.loadings.shape[1]
  m = params.loadings.T @ params.loadings + params.noise_var * jnp.eye(r)
  return jnp.linalg.solve(m, params.loadings.T).T


def least_squares(features: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
  """OLS with intercept: (w, b) minimising Σ (wᵀf_i + b − y_i)² (min-norm if rank-deficient)."""
  f_mean, y_mean = features.mean(0), y.mean()
  w = jnp.linalg.pinv(features - f_mean) @ (y - y_mean)
  return w, y_mean - w @ f_mean


def pretrained_predictor(params: PPCA, x: jax.Array, y: jax.Array
                         ) -> tuple[jax.Array, jax.Array]:
  """ERM on posterior features, returned as a linear predictor (θ, c) of x."""
  a = ppca_posterior_map(params)
  w, b = least_squares((x - params.mean) @ a, y)
  theta = a @ w
  return theta, b - theta @ params.mean


def ridge_loo_errors(x: jax.Array, y: jax.Array, penalties: jax.Array) -> jax.Array:
  """Exact leave-one-out mean squared error of ridge with an unpenalised intercept.

  The fit is a linear smoother ŷ = H_λ y with H_λ = J + K (K + λI)⁻¹, J = 11ᵀ/n,
  K = X_c X_cᵀ (X centred; K1 = 0), so the LOO residual is e_i / (1 − H_ii)
  exactly (the held-out point also leaves the intercept). Kernel form: n ≤ d
  friendly. With V Λ Vᵀ = K and V's columns complete (the null direction 1/√n
  has λ_k = 0), 1 − H_ii = Σ_k V_ik² λ/(λ_k + λ) − 1/n.
  """
  n = x.shape[0]
  xc, yc = x - x.mean(0), y - y.mean()
  eigvals, eigvecs = jnp.linalg.eigh(xc @ xc.T)
  proj = eigvecs.T @ yc

  def loo(lam):
    # 1 − s_k = λ/(λ_k + λ) in closed form: no cancellation as λ → 0 (float32 safe).
    keep = lam / (jnp.maximum(eigvals, 0.0) + lam)
    residual = eigvecs @ (keep * proj)                          # y_c − ŷ_c
    one_minus_leverage = jnp.sum(eigvecs ** 2 * keep, axis=1) - 1.0 / n
    return jnp.mean((residual / one_minus_leverage) ** 2)

  return jax.vmap(loo)(penalties)


def ridge_loo_predictor(x: jax.Array, y: jax.Array, penalties: jax.Array
                        ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Ridge θ = X_cᵀ (K + λI)⁻¹ y_c at the λ of least LOO error; (θ, c, λ)."""
  best = penalties[jnp.argmin(ridge_loo_errors(x, y, penalties))]
  x_mean, y_mean = x.mean(0), y.mean()
  xc = x - x_mean
  alpha = jnp.linalg.solve(xc @ xc.T + best * jnp.eye(x.shape[0]), y - y_mean)
  theta = xc.T @ alpha
  return theta, y_mean - theta @ x_mean, best


def min_norm_predictor(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Minimum-norm least squares on x with intercept (ERM over all linear maps)."""
  return least_squares(x, y)


def factor_optimal_predictor(model: FactorModel) -> jax.Array:
  """θ* = Σ_x⁻¹ B β with Σ_x = BBᵀ + σ²I."""
  d = model.loadings.shape[0]
  cov = model.loadings @ model.loadings.T + model.noise_std ** 2 * jnp.eye(d)
  return jnp.linalg.solve(cov, model.loadings @ model.beta)


def factor_excess_risk(model: FactorModel, theta: jax.Array, offset: jax.Array) -> jax.Array:
  """(θ − θ*)ᵀ Σ_x (θ − θ*) + (c + θᵀμ)² for the predictor θᵀx + c."""
  d = model.loadings.shape[0]
  diff = theta - factor_optimal_predictor(model)
  cov = model.loadings @ model.loadings.T + model.noise_std ** 2 * jnp.eye(d)
  return diff @ cov @ diff + (offset + theta @ model.mean) ** 2


def factor_bayes_risk(model: FactorModel) -> jax.Array:
  """R* = τ² + ‖β‖² − βᵀBᵀΣ_x⁻¹Bβ."""
  theta = factor_optimal_predictor(model)
  return (model.label_noise_std ** 2 + model.beta @ model.beta
          - theta @ model.loadings @ model.beta)


# ------------------------------------------------------------------ Gaussian mixture


class Mixture(NamedTuple):
  weights: jax.Array    # π (K,)
  means: jax.Array      # μ (K, d)
  variance: jax.Array   # σ² ()


def mixture_sample(key: jax.Array, mixture: Mixture, label_probs: jax.Array, num: int
                   ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(x (num, d), y (num,) ∈ {0, 1}, z (num,))."""
  key_z, key_x, key_y = jax.random.split(key, 3)
  z = jax.random.categorical(key_z, jnp.log(mixture.weights), shape=(num,))
  x = mixture.means[z] + jnp.sqrt(mixture.variance) * jax.random.normal(
      key_x, (num, mixture.means.shape[1]))
  y = (jax.random.uniform(key_y, (num,)) < label_probs[z]).astype(jnp.int32)
  return x, y, z


def mixture_log_joint(mixture: Mixture, x: jax.Array) -> jax.Array:
  """log π_k + log N(x_i; μ_k, σ²I), shape (n, K)."""
  d = x.shape[1]
  sq = jnp.sum((x[:, None, :] - mixture.means[None]) ** 2, axis=-1)
  return (jnp.log(mixture.weights) - 0.5 * sq / mixture.variance
          - 0.5 * d * jnp.log(2 * math.pi * mixture.variance))


def responsibilities(mixture: Mixture, x: jax.Array) -> jax.Array:
  """r_k(x) = P(z = k | x), shape (n, K)."""
  return jax.nn.softmax(mixture_log_joint(mixture, x), axis=-1)


def mixture_log_likelihood(mixture: Mixture, x: jax.Array) -> jax.Array:
  return jnp.sum(jax.nn.logsumexp(mixture_log_joint(mixture, x), axis=-1))


def em_step(mixture: Mixture, x: jax.Array) -> Mixture:
  """One EM step for a spherical, shared-variance mixture."""
  resp = responsibilities(mixture, x)
  counts = resp.sum(0) + 1e-10
  means = (resp.T @ x) / counts[:, None]
  sq = jnp.sum((x[:, None, :] - means[None]) ** 2, axis=-1)
  variance = jnp.sum(resp * sq) / (x.shape[0] * x.shape[1])
  return Mixture(counts / x.shape[0], means, variance)


def em_fit(key: jax.Array, x: jax.Array, num_components: int, num_steps: int,
           num_restarts: int) -> Mixture:
  """EM from ``num_restarts`` inits (means at random samples, π uniform,
  σ² = mean variance); returns the fit of largest likelihood."""
  n, d = x.shape

  def one(restart_key):
    idx = jax.random.choice(restart_key, n, (num_components,), replace=False)
    init = Mixture(jnp.full((num_components,), 1.0 / num_components), x[idx],
                   jnp.mean(jnp.var(x, axis=0)))
    fitted = jax.lax.fori_loop(0, num_steps, lambda _, mix: em_step(mix, x), init)
    return fitted, mixture_log_likelihood(fitted, x)

  fits, lls = jax.vmap(one)(jax.random.split(key, num_restarts))
  best = jnp.argmax(lls)
  return jax.tree_util.tree_map(lambda a: a[best], fits)


def logistic_fit(features: jax.Array, y: jax.Array, l2: float,
                 sample_weights: jax.Array | None = None, num_steps: int = 50) -> jax.Array:
  """Binary L2 logistic regression by Newton's method; w (p + 1,), last = intercept.

  Minimises Σ_i s_i logloss_i / Σ_i s_i + l2/2 ‖w_{:p}‖² (intercept unpenalised).
  """
  n, p = features.shape
  if sample_weights is None:
    sample_weights = jnp.ones(n, features.dtype)
  f = jnp.concatenate([features, jnp.ones((n, 1), features.dtype)], 1)
  penalty = jnp.ones(p + 1).at[-1].set(0.0) * l2
  total = jnp.sum(sample_weights)
  yf = y.astype(features.dtype)

  def newton(w, _):
    prob = jax.nn.sigmoid(f @ w)
    grad = f.T @ (sample_weights * (prob - yf)) / total + penalty * w
    hess = (f.T * (sample_weights * prob * (1 - prob))) @ f / total + jnp.diag(penalty + 1e-6)
    # linalg.solve: vmapped by logistic_cv_fit (penalties × folds), where a batched
    # LAPACK solve can deadlock the CPU pool (see jaxrep.core.linalg).
    return w - linalg.solve(hess, grad), None

  w, _ = jax.lax.scan(newton, jnp.zeros(p + 1, features.dtype), None, num_steps)
  return w


def logistic_predict(w: jax.Array, features: jax.Array) -> jax.Array:
  """P̂(y = 1 | features)."""
  return jax.nn.sigmoid(features @ w[:-1] + w[-1])


def bernoulli_kl(p: jax.Array, q: jax.Array) -> jax.Array:
  """KL(Ber(p) ‖ Ber(q)), elementwise, safe at the ends."""
  p = jnp.clip(p, 1e-12, 1 - 1e-12)
  q = jnp.clip(q, 1e-12, 1 - 1e-12)
  return p * jnp.log(p / q) + (1 - p) * jnp.log((1 - p) / (1 - q))


def logistic_cv_fit(x: jax.Array, y: jax.Array, penalties: jax.Array, num_folds: int
                    ) -> tuple[jax.Array, jax.Array]:
  """L2 logistic regression on x, penalty by K-fold cross-validated log-loss.

  Returns (w on raw x, with intercept, chosen penalty). Fold i holds samples
  i, i + K, i + 2K, … (the samples are i.i.d.).
  """
  n = x.shape[0]
  folds = jnp.arange(n) % num_folds

  def cv_loss(l2):
    def fold_loss(k):
      train = (folds != k).astype(x.dtype)
      w = logistic_fit(x, y, l2, train)
      prob = jnp.clip(logistic_predict(w, x), 1e-7, 1 - 1e-7)
      ll = -(y * jnp.log(prob) + (1 - y) * jnp.log(1 - prob))
      return jnp.sum((1 - train) * ll)
    return jnp.sum(jax.vmap(fold_loss)(jnp.arange(num_folds))) / n

  best = penalties[jnp.argmin(jax.vmap(cv_loss)(penalties))]
  return logistic_fit(x, y, best), best


def composed_erm_init(key: jax.Array, x: jax.Array, num_components: int) -> dict:
  """Parameters of the composed class at a restart: means at ``num_components``
  random labeled samples (without replacement), π uniform, σ² = mean variance, w = 0."""
  idx = jax.random.choice(key, x.shape[0], (num_components,), replace=False)
  return {"logits": jnp.zeros(num_components), "means": x[idx],
          "log_var": jnp.log(jnp.mean(jnp.var(x, axis=0))),
          "w": jnp.zeros(num_components + 1)}


def composed_erm_unpack(params: dict) -> tuple[Mixture, jax.Array]:
  """(mixture, w) of the composed-class parameters (softmax π, exp log σ²)."""
  mixture = Mixture(jax.nn.softmax(params["logits"]), params["means"],
                    jnp.exp(params["log_var"]))
  return mixture, params["w"]


def composed_erm_predict(params: dict, x: jax.Array) -> jax.Array:
  """P̂(y = 1 | x) = σ(Σ_k w_k r_k(x) + w_0) of the composed class."""
  mixture, w = composed_erm_unpack(params)
  return jax.nn.sigmoid(responsibilities(mixture, x) @ w[:-1] + w[-1])


def composed_erm_loss(params: dict, batch: dict, rng: jax.Array | None = None):
  """``loss_fn``: mean log-loss of ``composed_erm_predict`` on batch {"x", "y"}."""
  del rng
  mixture, w = composed_erm_unpack(params)
  logit = responsibilities(mixture, batch["x"]) @ w[:-1] + w[-1]
  loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logit, batch["y"].astype(logit.dtype)))
  return loss, {}


def composed_erm_task(num_components: int, learning_rate: float) -> tasks.Task:
  """Supervised ERM over Φ∘Ψ as a task for ``jaxrep.core.fit``: full-batch Adam on
  the n labels' log-loss from ``composed_erm_init(inputs["key"], ...)``.

  A run's inputs: ``key`` (the restart key, used as is), ``x`` (n, d), ``y`` (n,).
  Stack restarts as a run axis and keep, per seed, the restart of least final
  training loss (``composed_erm_loss``).
  """
  optimizer = optax.adam(learning_rate)
  step_fn = train.make_train_step(composed_erm_loss, optimizer, jit=False)

  def init(inputs):
    params = composed_erm_init(inputs["key"], inputs["x"], num_components)
    return train.init_train_state(params, optimizer, inputs["key"])

  def step(state, inputs):
    return step_fn(state, tasks.shard_batch({"x": inputs["x"], "y": inputs["y"]}))

  return tasks.Task(init, step)
