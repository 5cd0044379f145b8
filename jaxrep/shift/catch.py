r"""CATCH: causality-guided disentanglement for cross-platform hate speech detection.

Sheth, Moraffah, Kumarage, Chadha & Liu, "Causality Guided Disentanglement for
Cross-Platform Hate Speech Detection", WSDM 2024 (arXiv 2308.02080). No official
code was found; the model follows the paper's Figure 3 and §4 as summarised in
the follow-up HATE-WATCH paper (arXiv 2404.11036, §3): an input representation
s = backbone(x) passes through two encoders,

* a continuous *causal* encoder:  X_c ~ q(X_c|s) = N(μ(s), diag σ²(s)),
  sampled by reparameterisation X_c = μ + σ ⊙ ε;
* a discrete *target* encoder:    X_t = softmax((log π(s) + g)/τ),  g ~ Gumbel(0, 1)
  (Gumbel-softmax with the class probabilities π over the K hate targets),

and a decoder reconstructs the input from [X_c, X_t]. X_c alone predicts the
hate label y; argmax X_t is the target label t (the platform-dependent factor).
The training objective (each term's weight is 1 unless configured):

    L = −log p(x | X_c, X_t)                        (reconstruction)
        + β [ KL(q(X_c|s) ‖ N(0, I)) + KL(Cat(π) ‖ Uniform(K)) ]
        + CE(y, h(X_c)) + CE(t, log π)

Scaled-down analogue (no real text): the LM backbone and decoder become an
embedding bag with an MLP and a linear "bag-of-tokens" decoder (a multinomial
over the vocabulary, log p(x|z) = Σ_l log softmax(dec(z))_{x_l}). At evaluation
the hate prediction reads the posterior mean X_c = μ, so it is a deterministic
function of the input and — by construction — exactly invariant to any change
of X_t (``hate_logits_from_latents`` takes X_t only to make that testable).

``platform_token_envs`` is the synthetic multi-platform token generator used by
``experiments/catch_hate_speech.py`` (a pure function of a key): hate is
determined by platform-invariant cue tokens, while the target group a post
mentions is platform-dependent and correlated with hate in a direction that
flips between the training and the unseen platforms.
"""
from __future__ import annotations

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrep.core.train import LossFn
from jaxrep.shift.baselines import flatten_envs

Metrics = dict[str, jax.Array]


# ---------------------------------------------------------------------------
# The model


class TokenEncoder(nn.Module):
  """Tokens (m, L) int → s (m, hidden): mean of token embeddings, then an MLP.
  The backbone CATCH and every baseline share."""

  vocab_size: int
  embed_dim: int = 32
  hidden: int = 64

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    bag = nn.Embed(self.vocab_size, self.embed_dim)(tokens).mean(axis=-2)
    return nn.relu(nn.Dense(self.hidden)(nn.relu(nn.Dense(self.hidden)(bag))))


class TokenClassifier(nn.Module):
  """``TokenEncoder`` → linear head; ``features`` exposes s for CORAL."""

  vocab_size: int
  num_classes: int = 2
  embed_dim: int = 32
  hidden: int = 64

  def setup(self):
    self.encoder = TokenEncoder(self.vocab_size, self.embed_dim, self.hidden)
    self.head = nn.Dense(self.num_classes)

  def features(self, tokens: jax.Array) -> jax.Array:
    return self.encoder(tokens)

  def classify(self, features: jax.Array) -> jax.Array:
    return self.head(features)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    return self.head(self.encoder(tokens))


class CatchModel(nn.Module):
  """Backbone s; causal encoder (μ, log σ²) of X_c ∈ R^causal_dim; target encoder
  log π over ``num_targets``; hate head h(X_c); decoder dec([X_c, X_t]) → vocab logits."""

  vocab_size: int
  num_targets: int
  num_classes: int = 2
  embed_dim: int = 32
  hidden: int = 64
  causal_dim: int = 16

  def setup(self):
    self.encoder = TokenEncoder(self.vocab_size, self.embed_dim, self.hidden)
    self.causal_mean = nn.Dense(self.causal_dim)
    self.causal_logvar = nn.Dense(self.causal_dim)
    self.target_logits = nn.Dense(self.num_targets)
    self.hate_head = nn.Dense(self.num_classes)
    self.decoder_hidden = nn.Dense(self.hidden)
    self.decoder_out = nn.Dense(self.vocab_size)

  def encode(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(μ, log σ², target logits log π) of each row: (m, d_c), (m, d_c), (m, K)."""
    s = self.encoder(tokens)
    return self.causal_mean(s), self.causal_logvar(s), self.target_logits(s)

  def hate(self, causal: jax.Array) -> jax.Array:
    return self.hate_head(causal)

  def decode(self, causal: jax.Array, target: jax.Array) -> jax.Array:
    return self.decoder_out(nn.relu(self.decoder_hidden(
        jnp.concatenate([causal, target], axis=-1))))

  def every_part(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Runs every submodule once (``catch_init`` uses it to create all parameters)."""
    mean, _, target_logits = self.encode(tokens)
    return self.hate(mean), self.decode(mean, jax.nn.softmax(target_logits))

  def __call__(self, tokens: jax.Array) -> jax.Array:
    """Evaluation: hate logits from the posterior mean X_c = μ (deterministic)."""
    mean, _, _ = self.encode(tokens)
    return self.hate(mean)


def catch_init(model: CatchModel):
  """``init(key, tokens) -> params`` creating every parameter (decoder included)."""
  return lambda key, tokens: model.init(key, tokens, method=CatchModel.every_part)


def hate_logits_from_latents(model: CatchModel, params: Any, causal: jax.Array,
                             target: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(hate logits, reconstruction logits) from given latents X_c (m, d_c) and
  X_t (m, K). Only the reconstruction reads X_t: the hate logits are invariant
  to any change of the platform-dependent latent (the property test swaps it)."""
  return (model.apply(params, causal, method=CatchModel.hate),
          model.apply(params, causal, target, method=CatchModel.decode))


# ---------------------------------------------------------------------------
# The loss terms


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²); (..., d) → (...)."""
  return 0.5 * jnp.sum(mean ** 2 + jnp.exp(logvar) - 1.0 - logvar, axis=-1)


def categorical_kl_to_uniform(logits: jax.Array) -> jax.Array:
  """KL(Cat(π) ‖ Uniform(K)) = Σ_k π_k log(K π_k), π = softmax(logits); (..., K) → (...)."""
  log_p = jax.nn.log_softmax(logits, axis=-1)
  return jnp.sum(jnp.exp(log_p) * (log_p + jnp.log(logits.shape[-1])), axis=-1)


def gumbel_softmax(key: jax.Array, logits: jax.Array, temperature: float) -> jax.Array:
  """A relaxed one-hot sample softmax((log π + g)/τ), g ~ Gumbel(0, 1) (Jang et al. 2017)."""
  gumbel = jax.random.gumbel(key, logits.shape, logits.dtype)
  return jax.nn.softmax((jax.nn.log_softmax(logits, axis=-1) + gumbel) / temperature, axis=-1)


def bag_reconstruction_nll(recon_logits: jax.Array, tokens: jax.Array) -> jax.Array:
  """−log p(x | z) of a bag of tokens under one multinomial per row:
  −Σ_l log softmax(recon_logits)_{x_l}; recon_logits (m, V), tokens (m, L) → (m,)."""
  chex.assert_rank((recon_logits, tokens), 2)
  log_p = jax.nn.log_softmax(recon_logits, axis=-1)
  return -jnp.take_along_axis(log_p, tokens, axis=-1).sum(axis=-1)


def catch_loss_fn(model: CatchModel, *, kl_weight: float = 1.0, recon_weight: float = 1.0,
                  hate_weight: float = 1.0, target_weight: float = 1.0,
                  temperature: float = 0.5) -> LossFn:
  """CATCH's objective (module docstring) as ``loss_fn(params, batch, rng)``.

  The batch may be environment-stacked ({"x": (E, n, L), "y": (E, n), "t": (E, n)},
  as ``jaxrep.shift.envs.environment_task`` draws it; CATCH ignores the
  environment labels and pools the rows) or flat ({"x": (m, L), "y": (m,), "t": (m,)}).

  Returns:
    ``loss_fn(params, batch, rng) -> (L, metrics)`` with each term in the metrics.
  """

  def loss_fn(params, batch, rng):
    x, y, t = batch["x"], batch["y"], batch["t"]
    if y.ndim == 2:
      x, y, t = flatten_envs(x), flatten_envs(y), flatten_envs(t)
    mean, logvar, target_logits = model.apply(params, x, method=CatchModel.encode)
    key_c, key_t = jax.random.split(rng)
    causal = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key_c, mean.shape, mean.dtype)
    target = gumbel_softmax(key_t, target_logits, temperature)
    hate_logits, recon_logits = hate_logits_from_latents(model, params, causal, target)
    recon = bag_reconstruction_nll(recon_logits, x).mean()
    kl = (gaussian_kl(mean, logvar) + categorical_kl_to_uniform(target_logits)).mean()
    hate = optax.softmax_cross_entropy_with_integer_labels(hate_logits, y).mean()
    target_ce = optax.softmax_cross_entropy_with_integer_labels(target_logits, t).mean()
    loss = (recon_weight * recon + kl_weight * kl + hate_weight * hate
            + target_weight * target_ce)
    metrics = {"recon": recon, "kl": kl, "hate_ce": hate, "target_ce": target_ce,
               "accuracy": jnp.mean(jnp.argmax(hate_logits, -1) == y),
               "target_accuracy": jnp.mean(jnp.argmax(target_logits, -1) == t)}
    return loss, metrics

  return loss_fn


# ---------------------------------------------------------------------------
# Evaluation


def macro_f1(predictions: jax.Array, labels: jax.Array, num_classes: int,
             mask: jax.Array | None = None) -> jax.Array:
  """Unweighted mean over classes of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c) (a class
  with no true and no predicted rows scores 0, as scikit-learn's default
  ``zero_division``); rows with ``mask`` False are ignored. (m,), (m,) → scalar."""
  mask = jnp.ones(labels.shape, bool) if mask is None else mask
  classes = jnp.arange(num_classes)[:, None]
  predicted, actual = (predictions[None] == classes) & mask, (labels[None] == classes) & mask
  tp = jnp.sum(predicted & actual, axis=1)
  denominator = jnp.sum(predicted, axis=1) + jnp.sum(actual, axis=1)
  return jnp.mean(jnp.where(denominator > 0, 2 * tp / jnp.maximum(denominator, 1), 0.0))


def env_macro_f1(apply_fn, params: Any, stack: dict[str, Any], num_classes: int = 2
                 ) -> jax.Array:
  """Macro-F1 (E,) of ``apply_fn(params, x) -> logits`` on each environment of an
  environment stack, over its ``size[e]`` real rows only."""
  x = jnp.asarray(stack["x"])
  logits = apply_fn(params, flatten_envs(x)).reshape(x.shape[:2] + (-1,))
  real = jnp.arange(x.shape[1])[None, :] < jnp.asarray(stack["size"])[:, None]
  return jax.vmap(lambda p, y, m: macro_f1(p, y, num_classes, m))(
      jnp.argmax(logits, -1), jnp.asarray(stack["y"]), real)


# ---------------------------------------------------------------------------
# Synthetic multi-platform posts


def platform_token_envs(key: jax.Array, num_per_platform: int, *,
                        hate_group: Sequence[int] = (0, 0, 1, 2),
                        other_group: Sequence[int] = (1, 2, 0, 0),
                        group_rate: Sequence[float] = (0.9, 0.8, 0.9, 0.9),
                        num_groups: int = 4, cue_hate: float = 0.85, cue_clean: float = 0.1,
                        length: int = 16, num_filler: int = 48, tokens_per_set: int = 4
                        ) -> dict[str, np.ndarray]:
  """Synthetic posts on P = len(hate_group) platforms, a pure function of ``key``.

  Vocabulary: filler tokens, hate-cue tokens, ``num_groups`` sets of target-group
  tokens and one set of slang tokens per platform (``tokens_per_set`` each). Per
  post on platform p: hate y ~ Bernoulli(½); the mentioned target group t is
  ``hate_group[p]`` (if y = 1) or ``other_group[p]`` (if y = 0) with probability
  ``group_rate[p]``, otherwise uniform over the groups; the post carries 2 tokens
  of group t, 2 slang tokens of platform p, 2 hate-cue tokens with probability
  ``cue_hate`` (y = 1) or ``cue_clean`` (y = 0) — the platform-invariant cause of
  the label, the same on every platform — and filler up to ``length`` tokens.
  The defaults make group 0 a hate marker on platforms 0–1 and a non-hate marker
  on platforms 2–3 (the spurious correlation flips), while the cues predict y
  with the same accuracy ≈ ½(cue_hate + 1 − cue_clean) = 0.875 everywhere.

  Returns {"x": (P·n, length) int32, "y": (P·n,) int32, "t": (P·n,) int32 target
  group, "env": (P·n,) int32 platform}; a synthetic stand-in, not real text.
  """
  num_platforms = len(hate_group)
  if not (len(other_group) == len(group_rate) == num_platforms):
    raise ValueError("hate_group, other_group and group_rate need one entry per platform")
  if length < 7:
    raise ValueError("length must leave room for cue, group and slang tokens (≥ 7)")
  n = num_per_platform
  cue0 = num_filler
  group0 = cue0 + tokens_per_set
  slang0 = group0 + num_groups * tokens_per_set
  keys = jax.random.split(key, 8)
  shape = (num_platforms, n)
  env = jnp.broadcast_to(jnp.arange(num_platforms)[:, None], shape)
  y = jax.random.bernoulli(keys[0], 0.5, shape).astype(jnp.int32)
  preferred = jnp.where(y == 1, jnp.asarray(hate_group)[:, None],
                        jnp.asarray(other_group)[:, None])
  keep = jax.random.bernoulli(keys[1], jnp.asarray(group_rate, jnp.float32)[:, None], shape)
  group = jnp.where(keep, preferred, jax.random.randint(keys[2], shape, 0, num_groups))
  has_cue = jax.random.bernoulli(keys[3], jnp.where(y == 1, cue_hate, cue_clean))
  pick = lambda k: jax.random.randint(k, shape + (2,), 0, tokens_per_set)
  cue_tokens = cue0 + pick(keys[4])
  group_tokens = group0 + group[..., None] * tokens_per_set + pick(keys[5])
  slang_tokens = slang0 + env[..., None] * tokens_per_set + pick(keys[6])
  filler = jax.random.randint(keys[7], shape + (length,), 0, num_filler)
  # cue slots hold filler when the post has no cue
  cue_slots = jnp.where(has_cue[..., None], cue_tokens, filler[..., :2])
  posts = jnp.concatenate([cue_slots, group_tokens, slang_tokens, filler[..., 6:]], axis=-1)
  flat = lambda a: np.asarray(a.reshape((-1,) + a.shape[2:]), np.int32)
  return {"x": flat(posts), "y": flat(y), "t": flat(group), "env": flat(env)}


def platform_vocab_size(num_platforms: int = 4, num_groups: int = 4, num_filler: int = 48,
                        tokens_per_set: int = 4) -> int:
  """The vocabulary size ``platform_token_envs`` uses with these settings."""
  return num_filler + tokens_per_set * (1 + num_groups + num_platforms)
