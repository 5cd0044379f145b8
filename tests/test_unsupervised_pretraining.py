"""Unsupervised pretraining: PPCA MLE vs scikit-learn and vs gradient ascent,
posterior features, exact excess risk vs Monte Carlo, ridge LOO vs brute force,
EM vs scikit-learn, logistic regression vs scikit-learn, the pretrained predictor
as least squares on the PPCA subspace (NumPy), the composed class's predictor and
loss vs NumPy and their symmetries, composed-class ERM through ``fit``."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.mixture import GaussianMixture

from jaxrep.core import fit
from jaxrep.theory import unsupervised_pretraining as up


def _factor_model(key, d=8, r=2, mean=0.3):
  k1, k2 = jax.random.split(key)
  return up.FactorModel(jax.random.normal(k1, (d, r)), jnp.full((d,), mean), 0.8,
                        jax.random.normal(k2, (r,)), 0.5)


@pytest.mark.reference
def test_ppca_matches_sklearn_probabilistic_pca():
  with jax.enable_x64(True):
    model = _factor_model(jax.random.PRNGKey(0), d=12, r=3)
    x, _ = up.factor_sample(jax.random.PRNGKey(1), model, 800)
    params = up.ppca_fit(x, 3)
    reference = PCA(n_components=3).fit(np.asarray(x))
    cov = params.loadings @ params.loadings.T + params.noise_var * jnp.eye(12)
    # scikit-learn estimates with 1/(m − 1), the MLE with 1/m
    np.testing.assert_allclose(cov, reference.get_covariance() * 799 / 800, atol=1e-10)
    np.testing.assert_allclose(up.ppca_log_likelihood(params, x) / 800,
                               reference.score(np.asarray(x)), rtol=1e-5)


def test_ppca_closed_form_is_the_maximum_likelihood():
  with jax.enable_x64(True):
    model = _factor_model(jax.random.PRNGKey(2))
    x, _ = up.factor_sample(jax.random.PRNGKey(3), model, 500)
    closed = up.ppca_fit(x, 2)
    best = up.ppca_log_likelihood(closed, x)

    def neg_ll(p):
      return -up.ppca_log_likelihood(up.PPCA(p["w"], p["mu"], jnp.exp(p["log_var"])), x) / 500

    # stationarity of the closed form
    grads = jax.grad(neg_ll)({"w": closed.loadings, "mu": closed.mean,
                              "log_var": jnp.log(closed.noise_var)})
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(grads)) < 1e-8
    # gradient ascent from a random start reaches the same likelihood
    params = {"w": 0.1 * jax.random.normal(jax.random.PRNGKey(4), (8, 2), dtype=jnp.float64),
              "mu": jnp.zeros(8), "log_var": jnp.zeros(())}
    optimizer = optax.adam(0.02)

    @jax.jit
    def run(params):
      def step(carry, _):
        p, s = carry
        updates, s = optimizer.update(jax.grad(neg_ll)(p), s, p)
        return (optax.apply_updates(p, updates), s), None
      return jax.lax.scan(step, (params, optimizer.init(params)), None, 3000)[0][0]

    fitted = -500 * neg_ll(run(params))
    assert float(fitted) <= float(best) + 1e-6
    np.testing.assert_allclose(fitted, best, rtol=1e-4)


def test_posterior_map_is_the_gaussian_conditional_mean():
  with jax.enable_x64(True):
    params = up.ppca_fit(up.factor_sample(jax.random.PRNGKey(5), _factor_model(
        jax.random.PRNGKey(6)), 300)[0], 2)
    w, s2 = params.loadings, params.noise_var
    # E[z | x] = Cov(z, x) Σ_x⁻¹ (x − μ) = Wᵀ (WWᵀ + σ²I)⁻¹ (x − μ)
    direct = jnp.linalg.solve(w @ w.T + s2 * jnp.eye(8), w).T
    np.testing.assert_allclose(up.ppca_posterior_map(params).T, direct, atol=1e-10)


def test_exact_excess_risk_matches_monte_carlo():
  model = _factor_model(jax.random.PRNGKey(7))
  x, y = up.factor_sample(jax.random.PRNGKey(8), model, 40)
  theta, offset = up.min_norm_predictor(x, y)
  xt, yt = up.factor_sample(jax.random.PRNGKey(9), model, 400000)
  star = up.factor_optimal_predictor(model)
  risk = jnp.mean((xt @ theta + offset - yt) ** 2)
  bayes = jnp.mean(((xt - model.mean) @ star - yt) ** 2)
  np.testing.assert_allclose(up.factor_bayes_risk(model), bayes, rtol=0.01)
  np.testing.assert_allclose(up.factor_excess_risk(model, theta, offset), risk - bayes,
                             rtol=0.03, atol=0.003)


@pytest.mark.reference
def test_ridge_loo_matches_brute_force_and_sklearn():
  with jax.enable_x64(True):
    model = _factor_model(jax.random.PRNGKey(10), d=15, r=2)
    x, y = up.factor_sample(jax.random.PRNGKey(11), model, 25)
    penalties = jnp.asarray([1e-3, 0.1, 1.0, 10.0, 100.0])   # n < d: 1e-3 ≈ interpolation
    xn, yn = np.asarray(x), np.asarray(y)
    brute = []
    for lam in np.asarray(penalties):       # refit (with its own intercept) without point i
      errors = []
      for i in range(25):
        keep = np.arange(25) != i
        model_i = Ridge(alpha=float(lam)).fit(xn[keep], yn[keep])
        errors.append((yn[i] - model_i.predict(xn[i:i + 1])[0]) ** 2)
      brute.append(np.mean(errors))
    np.testing.assert_allclose(up.ridge_loo_errors(x, y, penalties), brute, rtol=1e-6)
    theta, offset, lam = up.ridge_loo_predictor(x, y, penalties)
    reference = Ridge(alpha=float(lam)).fit(np.asarray(x), np.asarray(y))
    np.testing.assert_allclose(theta, reference.coef_, atol=1e-8)
    np.testing.assert_allclose(offset, reference.intercept_, atol=1e-8)


def _mixture(key, d=5, k=3):
  means = 3.0 * jnp.linalg.qr(jax.random.normal(key, (d, k)))[0].T
  return up.Mixture(jnp.asarray([0.5, 0.3, 0.2]), means, jnp.asarray(1.0))


@pytest.mark.reference
def test_em_matches_sklearn_and_increases_likelihood():
  with jax.enable_x64(True):
    truth = _mixture(jax.random.PRNGKey(12))
    x, _, _ = up.mixture_sample(jax.random.PRNGKey(13), truth, jnp.zeros(3), 2000)
    fit = up.em_fit(jax.random.PRNGKey(14), x, 3, 100, 3)
    reference = GaussianMixture(3, covariance_type="spherical", n_init=4, random_state=0,
                                tol=1e-10, max_iter=500).fit(np.asarray(x))
    order = [int(np.argmin(np.linalg.norm(reference.means_ - m, axis=1))) for m in fit.means]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(fit.means, reference.means_[order], atol=0.02)
    np.testing.assert_allclose(fit.weights, reference.weights_[order], atol=0.005)
    # shared variance: the weighted mean of the per-component variances
    np.testing.assert_allclose(fit.variance, reference.weights_ @ reference.covariances_,
                               rtol=0.01)
    values, mixture = [], up.Mixture(jnp.ones(3) / 3, x[:3], jnp.asarray(2.0))
    for _ in range(15):
      values.append(float(up.mixture_log_likelihood(mixture, x)))
      mixture = up.em_step(mixture, x)
    assert np.all(np.diff(values) >= -1e-8)


@pytest.mark.reference
def test_logistic_fit_matches_sklearn():
  with jax.enable_x64(True):
    key = jax.random.PRNGKey(15)
    x = jax.random.normal(key, (200, 4))
    y = (jax.random.uniform(jax.random.fold_in(key, 1), (200,)) <
         jax.nn.sigmoid(x @ jnp.asarray([1.0, -2.0, 0.5, 0.0]) + 0.3)).astype(jnp.int32)
    l2 = 0.05
    w = up.logistic_fit(x, y, l2)
    reference = LogisticRegression(C=1 / (200 * l2), tol=1e-12, max_iter=10000).fit(
        np.asarray(x), np.asarray(y))
    np.testing.assert_allclose(w[:-1], reference.coef_[0], atol=1e-6)
    np.testing.assert_allclose(w[-1], reference.intercept_[0], atol=1e-6)
    assert float(up.bernoulli_kl(jnp.asarray(0.3), jnp.asarray(0.3))) < 1e-12
    assert float(jnp.min(up.bernoulli_kl(jnp.linspace(0, 1, 11)[:, None],
                                         jnp.linspace(0.05, 0.95, 7)[None]))) >= -1e-12


def test_composed_erm_task_learns_the_posterior_predictive_with_many_labels():
  """fit(composed_erm_task) on 3,000 labels: the training loss falls, the best
  restart's excess logistic risk is small, and init draws means from the sample."""
  truth, q = _mixture(jax.random.PRNGKey(16)), jnp.asarray([0.9, 0.1, 0.9])
  x, y, _ = up.mixture_sample(jax.random.PRNGKey(17), truth, q, 3000)
  x_test, _, _ = up.mixture_sample(jax.random.PRNGKey(18), truth, q, 4000)
  keys = jax.random.split(jax.random.PRNGKey(19), 3)
  init = up.composed_erm_init(keys[0], x, 3)
  assert all(bool(jnp.any(jnp.all(x == m, axis=1))) for m in init["means"])
  result = fit.fit(up.composed_erm_task(3, 0.03), {"key": keys, "x": jnp.stack([x] * 3),
                                                   "y": jnp.stack([y] * 3)},
                   400, progress=False)
  loss = result.curves["loss"]
  assert np.all(loss[:, -1] < 0.8 * loss[:, 0])
  losses = jax.vmap(lambda p: up.composed_erm_loss(p, {"x": x, "y": y})[0])(result.state.params)
  best = jax.tree.map(lambda a: a[jnp.argmin(losses)], result.state.params)
  p_star = up.responsibilities(truth, x_test) @ q
  excess = jnp.mean(up.bernoulli_kl(p_star, up.composed_erm_predict(best, x_test)))
  assert float(excess) < 0.02


def test_pretrained_predictor_is_least_squares_on_the_ppca_subspace():
  """ERM on the posterior means E[z | x] is least squares of y on x projected onto the
  top-r eigenvectors U_r of the unlabeled sample covariance (the posterior map is an
  invertible linear function of U_rᵀ(x − μ̂)), with an intercept; returned as a
  predictor of x: θᵀx + c. NumPy reference (lstsq on [x U_r, 1]); the residuals satisfy
  the normal equations and θ lies in span(U_r).

  Catches: forgetting to move the intercept to x's coordinates (``return theta, b``),
  its sign (``b + theta @ params.mean``), and least squares without centring the
  features (``pinv(features)`` for ``pinv(features − f_mean)``)."""
  with jax.enable_x64(True):
    model = _factor_model(jax.random.PRNGKey(20), d=10, r=3, mean=0.7)
    x_unl, _ = up.factor_sample(jax.random.PRNGKey(21), model, 400)
    x, y = up.factor_sample(jax.random.PRNGKey(22), model, 30)
    theta, offset = up.pretrained_predictor(up.ppca_fit(x_unl, 3), x, y)
  xu, xn, yn = np.asarray(x_unl), np.asarray(x), np.asarray(y)
  values, vectors = np.linalg.eigh(np.cov(xu.T, bias=True))
  top = vectors[:, np.argsort(values)[::-1][:3]]
  design = np.c_[xn @ top, np.ones(len(xn))]
  coef, *_ = np.linalg.lstsq(design, yn, rcond=None)
  np.testing.assert_allclose(theta, top @ coef[:3], rtol=1e-8, atol=1e-10)
  np.testing.assert_allclose(offset, coef[3], rtol=1e-8, atol=1e-10)
  residual = yn - (xn @ np.asarray(theta) + float(offset))
  np.testing.assert_allclose(design.T @ residual, 0.0, atol=1e-9)
  np.testing.assert_allclose(top @ (top.T @ np.asarray(theta)), theta, atol=1e-10)


def _composed_params(seed, k=3, d=4):
  rng = np.random.default_rng(seed)
  return {"logits": jnp.asarray(rng.normal(size=k)), "means": jnp.asarray(rng.normal(size=(k, d))),
          "log_var": jnp.asarray(0.4), "w": jnp.asarray(rng.normal(size=k + 1))}


def _np_composed_predict(params, x):
  """σ(Σ_k w_k r_k(x) + w_K), r_k ∝ π_k N(x; μ_k, σ²I), π = softmax(logits),
  σ² = e^{log_var} (NumPy)."""
  p = {k: np.asarray(v) for k, v in params.items()}
  log_pi = p["logits"] - np.log(np.exp(p["logits"]).sum())
  var = np.exp(p["log_var"])
  log_joint = log_pi - ((x[:, None, :] - p["means"][None]) ** 2).sum(-1) / (2 * var)
  resp = np.exp(log_joint - log_joint.max(1, keepdims=True))
  resp /= resp.sum(1, keepdims=True)
  return 1 / (1 + np.exp(-(resp @ p["w"][:-1] + p["w"][-1])))


def test_composed_erm_predict_and_loss_match_numpy_and_are_symmetric():
  """The composed class's P̂(y = 1 | x) and mean log-loss against NumPy; both are
  invariant to relabelling the mixture components (π, μ and w_{:K} permuted together),
  and flipping the labels with w → −w leaves the loss unchanged.

  Catches: a variance that is not exponentiated (``params["log_var"]`` as σ²), the
  intercept dropped from the loss's logit (``... @ w[:-1]`` without ``+ w[-1]``), and the
  weights read as ``w[1:]`` / intercept ``w[0]``."""
  rng = np.random.default_rng(24)
  x = rng.normal(size=(200, 4))
  y = (rng.uniform(size=200) < 0.4).astype(np.int32)
  with jax.enable_x64(True):
    params = _composed_params(23)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    predicted = np.asarray(up.composed_erm_predict(params, xj))
    loss = float(up.composed_erm_loss(params, {"x": xj, "y": yj})[0])
    perm = np.array([2, 0, 1])
    permuted = {"logits": params["logits"][perm], "means": params["means"][perm],
                "log_var": params["log_var"], "w": params["w"][np.r_[perm, 3]]}
    permuted_loss = float(up.composed_erm_loss(permuted, {"x": xj, "y": yj})[0])
    permuted_predicted = np.asarray(up.composed_erm_predict(permuted, xj))
    flipped = float(up.composed_erm_loss({**params, "w": -params["w"]},
                                         {"x": xj, "y": 1 - yj})[0])
  reference = _np_composed_predict(params, x)
  np.testing.assert_allclose(predicted, reference, rtol=1e-10)
  assert loss == pytest.approx(-np.mean(y * np.log(reference) + (1 - y) * np.log(1 - reference)),
                               rel=1e-10)
  np.testing.assert_allclose(permuted_predicted, reference, rtol=1e-10)
  assert permuted_loss == pytest.approx(loss, rel=1e-12)
  assert flipped == pytest.approx(loss, rel=1e-12)
