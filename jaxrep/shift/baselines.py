r"""ERM, IRM (v1), VREx and CORAL as pure losses over environment-stacked batches.

The shared distribution-shift baselines of DomainBed (Gulrajani & Lopez-Paz,
"In Search of Lost Domain Generalization", ICLR 2021), one equation each.
GroupDRO, whose group weights are state, lives in ``jaxrep.shift.groupdro``.

Batch layout (every loss here): ``batch = {"x": (E, n, ...), "y": (E, n) int}``,
the same number n of examples from each of the E training environments, as
``jaxrep.shift.envs.environment_task`` draws them (DomainBed's one minibatch per
environment). Optional entries: ``"step"`` (the optimizer step, for penalty
annealing) and per-run hyperparameters under DomainBed's names (``irm_lambda``,
``vrex_lambda``, ``mmd_gamma``, ``*_penalty_anneal_iters``), which override the
factory's defaults, so a sweep vmaps over them.

With R_e(θ) the mean cross-entropy on environment e and λ_t the annealed
weight (DomainBed: λ_t = 1 for t < T_anneal, λ afterwards):

    ERM:    L = (1/E) Σ_e R_e
    IRMv1:  L = (1/E) Σ_e [R_e + λ_t (∂_w R_e(w·f) |_{w=1})²]
    VREx:   L = (1/E) Σ_e R_e + λ_t Var_e(R_e)
    CORAL:  L = (1/E) Σ_e R_e + γ · mean_{i<j} [mean((μ_i−μ_j)²) + mean((C_i−C_j)²)]

The losses see the whole (global) batch: they declare no ``axis_name``, so the
per-shard layouts of ``jaxrep.core.parallel`` refuse them (``check_axis_name``)
rather than computing per-shard risks; ``jaxrep.core.fit`` (jit layout) is fine.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrep.core.config import ConfigError
from jaxrep.core.evaluate import accuracy
from jaxrep.core.train import LossFn

ApplyFn = Callable[[Any, jax.Array], jax.Array]
Metrics = dict[str, jax.Array]


# ---------------------------------------------------------------------------
# Shared pieces


def flatten_envs(x: jax.Array) -> jax.Array:
  """(E, n, ...) → (E·n, ...): one forward pass over every environment's rows."""
  return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def env_logits(apply_fn: ApplyFn, params: Any, x: jax.Array) -> jax.Array:
  """``apply_fn`` on all environments at once; (E, n, ...) → logits (E, n, C)."""
  logits = apply_fn(params, flatten_envs(x))
  return logits.reshape(x.shape[:2] + logits.shape[1:])


def env_risks(logits: jax.Array, y: jax.Array) -> jax.Array:
  """Per-environment mean cross-entropy R_e; logits (E, n, C), y (E, n) → (E,)."""
  chex.assert_rank(logits, 3)
  chex.assert_equal_shape_prefix((logits, y), 2)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(axis=1)


def annealed_weight(step: jax.Array | int, weight: jax.Array | float,
                    anneal_iters: jax.Array | int) -> jax.Array:
  """DomainBed's penalty schedule: 1 before step ``anneal_iters``, ``weight`` from it on."""
  return jnp.where(jnp.asarray(step) >= anneal_iters, weight, 1.0)


def _setting(batch: Mapping[str, Any], name: str, default: Any) -> Any:
  """A per-run hyperparameter from the batch (``inputs["hparams"]``), else the default."""
  return batch.get(name, default)


def _penalty_weight(batch: Mapping[str, Any], weight_name: str, weight: float,
                    anneal_name: str, anneal_iters: int) -> jax.Array:
  weight = _setting(batch, weight_name, weight)
  anneal_iters = _setting(batch, anneal_name, anneal_iters)
  if "step" not in batch:
    if isinstance(anneal_iters, int) and anneal_iters == 0:
      return jnp.asarray(weight, jnp.float32)
    raise ConfigError(f"{anneal_name}={anneal_iters} needs the optimizer step in "
                      "batch['step'] (environment_task puts it there); or set it to 0")
  return annealed_weight(batch["step"], weight, anneal_iters)


def env_metrics(logits: jax.Array, y: jax.Array, risks: jax.Array, **extra) -> Metrics:
  """The metrics every loss here reports: mean risk ``nll``, ``env_risks`` (E,),
  pooled ``accuracy``, and ``extra``."""
  return {"nll": risks.mean(), "env_risks": risks,
          "accuracy": accuracy(flatten_envs(logits), flatten_envs(y)), **extra}


# ---------------------------------------------------------------------------
# ERM


def erm_loss_fn(apply_fn: ApplyFn) -> LossFn:
  """Empirical risk minimisation (Vapnik 1992), DomainBed's ``ERM``.

  L = (1/E) Σ_e R_e: with equal per-environment batch sizes this is the mean
  cross-entropy over the pooled batch, as DomainBed computes it.

  Args:
    apply_fn: ``apply_fn(params, x (m, ...)) -> logits (m, C)``.
  Returns:
    ``loss_fn(params, {"x": (E, n, ...), "y": (E, n)}, rng) -> (L, metrics)``.
  """

  def loss_fn(params, batch, rng):
    del rng
    logits = env_logits(apply_fn, params, batch["x"])
    risks = env_risks(logits, batch["y"])
    return risks.mean(), env_metrics(logits, batch["y"], risks)

  return loss_fn


# ---------------------------------------------------------------------------
# IRM v1


def _risk_at_scale(scale: jax.Array, logits: jax.Array, y: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(scale * logits, y).mean()


def irm_penalty(logits: jax.Array, y: jax.Array, *, split_batch: bool = False) -> jax.Array:
  r"""The IRMv1 penalty of each environment (Arjovsky, Bottou, Gulrajani &
  Lopez-Paz, "Invariant Risk Minimization", 2019, eq. IRMv1):

      P_e = ( ∂/∂w R_e(w · f) |_{w=1} )²,

  the squared gradient of the environment's risk w.r.t. a dummy scalar
  classifier w = 1.0 multiplying the logits f. With ``split_batch`` it is
  DomainBed's unbiased estimate of the same square, the product of the
  gradients on the even and the odd rows: P_e = g_e^{even} · g_e^{odd}.

  Args:
    logits: (E, n, C); y: (E, n) integer labels (n ≥ 2 with ``split_batch``).
  Returns:
    (E,) penalties (differentiable w.r.t. the logits).
  """
  chex.assert_rank(logits, 3)
  chex.assert_equal_shape_prefix((logits, y), 2)
  grad_at_one = jax.vmap(jax.grad(_risk_at_scale), in_axes=(None, 0, 0))
  one = jnp.ones((), logits.dtype)
  if not split_batch:
    return grad_at_one(one, logits, y) ** 2
  if logits.shape[1] < 2:
    raise ConfigError("irm_penalty(split_batch=True) needs ≥ 2 examples per environment")
  return grad_at_one(one, logits[:, ::2], y[:, ::2]) * grad_at_one(one, logits[:, 1::2],
                                                                    y[:, 1::2])


def irm_loss_fn(apply_fn: ApplyFn, *, irm_lambda: float = 1e2,
                penalty_anneal_iters: int = 500, split_batch: bool = False) -> LossFn:
  """IRMv1 (Arjovsky et al. 2019) as DomainBed trains it.

  L = (1/E) Σ_e R_e + λ_t (1/E) Σ_e P_e with ``irm_penalty`` P_e and λ_t = 1
  before step ``penalty_anneal_iters``, ``irm_lambda`` afterwards (DomainBed also
  resets Adam at that step: ``environment_task(reset_optimizer_at=...)``).
  DomainBed's defaults; the batch may override them per run (``irm_lambda``,
  ``irm_penalty_anneal_iters``). DomainBed uses ``split_batch=True``.

  Args:
    apply_fn: ``apply_fn(params, x (m, ...)) -> logits (m, C)``.
  Returns:
    ``loss_fn(params, {"x": (E, n, ...), "y": (E, n), "step"}, rng) -> (L, metrics)``.
  """

  penalty = lambda logits, y, risks: irm_penalty(logits, y, split_batch=split_batch).mean()
  return _annealed_penalty_loss_fn(apply_fn, penalty, "irm", irm_lambda, penalty_anneal_iters)


# ---------------------------------------------------------------------------
# VREx


def vrex_penalty(risks: jax.Array) -> jax.Array:
  r"""Variance of the per-environment risks (Krueger et al., "Out-of-Distribution
  Generalization via Risk Extrapolation (REx)", ICML 2021, V-REx):

      Var_e(R_e) = (1/E) Σ_e (R_e − R̄)²,   R̄ = (1/E) Σ_e R_e   (biased, as DomainBed).

  risks: (E,) → scalar.
  """
  chex.assert_rank(risks, 1)
  return jnp.mean((risks - risks.mean()) ** 2)


def vrex_loss_fn(apply_fn: ApplyFn, *, vrex_lambda: float = 1e1,
                 penalty_anneal_iters: int = 500) -> LossFn:
  """V-REx (Krueger et al. 2021) as DomainBed trains it.

  L = R̄ + λ_t Var_e(R_e) (``vrex_penalty``), λ_t annealed as in ``irm_loss_fn``;
  per-run overrides ``vrex_lambda``, ``vrex_penalty_anneal_iters``.

  Returns:
    ``loss_fn(params, {"x": (E, n, ...), "y": (E, n), "step"}, rng) -> (L, metrics)``.
  """

  penalty = lambda logits, y, risks: vrex_penalty(risks)
  return _annealed_penalty_loss_fn(apply_fn, penalty, "vrex", vrex_lambda, penalty_anneal_iters)


def _annealed_penalty_loss_fn(apply_fn: ApplyFn, penalty_of: Callable, name: str,
                              default_lambda: float, default_anneal_iters: int) -> LossFn:
  """L = R̄ + λ_t · penalty_of(logits, y, risks), λ_t annealed by ``_penalty_weight``
  with per-run overrides ``{name}_lambda`` and ``{name}_penalty_anneal_iters``."""

  def loss_fn(params, batch, rng):
    del rng
    logits = env_logits(apply_fn, params, batch["x"])
    risks = env_risks(logits, batch["y"])
    penalty = penalty_of(logits, batch["y"], risks)
    weight = _penalty_weight(batch, f"{name}_lambda", default_lambda,
                             f"{name}_penalty_anneal_iters", default_anneal_iters)
    loss = risks.mean() + weight * penalty
    return loss, env_metrics(logits, batch["y"], risks, penalty=penalty, penalty_weight=weight)

  return loss_fn


# ---------------------------------------------------------------------------
# CORAL


def coral_distance(features_a: jax.Array, features_b: jax.Array) -> jax.Array:
  r"""DomainBed's mean–covariance distance between two feature samples (Deep
  CORAL: Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain
  Adaptation", ECCV-W 2016, with DomainBed's mean term and normalisation):

      d(A, B) = (1/d) ‖μ_A − μ_B‖² + (1/d²) ‖C_A − C_B‖_F²,

  μ the feature means and C the unbiased (1/(n−1)) covariances. Deep CORAL's
  own term is (1/4d²) ‖C_A − C_B‖_F² without the means.

  features_a: (n_a, d), features_b: (n_b, d), n ≥ 2 → scalar.
  """
  chex.assert_rank((features_a, features_b), 2)
  chex.assert_equal_shape_suffix((features_a, features_b), 1)

  def mean_cov(f):
    mean = f.mean(axis=0)
    centred = f - mean
    return mean, centred.T @ centred / (f.shape[0] - 1)

  mean_a, cov_a = mean_cov(features_a)
  mean_b, cov_b = mean_cov(features_b)
  return jnp.mean((mean_a - mean_b) ** 2) + jnp.mean((cov_a - cov_b) ** 2)


def coral_penalty(features: jax.Array) -> jax.Array:
  """Mean ``coral_distance`` over the E(E−1)/2 environment pairs i < j.

  features: (E, n, d) → scalar (0 when E = 1).
  """
  chex.assert_rank(features, 3)
  num_envs = features.shape[0]
  pairs = [(i, j) for i in range(num_envs) for j in range(i + 1, num_envs)]
  if not pairs:
    return jnp.zeros((), features.dtype)
  return sum(coral_distance(features[i], features[j]) for i, j in pairs) / len(pairs)


def coral_loss_fn(features_fn: ApplyFn, head_fn: ApplyFn, *, mmd_gamma: float = 1.0
                  ) -> LossFn:
  """CORAL as DomainBed trains it: L = R̄ + γ · ``coral_penalty``(features).

  Args:
    features_fn: ``features_fn(params, x (m, ...)) -> (m, d)``, the featurizer.
    head_fn: ``head_fn(params, features (m, d)) -> logits (m, C)``, the classifier.
    mmd_gamma: γ, DomainBed's default; the batch may override it (``mmd_gamma``).
  Returns:
    ``loss_fn(params, {"x": (E, n, ...), "y": (E, n)}, rng) -> (L, metrics)``.
  """

  def loss_fn(params, batch, rng):
    del rng
    x = batch["x"]
    flat_features = features_fn(params, flatten_envs(x))
    logits = head_fn(params, flat_features).reshape(x.shape[:2] + (-1,))
    features = flat_features.reshape(x.shape[:2] + (-1,))
    risks = env_risks(logits, batch["y"])
    penalty = coral_penalty(features)
    gamma = _setting(batch, "mmd_gamma", mmd_gamma)
    loss = risks.mean() + gamma * penalty
    return loss, env_metrics(logits, batch["y"], risks, penalty=penalty)

  return loss_fn
