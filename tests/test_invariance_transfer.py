"""Invariance and transfer (Speicher et al., TMLR 2024): invariance scores
(exactly 1 for a circular-conv + global-pool model under circular shifts),
the procedural Transforms-2D generator, and the experiment's building blocks."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep import groups
from jaxrep.nn import PatchConv2D
from jaxrep.data import transforms2d as t2d
from jaxrep.symmetry import invariance_transfer as inv


class CircularConvPool(nn.Module):
  """Circular 3×3 convolutions and global average pooling: invariant to
  cyclic translations of the image."""

  @nn.compact
  def __call__(self, x):
    for width in (8, 8):
      x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="wrap")
      x = nn.relu(nn.Conv(width, (3, 3), padding="VALID")(x))
    return x.mean(axis=(1, 2))


_sample = jax.jit(t2d.sample_transforms2d, static_argnums=3)
_render = jax.jit(t2d.render_batch)
_apply = jax.jit(t2d.apply_transforms)
PROTOTYPES = t2d.random_prototypes(jax.random.PRNGKey(0), 3, 16)


def _images(seed=0, n=32, size=12):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, size, size, 3))


def test_scores_are_one_for_circular_conv_pool_under_circular_shifts():
  with jax.enable_x64(True):
    x = _images().astype(jnp.float64)
    model = CircularConvPool()
    params = model.init(jax.random.PRNGKey(1), x[:1])
    shifts = jax.random.randint(jax.random.PRNGKey(2), (x.shape[0], 2), -6, 7)
    moved = jax.vmap(lambda img, s: jnp.roll(img, (s[0], s[1]), axis=(0, 1)))(x, shifts)
    fa, fb = model.apply(params, x), model.apply(params, moved)
    np.testing.assert_allclose(inv.invariance_score(fa, fb, jax.random.PRNGKey(3)), 1.0,
                               atol=1e-12)
    np.testing.assert_allclose(inv.cosine_invariance(fa, fb), 1.0, atol=1e-12)
    # a model without pooling (flattened features) is not shift invariant
    flat = lambda im: im.reshape(im.shape[0], -1)
    assert float(inv.invariance_score(flat(x), flat(moved), jax.random.PRNGKey(3))) < 0.5


def test_normalised_score_is_near_zero_for_unrelated_pairs():
  a = jax.random.normal(jax.random.PRNGKey(4), (4000, 16))
  b = jax.random.normal(jax.random.PRNGKey(5), (4000, 16))
  assert abs(float(inv.invariance_score(a, b, jax.random.PRNGKey(6)))) < 0.03
  assert abs(float(inv.cosine_invariance(a, b))) < 0.03


def test_scores_against_numpy_reference():
  a = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (50, 5)))
  b = a + 0.3 * np.asarray(jax.random.normal(jax.random.PRNGKey(8), (50, 5)))
  key = jax.random.PRNGKey(9)
  perm = np.asarray(jax.random.permutation(key, 50))
  within = np.linalg.norm(a - b, axis=1).mean()
  between = np.linalg.norm(a - a[perm], axis=1).mean()
  np.testing.assert_allclose(inv.invariance_score(jnp.asarray(a), jnp.asarray(b), key),
                             1 - within / between, rtol=1e-5)
  cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
  np.testing.assert_allclose(inv.cosine_invariance(jnp.asarray(a), jnp.asarray(b)), cos.mean(),
                             rtol=1e-5)


def test_generator_is_a_pure_function_of_the_key():
  protos = PROTOTYPES
  assert protos.shape == (3, 16, 16, 4)
  active = t2d.transform_mask(("rotate", "hue", "noise"))
  x1, y1 = _sample(jax.random.PRNGKey(1), protos, active, 12)
  x2, y2 = _sample(jax.random.PRNGKey(1), protos, active, 12)
  x3, _ = _sample(jax.random.PRNGKey(2), protos, active, 12)
  np.testing.assert_array_equal(x1, x2)
  np.testing.assert_array_equal(y1, np.arange(12) % 3)
  assert x1.shape == (12, 16, 16, 3) and float(x1.min()) >= 0 and float(x1.max()) <= 1
  assert np.abs(np.asarray(x1) - np.asarray(x3)).max() > 0.1


def test_pairs_share_object_and_background_and_differ_only_by_the_transformation():
  labels = jnp.arange(6) % 3
  k_bg, k_1, k_2 = jax.random.split(jax.random.PRNGKey(3), 3)
  none, hue = t2d.transform_mask(()), t2d.transform_mask(("hue",))
  a = _render(k_bg, k_1, PROTOTYPES, none, labels)
  b = _render(k_bg, k_2, PROTOTYPES, none, labels)
  np.testing.assert_array_equal(a, b)        # no transformation: identical images
  a = _render(k_bg, k_1, PROTOTYPES, hue, labels)
  b = _render(k_bg, k_2, PROTOTYPES, hue, labels)
  alpha = np.asarray(PROTOTYPES[labels, ..., 3])
  diff = np.abs(np.asarray(a) - np.asarray(b)).max(-1)
  assert np.all(diff <= alpha + 1e-6)        # |Δ| = α·|Δrgb| ≤ α: backgrounds agree
  assert diff.max() > 0.05
  # rendering in chunks (with first_index) gives the same images
  shifted = _render(k_bg, k_1, PROTOTYPES, hue, jnp.roll(labels, -3), 3)
  np.testing.assert_allclose(shifted[:3], a[3:], atol=1e-6)


def test_transformations_match_their_definitions():
  proto = PROTOTYPES[1]
  key = jax.random.PRNGKey(5)
  mask = lambda *names: t2d.transform_mask(names)
  np.testing.assert_array_equal(_apply(key, proto, mask()), proto)
  # the subkey t2d uses for transformation i is split(key, 18)[i]
  subkey = lambda name: jax.random.split(key, len(t2d.TRANSFORMS))[t2d.TRANSFORMS.index(name)]
  rotated = _apply(key, proto, mask("rotate"))
  theta = jax.random.uniform(subkey("rotate"), (), minval=0.0, maxval=2 * jnp.pi)
  np.testing.assert_allclose(rotated, groups.warp_image(groups.rotation_2d(theta), proto),
                             atol=1e-6)
  inverted = np.asarray(_apply(key, proto, mask("invert")))
  assert (np.allclose(inverted[..., :3], 1 - np.asarray(proto[..., :3]), atol=1e-6)
          or np.array_equal(inverted, proto))
  np.testing.assert_array_equal(inverted[..., 3], proto[..., 3])   # photometric: alpha kept
  hue = np.asarray(_apply(key, proto, mask("hue")))
  # a rotation about the grey axis keeps the mean of the channels (before clipping)
  inside = (hue[..., :3] > 0.01).all(-1) & (hue[..., :3] < 0.99).all(-1)
  np.testing.assert_allclose(hue[..., :3].mean(-1)[inside],
                             np.asarray(proto[..., :3]).mean(-1)[inside], atol=1e-5)
  assert t2d.check_transforms(["noise", "translate"]) == ("translate", "noise")
  with pytest.raises(ValueError):
    t2d.transform_mask(("warp",))


def test_transform_sets_are_disjoint_with_one_type_per_category():
  for seed in range(5):
    target, disjoint = inv.draw_transform_sets(seed)
    assert not set(target) & set(disjoint)
    for names in t2d.CATEGORIES.values():
      assert sum(n in names for n in target) == 1 and sum(n in names for n in disjoint) == 1


def test_patch_conv_equals_flax_conv():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
  for stride in (1, 2):
    patch = PatchConv2D(5, stride)
    params = patch.init(jax.random.PRNGKey(1), x)
    kernel = params["params"]["Dense_0"]["kernel"].reshape(3, 3, 3, 5)
    bias = params["params"]["Dense_0"]["bias"]
    conv = nn.Conv(5, (3, 3), strides=stride, padding=((1, 1), (1, 1)))
    reference = conv.apply({"params": {"kernel": kernel, "bias": bias}}, x)
    np.testing.assert_allclose(patch.apply(params, x), reference, atol=1e-5)



def test_classifier_head_reads_the_encoder_features():
  model = inv.Classifier(width=3, num_classes=7)
  x = jax.random.uniform(jax.random.PRNGKey(0), (5, 8, 8, 3))
  params = model.init(jax.random.PRNGKey(1), x)
  features = model.apply(params, x, method=inv.Classifier.features)
  assert features.shape == (5, 12) and (features >= 0).all()   # 4·width, ReLU then mean
  head = params["params"]["head"]
  np.testing.assert_allclose(model.apply(params, x), features @ head["kernel"] + head["bias"],
                             rtol=1e-5, atol=1e-6)
