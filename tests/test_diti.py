"""DiTi (``jaxrep.diffusion.diti``): nested masks, G ≡ 0, the frozen DDPM, c(t) and w(t)."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.diffusion import diti, parameterization, schedules

T = 100
PROCESS = schedules.VPLinear.from_ddpm(T, 1e-4, 0.02 * 1000 / T)
D, K = 12, 4
X = jnp.asarray(np.random.default_rng(0).standard_normal((6, 4, 4, 1)), jnp.float32)


def ddpm_apply(p, x, t):
  return p["a"] * x * (1.0 + t)[:, None, None, None]


def encode_apply(p, x):
  return x.reshape(x.shape[0], -1) @ p["w"]


def decode_apply(p, x_t, t, z):
  return (z @ p["v"]).reshape(x_t.shape) + p["b"] * x_t


def params(seed=1, scale=1.0):
  rng = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(scale * rng.standard_normal(s), jnp.float32)
  return {"encoder": {"w": f(16, D)}, "decoder": {"v": f(D, 16), "b": f()}}


def test_masks_are_nested_and_blocks_cover_d():
  """Rows nested (m_i ≤ m_{i+1}), the last row all ones, block sizes sum to D, the
  stage index is monotone in t and reaches every block. Catches: masks that
  keep later instead of earlier blocks, an off-by-one in the stage index."""
  for dims in (None, (1, 2, 4, 5)):
    masks = diti.nested_masks(D, K, dims)
    assert np.all(masks[:-1] <= masks[1:]) and np.all(masks[-1] == 1)
    assert masks[0, 0] == 1 and masks[0].sum() < D
    ends = diti.block_ends(D, K, dims)
    assert ends[-1] == D and np.all(np.diff(ends) > 0)
    assert sum(b.shape[1] for b in diti.block_features(jnp.ones((2, D)), D, K)) == D
  t = jnp.linspace(PROCESS.t_min, 1.0, 101)
  idx = np.asarray(diti.stage_index(t, K))
  assert np.all(np.diff(idx) >= 0) and set(idx.tolist()) == set(range(K))
  assert idx[0] == 0 and idx[-1] == K - 1


def test_masked_features_gradients_follow_the_masks():
  """∂(Σ z ⊙ m_t)/∂z = m_t ("base"), and only the current stage's block in
  "stop_grad" mode. Catches: a mask applied after detaching, a wrong stage row."""
  masks = jnp.asarray(diti.nested_masks(D, K))
  z = jnp.ones((4, D))
  t = jnp.array([0.1, 0.3, 0.6, 0.99])
  base = jax.grad(lambda z: jnp.sum(diti.masked_features(z, t, masks)))(z)
  np.testing.assert_array_equal(base, masks[jnp.array([0, 1, 2, 3])])
  stop = jax.grad(lambda z: jnp.sum(diti.masked_features(z, t, masks, "stop_grad")))(z)
  current = masks - jnp.concatenate([jnp.zeros((1, D)), masks[:-1]])
  np.testing.assert_array_equal(stop, current)
  np.testing.assert_array_equal(diti.masked_features(z, t, masks, "stop_grad"),
                                diti.masked_features(z, t, masks))


def test_zero_decoder_is_the_weighted_ddpm_loss_and_ddpm_is_frozen():
  """With G ≡ 0 the loss is bit-for-bit ``denoising_loss_fn(prediction="eps",
  weighting=diti_weighting())`` of the DDPM for the same key; the frozen DDPM's
  parameters get exactly zero gradient while the encoder and decoder do not.
  Catches: other t/ε draws, a missing stop-gradient on ε_θ, a weight off."""
  masks = diti.nested_masks(D, K)
  loss_fn = diti.diti_loss_fn(ddpm_apply, encode_apply, decode_apply, PROCESS, T, masks)
  ddpm = {"a": jnp.float32(0.3)}
  zero = params(scale=0.0)
  rng = jax.random.PRNGKey(2)
  ours = loss_fn(zero, {"x": X, "ddpm": ddpm}, rng)[0]
  plain = parameterization.denoising_loss_fn(
      ddpm_apply, PROCESS, prediction="eps", weighting=diti.diti_weighting())(ddpm, {"x": X},
                                                                           rng)[0]
  assert float(ours) == float(plain)
  grads = jax.grad(lambda p, d: loss_fn(p, {"x": X, "ddpm": d}, rng)[0], argnums=(0, 1))(
      params(), ddpm)
  assert float(grads[1]["a"]) == 0.0
  assert float(jnp.max(jnp.abs(grads[0]["encoder"]["w"]))) > 0
  assert float(jnp.max(jnp.abs(grads[0]["decoder"]["v"]))) > 0


def test_shift_coefficient_and_weight_match_numpy_tables():
  """c(t) and w(t) against NumPy: exactly (1e-5) against the official formulas
  (shift_coef = −√α_n (1 − ᾱ_{n−1})/√(1 − ᾱ_n), weight = SNR^0.1/(1 + SNR)) on the
  process's own ᾱ at t = n/T, and c(t) within 0.02 of the official discrete
  table (the continuous ↔ discrete schedule match). Catches: ᾱ_n instead of
  ᾱ_{n−1}, a missing square root, SNR inverted, a wrong exponent."""
  n = np.arange(2, T + 1)                       # t = n/T; discrete index n − 1
  t64 = n / T
  log_alpha = -0.25 * t64**2 * (PROCESS.beta_max - PROCESS.beta_min) - 0.5 * t64 * PROCESS.beta_min
  alpha_bar = np.exp(2 * log_alpha)
  prev = np.exp(2 * (-0.25 * (t64 - 1 / T)**2 * (PROCESS.beta_max - PROCESS.beta_min)
                     - 0.5 * (t64 - 1 / T) * PROCESS.beta_min))
  shift = -np.sqrt(alpha_bar / prev) * (1 - prev) / np.sqrt(1 - alpha_bar)
  snr = alpha_bar / (1 - alpha_bar)
  t = jnp.asarray(t64, jnp.float32)
  ours = np.asarray(diti.shift_coefficient(PROCESS, t, T))
  np.testing.assert_allclose(ours, shift, rtol=1e-4, atol=1e-6)
  c = schedules.coefficients(PROCESS, t)
  np.testing.assert_allclose(diti.diti_weighting()(t, c), snr**0.1 / (1 + snr), rtol=1e-4)
  betas = np.linspace(1e-4, 0.02 * 1000 / T, T)
  table = np.cumprod(1 - betas)
  table_prev = np.concatenate([[1.0], table[:-1]])
  official = -np.sqrt(1 - betas) * (1 - table_prev) / np.sqrt(1 - table)
  np.testing.assert_allclose(ours, official[n - 1], atol=0.02)
