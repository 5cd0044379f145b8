"""Views: zero strength is the identity, flip is an involution, ranges and shapes hold,
a key determines its view, and everything jits and vmaps.

Compiling an image augmentation takes seconds on two CPU cores, so each augmentation is
compiled once (module-level jitted functions) and every property reads its outputs.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.ssl import views

KEY = jax.random.key(0)
_DATA = np.random.default_rng(0)
IMAGE = jnp.asarray(_DATA.uniform(size=(12, 10, 3)), jnp.float32)
GREY = jnp.asarray(_DATA.uniform(size=(12, 10, 1)), jnp.float32)
SEQUENCE = jnp.asarray(_DATA.normal(size=(40,)), jnp.float32)
CHANNELS = jnp.asarray(_DATA.normal(size=(40, 2)), jnp.float32)

IDENTITY_IMAGE = views.image_augment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                                     flip_probability=0.0, brightness=0.0, contrast=0.0,
                                     saturation=0.0, hue=0.0, grayscale_probability=0.0)
STRONG_IMAGE = views.image_augment(brightness=0.9, contrast=0.9, saturation=0.9, hue=0.5)
SEQUENCE_AUGMENT = views.sequence_augment(max_shift=5, time_scale=0.2, amplitude_scale=0.3,
                                          noise_std=0.1)


@functools.cache
def _pair_fn(augment):
  return jax.jit(lambda key, xs: views.two_views(key, xs, augment))


def _pairs(augment, x, key=KEY, num=6):
  """two_views of a batch of ``num`` copies of ``x``."""
  return _pair_fn(augment)(key, jnp.stack([x] * num))


def test_zero_strength_image_augment_is_the_identity():
  """On RGB; the C = 1 path differs only by skipping the colour steps, as zero does."""
  np.testing.assert_allclose(jax.jit(IDENTITY_IMAGE)(KEY, IMAGE), IMAGE, atol=1e-6)
  np.testing.assert_array_equal(views.random_flip(KEY, GREY, 0.0), GREY)
  np.testing.assert_array_equal(views.random_grayscale(KEY, IMAGE, 0.0), IMAGE)


@pytest.mark.parametrize("x", [SEQUENCE, CHANNELS], ids=["L", "LxC"])
def test_zero_strength_sequence_augment_is_the_identity(x):
  augmented, padded, stretched = jax.jit(lambda key, x: (
      views.sequence_augment()(key, x), views.random_shift(key, x, 0, "pad"),
      views.random_time_scale(key, x, 0.0)))(KEY, x)
  np.testing.assert_array_equal(augmented, x)
  np.testing.assert_array_equal(padded, x)
  np.testing.assert_allclose(stretched, x, atol=1e-6)


def test_flip_is_an_involution_and_mirrors_the_width():
  flipped = views.flip_left_right(IMAGE)
  np.testing.assert_array_equal(flipped, IMAGE[:, ::-1])
  np.testing.assert_array_equal(views.flip_left_right(flipped), IMAGE)
  np.testing.assert_array_equal(views.random_flip(KEY, IMAGE, 1.0), flipped)


def test_crop_resamples_its_box_at_pixel_centres():
  """A crop of a linear ramp is the ramp over the box: half the slope for a box half as
  wide, and the box's mean value (pixel-centre sampling, not corner sampling)."""
  ramp = jnp.broadcast_to(jnp.arange(16.0)[None, :, None], (16, 16, 1))
  crop = jax.jit(views.resized_crop)(ramp, 0.0, 4.0, 16.0, 8.0)
  row = np.asarray(crop[3, :, 0])
  np.testing.assert_allclose(np.diff(row), 0.5, rtol=1e-5)
  np.testing.assert_allclose(row.mean(), np.arange(4, 12).mean(), rtol=1e-5)
  np.testing.assert_allclose(crop[:, 5, 0], crop[0, 5, 0])  # full height: rows unchanged
  ramps = jnp.concatenate([ramp, jnp.swapaxes(ramp, 0, 1)], axis=-1)  # along W, along H
  wide = jax.jit(views.random_resized_crop, static_argnums=(2, 3))(
      KEY, ramps, (0.25, 0.25), (4.0, 4.0))  # width/height 4 at area 1/4: w = W, h = H/4
  np.testing.assert_allclose(np.diff(wide[3, :, 0]), 1.0, rtol=1e-4)
  np.testing.assert_allclose(np.diff(wide[:, 3, 1]), 0.25, rtol=1e-4)


@pytest.mark.parametrize("x", [IMAGE, GREY], ids=["rgb", "grey"])
def test_strong_image_views_keep_shape_range_and_differ(x):
  pair = _pairs(STRONG_IMAGE, x)
  assert set(pair) == {"view1", "view2"}
  for view in pair.values():
    assert view.shape == (6,) + x.shape and view.dtype == x.dtype
    assert float(view.min()) >= 0.0 and float(view.max()) <= 1.0
  _assert_all_differ(jnp.concatenate([pair["view1"], pair["view2"]]))


def test_sequence_views_keep_shape_and_differ():
  """(L, C) here; (L,) runs in the zero-strength test, pad mode in test_shift_moves_samples."""
  pair = _pairs(SEQUENCE_AUGMENT, CHANNELS)
  for view in pair.values():
    assert view.shape == (6,) + CHANNELS.shape and view.dtype == CHANNELS.dtype
    assert bool(jnp.all(jnp.isfinite(view)))
  _assert_all_differ(jnp.concatenate([pair["view1"], pair["view2"]]))


def _assert_all_differ(stacked):
  flat = np.asarray(stacked).reshape(len(stacked), -1)
  gaps = np.abs(flat[:, None] - flat[None]).max(-1) + np.eye(len(flat))
  assert gaps.min() > 1e-3, np.argwhere(gaps <= 1e-3)


@pytest.mark.parametrize("augment,x", [(STRONG_IMAGE, IMAGE), (SEQUENCE_AUGMENT, CHANNELS)],
                         ids=["image", "sequence"])
def test_same_key_same_views_other_key_other_views(augment, x):
  first, again = _pairs(augment, x), _pairs(augment, x)
  other = _pairs(augment, x, key=jax.random.key(9))
  for name in ("view1", "view2"):
    np.testing.assert_array_equal(first[name], again[name])
    assert float(jnp.abs(first[name] - other[name]).max()) > 1e-3


def test_two_views_augments_each_example_alone():
  """Example i's views depend on the key and xs[i] only: changing the other examples
  leaves them as they were."""
  copies = jnp.stack([CHANNELS] * 6)
  mixed = copies.at[1:].set(-copies[1:])
  pair = _pair_fn(SEQUENCE_AUGMENT)
  first, second = pair(KEY, copies), pair(KEY, mixed)
  for name in ("view1", "view2"):
    np.testing.assert_allclose(first[name][0], second[name][0], atol=1e-6)
    assert float(jnp.abs(first[name][1] - second[name][1]).max()) > 1e-3


def test_shift_moves_samples():
  x = np.arange(10.0, dtype=np.float32)
  both = jax.jit(lambda key, x: (views.random_shift(key, x, 3, "roll"),
                                 views.random_shift(key, x + 1, 3, "pad")))
  out, padded = map(np.asarray, both(KEY, x))
  shift = int(np.argmax(out == 0.0))
  assert 0 < shift <= 3 or 7 <= shift < 10
  np.testing.assert_array_equal(out, np.roll(x, shift))
  np.testing.assert_array_equal(padded, np.where(padded == 0, 0, np.roll(x + 1, shift)))
  assert int((padded == 0).sum()) == min(shift, 10 - shift)
  with pytest.raises(ValueError, match="mode"):
    views.random_shift(KEY, x, 3, "wrap")
