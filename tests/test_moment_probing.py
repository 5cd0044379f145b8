"""Moment probing: MHC³ against a NumPy transcription of the official head,
token-permutation invariance, the exact reduction to half a linear probe, the
covariance-task sampler, and training under ``fit`` sharded over 8 devices."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from jaxrep import groups
from jaxrep.nn import l2_normalize
from jaxrep.probe import moment_probing as mp

N, T, D, C = 3, 10, 12, 5
HIDDEN, HEADS = 32, 4  # heads of 8 channels: 8 → 3 → 1 after the two convolutions


def _inputs(seed=0):
  key_c, key_t = jax.random.split(jax.random.PRNGKey(seed))
  return jax.random.normal(key_c, (N, D)), jax.random.normal(key_t, (N, T, D))


def _probe():
  cls, tokens = _inputs()
  probe = mp.MomentProbe(C, HIDDEN, HEADS)
  params = probe.init(jax.random.PRNGKey(1), cls, tokens)
  # Non-trivial LayerNorm affine parameters, so the reference checks their use.
  norm = params["params"]["mhc3"]["head_norm"]
  norm["scale"] = 1.0 + 0.3 * jax.random.normal(jax.random.PRNGKey(2), norm["scale"].shape)
  norm["bias"] = 0.2 * jax.random.normal(jax.random.PRNGKey(3), norm["bias"].shape)
  return probe, params, cls, tokens


def _conv2d_valid_stride2(x, kernel):
  """x (H, W, Cin), kernel (3, 3, Cin, Cout) → (H', W', Cout), cross-correlation."""
  h_out, w_out = (x.shape[0] - 3) // 2 + 1, (x.shape[1] - 3) // 2 + 1
  out = np.zeros((h_out, w_out, kernel.shape[-1]))
  for i in range(h_out):
    for j in range(w_out):
      patch = x[2 * i:2 * i + 3, 2 * j:2 * j + 3]
      out[i, j] = np.einsum("abc,abcd->d", patch, kernel)
  return out


def _reference_mhc3(params, tokens):
  """The official Moment_Probing_ViT second-order branch ('near'), one sample at a time."""
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params["params"]["mhc3"])
  out = []
  for x in np.asarray(tokens, np.float64):
    x = x @ p["proj"]["kernel"] + p["proj"]["bias"]
    heads = x.reshape(T, HEADS, HIDDEN // HEADS).transpose(1, 0, 2)
    mu = heads.mean(-1, keepdims=True)
    var = heads.var(-1, keepdims=True)
    heads = (heads - mu) / np.sqrt(var + 1e-6) * p["head_norm"]["scale"] + p["head_norm"]["bias"]
    maps = []
    for i in range(HEADS - 1):
      a = heads[i] - heads[i].mean()
      b = heads[i + 1] - heads[i + 1].mean()
      cov = a.T @ b / T
      maps.append(cov / np.linalg.norm(cov, axis=0, keepdims=True))
    h = np.stack(maps, -1)
    h = _conv2d_valid_stride2(h, p["Conv_0"]["kernel"])
    h = np.asarray(jax.nn.gelu(jnp.asarray(h)))
    h = _conv2d_valid_stride2(h, p["Conv_1"]["kernel"])
    out.append(h.transpose(2, 0, 1).reshape(-1))
  return np.stack(out)


def test_mhc3_matches_numpy_transcription_of_official_head():
  probe, params, _, tokens = _probe()
  features = mp.MHC3(HIDDEN, HEADS).apply({"params": params["params"]["mhc3"]}, tokens)
  assert features.shape == (N, (HEADS - 1) * 1 * 1)
  np.testing.assert_allclose(features, _reference_mhc3(params, tokens), rtol=1e-4, atol=1e-5)


def test_mhc3_feature_count_matches_official_geometry():
  """A 512-d projection in 4 heads gives the official 3 × 31 × 31 = 2883 features."""
  tokens = jnp.zeros((1, 4, 8))
  shapes = jax.eval_shape(lambda t: mp.MHC3(512, 4).init_with_output(
      jax.random.PRNGKey(0), t)[0], tokens)
  assert shapes.shape == (1, 2883)


def test_moment_probe_is_invariant_to_token_permutations():
  probe, params, cls, tokens = _probe()

  tokens_perm = groups.permutation_group(T, axis=1)
  groups.assert_invariant(lambda tok: probe.apply(params, cls, tok), *tokens_perm, tokens,
                          jax.random.PRNGKey(4), num_samples=6, atol=1e-5)


def test_moment_probe_is_not_invariant_to_permuting_channels():
  probe, params, cls, tokens = _probe()
  perm = jax.random.permutation(jax.random.PRNGKey(5), D)
  moved = probe.apply(params, cls, tokens[:, :, perm])
  assert float(jnp.max(jnp.abs(moved - probe.apply(params, cls, tokens)))) > 1e-3


def test_zero_second_order_branch_is_exactly_half_the_linear_probe():
  probe, params, cls, tokens = _probe()
  second = params["params"]["second_order"]
  params["params"]["second_order"] = jax.tree_util.tree_map(jnp.zeros_like, second)
  lp_params = {"params": {"first_order": params["params"]["first_order"]}}
  linear = mp.LinearProbe(C).apply(lp_params, cls)
  np.testing.assert_array_equal(probe.apply(params, cls, tokens), 0.5 * linear)
  np.testing.assert_allclose(0.5 * linear, 0.5 * (cls @ lp_params["params"]["first_order"]["kernel"]
                                                  + lp_params["params"]["first_order"]["bias"]),
                             rtol=1e-6)


def test_cross_covariance_and_column_normalisation_match_numpy():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(2, 7, 3)), rng.normal(size=(2, 7, 4))
  cov = np.asarray(mp.cross_covariance(jnp.asarray(a), jnp.asarray(b)))
  np.testing.assert_allclose(cov, np.einsum("nti,ntj->nij", a, b) / 7, rtol=1e-5)
  unit = np.asarray(l2_normalize(jnp.asarray(cov), axis=-2))
  np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(unit * np.linalg.norm(cov, axis=1, keepdims=True), cov, rtol=1e-5)


def test_split_cls():
  tokens = jnp.arange(2 * 4 * 3.0).reshape(2, 4, 3)
  cls, rest = mp.split_cls(tokens)
  np.testing.assert_array_equal(cls, tokens[:, 0])
  np.testing.assert_array_equal(rest, tokens[:, 1:])


def test_covariance_task_sampler_statistics():
  covs = mp.class_covariances(4, 10, 0.5)
  tokens, y = mp.covariance_tokens(jax.random.PRNGKey(0), 800, 16, covs)
  tokens, y = np.asarray(tokens, np.float64), np.asarray(y)
  assert stats.chisquare(np.bincount(y, minlength=4)).pvalue > 1e-3
  for c in range(4):
    flat = tokens[y == c].reshape(-1, 10)
    # equal means (0) and unit variances in every class; only Σ_{2c,2c+1} = ρ differs.
    se = 1.0 / np.sqrt(len(flat))
    assert np.max(np.abs(flat.mean(0))) < 5 * se
    np.testing.assert_allclose(np.cov(flat.T), np.asarray(covs[c]), atol=10 * se)


def test_gaussian_oracle_beats_chance_and_first_moment_is_uninformative():
  covs = mp.class_covariances(4, 8, 0.5)
  tokens, y = mp.covariance_tokens(jax.random.PRNGKey(1), 600, 32, covs)
  assert float(mp.gaussian_oracle_accuracy(tokens, y, covs)) > 0.85
  means = np.asarray(tokens.mean(1))
  by_class = [means[np.asarray(y) == c] for c in range(4)]
  assert stats.f_oneway(*[m[:, 0] for m in by_class]).pvalue > 1e-3


def test_moment_probe_trains_the_same_sharded_over_eight_devices_as_on_one():
  """MHC³'s ``jaxrep.nn.Conv`` (a custom VJP) under ``fit``'s vmap with the runs
  sharded over the ``seed`` axis of 8 devices (3 runs, padded) gives the states of
  the same runs trained on one device."""
  from jaxrep.core import fit as fit_lib
  from jaxrep.core import tasks
  from jaxrep.core.parallel import make_mesh
  import optax

  probe = mp.MomentProbe(C, HIDDEN, HEADS)
  cls, tokens = _inputs()
  labels = jnp.arange(N) % C
  task = tasks.classifier_task(lambda key, x: probe.init(key, *x),
                               lambda params, x: probe.apply(params, *x),
                               optax.sgd(0.5), batch_size=None)
  runs = {"key": jax.random.split(jax.random.PRNGKey(4), 3)}
  data = {"examples": {"x": (cls, tokens), "y": labels}}
  assert jax.device_count() == 8
  sharded = fit_lib.fit(task, runs, 5, data=data, progress=False)
  single = fit_lib.fit(task, runs, 5, data=data, progress=False,
                       mesh=make_mesh(num_data=1, num_seed=1))
  assert sharded.layout["state_devices"] == 8 and sharded.layout["padded_runs"] == 5
  kernel = sharded.state.params["params"]["mhc3"]["Conv_0"]["kernel"]
  assert kernel.shape[0] == 3
  start = jax.vmap(lambda k: probe.init(jax.random.split(k)[0], cls, tokens))(runs["key"])
  moved = np.abs(np.asarray(kernel) - np.asarray(start["params"]["mhc3"]["Conv_0"]["kernel"]))
  assert moved.min(axis=tuple(range(1, moved.ndim))).max() > 0  # every run's conv trained
  for a, b in zip(jax.tree.leaves(sharded.state.params), jax.tree.leaves(single.state.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(sharded.curves["loss"], single.curves["loss"], rtol=1e-5)
