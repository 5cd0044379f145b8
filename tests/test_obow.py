"""OBoW (jaxrep.ssl.obow): BoW targets against a NumPy loop reference, the queue, the
dynamic head's word equivariance, the loss's closed-form gradient and the EMA teacher."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrep.core import train
from jaxrep.ssl import byol, obow


def _bow_reference(fmap, vocab, inv_delta, mu, pool):
  """Official BoWExtractor.forward with loops in float64: drop the border, soft codes
  softmax(−(δ⁻¹/μ̄)‖f − v‖²) per location, max/avg over locations, L1-normalise."""
  fmap, vocab = np.asarray(fmap, np.float64), np.asarray(vocab, np.float64)
  n, h, w, _ = fmap.shape
  out = np.zeros((n, len(vocab)))
  for i in range(n):
    codes = []
    for a in range(1, h - 1):
      for b in range(1, w - 1):
        d = np.array([np.sum((fmap[i, a, b] - v) ** 2) for v in vocab])
        e = np.exp(-(inv_delta / mu) * (d - d.min()))
        codes.append(e / e.sum())
    pooled = np.max(codes, 0) if pool == "max" else np.mean(codes, 0)
    out[i] = pooled / pooled.sum()
  return out


def _fmap_and_vocab(key, n=3, size=6, channels=4, words=8):
  k1, k2 = jax.random.split(key)
  fmap = jax.nn.relu(jax.random.normal(k1, (n, size, size, channels)))
  vocab = jnp.maximum(jax.random.normal(k2, (words, channels)), 0.0)
  return fmap, vocab


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_bow_target_is_a_distribution_equal_to_numpy_reference(pool):
  """Catches: a sign error in the codes' exponent, the temperature not divided by μ̄,
  the border kept, softmax over locations instead of words, pooling over the wrong
  axis or a missing L1 normalisation."""
  fmap, vocab = _fmap_and_vocab(jax.random.PRNGKey(0))
  y = obow.bow_target(fmap, vocab, 10.0, 1.7, pool)
  assert np.all(np.asarray(y) >= 0)
  np.testing.assert_allclose(np.asarray(y).sum(-1), 1.0, atol=1e-6)
  np.testing.assert_allclose(y, _bow_reference(fmap, vocab, 10.0, 1.7, pool), atol=2e-5)


def test_bow_invariant_to_permuting_locations_and_one_hot_as_delta_grows():
  """Catches: location-dependent pooling; a soft assignment that does not become the
  hard nearest-word histogram (max pooling: the set of nearest words) as δ⁻¹ → ∞."""
  fmap, vocab = _fmap_and_vocab(jax.random.PRNGKey(1))
  inner = np.asarray(fmap)[:, 1:-1, 1:-1]
  perm = np.random.default_rng(0).permutation(16)
  shuffled = np.asarray(fmap).copy()
  shuffled[:, 1:-1, 1:-1] = inner.reshape(3, 16, 4)[:, perm].reshape(3, 4, 4, 4)
  np.testing.assert_allclose(obow.bow_target(shuffled, vocab, 10.0, 1.0),
                             obow.bow_target(fmap, vocab, 10.0, 1.0), atol=1e-6)
  d = ((inner[:, :, :, None, :] - np.asarray(vocab)) ** 2).sum(-1).reshape(3, 16, -1)
  present = np.zeros((3, len(vocab)))
  for i in range(3):
    present[i, np.unique(d[i].argmin(-1))] = 1.0
  np.testing.assert_allclose(obow.bow_target(fmap, vocab, 1e5, 1.0),
                             present / present.sum(-1, keepdims=True), atol=1e-5)


def test_queue_replaces_the_oldest_words():
  """Catches: writing at a fixed row, not advancing (or not wrapping) the pointer,
  or replacing the newest words instead of the oldest."""
  vocab = jnp.zeros((6, 2))
  pointer = jnp.zeros((), jnp.int32)
  batches = [jnp.full((2, 2), float(t + 1)) for t in range(5)]
  for words in batches:
    vocab, pointer = obow.update_vocabulary(vocab, pointer, words)
  # after 5 pushes of 2 into 6 slots: rows hold pushes 4, 5, 3 and the pointer is at 4
  np.testing.assert_array_equal(np.asarray(vocab)[:, 0], [4, 4, 5, 5, 3, 3])
  assert int(pointer) == 4
  with pytest.raises(ValueError):
    obow.update_vocabulary(vocab, pointer, jnp.ones((4, 2)))


def test_new_words_are_local_averages_of_the_border_free_map():
  """Catches: words sampled from the raw map (no 3×3 averaging), from the border,
  or mixing images (each image contributes one word of its own)."""
  fmap, _ = _fmap_and_vocab(jax.random.PRNGKey(2), n=4, size=7)
  words = np.asarray(obow.vocabulary_words(jax.random.PRNGKey(3), fmap))
  inner = np.asarray(fmap)[:, 1:-1, 1:-1]
  for i in range(4):
    candidates = [inner[i, a:a + 3, b:b + 3].mean((0, 1)) for a in range(3) for b in range(3)]
    assert min(np.abs(words[i] - c).max() for c in candidates) < 1e-5


def test_permuting_words_permutes_the_logits():
  """Catches: a head whose weight for word k depends on the words' order (a
  position-dependent term, weights tied to the word index) or a missing output
  normalisation (‖ω_k‖ = κ)."""
  gen = obow.WeightGenerator(hidden=8, out=5, kappa=5.0)
  vocab = jax.random.uniform(jax.random.PRNGKey(0), (10, 4))
  params = gen.init(jax.random.PRNGKey(1), vocab)
  feats = jax.random.normal(jax.random.PRNGKey(2), (3, 5))
  perm = np.random.default_rng(1).permutation(10)
  logits = obow.bow_logits(gen.apply(params, vocab), feats)
  np.testing.assert_allclose(obow.bow_logits(gen.apply(params, vocab[perm]), feats),
                             np.asarray(logits)[:, perm], atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(gen.apply(params, vocab), axis=-1), 5.0, rtol=1e-5)


def test_loss_is_kl_and_its_gradient_is_softmax_minus_target():
  """Catches: a sign error, KL in the wrong direction, a sum instead of a batch mean."""
  logits = jax.random.normal(jax.random.PRNGKey(0), (4, 6))
  target = jax.nn.softmax(2 * jax.random.normal(jax.random.PRNGKey(1), (4, 6)))
  p, q = np.asarray(target, np.float64), jax.nn.softmax(np.asarray(logits, np.float64))
  np.testing.assert_allclose(obow.bow_prediction_loss(logits, target),
                             np.mean(np.sum(p * np.log(p / q), -1)), rtol=1e-5)
  grad = jax.grad(obow.bow_prediction_loss)(logits, target)
  np.testing.assert_allclose(grad, (q - p) / 4, atol=1e-6)


def _tiny_setup(online=True):
  encoder = obow.FeatureMapCNN((4, 4, 6))
  generator = obow.WeightGenerator(hidden=12, out=6)
  x = jax.random.uniform(jax.random.PRNGKey(0), (4, 12, 12, 1))
  online_params = encoder.init(jax.random.PRNGKey(1), x)
  params = {"online": online_params,
            "target": jax.tree.map(lambda a: a + 0.1, online_params),
            "generator": generator.init(jax.random.PRNGKey(2), jnp.ones((8, 6)))}
  state = obow.init_vocabulary(jax.random.PRNGKey(3), 8, 6, online)
  batch = {"teacher": x, "views": [x[:, None], x[:, None, ::2, ::2]]}
  loss_fn = obow.obow_loss_fn(encoder.apply, generator.apply, inv_delta=10.0)
  return params, state, batch, loss_fn, encoder


def test_train_step_state_and_ema_teacher():
  """Catches: a teacher not following the EMA of the updated student, μ̄ not updated
  as 0.99 μ̄ + 0.01 mean-min-distance, the queue not advancing (or overwriting the
  wrong rows), or the frozen-vocabulary arm changing its words."""
  params, state, batch, loss_fn, encoder = _tiny_setup()
  tau = 0.9
  tx = byol.with_ema_target(optax.sgd(0.1), tau)
  step = train.make_train_step(loss_fn, tx, has_model_state=True)
  s0 = train.init_train_state(params, tx, jax.random.PRNGKey(5), state)
  s1, _ = step(s0, batch)
  new_state = s1.model_state

  teacher_map = encoder.apply(params["target"], batch["teacher"])
  dist = obow.word_distances(teacher_map, state.vocabulary)
  mu = 0.99 * 0.5 + 0.01 * float(jnp.mean(dist.min(-1)))
  np.testing.assert_allclose(new_state.min_distance_mean, mu, rtol=1e-5)
  assert int(new_state.pointer) == 4
  assert not np.allclose(new_state.vocabulary[:4], state.vocabulary[:4])
  np.testing.assert_array_equal(new_state.vocabulary[4:], state.vocabulary[4:])

  assert not np.allclose(jax.tree.leaves(s1.params["online"])[0],
                         jax.tree.leaves(params["online"])[0])
  expected = jax.tree.map(lambda t, o: tau * t + (1 - tau) * o, params["target"],
                          s1.params["online"])
  for a, b in zip(jax.tree.leaves(s1.params["target"]), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, atol=1e-6)

  frozen = s0.replace(model_state=state._replace(online=jnp.asarray(False)))
  frozen_state = step(frozen, batch)[0].model_state
  np.testing.assert_array_equal(frozen_state.vocabulary, state.vocabulary)
