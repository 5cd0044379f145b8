"""jaxrep.core.linalg: vmap-safe solve / cholesky / eigh (jax-ml/jax#36927)."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.core import linalg


def _spd(rng, *shape):
  x = rng.normal(size=shape + (shape[-1],))
  return (x @ np.swapaxes(x, -1, -2) + shape[-1] * np.eye(shape[-1])).astype(np.float32)


def _general(rng, *shape):
  return (rng.normal(size=shape + (shape[-1],)) + 3 * np.eye(shape[-1])).astype(np.float32)


def _lapack_batch_dims(fn, *args) -> list[int]:
  """num_batch_dims of every LAPACK custom call in the lowered StableHLO of jit(fn)."""
  text = jax.jit(fn).lower(*args).as_text()
  calls = [line for line in text.splitlines()
           if "stablehlo.custom_call" in line and "lapack_" in line]
  return [int(re.search(r'num_batch_dims = "(\d+)"', line).group(1)) for line in calls]


class TestAgreement:

  def test_solve_unbatched_matches_numpy(self):
    rng = np.random.default_rng(0)
    a, b, bm = _general(rng, 6), rng.normal(size=6), rng.normal(size=(6, 3))
    np.testing.assert_allclose(linalg.solve(a, b), np.linalg.solve(a, b), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(linalg.solve(a, bm), np.linalg.solve(a, bm), rtol=1e-4,
                               atol=1e-5)

  def test_solve_vmap_matches_jnp_and_numpy(self):
    rng = np.random.default_rng(1)
    a = _general(rng, 7, 5)
    b = rng.normal(size=(7, 5)).astype(np.float32)
    got = jax.jit(jax.vmap(linalg.solve))(a, b)
    np.testing.assert_allclose(got, jax.vmap(jnp.linalg.solve)(a, b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, np.linalg.solve(a, b[..., None])[..., 0], rtol=1e-4,
                               atol=1e-5)

  def test_solve_nested_vmap_and_broadcast_axes(self):
    rng = np.random.default_rng(2)
    a = _general(rng, 3, 4, 5)
    b = rng.normal(size=(3, 4, 5, 2)).astype(np.float32)
    want = np.linalg.solve(a, b)
    np.testing.assert_allclose(jax.vmap(jax.vmap(linalg.solve))(a, b), want, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(linalg.solve(a, b), want, rtol=1e-4, atol=1e-5)
    # Only b batched (a shared), and only a batched.
    b1 = rng.normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(jax.vmap(linalg.solve, (None, 0))(a[0, 0], b1),
                               np.linalg.solve(a[0, 0], b1.T).T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(linalg.solve, (0, None))(a[0], b1[0]),
                               np.linalg.solve(a[0], b1[0][None, :, None])[..., 0],
                               rtol=1e-4, atol=1e-5)

  def test_solve_inside_scan_under_vmap(self):
    """The pattern of logistic_cv_fit: vmap over a scan whose body solves."""
    rng = np.random.default_rng(3)
    a = _spd(rng, 4, 6)

    def newton(a):
      step = lambda x, _: (x - linalg.solve(a, a @ x - 1.0), None)
      return jax.lax.scan(step, jnp.zeros(6), None, 3)[0]

    np.testing.assert_allclose(jax.jit(jax.vmap(newton))(a),
                               np.linalg.solve(a, np.ones((4, 6, 1)))[..., 0], rtol=1e-4,
                               atol=1e-5)

  def test_cholesky_and_eigh(self):
    rng = np.random.default_rng(4)
    s = _spd(rng, 3, 4, 5)
    np.testing.assert_allclose(jax.vmap(jax.vmap(linalg.cholesky))(s),
                               np.linalg.cholesky(s), rtol=1e-4, atol=1e-5)
    w, v = jax.vmap(linalg.eigh)(s[0])
    np.testing.assert_allclose(w, np.linalg.eigh(s[0])[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(v @ (w[..., None] * np.swapaxes(v, -1, -2)), s[0], rtol=1e-4,
                               atol=1e-3)

  def test_shape_errors(self):
    with pytest.raises(ValueError):
      linalg.solve(jnp.ones((3, 4)), jnp.ones(3))
    with pytest.raises(ValueError):
      linalg.solve(jnp.ones((2, 3, 3)), jnp.ones((3, 3)))

  def test_not_reverse_differentiable(self):
    """Documented limitation; if this starts passing, update the module docstring."""
    a = _spd(np.random.default_rng(5), 3)
    with pytest.raises(Exception):
      jax.grad(lambda a: linalg.solve(a, jnp.ones(3)).sum())(a)


class TestNoBatchedLapack:

  def test_plain_jnp_solve_is_batched(self):
    """Sanity check of the detector: plain vmapped jnp.linalg.solve has a batched call."""
    a, b = jnp.ones((55, 21, 21)), jnp.ones((55, 21))
    assert max(_lapack_batch_dims(jax.vmap(jnp.linalg.solve), a, b)) >= 1

  @pytest.mark.parametrize("nested", [False, True])
  def test_vmapped_solve_lowers_to_loop_of_unbatched_calls(self, nested):
    fn = jax.vmap(linalg.solve)
    a, b = jnp.ones((55, 21, 21)), jnp.ones((55, 21))
    if nested:
      fn, a, b = jax.vmap(fn), a.reshape(5, 11, 21, 21), b.reshape(5, 11, 21)
    dims = _lapack_batch_dims(fn, a, b)
    assert dims and all(d == 0 for d in dims), dims
    text = jax.jit(fn).lower(a, b).as_text()
    main = text[text.index("func.func public @main"):]
    main = main[:main.index("\n  }")]
    assert "stablehlo.while" in main  # the batch is a loop in the entry computation

  def test_cholesky_eigh_unbatched_calls(self):
    s = jnp.broadcast_to(jnp.eye(21), (55, 21, 21))
    for fn in (linalg.cholesky, linalg.eigh):
      dims = _lapack_batch_dims(jax.vmap(fn), s)
      assert dims and all(d == 0 for d in dims), (fn, dims)
      dims = _lapack_batch_dims(fn, s)  # explicit leading axis
      assert dims and all(d == 0 for d in dims), (fn, dims)
