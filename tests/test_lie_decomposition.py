"""Polar decompositions, group samplers and the R²⋊G lifting / group-convolution
layers of Mironenco & Forré (ICLR 2024): reconstruction, det = 1 on SL(2),
sampler laws, and exact equivariance under 90° rotations with left-multiplied
group samples."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from scipy import stats

from experiments import lie_decomposition as ld_experiment
from experiments.configs import lie_decomposition as ld_configs
from jaxrep import groups
from jaxrep.symmetry import lie_decomposition as ld


def _random_gl2(seed, n=50):
  return jax.vmap(lambda k: groups.sample_gl2_plus(k, 0.8))(
      jax.random.split(jax.random.PRNGKey(seed), n))


@pytest.mark.reference
def test_polar_decomposition_reconstructs_and_matches_scipy():
  with jax.enable_x64(True):
    g = _random_gl2(0)
    p, r = ld.polar_decomposition(g)
    np.testing.assert_allclose(p @ r, g, atol=1e-12)
    np.testing.assert_allclose(p, jnp.swapaxes(p, -1, -2), atol=1e-12)
    assert (np.linalg.eigvalsh(np.asarray(p)) > 0).all()
    np.testing.assert_allclose(r @ jnp.swapaxes(r, -1, -2), np.broadcast_to(np.eye(2), g.shape),
                               atol=1e-12)
    np.testing.assert_allclose(jnp.linalg.det(r), 1.0, atol=1e-12)
    for i in range(5):
      u, ref_p = scipy.linalg.polar(np.asarray(g[i]), side="left")
      np.testing.assert_allclose(p[i], ref_p, atol=1e-10)
      np.testing.assert_allclose(r[i], u, atol=1e-10)
  p32, r32 = ld.polar_decomposition(_random_gl2(1))
  np.testing.assert_allclose(p32 @ r32, _random_gl2(1), atol=1e-5)


def test_sl2_polar_factor_has_unit_determinant():
  with jax.enable_x64(True):
    g = jax.vmap(lambda k: groups.sample_sl2(k, 0.8))(jax.random.split(jax.random.PRNGKey(2), 50))
    p, r = ld.polar_decomposition(g)
    np.testing.assert_allclose(jnp.linalg.det(p), 1.0, atol=1e-12)
    np.testing.assert_allclose(p @ r, g, atol=1e-12)
    coords = ld.polar_coordinates(g, "sl2")
    assert coords.shape == (50, 4)
    # log P is traceless, so its coefficients in the traceless basis rebuild it
    rebuilt = jnp.einsum("nk,kij->nij", coords[:, :2], ld.TRACELESS_SYMMETRIC_BASIS)
    np.testing.assert_allclose(ld.sym_expm(rebuilt), p, atol=1e-12)
    np.testing.assert_allclose(jnp.arctan2(coords[:, 3], coords[:, 2]), ld.rotation_angle(r),
                               atol=1e-12)


def test_polar_coordinates_recover_factors_of_sampled_elements():
  with jax.enable_x64(True):
    s = jnp.array([[0.3, -0.2], [-0.2, -0.1]])
    theta = 2.5
    g = ld.sym_expm(s) @ groups.rotation_2d(theta)
    coords = ld.polar_coordinates(g, "gl2")
    np.testing.assert_allclose(jnp.einsum("k,kij->ij", coords[:3], ld.SYMMETRIC_BASIS), s,
                               atol=1e-12)
    np.testing.assert_allclose(coords[3:], [np.cos(theta), np.sin(theta)], atol=1e-12)


@pytest.mark.parametrize("group", ["sl2", "gl2"])
def test_group_sampler_pairs_and_laws(group):
  with jax.enable_x64(True):
    g, g_inv = ld.sample_group(jax.random.PRNGKey(3), 3000, group, spd_var=0.1,
                               rotations="haar")
    np.testing.assert_allclose(g @ g_inv, np.broadcast_to(np.eye(2), g.shape), atol=1e-12)
    dets = np.asarray(jnp.linalg.det(g))
    if group == "sl2":
      np.testing.assert_allclose(dets, 1.0, atol=1e-12)
    else:
      assert (dets > 0).all() and dets.std() > 0.1
    p, r = ld.polar_decomposition(g)
    coords = np.asarray(ld.polar_coordinates(g, group))
    # g = P^{1/2} R with log P ~ N(0, 0.1 I) in the orthonormal basis: the
    # coefficients of log(P^{1/2}) are N(0, 0.1/4).
    for k in range(coords.shape[1] - 2):
      assert stats.kstest(coords[:, k] / np.sqrt(0.1 / 4), "norm").pvalue > 1e-3
    angles = np.mod(np.asarray(ld.rotation_angle(r)), 2 * np.pi)
    assert stats.kstest(angles, stats.uniform(0, 2 * np.pi).cdf).pvalue > 1e-3
  equi = ld.sample_rotations(None, 8, "equidistant")
  np.testing.assert_allclose(np.sort(np.mod(np.asarray(ld.rotation_angle(equi)), 2 * np.pi)),
                             2 * np.pi * np.arange(8) / 8, atol=1e-5)
  with pytest.raises(ValueError):
    ld.sample_rotations(None, 3, "grid")


def _rotate_images(x, quarter_turns=1):
  """Rotates (B, H, W, ...) about the centre with the toolkit warp (exact for 90°)."""
  h = groups.rotation_2d(quarter_turns * np.pi / 2)
  flat = x.reshape(*x.shape[:3], -1)
  out = jax.vmap(lambda im: groups.warp_image(h, im))(flat)
  return out.reshape(x.shape), h


@pytest.mark.parametrize("group", ["sl2", "gl2"])
def test_lifting_and_group_conv_equivariant_to_90_degree_rotations(group):
  with jax.enable_x64(True):
    key = jax.random.PRNGKey(0)
    images = jax.random.uniform(key, (2, 13, 13, 2))
    g1, g1_inv = ld.sample_group(jax.random.PRNGKey(1), 4, group, rotations="haar")
    g2, g2_inv = ld.sample_group(jax.random.PRNGKey(2), 3, group, rotations="haar")
    lift = ld.LiftingConv(3, 5, group, hidden=8)
    lift_params = jax.jit(lift.init)(key, images, g1_inv)
    lift_apply = jax.jit(lift.apply)
    lifted = lift_apply(lift_params, images, g1_inv)
    assert lifted.shape == (2, 9, 9, 3, 4)
    for turns in (1, 2, 3):
      rotated, h = _rotate_images(images, turns)
      moved = lift_apply(lift_params, rotated, jnp.linalg.inv(h @ g1))
      np.testing.assert_allclose(moved, _rotate_images(lifted, turns)[0], atol=1e-10)
    # Without left-multiplying the samples the layer is not equivariant.
    rotated, h = _rotate_images(images)
    wrong = lift_apply(lift_params, rotated, g1_inv)
    assert np.abs(wrong - _rotate_images(lifted)[0]).max() > 1e-3

    conv = ld.GroupConv(2, 5, group, hidden=8)
    conv_params = jax.jit(conv.init)(key, lifted, g1, g2_inv)
    conv_apply = jax.jit(conv.apply)
    out = conv_apply(conv_params, lifted, g1, g2_inv)
    assert out.shape == (2, 9, 9, 2, 3)
    moved = conv_apply(conv_params, _rotate_images(lifted)[0], h @ g1, jnp.linalg.inv(h @ g2))
    np.testing.assert_allclose(moved, _rotate_images(out)[0], atol=1e-10)
    wrong = conv_apply(conv_params, _rotate_images(lifted)[0], g1, g2_inv)
    assert np.abs(wrong - _rotate_images(out)[0]).max() > 1e-3


def test_group_network_is_invariant_with_left_multiplied_samples():
  with jax.enable_x64(True):
    model = ld.AffineGroupCNN(features=3, num_samples=4, hidden=8)
    x = jax.random.uniform(jax.random.PRNGKey(0), (3, 24, 24, 1))
    params = jax.jit(model.init)(jax.random.PRNGKey(1), x, jax.random.PRNGKey(2))
    (a, _), (b, _) = model.samples(jax.random.PRNGKey(3))
    rotated, h = _rotate_images(x)
    moved = ((h @ a, jnp.linalg.inv(h @ a)), (h @ b, jnp.linalg.inv(h @ b)))
    same = ((a, jnp.linalg.inv(a)), (b, jnp.linalg.inv(b)))
    apply = jax.jit(lambda p, x, s: model.apply(p, x, samples=s))
    logits = apply(params, x, same)
    np.testing.assert_allclose(apply(params, rotated, moved), logits, atol=1e-10)
    cnn = ld.PlainCNN(features=3)
    cnn_params = jax.jit(cnn.init)(jax.random.PRNGKey(1), x)
    cnn_apply = jax.jit(cnn.apply)
    assert np.abs(cnn_apply(cnn_params, rotated) - cnn_apply(cnn_params, x)).max() > 1e-4


def test_affine_perturbation_identity_and_bounds():
  perturb = jax.jit(ld.affine_perturb, static_argnames=(
      "content_half_extent", "max_rotation_deg", "max_shear_deg", "scale_range"))
  img = jnp.zeros((24, 24, 1)).at[8:16, 8:16].set(jax.random.uniform(jax.random.PRNGKey(0),
                                                                      (8, 8, 1)))
  same = perturb(jax.random.PRNGKey(1), img, 12.0, max_rotation_deg=0.0,
                 max_shear_deg=0.0, scale_range=(1.0, 1.0))
  np.testing.assert_allclose(same, img, atol=1e-6)  # no room to shift: identity
  shifted = perturb(jax.random.PRNGKey(1), img, 3.5, max_rotation_deg=0.0,
                    max_shear_deg=0.0, scale_range=(1.0, 1.0))
  assert float(jnp.abs(shifted - img).max()) > 0.1  # it moved
  assert float(jnp.abs(shifted.sum() - img.sum())) < 1e-3  # a pure shift inside the canvas keeps the mass
  a = jax.jit(jax.vmap(ld.random_affine_matrix))(jax.random.split(jax.random.PRNGKey(2), 500))
  dets = np.asarray(jnp.linalg.det(a))
  assert dets.min() > 0.8**2 - 1e-6 and dets.max() < 1.2**2 + 1e-6
  out = jax.jit(jax.vmap(lambda k: ld.affine_perturb(k, img, 3.5)))(
      jax.random.split(jax.random.PRNGKey(3), 20))
  assert np.isfinite(np.asarray(out)).all() and (np.asarray(out).reshape(20, -1).max(1) > 0.1).all()
  border = np.concatenate([np.asarray(out[:, 0]).ravel(), np.asarray(out[:, -1]).ravel(),
                           np.asarray(out[:, :, 0]).ravel(), np.asarray(out[:, :, -1]).ravel()])
  assert np.abs(border).max() < 1e-6  # the digit stays inside the canvas


def test_cnn_is_parameter_matched():
  config = ld_configs.get_config()
  models, counts = ld_experiment.make_models(config)
  assert abs(counts["cnn"] - counts["gcnn"]) / counts["gcnn"] < 0.05
  x = jnp.zeros((1, config.canvas, config.canvas, 1))
  actual = ld.count_params(jax.eval_shape(models["cnn"].init, jax.random.PRNGKey(0), x))
  assert actual == counts["cnn"]

