r"""KD³: knowledge distillation between different distributions (webly collected data).

Tang, Chen, Niu, Sugiyama & Gong, "Distribution Shift Matters for Knowledge
Distillation with Webly Collected Images", ICCV 2023 (arXiv 2307.11469). No
official code was found; the three components follow the paper's §3 as
summarised in our notes (``shared/papers/A-shift-causal-probing.md`` entry 1):

1. **Dynamic instance selection** by the *combined* prediction of teacher and
   student, recomputed at every step on the current batch:

       p̄(x) = ½ (p_T(x) + p_S(x)),   c(x) = max_k p̄_k(x),
       m(x) = 1[c(x) ≥ c_(k)],  c_(k) the k-th largest c in the batch, k = ⌈ρ n⌉,

   i.e. the top fraction ρ of the batch by combined confidence. (A fixed
   threshold τ on c deadlocks: an untrained student is near uniform, so
   c ≤ ½(1 + 1/K) = 0.55 for K = 10, nothing is selected and the student never
   trains — our first run's bug; the notes' top-k alternative has no such start.)

2. **Knowledge memorisation**: on the selected instances, KD
   T²·KL(softmax(z_T/T) ‖ softmax(z_S/T)), a *weighted feature alignment*
   Σ_i m_i c_i ‖f_T(x_i) − P f_S(x_i)‖² / Σ_i m_i with a learned projection P of
   the student features into the teacher's feature space, and a *classifier
   alignment* ‖W_S − W_T‖² + ‖b_S − b_T‖² between the student's classifier (on the
   projected features) and the teacher's (frozen) one.

3. **MixDistribution** contrastive block: on a student feature map h (n, L, C),
   per-instance, per-channel statistics μ_i, σ_i are mixed with those of another
   instance j = π(i) of the batch, λ_i ~ Beta(α, α):

       μ̃_i = λ_i μ_i + (1 − λ_i) μ_j,   σ̃_i = λ_i σ_i + (1 − λ_i) σ_j,
       h̃_i = σ̃_i ⊙ (h_i − μ_i)/σ_i + μ̃_i,

   so h̃_i has exactly the statistics (μ̃_i, σ̃_i) (the property test), and the
   student's embeddings of h and h̃ are aligned by InfoNCE (instance alignment).

Total: L = KD + α_f · feature + α_c · classifier + α_m · InfoNCE(e(h), e(h̃)).
The ablations of the experiment use the same code: KD on every instance
(``selection="all"``) and KD on instances the teacher alone is confident on
(``selection="teacher"``, the same top fraction), both without the alignment and MixDistribution terms.
"""
from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.core.train import LossFn
from jaxrep.ssl.infonce import infonce_loss

SELECTIONS = ("all", "teacher", "combined")


class ConvNet1D(nn.Module):
  """x (n, L) → logits. ``stem`` (first conv: the feature map MixDistribution
  perturbs), ``body`` (the rest → features f (n, feature_dim)), ``head`` (optional
  linear projection P to ``project_dim``, then the classifier W, b)."""

  channels: Sequence[int] = (32, 32, 32)
  feature_dim: int = 64
  num_classes: int = 10
  project_dim: int | None = None

  def setup(self):
    self.convs = [nn.Conv(c, (5 if i == 0 else 3,), strides=(2 if i else 1,))
                  for i, c in enumerate(self.channels)]
    self.dense = nn.Dense(self.feature_dim)
    self.projector = None if self.project_dim is None else nn.Dense(self.project_dim)
    self.classifier = nn.Dense(self.num_classes)

  def stem(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 2)
    return nn.relu(self.convs[0](x[..., None]))

  def body(self, h: jax.Array) -> jax.Array:
    for conv in self.convs[1:]:
      h = nn.relu(conv(h))
    return nn.relu(self.dense(h.reshape(h.shape[0], -1)))

  def project(self, features: jax.Array) -> jax.Array:
    return features if self.projector is None else self.projector(features)

  def head(self, features: jax.Array) -> jax.Array:
    return self.classifier(self.project(features))

  def features(self, x: jax.Array) -> jax.Array:
    return self.body(self.stem(x))

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.head(self.features(x))


# ---------------------------------------------------------------------------
# Components


def channel_statistics(h: jax.Array, eps: float = 1e-6) -> tuple[jax.Array, jax.Array]:
  """Per-instance, per-channel mean and std over the length axis: h (n, L, C) →
  μ, σ (n, 1, C), σ = √(Var + eps)."""
  chex.assert_rank(h, 3)
  mean = h.mean(axis=1, keepdims=True)
  return mean, jnp.sqrt(h.var(axis=1, keepdims=True) + eps)


def mix_distribution(h: jax.Array, lam: jax.Array, partner: jax.Array,
                     eps: float = 1e-6) -> jax.Array:
  """MixDistribution: re-style each instance with its statistics λ-mixed with its
  partner's (module docstring, component 3).

  Args:
    h: (n, L, C) feature maps; lam: (n,) mixing weights λ ∈ [0, 1];
    partner: (n,) index j of the instance whose statistics are mixed in.
  Returns:
    h̃ (n, L, C) with per-channel mean λμ_i + (1−λ)μ_j and std λσ_i + (1−λ)σ_j.
  """
  mean, std = channel_statistics(h, eps)
  lam = lam[:, None, None]
  mixed_mean = lam * mean + (1 - lam) * mean[partner]
  mixed_std = lam * std + (1 - lam) * std[partner]
  return mixed_std * (h - mean) / std + mixed_mean


def sample_mix(key: jax.Array, n: int, alpha: float) -> tuple[jax.Array, jax.Array]:
  """λ ~ Beta(α, α) per instance and a random partner permutation."""
  key_lam, key_perm = jax.random.split(key)
  return jax.random.beta(key_lam, alpha, alpha, (n,)), jax.random.permutation(key_perm, n)


def combined_confidence(teacher_logits: jax.Array, student_logits: jax.Array) -> jax.Array:
  """c(x) = max_k ½(p_T + p_S)_k (no gradient: a selection score); (n, K) → (n,)."""
  p = 0.5 * (jax.nn.softmax(teacher_logits) + jax.nn.softmax(student_logits))
  return jax.lax.stop_gradient(p.max(axis=-1))


def top_fraction_mask(confidence: jax.Array, keep_fraction: float) -> jax.Array:
  """1 for the ⌈keep_fraction · n⌉ rows with the largest confidence (ties at the
  cut are all kept), 0 otherwise; (n,) → (n,) float."""
  count = max(1, int(np.ceil(keep_fraction * confidence.shape[0])))
  cut = jax.lax.top_k(confidence, count)[0][-1]
  return (confidence >= cut).astype(jnp.float32)


def selection_mask(teacher_logits: jax.Array, student_logits: jax.Array, keep_fraction: float,
                   selection: str) -> tuple[jax.Array, jax.Array]:
  """(mask m (n,), confidence c (n,)) for "all" (m = 1, c = 1), "teacher"
  (c = max p_T) or "combined" (c = max ½(p_T + p_S), KD³); the mask keeps the
  top ``keep_fraction`` of the batch by c (``top_fraction_mask``)."""
  if selection == "all":
    ones = jnp.ones(teacher_logits.shape[:1])
    return ones, ones
  if selection == "teacher":
    confidence = jax.nn.softmax(teacher_logits).max(axis=-1)
  elif selection == "combined":
    confidence = combined_confidence(teacher_logits, student_logits)
  else:
    raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
  return top_fraction_mask(confidence, keep_fraction), confidence


def kd_divergence(teacher_logits: jax.Array, student_logits: jax.Array,
                  temperature: float) -> jax.Array:
  """T² · KL(softmax(z_T/T) ‖ softmax(z_S/T)) per row (Hinton et al. 2015); (n, K) → (n,)."""
  log_p_t = jax.nn.log_softmax(teacher_logits / temperature)
  log_p_s = jax.nn.log_softmax(student_logits / temperature)
  return temperature ** 2 * jnp.sum(jnp.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def classifier_alignment(student_params, teacher_params) -> jax.Array:
  """‖W_S − W_T‖² + ‖b_S − b_T‖² (mean over entries) between the classifiers."""
  s, t = student_params["params"]["classifier"], teacher_params["params"]["classifier"]
  return jnp.mean((s["kernel"] - t["kernel"]) ** 2) + jnp.mean((s["bias"] - t["bias"]) ** 2)


# ---------------------------------------------------------------------------
# The loss


def kd3_loss_fn(student: ConvNet1D, teacher: ConvNet1D, *, selection: str = "combined",
                keep_fraction: float = 0.8, temperature: float = 4.0,
                feature_weight: float = 1.0, classifier_weight: float = 1.0,
                mix_weight: float = 0.1, mix_alpha: float = 0.1,
                infonce_temperature: float = 0.1) -> LossFn:
  """KD³ (``selection="combined"`` with nonzero weights) or its KD ablations.

  The batch is ``{"x": (n, L), "teacher_params": the frozen teacher}``; the
  teacher is evaluated in the loss under ``stop_gradient``.

  Returns:
    ``loss_fn(student_params, batch, rng) -> (L, metrics)``; metrics hold each
    term and the selected fraction.
  """
  if selection not in SELECTIONS:
    raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")

  def loss_fn(params, batch, rng):
    x = batch["x"]
    teacher_params = jax.lax.stop_gradient(batch["teacher_params"])
    teacher_features = teacher.apply(teacher_params, x, method=ConvNet1D.features)
    teacher_logits = teacher.apply(teacher_params, teacher_features, method=ConvNet1D.head)
    h = student.apply(params, x, method=ConvNet1D.stem)
    features = student.apply(params, h, method=ConvNet1D.body)
    logits = student.apply(params, features, method=ConvNet1D.head)
    mask, confidence = selection_mask(teacher_logits, logits, keep_fraction, selection)
    kd = masked_mean(kd_divergence(teacher_logits, logits, temperature), mask)
    metrics = {"kd": kd, "selected": mask.mean()}
    loss = kd
    if feature_weight:
      projected = student.apply(params, features, method=ConvNet1D.project)
      gap = jnp.mean((teacher_features - projected) ** 2, axis=-1)
      metrics["feature"] = masked_mean(confidence * gap, mask)
      loss = loss + feature_weight * metrics["feature"]
    if classifier_weight:
      metrics["classifier"] = classifier_alignment(params, teacher_params)
      loss = loss + classifier_weight * metrics["classifier"]
    if mix_weight:
      lam, partner = sample_mix(rng, x.shape[0], mix_alpha)
      perturbed = student.apply(params, mix_distribution(h, lam, partner),
                                method=ConvNet1D.body)
      metrics["mix_infonce"] = infonce_loss(features, perturbed, infonce_temperature)
      loss = loss + mix_weight * metrics["mix_infonce"]
    return loss, metrics

  return loss_fn


# ---------------------------------------------------------------------------
# Junk for the web pool


def junk_sequences(key: jax.Array, n: int, length: int = 40) -> jax.Array:
  """Class-less 1-D signals (n, length), a pure function of ``key``: a third each
  (by row index mod 3) of random walks, sinusoids of random frequency and phase,
  and random square pulses, each standardised to zero mean and unit variance, so
  junk is not separable from MNIST-1D digits by scale alone."""
  keys = jax.random.split(key, 5)
  t = jnp.linspace(0.0, 1.0, length)
  walk = jnp.cumsum(jax.random.normal(keys[0], (n, length)), axis=1)
  freq = jax.random.uniform(keys[1], (n, 1), minval=1.0, maxval=6.0)
  phase = jax.random.uniform(keys[2], (n, 1), maxval=2 * jnp.pi)
  wave = jnp.sin(2 * jnp.pi * freq * t + phase)
  edges = jnp.sort(jax.random.uniform(keys[3], (n, 2)), axis=1)
  pulse = ((t >= edges[:, :1]) & (t <= edges[:, 1:])).astype(jnp.float32)
  kind = jnp.arange(n)[:, None] % 3
  signal = jnp.where(kind == 0, walk, jnp.where(kind == 1, wave, pulse))
  signal = signal + 0.1 * jax.random.normal(keys[4], (n, length))
  return (signal - signal.mean(1, keepdims=True)) / (signal.std(1, keepdims=True) + 1e-6)
