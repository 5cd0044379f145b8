"""SIE: the hypernetwork predictor is bilinear, the loss equals a NumPy reference of
the official formula, the invariant/equivariant split is exact, 8 devices = 1."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxrep.core import parallel
from jaxrep.probe.encoders import MLPEncoder
from jaxrep.ssl import sie


def _model(inv_dim=3):
  return sie.SIEModel(encoder=MLPEncoder(latent_dim=8, hidden=(12,)), inv_dim=inv_dim,
                      projector_inv=(6, 5), projector_equi=(6, 4), transform_dim=2)


def test_hypernetwork_predictor_shape_and_bilinearity():
  """ψ_z(e) = W(z) e has shape (n, D) and is linear in z and in e. Catches a bias
  or a nonlinearity in the hypernetwork (``--bias-hypernet``, an MLP hypernetwork)
  or in the predictor, and a transposed W."""
  kernel = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 5))
  k = jax.random.split(jax.random.PRNGKey(1), 4)
  e1, e2 = jax.random.normal(k[0], (7, 5)), jax.random.normal(k[1], (7, 5))
  z1, z2 = jax.random.normal(k[2], (7, 3)), jax.random.normal(k[3], (7, 3))
  psi = lambda e, z: sie.hyper_linear_predict(kernel, e, z)
  assert sie.hypernetwork_weights(kernel, z1).shape == (7, 5, 5)
  assert psi(e1, z1).shape == (7, 5)
  np.testing.assert_allclose(psi(e1, 2.0 * z1 - 0.5 * z2),
                             2.0 * psi(e1, z1) - 0.5 * psi(e1, z2), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(psi(1.5 * e1 + e2, z1), 1.5 * psi(e1, z1) + psi(e2, z1),
                             rtol=1e-5, atol=1e-5)
  # W(z) e for one example by hand: Σ_k z_k (H_k e).
  by_hand = sum(z1[0, j] * (kernel[j] @ e1[0]) for j in range(3))
  np.testing.assert_allclose(psi(e1, z1)[0], by_hand, rtol=1e-5, atol=1e-5)
  # The Flax module: same map, zero z gives a zero prediction (no bias anywhere).
  module = sie.HyperLinearPredictor(transform_dim=3)
  params = module.init(jax.random.PRNGKey(2), e1, z1)
  np.testing.assert_allclose(module.apply(params, e1, z1),
                             sie.hyper_linear_predict(params["params"]["hyper_kernel"], e1, z1))
  assert np.all(module.apply(params, e1, jnp.zeros_like(z1)) == 0)


def _variance(z):
  """mean_d relu(1 − sqrt(var_unbiased + 1e-4)), loops over columns."""
  n, d = z.shape
  total = 0.0
  for j in range(d):
    col = z[:, j]
    var = sum((v - col.mean()) ** 2 for v in col) / (n - 1)
    total += max(0.0, 1.0 - np.sqrt(var + 1e-4))
  return total / d


def _covariance(z):
  n, d = z.shape
  c = (z - z.mean(0)).T @ (z - z.mean(0)) / (n - 1)
  return sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d


def _reference_loss(inv_x, inv_y, equi_x, equi_y, pred):
  """The official ``SIE.forward`` loss in float64 with loops (README weights)."""
  x = np.concatenate([inv_x, equi_x], 1)
  y = np.concatenate([inv_y, equi_y], 1)
  repr_inv = np.mean((inv_x - inv_y) ** 2)
  repr_equi = np.mean((pred - equi_y) ** 2)
  std = _variance(x) / 2 + _variance(y) / 2
  pred_std = _variance(pred) / 2
  cov = _covariance(x) + _covariance(y)
  return 10 * repr_inv + 0.45 * 10 * repr_equi + 10 * std + 10 * pred_std + 1 * cov


def _embeddings(n=16, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 5)
  scales = (0.3, 0.3, 0.5, 0.5, 0.4)  # small enough that the variance hinge is active
  shapes = ((n, 3), (n, 3), (n, 4), (n, 4), (n, 4))
  return [s * jax.random.normal(k, shape) for k, s, shape in zip(keys, scales, shapes)]


def test_sie_loss_matches_numpy_reference_of_the_official_loss():
  """L = 10·MSE_inv + 4.5·MSE_equi + 10·(std + pred_std) + cov, with variance and
  covariance on the concatenated [inv, equi] embedding. Catches a missing
  equi-factor, the predictor's variance without its 1/2 (or missing), the
  covariance on each part alone instead of the concatenation, a biased variance."""
  arrays = _embeddings()
  loss, terms = sie.sie_loss(*arrays)
  expected = _reference_loss(*[np.asarray(a, np.float64) for a in arrays])
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  assert float(terms["pred_variance"]) > 0  # the hinge is active: the term is tested


def test_invariant_and_equivariant_paths_are_split_exactly():
  """The invariance term's gradient w.r.t. the equivariant embeddings and the
  prediction term's gradient w.r.t. the invariant embeddings are exactly 0; in the
  model, the prediction ψ_z(e_x) does not move when r_inv changes. Catches a
  slicing error (the equivariant projector reading an invariant dim, the invariance
  on the whole embedding) or a predictor fed with the invariant part."""
  inv_x, inv_y, equi_x, equi_y, pred = _embeddings()
  invariance = lambda e: sie.sie_loss(inv_x, inv_y, e, e, e, std_weight=0.0,
                                      cov_weight=0.0, equi_factor=0.0)[0]
  assert np.all(np.asarray(jax.jit(jax.grad(invariance))(equi_x)) == 0)
  prediction = lambda u: sie.sie_loss(u, u, equi_x, equi_y, pred, sim_weight=1.0,
                                      std_weight=0.0, cov_weight=0.0)[1]["equivariance"]
  assert np.all(np.asarray(jax.jit(jax.grad(prediction))(inv_x)) == 0)

  model = _model(inv_dim=3)
  x = jax.random.normal(jax.random.PRNGKey(3), (5, 10))
  z = jax.random.normal(jax.random.PRNGKey(4), (5, 2))
  params = jax.eval_shape(model.init, jax.random.PRNGKey(5), x, x, z)
  params = jax.tree.map(lambda a: jax.random.normal(jax.random.PRNGKey(6), a.shape), params)

  def pred_from_rep(rep):
    _, equi = model.apply(params, rep, method=sie.SIEModel.embed)
    return model.apply(params, equi, z, method=lambda m, e, zz: m.predictor(e, zz))

  @jax.jit
  def check(x):
    rep = model.apply(params, x, method=sie.SIEModel.represent)
    grad = jax.grad(lambda r: pred_from_rep(r).sum())(rep)
    return grad, model.apply(params, x, x, z)["equi_pred"], pred_from_rep(rep)

  grad, pred_model, pred_path = check(x)
  assert np.all(np.asarray(grad[:, :3]) == 0) and np.any(np.asarray(grad[:, 3:]) != 0)
  np.testing.assert_allclose(pred_model, pred_path, rtol=1e-6)


def test_sie_loss_on_8_devices_equals_the_global_batch():
  """Value and gradient of the mean of per-shard losses (axis_name="data") equal the
  global batch's: the variance/covariance statistics, the predictor's included, are
  summed over devices. Catches a per-shard statistic in ``pred_variance``."""
  arrays = _embeddings(n=32, seed=1)
  mesh = parallel.make_mesh()

  def per_device(*shards):
    return lax.pmean(sie.sie_loss(*shards, axis_name="data")[0], "data")

  sharded = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P("data"),) * 5,
                                  out_specs=P()))
  np.testing.assert_allclose(sharded(*arrays), sie.sie_loss(*arrays)[0], rtol=1e-5)
  g8 = jax.grad(lambda p: sharded(*arrays[:4], p))(arrays[4])
  g1 = jax.grad(lambda p: sie.sie_loss(*arrays[:4], p)[0])(arrays[4])
  np.testing.assert_allclose(g8, g1, rtol=1e-4, atol=1e-6)


@pytest.mark.reference
def test_r2_score_equals_scikit_learn():
  """R² averaged over outputs equals sklearn's ``r2_score`` (uniform average).
  Catches variance-weighted averaging or a total sum of squares about 0."""
  from sklearn.metrics import r2_score
  rng = np.random.default_rng(0)
  y = rng.normal(size=(50, 2)) * [1.0, 3.0] + [2.0, -1.0]
  p = y + rng.normal(size=(50, 2)) * [0.5, 2.0]
  np.testing.assert_allclose(sie.r2_score(jnp.asarray(p), jnp.asarray(y)), r2_score(y, p),
                             rtol=1e-5)
