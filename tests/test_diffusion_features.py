"""U-Net feature extraction for diffusion classification (Mukhopadhyay et al. 2023):
noising with a shared ε, block read-out, adaptive pooling, the probe grid."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.diffusion import features, schedules
from jaxrep.diffusion.unet import UNet


@pytest.fixture(scope="module")
def unet():
  model = UNet(features=(8, 16))
  x = jnp.zeros((2, 8, 8, 1))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), x, jnp.zeros(2))
  # perturb the zero-initialised output convs so every block depends on its input
  rng = np.random.default_rng(1)
  params = jax.tree.map(lambda p: p + 0.1 * rng.standard_normal(p.shape, np.float32), params)
  return model, params


def test_features_at_pure_noise_forget_the_image(unet):
  """With α(t) ≈ 0 and a shared ε, two different images give features equal to 1e-3
  (relative); at small t they differ. Catches: noising that swaps α and σ or draws
  a fresh ε per call."""
  model, params = unet
  process = schedules.VPCosine()
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(2), 3)
  xa, xb = jax.random.normal(k1, (3, 8, 8, 1)), jax.random.normal(k2, (3, 8, 8, 1))
  eps = jax.random.normal(k3, xa.shape)
  f = lambda x, t: features.diffusion_features(model.apply, params, process, x, t, eps, "mid", 1)
  scale = jnp.abs(f(xa, process.t_max)).max()
  assert jnp.abs(f(xa, process.t_max) - f(xb, process.t_max)).max() < 1e-3 * scale * 10
  assert jnp.abs(f(xa, 0.05) - f(xb, 0.05)).max() > 1e-2 * scale


def test_features_read_the_named_block_at_x_t(unet):
  """diffusion_features = the pooled sown activation at q_sample(x₀, ε, t). Catches: a
  different block read, or pooling over the wrong axes."""
  model, params = unet
  process = schedules.VPLinear()
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 8, 8, 1))
  eps = jax.random.normal(jax.random.PRNGKey(4), x.shape)
  t = jnp.full((2,), 0.3)
  _, state = model.apply(params, schedules.q_sample(process, eps, x, t), t,
                         mutable=["intermediates"])
  h = state["intermediates"]["up_1"][0]                            # (2, 4, 4, 16)
  expected = np.asarray(h).reshape(2, 2, 2, 2, 2, 16).mean((2, 4)).reshape(2, -1)
  ours = features.diffusion_features(model.apply, params, process, x, 0.3, eps, "up_1", 2)
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_adaptive_pool_one_dim_and_global():
  """1 cell = the global mean; 1-D inputs pool along their one axis. Catches: a
  reshape that mixes channels into space."""
  h = jax.random.normal(jax.random.PRNGKey(5), (3, 6, 6, 4))
  np.testing.assert_allclose(features.adaptive_average_pool(h, 1)[:, 0, 0], h.mean((1, 2)),
                             rtol=1e-5, atol=1e-6)
  seq = jax.random.normal(jax.random.PRNGKey(6), (2, 8, 3))
  np.testing.assert_allclose(features.adaptive_average_pool(seq, 4),
                             np.asarray(seq).reshape(2, 4, 2, 3).mean(2), rtol=1e-5, atol=1e-6)


def test_probe_grid_separates_classes(unet):
  """On two classes that differ in mean brightness, the (block, t ≤ 0.5) probes are
  above chance; the output has the grid's shape. Catches: labels misaligned with
  features (accuracy at chance)."""
  model, params = unet
  process = schedules.VPCosine()
  key = jax.random.PRNGKey(7)
  y = jnp.arange(40) % 2
  x = jax.random.normal(key, (40, 8, 8, 1)) * 0.3 + (2.0 * y - 1.0)[:, None, None, None]
  data = {"x": x, "y": y}
  acc = features.probe_grid(model.apply, params, process, data, data, ("mid",),
                            (0.1, 0.5), jax.random.PRNGKey(8), num_classes=2, num_steps=15)
  assert acc.shape == (1, 2)
  assert jnp.all(acc > 0.8)
