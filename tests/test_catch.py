"""CATCH (jaxrep.shift.catch): the hate prediction ignores the platform-dependent
latent exactly; the loss terms against closed forms / references; the generator's
invariant and flipping correlations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from jaxrep.shift import catch

VOCAB, TARGETS = catch.platform_vocab_size(), 4


def _model_and_params(seed=0):
  model = catch.CatchModel(VOCAB, num_targets=TARGETS, embed_dim=8, hidden=16, causal_dim=4)
  tokens = jax.random.randint(jax.random.PRNGKey(seed), (6, 16), 0, VOCAB)
  return model, catch.catch_init(model)(jax.random.PRNGKey(seed + 1), tokens), tokens


def test_hate_prediction_is_exactly_invariant_to_swapping_the_target_latent():
  """Catches a hate head that reads the platform-dependent latent X_t (e.g. h([X_c, X_t])),
  and an evaluation path that does not use the posterior mean of X_c."""
  model, params, tokens = _model_and_params()
  mean, _, target_logits = model.apply(params, tokens, method=catch.CatchModel.encode)
  target = jax.nn.softmax(target_logits)
  swapped = target[jnp.array([3, 4, 5, 0, 1, 2])]
  hate, recon = catch.hate_logits_from_latents(model, params, mean, target)
  hate_swapped, recon_swapped = catch.hate_logits_from_latents(model, params, mean, swapped)
  np.testing.assert_array_equal(hate, hate_swapped)
  assert np.abs(np.asarray(recon - recon_swapped)).max() > 1e-3   # X_t is used elsewhere
  np.testing.assert_array_equal(model.apply(params, tokens), hate)


def test_gaussian_kl_matches_the_univariate_closed_form_sum():
  """Catches a missing ½, σ instead of σ², or a sign slip in the KL to N(0, I)."""
  rng = np.random.default_rng(0)
  mean, logvar = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
  var = np.exp(logvar)
  expected = np.sum(np.log(1 / np.sqrt(var)) + (var + mean ** 2) / 2 - 0.5, axis=-1)
  np.testing.assert_allclose(catch.gaussian_kl(jnp.asarray(mean), jnp.asarray(logvar)),
                             expected, rtol=1e-5)


@pytest.mark.reference
def test_categorical_kl_to_uniform_matches_scipy_entropy():
  """Catches a KL to the wrong prior (e.g. without log K) or with swapped arguments."""
  logits = np.random.default_rng(1).normal(size=(4, TARGETS)) * 2
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  expected = [stats.entropy(row, np.full(TARGETS, 1 / TARGETS)) for row in p]
  np.testing.assert_allclose(catch.categorical_kl_to_uniform(jnp.asarray(logits)), expected,
                             rtol=1e-5, atol=1e-7)


def test_gumbel_softmax_argmax_follows_the_categorical_law():
  """Gumbel-max: argmax of the relaxed sample ~ Cat(π) (chi-square, 20k draws).
  Catches a missing log (softmax(π + g)) or a Gumbel with the wrong sign."""
  logits = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
  samples = catch.gumbel_softmax(jax.random.PRNGKey(2), jnp.broadcast_to(logits, (20000, 4)),
                                 0.5)
  counts = np.bincount(np.asarray(samples.argmax(-1)), minlength=4)
  assert stats.chisquare(counts, 20000 * np.array([0.1, 0.2, 0.3, 0.4])).pvalue > 1e-3
  np.testing.assert_allclose(samples.sum(-1), 1.0, rtol=1e-5)


def test_bag_reconstruction_nll_is_the_sum_of_token_log_probabilities():
  """Catches a mean instead of a sum over tokens or indexing the wrong axis."""
  rng = np.random.default_rng(3)
  logits, tokens = rng.normal(size=(3, VOCAB)), rng.integers(0, VOCAB, size=(3, 7))
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = [-sum(log_p[i, v] for v in tokens[i]) for i in range(3)]
  np.testing.assert_allclose(catch.bag_reconstruction_nll(jnp.asarray(logits),
                                                          jnp.asarray(tokens)), expected,
                             rtol=1e-5)


@pytest.mark.reference
def test_macro_f1_matches_sklearn_with_a_mask():
  """Catches micro-averaging, F1 of the positive class only, or counting masked rows."""
  rng = np.random.default_rng(4)
  pred, y, mask = rng.integers(0, 2, 50), rng.integers(0, 2, 50), rng.random(50) < 0.7
  got = catch.macro_f1(jnp.asarray(pred), jnp.asarray(y), 2, jnp.asarray(mask))
  np.testing.assert_allclose(got, f1_score(y[mask], pred[mask], average="macro"), rtol=1e-6)


def test_generator_cues_are_invariant_and_the_group_correlation_flips():
  """The data's causal story: cue accuracy equal on every platform (±0.03); group 0
  marks hate on the training platforms and non-hate on the unseen ones."""
  d = catch.platform_token_envs(jax.random.PRNGKey(5), 3000)
  cue = ((d["x"] >= 48) & (d["x"] < 52)).any(axis=1)
  for p, sign in enumerate((1, 1, -1, -1)):
    rows = d["env"] == p
    assert abs((cue[rows] == d["y"][rows]).mean() - 0.875) < 0.03
    assert sign * np.corrcoef(d["t"][rows] == 0, d["y"][rows])[0, 1] > 0.6
  again = catch.platform_token_envs(jax.random.PRNGKey(5), 3000)
  np.testing.assert_array_equal(d["x"], again["x"])


def test_catch_loss_terms_add_up_and_gradients_are_finite():
  model, params, tokens = _model_and_params(6)
  batch = {"x": tokens.reshape(2, 3, 16), "y": jnp.array([[0, 1, 1], [1, 0, 0]]),
           "t": jnp.array([[0, 1, 2], [3, 0, 1]])}
  loss_fn = catch.catch_loss_fn(model, kl_weight=0.5)
  (loss, m), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch,
                                                               jax.random.PRNGKey(0))
  np.testing.assert_allclose(loss, m["recon"] + 0.5 * m["kl"] + m["hate_ce"] + m["target_ce"],
                             rtol=1e-6)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
