"""CRATE: ISTA converges to scikit-learn's non-negative Lasso, the coding rate's
gradient equals its closed form and finite differences, the layers' shapes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.compression import crate


@pytest.mark.reference
def test_iterated_ista_converges_to_sklearn_positive_lasso():
  """``ista_solve`` → argmin_{z≥0} ½‖x − Dz‖² + λ‖z‖₁, which is sklearn's
  Lasso(positive=True, fit_intercept=False) with α = λ/d (its objective divides the
  squared error by 2·n_samples = 2d). Catches the step's sign (x − Dz vs Dz − x),
  Dᵀ vs D, a missing ηλ shrinkage or a missing ReLU (signed Lasso)."""
  from sklearn.linear_model import Lasso
  d, lam = 12, 0.1
  rng = np.random.default_rng(0)
  dictionary = rng.normal(size=(d, d)) / np.sqrt(d)
  x = rng.normal(size=(3, d))
  step = 0.9 / np.linalg.norm(dictionary, 2) ** 2
  z = crate.ista_solve(jnp.asarray(x, jnp.float32), jnp.asarray(dictionary, jnp.float32),
                       float(step), lam, 3000)
  for row in range(3):
    lasso = Lasso(alpha=lam / d, positive=True, fit_intercept=False, tol=1e-12,
                  max_iter=100_000).fit(dictionary, x[row])
    np.testing.assert_allclose(z[row], lasso.coef_, atol=2e-4)
  assert 0 < np.mean(np.asarray(z) == 0) < 1  # the constraint and the penalty bind


def test_ista_block_is_one_step_from_the_input_as_in_the_official_code():
  """The block equals ReLU(x + η(xD − xDᵀD) − ηλ) (official ``FeedForward`` with
  weight D, row vectors) and ``ista_solve`` with one step. Catches D/Dᵀ swapped."""
  key_d, key_x = jax.random.split(jax.random.PRNGKey(0))
  dictionary = jax.random.normal(key_d, (6, 6))
  x = jax.random.normal(key_x, (4, 6))
  official = jax.nn.relu(x + 0.1 * (x @ dictionary - x @ dictionary.T @ dictionary) - 0.01)
  np.testing.assert_allclose(crate.ista_block(x, dictionary), official, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(crate.ista_solve(x, dictionary, 0.1, 0.1, 1), official,
                             rtol=1e-5, atol=1e-6)


def test_coding_rate_gradient_matches_closed_form_autodiff_and_finite_differences():
  """∇R = αZ(I + αZᵀZ)⁻¹ equals jax.grad and a central difference (float64), and R
  equals the Sylvester form ½logdet(I_N + αZZᵀ). Catches a wrong α (d/(Nε²) with
  N and d swapped, ε instead of ε²) or a missing ½."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(1)
    z = jnp.asarray(rng.normal(size=(7, 4)))
    eps_sq = 0.3
    closed = crate.coding_rate_gradient(z, eps_sq)
    np.testing.assert_allclose(jax.grad(crate.coding_rate)(z, eps_sq), closed, rtol=1e-10)
    h, i, j = 1e-6, 2, 3
    bump = jnp.zeros_like(z).at[i, j].set(h)
    fd = (crate.coding_rate(z + bump, eps_sq) - crate.coding_rate(z - bump, eps_sq)) / (2 * h)
    np.testing.assert_allclose(fd, closed[i, j], rtol=1e-6)
    alpha = 4 / (7 * eps_sq)
    sylvester = 0.5 * np.linalg.slogdet(np.eye(7) + alpha * np.asarray(z @ z.T))[1]
    np.testing.assert_allclose(crate.coding_rate(z, eps_sq), sylvester, rtol=1e-12)
    # The compression term sums the projected rates (two orthonormal subspaces).
    basis = jnp.eye(4)
    subspaces = jnp.stack([basis[:, :2], basis[:, 2:]])
    np.testing.assert_allclose(crate.compression_term(z, subspaces, eps_sq),
                               crate.coding_rate(z[:, :2], eps_sq)
                               + crate.coding_rate(z[:, 2:], eps_sq), rtol=1e-12)


def test_shapes_and_layer_measures():
  """CRATE and the ViT map (n, 8, 8, 1) to (n, 10); per-layer measures have shape
  (depth,), sparsity in [0, 1], the MSSA heads (N, K·p); the measure uses unit tokens
  (scale-invariant). Catches a head reshape error or a missing token normalisation."""
  model = crate.CRATE(10, dim=16, depth=2, num_heads=2)
  images = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 1))
  vit = crate.ViT(10, dim=8, depth=2, num_heads=2)
  logits = jax.eval_shape(model.apply, jax.eval_shape(model.init, jax.random.PRNGKey(1), images),
                          images)
  vit_logits = jax.eval_shape(vit.apply, jax.eval_shape(vit.init, jax.random.PRNGKey(2), images),
                              images)
  assert logits.shape == (3, 10) and vit_logits.shape == (3, 10)
  measures = jax.jit(lambda x: crate.layer_measures(
      model, model.init(jax.random.PRNGKey(1), x), x))(images)
  assert measures["compression"].shape == (2,) and measures["sparsity"].shape == (2,)
  assert np.all((measures["sparsity"] >= 0) & (measures["sparsity"] <= 1))
  z = jax.random.normal(jax.random.PRNGKey(3), (17, 16))
  heads, projected = jax.jit(crate.mssa)(z, jax.random.normal(jax.random.PRNGKey(4), (2, 16, 8)))
  assert heads.shape == (17, 16) and projected.shape == (2, 17, 8)
  compress = jax.jit(crate.subspace_compression)
  np.testing.assert_allclose(compress(3.0 * projected), compress(projected), rtol=1e-5)
