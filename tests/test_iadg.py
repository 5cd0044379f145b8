"""IADG components (jaxrep.shift.iadg): CSA's output statistics, the vmapped dynamic
kernel against a per-sample loop, AIAW's covariance/mask, farthest-point sampling."""
import jax
import jax.numpy as jnp
import numpy as np
from scipy import signal

from jaxrep.shift import iadg


def _maps(seed=0, n=4, size=6, channels=6):
  rng = np.random.default_rng(seed)
  scale = rng.uniform(0.5, 2.0, size=(n, 1, 1, channels))
  return jnp.asarray(rng.normal(size=(n, size, size, channels)) * scale + rng.normal(
      size=(n, 1, 1, channels)), jnp.float32)


def test_csa_output_statistics_equal_the_sampled_style():
  """The paper's property: each instance's per-channel mean is μ̃ = Σ w_k μ_k and its
  (unbiased) std is σ̃ = Σ w_k σ_k of its own class's base styles (1e-5, ε = 0).
  Catches mixing another class's bank, a missing normalisation, or mixing the
  weights along the wrong axis."""
  x = _maps()
  labels = jnp.array([0, 1, 1, 0])
  rng = np.random.default_rng(1)
  base_mean = jnp.asarray(rng.normal(size=(2, 5, 6)), jnp.float32)
  base_std = jnp.asarray(rng.uniform(0.2, 2.0, size=(2, 5, 6)), jnp.float32)
  mean, std, w = iadg.assemble_styles(jax.random.PRNGKey(2), labels, base_mean, base_std, 0.5)
  np.testing.assert_allclose(np.asarray(w).sum(1), 1.0, rtol=1e-5)
  expected_mean = np.einsum("nk,nkc->nc", np.asarray(w), np.asarray(base_mean)[labels])
  np.testing.assert_allclose(mean, expected_mean, rtol=1e-5, atol=1e-6)
  out = np.asarray(iadg.csa_restyle(x, mean, std, eps=0.0), np.float64)
  np.testing.assert_allclose(out.mean(axis=(1, 2)), mean, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.reshape(4, -1, 6).std(axis=1, ddof=1), std,
                             rtol=1e-5, atol=1e-5)


def test_vmapped_dynamic_kernel_equals_a_per_sample_loop():
  """Instance i is convolved with its own kernel only. Reference: a Python loop over
  instances and channels with SciPy's 2-D correlation (zero 'same' padding).
  Catches sharing one kernel over the batch or a flipped (convolution) kernel."""
  x = _maps(3, n=3, size=7, channels=4)
  kernels = jax.random.normal(jax.random.PRNGKey(4), (3, 3, 3, 4))
  got = np.asarray(iadg.dynamic_depthwise_conv(x, kernels))
  x_np, k_np = np.asarray(x, np.float64), np.asarray(kernels, np.float64)
  for i in range(3):
    for c in range(4):
      expected = signal.correlate2d(x_np[i, :, :, c], k_np[i, :, :, c], mode="same")
      np.testing.assert_allclose(got[i, :, :, c], expected, rtol=1e-4, atol=1e-4)


def test_dkg_block_output_of_an_instance_does_not_depend_on_the_others():
  """The dynamic kernel is generated per instance: changing instance 1 leaves
  instance 0's output unchanged (a batch-statistics kernel would fail)."""
  block = iadg.DynamicKernelGenerator(features=5)
  x = _maps(5, n=2, size=5, channels=4)
  params = block.init(jax.random.PRNGKey(0), x)
  out = block.apply(params, x)
  out2 = block.apply(params, x.at[1].mul(3.0))
  np.testing.assert_array_equal(out[0], out2[0])
  assert out.shape == (2, 5, 5, 5) and np.abs(np.asarray(out[1] - out2[1])).max() > 1e-4


def test_aiaw_covariance_mask_and_loss():
  """Cov_i = F_i F_iᵀ/(HW−1) + εI (uncentred); the mask keeps the top upper-triangular
  entries by variance over original + styled copies; the loss is mean |Cov ⊙ M|/|M|."""
  f, g = _maps(6), _maps(7)
  flat = np.asarray(f, np.float64).reshape(4, -1, 6)
  expected = np.einsum("npc,npd->ncd", flat, flat) / (flat.shape[1] - 1) + 1e-5 * np.eye(6)
  np.testing.assert_allclose(iadg.instance_covariance(f), expected, rtol=1e-5)
  mask = np.asarray(iadg.sensitive_covariance_mask(f, g, 0.1))
  assert mask.sum() == 3 and np.all(np.tril(mask) == 0)
  both = np.concatenate([np.asarray(iadg.instance_covariance(f)),
                         np.asarray(iadg.instance_covariance(g))])
  variance = np.var(both * np.triu(np.ones((6, 6)), 1), axis=0)
  np.testing.assert_array_equal(np.sort(np.argsort(-variance.ravel())[:3]),
                                np.flatnonzero(mask.ravel()))
  loss = iadg.whitening_loss(f, jnp.asarray(mask))
  np.testing.assert_allclose(loss, np.mean(np.abs(expected * mask).sum((1, 2)) / 3), rtol=1e-5)


def test_farthest_point_sampling_matches_a_greedy_loop():
  points = np.random.default_rng(8).normal(size=(30, 3))
  chosen = [0]
  for _ in range(5):
    d = np.min(((points[:, None] - points[chosen][None]) ** 2).sum(-1), axis=1)
    chosen.append(int(np.argmax(d)))
  np.testing.assert_array_equal(iadg.farthest_point_sampling(jnp.asarray(points), 6), chosen)
