"""Property tests of jaxrep.ssl.random_fields (Gaussian random field augmentations)."""
import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep import groups
from jaxrep.ssl import random_fields as rf
from jaxrep.ssl import views

SHAPE = (16, 16)


def _image(key, channels):
  return jax.random.uniform(key, SHAPE + (channels,))


def test_zero_amplitude_is_exact_identity():
  """Amplitude 0 ⇒ zero fields ⇒ the warp and colour transforms return the input bit
  for bit, also with traced strengths. Catches: a half-pixel offset in the sampling
  grid, a centre term that does not cancel, scale = s instead of e^s, an unclipped
  or rescaled brightness."""
  image = _image(jax.random.PRNGKey(0), 1)
  zero = rf.gaussian_random_field(jax.random.PRNGKey(1), SHAPE, 3.0, 0.0, num=5)
  np.testing.assert_array_equal(zero, 0.0)
  warped = jax.jit(rf.local_affine)(image, zero[0], zero[1], zero[2], zero[3:])
  np.testing.assert_array_equal(warped, image)
  np.testing.assert_array_equal(jax.jit(rf.local_colour)(image, zero[0]), image)
  traced = jax.jit(lambda k, x, a: rf.random_field_augment(
      length_scale=2.0, rotation=a, log_scale=a, shear=a, translation=a, brightness=a)(k, x))
  np.testing.assert_array_equal(traced(jax.random.PRNGKey(2), image, 0.0), image)


@pytest.mark.reference
def test_constant_affine_field_equals_global_affine_warp():
  """Constant fields (θ, s, k, u) ⇒ the global warp: ``dm_pix.affine_transform`` with
  matrix M = R(θ)e^s[[1, k], [0, 1]] and offset c − Mc + u wherever the source lies
  inside the image (dm-pix zeroes a sample with any corner outside; map_coordinates
  blends in the zeros), and ``groups.affine_warp_image`` with A = M⁻¹, t = −M⁻¹u
  everywhere (1e-5). Catches: the wrong composition order (shear before rotation),
  a transposed rotation, the wrong centre, a sign error or a row/column swap in
  the translation."""
  image = _image(jax.random.PRNGKey(3), 3)
  theta, s, k, u = 0.3, 0.1, -0.2, jnp.array([1.3, -0.7])
  ones = jnp.ones(SHAPE)
  ours = jax.jit(rf.local_affine)(image, theta * ones, s * ones, k * ones,
                                  u[:, None, None] * ones)
  m = rf.local_affine_matrices(jnp.array(theta), jnp.array(s), jnp.array(k))
  expected_m = (np.exp(s) * np.array([[np.cos(theta), -np.sin(theta)],
                                      [np.sin(theta), np.cos(theta)]]) @ [[1, k], [0, 1]])
  np.testing.assert_allclose(m, expected_m, atol=1e-6)
  centre = jnp.array([(SHAPE[0] - 1) / 2, (SHAPE[1] - 1) / 2])
  matrix = jnp.eye(3).at[:2, :2].set(m)
  offset = jnp.concatenate([centre - m @ centre + u, jnp.zeros(1)])
  reference = pix.affine_transform(image, matrix, offset=offset, order=1, mode="constant")
  grid = np.stack(np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij"), -1)
  source = (grid - centre) @ np.asarray(m).T + centre + u
  inside = np.all((source >= 0) & (source <= np.array(SHAPE) - 1), -1)
  assert inside.mean() > 0.5
  np.testing.assert_allclose(np.asarray(ours)[inside], np.asarray(reference)[inside], atol=1e-5)
  m_inv = jnp.linalg.inv(m)
  np.testing.assert_allclose(ours, groups.affine_warp_image((m_inv, -m_inv @ u), image),
                             atol=1e-5)


@pytest.mark.reference
def test_constant_colour_field_equals_global_colour_transform():
  """Constant β, σ, η ⇒ ``dm_pix`` adjust_brightness → adjust_saturation(1 + σ) →
  adjust_hue(η), clipped (1e-5). Catches: saturation × σ instead of × (1 + σ), hue
  not wrapped mod 1, brightness applied after the HSV step."""
  image = _image(jax.random.PRNGKey(4), 3)
  b, s, h = 0.1, -0.3, 0.2
  ones = jnp.ones(SHAPE)
  ours = jax.jit(rf.local_colour)(image, b * ones, s * ones, h * ones)
  reference = jnp.clip(pix.adjust_hue(pix.adjust_saturation(
      pix.adjust_brightness(image, b), 1 + s), h), 0.0, 1.0)
  np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_field_covariance_matches_kernel():
  """Sampled fields: variance a² and correlation exp(−r²/(4ℓ²)) at lags r along rows,
  columns and the diagonal, within 0.05·a² (statistical; ≈ 4 standard errors with
  4,000 fields of 24×24). Catches: a kernel of the wrong width (exp(−r²/ℓ²) gives
  correlation exp(−r²/(2ℓ²))), a missing normalisation, amplitude as variance."""
  length, amp = 2.0, 1.7
  fields = rf.gaussian_random_field(jax.random.PRNGKey(5), (24, 24), length, amp, num=4000)
  fields = np.asarray(fields, np.float64)
  fields -= fields.mean(0)
  for lag in ((0, 0), (0, 1), (1, 0), (0, 2), (3, 0), (2, 2), (0, 4)):
    a = fields[:, :24 - lag[0], :24 - lag[1]]
    b = fields[:, lag[0]:, lag[1]:]
    empirical = np.mean(a * b)
    expected = amp**2 * np.exp(-(lag[0]**2 + lag[1]**2) / (4 * length**2))
    assert abs(empirical - expected) < 0.05 * amp**2, (lag, empirical, expected)


def test_augment_composes_with_views_and_probability_zero_is_identity():
  """``compose(image_augment(identity settings), random_field_augment(p = 0))`` is the
  identity; ``augmented_loss_fn`` feeds two views built by ``two_views`` with the step
  key. Catches: the probability gate inverted, keys reused across composed steps."""
  image = _image(jax.random.PRNGKey(6), 1)
  identity_views = views.image_augment(crop_scale=(1, 1), crop_ratio=(1, 1), flip_probability=0,
                                       brightness=0, contrast=0, jitter_probability=0)
  strong_off = rf.random_field_augment(length_scale=2.0, rotation=1.0, translation=3.0,
                                       brightness=0.5, probability=0.0)
  out = jax.jit(rf.compose(identity_views, strong_off))(jax.random.PRNGKey(7), image)
  np.testing.assert_allclose(out, image, atol=1e-6)
  strong_on = rf.random_field_augment(length_scale=2.0, translation=3.0, probability=1.0)
  assert float(jnp.abs(jax.jit(strong_on)(jax.random.PRNGKey(7), image) - image).max()) > 0.1

  def views_as_metrics(params, batch, rng, axis_name=None):
    return 0.0, batch

  xs = jax.random.uniform(jax.random.PRNGKey(8), (4,) + SHAPE + (1,))
  rng = jax.random.PRNGKey(9)
  _, seen = jax.jit(rf.augmented_loss_fn(views_as_metrics, strong_on))(None, {"x": xs}, rng)
  expected = jax.jit(lambda k, x: views.two_views(k, x, strong_on))(jax.random.split(rng)[0], xs)
  np.testing.assert_allclose(seen["view1"], expected["view1"], atol=1e-6)
  assert float(jnp.abs(seen["view1"] - seen["view2"]).max()) > 0.1
