"""REPA (``jaxrep.diffusion.repa``): the alignment loss, λ = 0, the frozen encoder, snapshots."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrep.diffusion import dit, ema, parameterization, repa, schedules

SIT = dit.DiT(patch_size=4, hidden=16, depth=2, num_heads=2)
PROJECTOR = repa.ProjectionMLP(features=5, hidden=8)
X = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 1)), jnp.float32)
ENCODER = {"w": jnp.asarray(np.random.default_rng(1).standard_normal((16, 5)), jnp.float32)}


def encode(params, x):
  """A linear "encoder" on 4×4 patches: (batch, 8, 8, 1) → (batch, 4, 5)."""
  patches, _ = dit.patchify(x, 4)
  return patches @ params["w"]


@pytest.fixture(scope="module")
def params():
  """Random (not zero-init) parameters of the models' shapes, drawn on the host
  (``eval_shape``: no init compile), so every path carries signal."""
  shapes = jax.eval_shape(lambda: {
      "denoiser": SIT.init(jax.random.PRNGKey(0), X, jnp.zeros(3)),
      "projector": PROJECTOR.init(jax.random.PRNGKey(1), jnp.zeros((1, 1, 16)))})
  rng = np.random.default_rng(2)
  return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype),
                      shapes)


def test_alignment_loss_matches_numpy():
  """−mean cos over batch and patches, against NumPy. Catches: a missing
  normalisation of either side, a sum instead of a mean, a wrong sign."""
  rng = np.random.default_rng(3)
  a, b = rng.standard_normal((2, 4, 6, 7))
  expected = -np.mean(np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1)
                                           * np.linalg.norm(b, axis=-1)))
  got = repa.alignment_loss(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # positive per-patch scaling of the target leaves it unchanged
  scale = jnp.asarray(rng.uniform(0.1, 10, (4, 6, 1)), jnp.float32)
  np.testing.assert_allclose(repa.alignment_loss(jnp.asarray(a), jnp.asarray(b) * scale),
                             got, rtol=1e-5)


def test_zero_weight_is_exactly_the_sit_loss(params):
  """λ = 0 gives bit-for-bit ``denoising_loss_fn(prediction="velocity")`` on the
  linear interpolant for the same key. Catches: different t/ε draws, a different
  interpolant or target, an alignment term that leaks in at λ = 0."""
  process = schedules.LinearInterpolant()
  batch = {"x": X, "encoder": ENCODER}
  rng = jax.random.PRNGKey(4)
  plain_fn = parameterization.denoising_loss_fn(SIT.apply, process, prediction="velocity")

  @jax.jit
  def losses(params):
    ours = {w: repa.repa_loss_fn(SIT.apply, PROJECTOR.apply, encode, process, weight=w,
                                 block=1)(params, batch, rng) for w in (0.0, 0.5)}
    return ours, plain_fn(params["denoiser"], {"x": X}, rng)[0]

  ours, plain = losses(params)
  (zero, metrics), (weighted, _) = ours[0.0], ours[0.5]
  assert float(zero) == float(plain)
  assert float(metrics["alignment"]) != 0.0
  np.testing.assert_allclose(weighted, plain + 0.5 * metrics["alignment"], rtol=1e-6)


def test_encoder_gets_no_gradient_and_the_projector_does(params):
  """∂L/∂(encoder params) is exactly zero, ∂L/∂φ and the aligned block's ∂L/∂θ are
  not. Catches: a missing stop-gradient on y*, a projector not in the loss, the
  alignment read from the wrong place (block 0's gradient must be non-zero too)."""
  loss_fn = repa.repa_loss_fn(SIT.apply, PROJECTOR.apply, encode, weight=0.5, block=0)

  def loss(p, enc):
    return loss_fn(p, {"x": X, "encoder": enc}, jax.random.PRNGKey(5))[0]

  other = {"w": ENCODER["w"] + 1.0}
  grads, values = jax.jit(lambda p: (jax.grad(loss, argnums=(0, 1))(p, ENCODER),
                                     (loss(p, ENCODER), loss(p, other))))(params)
  grad_params, grad_encoder = grads
  assert float(jnp.max(jnp.abs(grad_encoder["w"]))) == 0.0
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grad_params["projector"]))
  # the encoder does matter for the value: a different encoder changes the loss
  assert float(values[0]) != float(values[1])


def test_snapshot_keeps_the_ema_params_of_step_n():
  """``with_params_snapshot(with_params_ema(sgd), n)`` stores θ̄ after update n.
  Catches: an off-by-one step, storing θ instead of θ̄, overwriting later."""
  optimizer = repa.with_params_snapshot(ema.with_params_ema(optax.sgd(0.1), 0.5), 3)
  params = jnp.array([1.0, -2.0])
  state = optimizer.init(params)
  history = []
  for _ in range(6):
    updates, state = optimizer.update(params, state, params)   # gradient of ½‖θ‖²
    params = optax.apply_updates(params, updates)
    history.append(ema.ema_params(state.inner))
  np.testing.assert_allclose(repa.snapshot_params(state), history[2], rtol=1e-7)
  assert not np.allclose(history[2], history[5])
