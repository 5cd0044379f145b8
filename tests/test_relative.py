"""Relative representations: cosine reference, invariance to latent isometries and
rescalings (the paper's property), stitching plumbing, and a quick-mode smoke test."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_similarity

from jaxrep import groups
from jaxrep.groups import equivariance
from jaxrep.probe import relative
from jaxrep.probe.encoders import CNNEncoder1D, MLPEncoder

N, K, D = 12, 9, 16


def _latents(seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(N, D)), rng.normal(size=(K, D))


@pytest.mark.reference
def test_relative_projection_matches_sklearn_cosine():
  z, a = _latents()
  np.testing.assert_allclose(relative.relative_projection(jnp.asarray(z), jnp.asarray(a)),
                             cosine_similarity(z, a), rtol=1e-5, atol=1e-6)


def _sample_similarity(key):
  """g = (Q, s): Q Haar on O(D), s log-normal (positive rescaling)."""
  key_q, key_s = jax.random.split(key)
  return groups.sample_orthogonal(key_q, D), jnp.exp(2 * jax.random.normal(key_s))


def _act(g, pair):
  q, s = g
  return tuple(s * groups.rotate_points(q, v) for v in pair)


def test_relative_projection_invariant_to_orthogonal_map_and_rescaling_float32():
  z, a = map(jnp.asarray, _latents(1))
  z, a = z.astype(jnp.float32), a.astype(jnp.float32)
  error = equivariance.invariance_error(lambda p: relative.relative_projection(*p),
                                        _sample_similarity, _act, (z, a),
                                        jax.random.PRNGKey(0), num_samples=8)
  assert error <= 1e-5


def test_relative_projection_invariance_is_exact_in_float64():
  with jax.enable_x64(True):
    z, a = map(jnp.asarray, _latents(2))
    equivariance.assert_invariant(lambda p: relative.relative_projection(*p),
                                  _sample_similarity, _act, (z, a),
                                  jax.random.PRNGKey(1), num_samples=8)


def test_relative_projection_is_not_invariant_to_translation():
  z, a = map(jnp.asarray, _latents(3))
  shift = jnp.ones(D)
  moved = relative.relative_projection(z + shift, a + shift)
  assert float(jnp.max(jnp.abs(moved - relative.relative_projection(z, a)))) > 1e-2


def test_head_reading_relative_reps_is_unchanged_by_a_rotated_encoder():
  """The stitching mechanism: encoder' = s·Q·encoder gives the same relative logits,
  but not the same absolute logits."""
  x = jax.random.normal(jax.random.PRNGKey(4), (N, 40))
  anchors_x = jax.random.normal(jax.random.PRNGKey(5), (K, 40))
  encoder = CNNEncoder1D(latent_dim=D, channels=4)
  enc_params = encoder.init(jax.random.PRNGKey(6), x)
  q, s = _sample_similarity(jax.random.PRNGKey(7))

  def rotated(p, inputs):
    return 3.0 * s * encoder.apply(p, inputs) @ q.T

  head = relative.MLPHead(num_classes=5, hidden=8)
  rel_params = head.init(jax.random.PRNGKey(8), jnp.zeros((1, K)))
  base = relative.stitched_logits(encoder.apply, enc_params, head.apply, rel_params, x, anchors_x)
  moved = relative.stitched_logits(rotated, enc_params, head.apply, rel_params, x, anchors_x)
  np.testing.assert_allclose(moved, base, atol=1e-5)
  abs_params = head.init(jax.random.PRNGKey(9), jnp.zeros((1, D)))
  base = relative.stitched_logits(encoder.apply, enc_params, head.apply, abs_params, x, None)
  moved = relative.stitched_logits(rotated, enc_params, head.apply, abs_params, x, None)
  assert float(jnp.max(jnp.abs(moved - base))) > 1e-2


def test_stratified_anchor_indices_are_distinct_and_balanced():
  labels = jnp.asarray(np.random.default_rng(0).integers(0, 4, size=200))
  idx = np.asarray(relative.stratified_anchor_indices(jax.random.PRNGKey(0), labels, 4, 7))
  assert idx.shape == (28,) and len(set(idx.tolist())) == 28
  np.testing.assert_array_equal(np.asarray(labels)[idx], np.repeat(np.arange(4), 7))
  other = np.asarray(relative.stratified_anchor_indices(jax.random.PRNGKey(1), labels, 4, 7))
  assert set(other.tolist()) != set(idx.tolist())


def test_mean_cosine_matches_numpy():
  a, b = _latents(5)[0], _latents(6)[0]
  expected = np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))
  np.testing.assert_allclose(relative.mean_cosine(jnp.asarray(a), jnp.asarray(b)), expected,
                             rtol=1e-5)


def test_stitching_matrix_diagonal_is_each_models_own_accuracy():
  x = jax.random.normal(jax.random.PRNGKey(10), (N, 40))
  labels = jnp.arange(N) % 3
  anchors_x = x[:K]
  models = []
  for seed, encoder in enumerate([MLPEncoder(D, (8,)), CNNEncoder1D(D, 4)]):
    p_enc = encoder.init(jax.random.PRNGKey(seed), x)
    head = relative.MLPHead(3, 8)
    p_head = head.init(jax.random.PRNGKey(20 + seed), jnp.zeros((1, K)))
    models.append(((encoder.apply, p_enc), (head.apply, p_head)))
  matrix = relative.pairwise_stitching_matrix([m[0] for m in models], [m[1] for m in models],
                                              x, labels, anchors_x)
  for i, ((encode, p_enc), (head, p_head)) in enumerate(models):
    logits = head(p_head, relative.relative_representation(encode, p_enc, x, anchors_x))
    assert float(matrix[i, i]) == pytest.approx(float(jnp.mean(logits.argmax(-1) == labels)))
  (encode, p_enc), (head, p_head) = models[0][0], models[1][1]
  logits = head(p_head, relative.relative_representation(encode, p_enc, x, anchors_x))
  assert float(matrix[0, 1]) == pytest.approx(float(jnp.mean(logits.argmax(-1) == labels)))
