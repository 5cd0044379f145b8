"""The denoisers (U-Net, DiT): shapes, conditioning, adaLN-zero, time dependence, bf16.

Compiles are the cost on CPU (a flax init compiles one RNG program per parameter),
so most tests use random parameters of the model's shapes (``random_params``) and
share a few jitted calls of equal shapes.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.diffusion import dit as dit_lib, samplers
from jaxrep.diffusion.dit import DiT, DiTBlock
from jaxrep.diffusion.unet import UNet

NUM_CLASSES = 3
MODELS = {
    "unet": lambda **kw: UNet(features=(8, 16), num_heads=2, num_classes=NUM_CLASSES, **kw),
    "dit": lambda **kw: DiT(patch_size=2, hidden=32, depth=2, num_heads=2,
                            num_classes=NUM_CLASSES, **kw),
}
SHAPES = {1: (2, 16, 3), 2: (2, 8, 8, 2)}
T = jnp.array([0.2, 0.7])
LABELS = jnp.array([0, 2])
NULL = jnp.full(2, NUM_CLASSES)
CONTEXT = jnp.asarray(np.random.default_rng(9).standard_normal((2, 5, 7)), jnp.float32)


def host_normal(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def random_params(shapes, seed=7):
  """Parameters of the given shapes drawn on the host (no compile): kernels ~
  N(0, 1/fan_in), norm scales 1 + 0.1 z, biases 0.1 z (so every zero-init layer
  becomes non-trivial)."""
  rng = np.random.default_rng(seed)

  def draw(path, s):
    z = rng.standard_normal(s.shape)
    name = str(path[-1])
    if "scale" in name:
      z = 1 + 0.1 * z
    elif "bias" in name:
      z = 0.1 * z
    else:
      z = z / math.sqrt(max(1, math.prod(s.shape[:-1])))
    return jnp.asarray(z, s.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.lru_cache(maxsize=None)
def setup(name, ndim):
  """(model, random params, x, apply(params, x, t, label) → (out, intermediates))."""
  model = MODELS[name]()
  x = host_normal(SHAPES[ndim], ndim)
  context = {"context": CONTEXT} if name == "unet" else {}
  params = random_params(jax.eval_shape(model.init, jax.random.PRNGKey(0), x, T, LABELS,
                                        **context))

  @jax.jit
  def jitted(params, x, t, label, context):
    repeats = x.shape[0] // context.shape[0]
    extra = {"context": jnp.tile(context, (repeats, 1, 1))} if name == "unet" else {}
    out, state = model.apply(params, x, t, label, mutable=["intermediates"], **extra)
    return out, state["intermediates"]

  apply = lambda params, x, t, label, context=CONTEXT: jitted(params, x, t, label, context)
  return model, params, x, apply


CASES = [(name, ndim) for name in MODELS for ndim in SHAPES]


@pytest.mark.parametrize("name,ndim", CASES, ids=[f"{n}-{d}d" for n, d in CASES])
def test_output_shape_equals_input_shape_and_is_float32(name, ndim):
  _, params, x, apply = setup(name, ndim)
  out, features = apply(params, x, T, LABELS)
  assert out.shape == x.shape and out.dtype == jnp.float32
  assert np.all(np.isfinite(out)) and float(jnp.std(out)) > 1e-3
  if name == "dit":
    assert set(features) == {"block_0", "block_1"}
    assert features["block_1"][0].shape == (2, math.prod(x.shape[1:-1]) // 2**ndim, 32)


@pytest.mark.parametrize("name,ndim", [("unet", 1), ("dit", 2)])
def test_conditioning_and_time_change_the_output(name, ndim):
  _, params, x, apply = setup(name, ndim)
  out, _ = apply(params, x, T, LABELS)
  by_label, _ = apply(params, x, T, (LABELS + 1) % NUM_CLASSES)
  by_time, _ = apply(params, x, T[::-1], LABELS)
  first, _ = apply(params, x.at[1].set(0.0), T, LABELS)
  np.testing.assert_allclose(first[0], out[0], atol=1e-5)     # examples are independent
  for other in (by_label, by_time):
    change = jnp.abs(other - out).reshape(2, -1).max(axis=1)
    assert float(change.min()) > 1e-3                           # in both examples


def test_null_class_is_unconditional_and_guidance_scale_zero_equals_it():
  """label=None is the null class (``LabelEmbedding``, shared with the U-Net)."""
  model, params, x, apply = setup("dit", 2)
  unconditional = jax.jit(lambda p: model.apply(p, x, T, None))(params)
  null, _ = apply(params, x, T, NULL)
  np.testing.assert_allclose(null, unconditional, atol=1e-5)
  conditional, _ = apply(params, x, T, LABELS)
  denoise = lambda x, t, y: apply(params, x, t, y)[0]
  assert float(jnp.abs(conditional - unconditional).max()) > 1e-3
  for scale, expected in ((0.0, unconditional), (1.0, conditional)):
    guided = samplers.guided(denoise, scale, LABELS, NUM_CLASSES)(x, T)
    np.testing.assert_allclose(guided, expected, atol=1e-5)


def test_adaln_zero_makes_every_dit_block_the_identity_at_init():
  block = DiTBlock(num_heads=2)
  tokens, cond = host_normal((2, 5, 16), 0), host_normal((2, 16), 1)
  params = jax.jit(block.init)(jax.random.PRNGKey(2), tokens, cond)
  apply = jax.jit(block.apply)
  np.testing.assert_array_equal(apply(params, tokens, cond), tokens)
  moved = apply(random_params(params), tokens, cond)
  assert float(jnp.abs(moved - tokens).max()) > 1e-3


def test_dit_is_not_invariant_to_moving_patches():
  """The position embedding makes the DiT see where a patch is: swapping two patches
  of the input does not just swap them in the output."""
  _, params, x, apply = setup("dit", 2)
  tokens, grid = dit_lib.patchify(x, 2)
  swapped = dit_lib.unpatchify(tokens[:, jnp.array([1, 0] + list(range(2, 16)))], grid, 2)
  out_tokens, _ = dit_lib.patchify(apply(params, x, T, LABELS)[0], 2)
  swapped_out, _ = dit_lib.patchify(apply(params, swapped, T, LABELS)[0], 2)
  assert float(jnp.abs(swapped_out[:, 0] - out_tokens[:, 1]).max()) > 1e-3


def test_patchify_round_trips_and_takes_contiguous_patches():
  x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  tokens, grid = dit_lib.patchify(x, 2)
  assert grid == (2, 3) and tokens.shape == (2, 6, 12)
  np.testing.assert_array_equal(tokens[1, 4].reshape(2, 2, 3), x[1, 2:4, 2:4])
  np.testing.assert_array_equal(dit_lib.unpatchify(tokens, grid, 2), x)
  line = jnp.arange(2 * 8 * 3, dtype=jnp.float32).reshape(2, 8, 3)
  tokens, grid = dit_lib.patchify(line, 4)
  np.testing.assert_array_equal(tokens[0, 1].reshape(4, 3), line[0, 4:8])
  np.testing.assert_array_equal(dit_lib.unpatchify(tokens, grid, 4), line)


def test_unet_cross_attends_to_the_context_and_sows_features():
  model, params, x, apply = setup("unet", 1)
  out, features = apply(params, x, T, LABELS)
  other, _ = apply(params, x, T, LABELS, CONTEXT[::-1])
  assert float(jnp.abs(out - other).max()) > 1e-3
  assert set(features) == {"down_0", "down_1", "mid", "up_1", "up_0"}
  assert features["mid"][0].shape == (2, 8, 16)
  with pytest.raises(ValueError):
    model.apply(params, x[:, :15], T, LABELS, context=CONTEXT)
  with pytest.raises(ValueError):
    UNet(features=(8, 16)).apply(params, x, T, LABELS)        # no num_classes


@pytest.mark.parametrize("name,ndim", [("unet", 1), ("dit", 2)])
def test_bfloat16_compute_keeps_float32_params_and_output(name, ndim):
  _, params, x, apply = setup(name, ndim)
  model = MODELS[name](dtype=jnp.bfloat16)
  context = {"context": CONTEXT} if name == "unet" else {}
  if name == "dit":
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x, T, LABELS)
    assert {a.dtype for a in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
  low = jax.jit(lambda p: model.apply(p, x, T, LABELS, **context))(params)
  high, _ = apply(params, x, T, LABELS)
  assert low.dtype == jnp.float32
  assert float(jnp.linalg.norm(low - high) / jnp.linalg.norm(high)) < 0.05
