"""Samplers, actions, (sample, act) pairs and equivariance checks of
``jaxrep.groups``: Haar laws by KS tests against theory, group laws, exact
image warps, and checks (float and jittable) that fail on non-equivariant
functions."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage as sp_ndimage
from scipy import stats

from jaxrep import groups
from jaxrep.groups import equivariance as eq

P_MIN = 1e-3


def _keys(n, seed=0):
  return jax.random.split(jax.random.PRNGKey(seed), n)


# ---------------------------------------------------------------- permutations

def test_permutation_uniform_over_s3_and_inverse():
  perms = np.asarray(jax.vmap(lambda k: groups.sample_permutation(k, 3))(_keys(6000)))
  index = {p: i for i, p in enumerate(itertools.permutations(range(3)))}
  counts = np.bincount([index[tuple(p)] for p in perms], minlength=6)
  assert stats.chisquare(counts).pvalue > P_MIN
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 7, 2))
  perm = groups.sample_permutation(jax.random.PRNGKey(2), 7)
  y = groups.permute(perm, x, axis=1)
  np.testing.assert_array_equal(y[:, 3], x[:, int(perm[3])])
  np.testing.assert_array_equal(groups.permute(groups.inverse_permutation(perm), y, axis=1), x)


# ---------------------------------------------------------------- SO(2), O(2)

def test_so2_angle_uniform_and_o2_det_balance():
  rs = np.asarray(jax.vmap(groups.sample_so2)(_keys(4000)), np.float64)
  np.testing.assert_allclose(np.linalg.det(rs), 1.0, atol=1e-5)
  angles = np.mod(np.arctan2(rs[:, 1, 0], rs[:, 0, 0]), 2 * np.pi)
  assert stats.kstest(angles, stats.uniform(0, 2 * np.pi).cdf).pvalue > P_MIN
  os_ = np.asarray(jax.vmap(groups.sample_o2)(_keys(4000, seed=1)), np.float64)
  np.testing.assert_allclose(os_ @ os_.transpose(0, 2, 1), np.broadcast_to(np.eye(2), os_.shape),
                             atol=1e-5)
  dets = np.linalg.det(os_)
  np.testing.assert_allclose(np.abs(dets), 1.0, atol=1e-5)
  assert stats.binomtest(int((dets > 0).sum()), len(dets), 0.5).pvalue > P_MIN
  # Haar on O(2): the image of e1 is uniform on the circle for both components.
  angles = np.mod(np.arctan2(os_[:, 1, 0], os_[:, 0, 0]), 2 * np.pi)
  assert stats.kstest(angles, stats.uniform(0, 2 * np.pi).cdf).pvalue > P_MIN


def test_rotation_2d_group_law():
  with jax.enable_x64(True):
    a, b = 0.7, -2.1
    np.testing.assert_allclose(groups.rotation_2d(a) @ groups.rotation_2d(b),
                               groups.rotation_2d(a + b), atol=1e-14)


# ---------------------------------------------------------------- SO(3), O(3), O(d)

def test_haar_so3_rotation_angle_matches_theory():
  """Haar SO(3): the rotation angle θ = arccos((tr R − 1)/2) has CDF (θ − sin θ)/π."""
  rs = np.asarray(jax.vmap(groups.sample_so3)(_keys(5000)), np.float64)
  np.testing.assert_allclose(np.linalg.det(rs), 1.0, atol=1e-5)
  theta = np.arccos(np.clip((np.trace(rs, axis1=1, axis2=2) - 1) / 2, -1, 1))
  assert stats.kstest(theta, lambda t: (t - np.sin(t)) / np.pi).pvalue > P_MIN
  # A non-Haar sampler (uniform angle about a uniform axis) fails the same test.
  angle = np.random.default_rng(0).uniform(0, np.pi, 5000)
  assert stats.kstest(angle, lambda t: (t - np.sin(t)) / np.pi).pvalue < P_MIN
  # Left-invariance: R e_3 is uniform on the sphere, so its z-component is U[−1, 1].
  assert stats.kstest(rs[:, 2, 2], stats.uniform(-1, 2).cdf).pvalue > P_MIN


def test_haar_o3_det_balance_and_orthogonality():
  qs = np.asarray(jax.vmap(groups.sample_o3)(_keys(4000, seed=3)), np.float64)
  np.testing.assert_allclose(qs @ qs.transpose(0, 2, 1), np.broadcast_to(np.eye(3), qs.shape),
                             atol=1e-5)
  dets = np.linalg.det(qs)
  assert stats.binomtest(int((dets > 0).sum()), len(dets), 0.5).pvalue > P_MIN
  # Conditional on det = −1, −Q is Haar on SO(3): same rotation-angle law.
  flipped = -qs[dets < 0]
  theta = np.arccos(np.clip((np.trace(flipped, axis1=1, axis2=2) - 1) / 2, -1, 1))
  assert stats.kstest(theta, lambda t: (t - np.sin(t)) / np.pi).pvalue > P_MIN


def test_haar_orthogonal_entry_law():
  """For Q Haar on O(d), Q_11² ~ Beta(½, (d−1)/2); without the sign fix of QR
  the sign of Q_11 is biased."""
  d = 5
  qs = np.asarray(jax.vmap(lambda k: groups.sample_orthogonal(k, d))(_keys(4000, seed=4)))
  assert qs.shape == (4000, d, d)
  assert stats.kstest(qs[:, 0, 0] ** 2, stats.beta(0.5, (d - 1) / 2).cdf).pvalue > P_MIN
  assert stats.binomtest(int((qs[:, 0, 0] > 0).sum()), 4000, 0.5).pvalue > P_MIN
  assert stats.binomtest(int((qs[:, 1, 1] > 0).sum()), 4000, 0.5).pvalue > P_MIN


def test_sample_dtype_follows_x64():
  with jax.enable_x64(True):
    assert groups.sample_so3(jax.random.PRNGKey(0)).dtype == jnp.float64
    r = groups.sample_orthogonal(jax.random.PRNGKey(0), 4)
    np.testing.assert_allclose(r @ r.T, np.eye(4), atol=1e-14)
  assert groups.sample_so3(jax.random.PRNGKey(0)).dtype == jnp.float32


# ---------------------------------------------------------------- E(3)

def test_e3_action_group_law():
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 3))
    r1, t1 = groups.sample_e3(jax.random.PRNGKey(1), translation_scale=2.0)
    r2, t2 = groups.sample_e3(jax.random.PRNGKey(2))
    composed = groups.apply_e3((r2, t2), groups.apply_e3((r1, t1), x))
    np.testing.assert_allclose(composed, groups.apply_e3((r2 @ r1, r2 @ t1 + t2), x), atol=1e-12)
    np.testing.assert_allclose(groups.apply_e3((r1, t1), x)[1, 4], r1 @ x[1, 4] + t1, atol=1e-12)
    # Distances are invariant.
    d = jnp.linalg.norm(x[:, :, None] - x[:, None], axis=-1)
    y = groups.apply_e3((r1, t1), x)
    np.testing.assert_allclose(jnp.linalg.norm(y[:, :, None] - y[:, None], axis=-1), d, atol=1e-12)
  ts = jax.vmap(lambda k: groups.sample_e3(k, 3.0)[1])(_keys(2000))
  assert stats.kstest(np.asarray(ts[:, 0]) / 3.0, "norm").pvalue > P_MIN


# ---------------------------------------------------------------- GL⁺(2), SL(2)

def test_sl2_det_one_and_gl2_det_positive():
  with jax.enable_x64(True):
    sl = jax.vmap(lambda k: groups.sample_sl2(k, 0.5))(_keys(500))
    np.testing.assert_allclose(jnp.linalg.det(sl), 1.0, atol=1e-12)
    gl = jax.vmap(lambda k: groups.sample_gl2_plus(k, 0.5))(_keys(500, seed=1))
    dets = np.asarray(jnp.linalg.det(gl))
    assert (dets > 0).all()
    assert dets.std() > 0.1  # GL⁺ really changes area, SL does not
    assert not np.allclose(np.asarray(sl[0]), np.eye(2), atol=1e-2)


def test_affine_points_group_law():
  with jax.enable_x64(True):
    p = jax.random.normal(jax.random.PRNGKey(0), (5, 2))
    a1, a2 = groups.sample_gl2_plus(jax.random.PRNGKey(1)), groups.sample_sl2(jax.random.PRNGKey(2))
    t1, t2 = jnp.array([0.5, -1.0]), jnp.array([2.0, 0.25])
    composed = groups.apply_affine_points((a2, t2), groups.apply_affine_points((a1, t1), p))
    np.testing.assert_allclose(composed, groups.apply_affine_points((a2 @ a1, a2 @ t1 + t2), p),
                               atol=1e-12)


# ---------------------------------------------------------------- image warps

def _image(seed=0, shape=(9, 9, 2)):
  return jax.random.uniform(jax.random.PRNGKey(seed), shape)


def test_warp_identity_and_90_degree_rotations_are_exact():
  img = _image()
  np.testing.assert_allclose(groups.warp_image(jnp.eye(2), img), img, atol=1e-6)
  with jax.enable_x64(True):
    img64 = jnp.asarray(np.asarray(img), jnp.float64)
    for k in range(1, 4):
      rotated = groups.warp_image(groups.rotation_2d(k * np.pi / 2), img64)
      np.testing.assert_allclose(rotated, np.rot90(np.asarray(img64), k=k, axes=(0, 1)),
                                 atol=1e-12)
    # Integer translation shifts rows and columns, filling with zeros.
    moved = groups.affine_warp_image((jnp.eye(2), jnp.array([2.0, -1.0])), img64)
    expected = np.zeros_like(np.asarray(img64))
    expected[2:, :-1] = np.asarray(img64)[:-2, 1:]
    np.testing.assert_allclose(moved, expected, atol=1e-12)


@pytest.mark.reference
def test_warp_matches_scipy_affine_transform():
  h, w = 16, 14
  with jax.enable_x64(True):
    img = np.asarray(_image(1, (h, w, 1)), np.float64)
    a = np.asarray(groups.sample_gl2_plus(jax.random.PRNGKey(3), 0.3))
    t = np.array([0.7, -1.3])
    ours = np.asarray(groups.affine_warp_image((jnp.asarray(a), jnp.asarray(t)), jnp.asarray(img)))
  c = np.array([(h - 1) / 2, (w - 1) / 2])
  inv = np.linalg.inv(a)
  ref = sp_ndimage.affine_transform(img[..., 0], inv, offset=c - inv @ (c + t), order=1,
                                    mode="constant", cval=0.0)
  # scipy and JAX treat the band outside the pixel centres differently; compare
  # where the source point lies inside the input grid.
  grid = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1)
  source = (grid - c - t) @ inv.T + c
  inside = ((source >= 0) & (source <= np.array([h - 1, w - 1]))).all(-1)
  assert inside.sum() > 100
  np.testing.assert_allclose(ours[..., 0][inside], ref[inside], atol=1e-10)
  far = ((source <= -1) | (source >= np.array([h, w]))).any(-1)
  assert far.sum() > 0 and np.all(ours[..., 0][far] == 0.0)  # zero padding


def test_warp_moves_points_like_apply_affine_points():
  """A bright pixel at q lands at A(q − c) + t + c (integer-valued transform)."""
  h = w = 11
  c = np.array([(h - 1) / 2, (w - 1) / 2])
  img = np.zeros((h, w, 1), np.float32)
  q = np.array([2, 7])
  img[q[0], q[1], 0] = 1.0
  a, t = groups.rotation_2d(np.pi / 2), jnp.array([1.0, -2.0])
  out = np.asarray(groups.affine_warp_image((a, t), jnp.asarray(img)))
  target = np.asarray(groups.apply_affine_points((a, t), jnp.asarray(q - c, jnp.float32))) + c
  assert np.unravel_index(out[..., 0].argmax(), (h, w)) == tuple(np.round(target).astype(int))
  assert out.max() == pytest.approx(1.0, abs=1e-5)


def test_warp_composes_for_rotations():
  with jax.enable_x64(True):
    img = jnp.asarray(np.asarray(_image(2, (8, 8, 3))), jnp.float64)
    r1, r2 = groups.rotation_2d(np.pi / 2), groups.rotation_2d(np.pi)
    twice = groups.warp_image(r2, groups.warp_image(r1, img))
    np.testing.assert_allclose(twice, groups.warp_image(r2 @ r1, img), atol=1e-12)


# ---------------------------------------------------------------- sequences

def test_shift_sequence_wrap_and_zero():
  x = jnp.arange(1.0, 9.0).reshape(1, 8)
  np.testing.assert_array_equal(groups.shift_sequence(3, x), np.roll(np.asarray(x), 3, axis=-1))
  np.testing.assert_array_equal(groups.shift_sequence(-5, groups.shift_sequence(3, x)),
                                groups.shift_sequence(-2, x))
  np.testing.assert_array_equal(groups.shift_sequence(2, x, mode="zero"),
                                [[0, 0, 1, 2, 3, 4, 5, 6]])
  np.testing.assert_array_equal(groups.shift_sequence(-3, x, mode="zero"),
                                [[4, 5, 6, 7, 8, 0, 0, 0]])
  traced = jax.jit(lambda s: groups.shift_sequence(s, x, mode="zero"))(jnp.array(2))
  np.testing.assert_array_equal(traced, [[0, 0, 1, 2, 3, 4, 5, 6]])
  with pytest.raises(ValueError, match="mode"):
    groups.shift_sequence(1, x, mode="reflect")


def test_scale_sequence_matches_numpy_interp():
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (3, 21)), np.float64)
  with jax.enable_x64(True):
    for factor in (0.5, 1.0, 1.7):
      ours = np.asarray(groups.scale_sequence(factor, jnp.asarray(x)))
      pos = np.arange(21.0)
      src = 10 + (pos - 10) / factor
      ref = np.stack([np.interp(src, pos, row, left=0.0, right=0.0) for row in x])
      np.testing.assert_allclose(ours, ref, atol=1e-12)
    np.testing.assert_allclose(groups.scale_sequence(1.0, jnp.asarray(x)), x, atol=1e-12)


# ---------------------------------------------------------------- (sample, act) pairs

def test_pairs_act_as_group_actions():
  """Every pair's action composes: act(g, act(h, x)) = act(gh, x) for the
  matrix groups, and distances (O(d), E(3)) or multisets (S_n) are preserved."""
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    for group in (groups.SO3, groups.O3, groups.orthogonal_group(3)):
      g, h = group.sample(jax.random.PRNGKey(1)), group.sample(jax.random.PRNGKey(2))
      np.testing.assert_allclose(group.act(g, group.act(h, x)), group.act(g @ h, x), atol=1e-12)
    for group in (groups.SO2, groups.O2):
      g = group.sample(jax.random.PRNGKey(3))
      np.testing.assert_allclose(jnp.linalg.norm(group.act(g, x[:, :2]), axis=-1),
                                 jnp.linalg.norm(x[:, :2], axis=-1), atol=1e-12)
    pdist = lambda y: jnp.linalg.norm(y[:, None] - y[None], axis=-1)
    for group in (groups.E3, groups.similarity_group(2.0, 0.0)):
      np.testing.assert_allclose(pdist(group.act(group.sample(jax.random.PRNGKey(4)), x)),
                                 pdist(x), atol=1e-12)
    perms = groups.permutation_group(5, axis=-1)
    y = jnp.broadcast_to(x.T, (2, 3, 5))
    moved = perms.act(perms.sample(jax.random.PRNGKey(5)), y)
    assert not np.array_equal(moved, y)
    np.testing.assert_array_equal(jnp.sort(moved, axis=-1), jnp.sort(y, axis=-1))
    seq = jnp.arange(8.0)
    shifts = groups.shift_group(3)
    s = shifts.sample(jax.random.PRNGKey(6))
    assert abs(int(s)) <= 3
    np.testing.assert_array_equal(shifts.act(-s, shifts.act(s, seq)), seq)
    scales = groups.scale_group(0.3)
    a = float(scales.sample(jax.random.PRNGKey(7)))
    assert np.exp(-0.3) <= a <= np.exp(0.3)
    images = groups.image_group(groups.sample_so2)
    img = jnp.asarray(np.asarray(_image(4, (9, 9, 1))), jnp.float64)
    assert images.act(images.sample(jax.random.PRNGKey(8)), img).shape == img.shape
    p, v = x, jax.random.normal(jax.random.PRNGKey(9), (5, 3))
    r, t = groups.sample_e3(jax.random.PRNGKey(10))
    moved_p, moved_v = groups.apply_e3_with_vectors((r, t), (p, v))
    np.testing.assert_allclose(moved_p, p @ r.T + t, atol=1e-12)
    np.testing.assert_allclose(moved_v, v @ r.T, atol=1e-12)


# ---------------------------------------------------------------- equivariance checks

def _equivariant(x):  # O(3)-equivariant and permutation-equivariant
  return x * jnp.linalg.norm(x, axis=-1, keepdims=True) + x.mean(0)


def _biased(x):
  return _equivariant(x) + jnp.array([1.0, 0.0, 0.0])


def test_equivariance_error_zero_for_equivariant_and_positive_otherwise():
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 3))
    key = jax.random.PRNGKey(1)
    o3 = groups.O3
    err = eq.assert_equivariant(_equivariant, o3.sample, o3.act, o3.act, x, key)
    assert err < 1e-12
    assert eq.equivariance_error(_biased, o3.sample, o3.act, o3.act, x, key) > 1e-2
    with pytest.raises(AssertionError, match="not equivariant"):
      eq.assert_equivariant(_biased, o3.sample, o3.act, o3.act, x, key)
    # Invariance: norms are invariant, coordinates are not.
    eq.assert_invariant(lambda x: jnp.linalg.norm(x, axis=-1), o3.sample, o3.act, x, key)
    with pytest.raises(AssertionError):
      eq.assert_invariant(lambda x: x[:, 0], groups.sample_so3, groups.rotate_points, x, key)


def test_equivariance_residual_is_jittable_differentiable_and_vanishes_exactly():
  """The array-valued form: zero for an equivariant map, positive otherwise,
  equal to its Python-loop definition, and usable as a regulariser under jit/grad."""
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 3))
    key = jax.random.PRNGKey(1)
    o3 = groups.O3
    residual = jax.jit(lambda x, key: eq.equivariance_residual(
        _equivariant, o3.sample, o3.act, o3.act, x, key, num_samples=5))
    value = residual(x, key)
    assert value.shape == () and float(value) < 1e-25
    biased = eq.equivariance_residual(_biased, o3.sample, o3.act, o3.act, x, key, num_samples=5)
    expected = np.mean([np.mean((np.asarray(_biased(o3.act(g, x)))
                                 - np.asarray(o3.act(g, _biased(x)))) ** 2)
                        for g in (o3.sample(k) for k in jax.random.split(key, 5))])
    assert float(biased) == pytest.approx(expected, rel=1e-10) and expected > 1e-2
    # As a regulariser: the gradient in a bias parameter points back to zero.
    penalty = lambda b: eq.equivariance_residual(lambda y: _equivariant(y) + b, o3.sample, o3.act,
                                                 o3.act, x, key, num_samples=5)
    b = jnp.array([1.0, 0.0, 0.0])
    grad = jax.jit(jax.grad(penalty))(b)
    assert float(penalty(b - 0.1 * grad)) < float(penalty(b))
    invariant = eq.invariance_residual(lambda y: jnp.linalg.norm(y, axis=-1), o3.sample, o3.act,
                                       x, key, num_samples=3)
    assert float(invariant) < 1e-25


def test_assert_equivariant_permutations_and_pytrees():
  x = jax.random.normal(jax.random.PRNGKey(0), (7, 4))
  w = jax.random.normal(jax.random.PRNGKey(1), (4, 4))
  dense = jax.random.normal(jax.random.PRNGKey(2), (28, 28))
  perms = groups.permutation_group(7)
  deep_set = lambda x: {"nodes": jnp.tanh(x @ w + x.sum(0)), "pooled": x.max(0)}
  act_out = lambda p, y: {"nodes": groups.permute(p, y["nodes"]), "pooled": y["pooled"]}
  eq.assert_equivariant(deep_set, perms.sample, perms.act, act_out, x, jax.random.PRNGKey(3),
                        atol=1e-5)
  flat_mlp = lambda x: (x.reshape(-1) @ dense).reshape(7, 4)
  with pytest.raises(AssertionError):
    eq.assert_equivariant(flat_mlp, perms.sample, perms.act, perms.act, x, jax.random.PRNGKey(3))


def test_assert_equivariant_on_images_with_90_degree_rotations():
  """A pointwise map commutes with any warp; a fixed-kernel correlation with
  a non-symmetric kernel does not commute with a 90° rotation."""
  with jax.enable_x64(True):
    img = jnp.asarray(np.asarray(_image(3, (9, 9, 1))), jnp.float64)
    sample = lambda k: groups.rotation_2d(jax.random.randint(k, (), 1, 4) * jnp.pi / 2)
    act = groups.warp_image
    eq.assert_equivariant(jnp.square, sample, act, act, img, jax.random.PRNGKey(0))
    kernel = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    conv = lambda im: jax.scipy.signal.correlate2d(im[..., 0], kernel, mode="same")[..., None]
    with pytest.raises(AssertionError):
      eq.assert_equivariant(conv, sample, act, act, img, jax.random.PRNGKey(0))
