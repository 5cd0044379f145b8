"""Invariance-constrained augmentation (Hounie et al., ICML 2023): the
independent-MH sampler's law (χ² against ∝ loss and the exact one-step law),
the dual step, γ = 0 ⇒ exactly ERM, the primal gradient, the 1-D ops, and the uniform
augmentation baseline (one draw of the sampler's proposal; flip only at zero magnitudes)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats

from experiments import constrained_augmentation as ca_experiment
from jaxrep import groups
from jaxrep.core import fit, tasks, train
from jaxrep.nn import PatchConv1D
from jaxrep.symmetry import constrained_augmentation as ca

TABLE = np.array([0.05, 0.3, 1.0, 2.5, 0.7, 4.0, 0.2, 1.6])


def _run_chains(num_chains, num_steps, seed=0):
  k = len(TABLE)
  table = jnp.asarray(TABLE, jnp.float32)
  propose = lambda key: jax.random.randint(key, (num_chains,), 0, k)
  weight = lambda idx: table[idx]
  states, weights, acceptance = jax.jit(
      lambda key: ca.independent_metropolis_hastings(key, propose, weight, num_steps))(
          jax.random.PRNGKey(seed))
  np.testing.assert_allclose(weights, table[states])
  return np.bincount(np.asarray(states), minlength=k), np.asarray(acceptance)


def test_mh_stationary_law_is_proportional_to_the_loss():
  counts, _ = _run_chains(num_chains=20000, num_steps=30)
  expected = counts.sum() * TABLE / TABLE.sum()
  assert stats.chisquare(counts, expected).pvalue > 1e-3
  # the uniform law (no MH steps) is rejected: the test has power
  assert stats.chisquare(counts, np.full(len(TABLE), counts.sum() / len(TABLE))).pvalue < 1e-10


def test_mh_one_step_law_is_exact():
  k = len(TABLE)
  ratio = np.minimum(1.0, TABLE[None, :] / TABLE[:, None])         # [i, j]: accept i → j
  stay = 1.0 - ratio.mean(axis=1)
  law = ratio.mean(axis=0) / k + stay / k
  np.testing.assert_allclose(law.sum(), 1.0)
  counts, _ = _run_chains(num_chains=40000, num_steps=1, seed=1)
  assert stats.chisquare(counts, counts.sum() * law).pvalue > 1e-3
  assert stats.chisquare(counts, counts.sum() * TABLE / TABLE.sum()).pvalue < 1e-6


def test_mh_with_pytree_states_moves_leaves_together():
  def propose(key):
    idx = jax.random.randint(key, (500,), 0, 4)
    return idx, 10.0 * idx[:, None] * jnp.ones((500, 3))
  states, weights, _ = ca.independent_metropolis_hastings(
      jax.random.PRNGKey(2), propose, lambda s: s[0].astype(jnp.float32) + 0.5, 5)
  np.testing.assert_array_equal(states[1], 10.0 * states[0][:, None] * np.ones((1, 3)))
  np.testing.assert_array_equal(weights, states[0] + 0.5)


def test_dual_ascent_is_projected():
  np.testing.assert_allclose(ca.dual_ascent(jnp.array(1.0), jnp.array(2.0), 0.5, 0.1), 1.15)
  assert float(ca.dual_ascent(jnp.array(0.01), jnp.array(0.0), 0.5, 0.1)) == 0.0
  dual = jnp.array(2.0)
  for _ in range(100):
    dual = ca.dual_ascent(dual, jnp.array(0.3), 10.0, 0.01)    # loose margin
  assert float(dual) == 0.0


def _toy_problem():
  model = ca_experiment.ConvNet1D(10, 4)
  x = jax.random.normal(jax.random.PRNGKey(0), (16, 40))
  y = jnp.arange(16) % 10
  params = model.init(jax.random.PRNGKey(1), x[:1])
  return model, params, {"x": x, "y": y}


def test_zero_multiplier_without_dual_ascent_is_erm():
  """γ = 0 and η_γ = 0: the primal–dual run is the ERM run (float64; XLA fuses
  the two graphs differently, so float32 agrees only to the last bit)."""
  with jax.enable_x64(True):
    model, params, batch = _toy_problem()
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
    batch = {**batch, "x": batch["x"].astype(jnp.float64)}
    optimizer = optax.adam(1e-2)

    def erm(p, b, rng):
      del rng
      return ca.per_example_cross_entropy(model.apply, p, b["x"], b["y"]).mean(), {}

    pd = ca.primal_dual_loss(model.apply, margin=0.0, dual_lr=0.0, num_mh_steps=2)
    erm_state = train.init_train_state(params, optimizer, jax.random.PRNGKey(2))
    erm_state, _ = jax.jit(lambda st: train.scan_steps(
        train.make_train_step(erm, optimizer, jit=False), st, lambda i: batch, 5))(erm_state)
    pd_step = train.make_train_step(pd, optimizer, has_model_state=True, jit=False)
    run_pd = jax.jit(lambda st: train.scan_steps(pd_step, st, lambda i: batch, 5))
    runs = {}
    for init in (0.0, 1.0):
      state = train.init_train_state(params, optimizer, jax.random.PRNGKey(2),
                                     model_state=jnp.asarray(init))
      runs[init], metrics = run_pd(state)
      assert np.all(np.asarray(metrics["constraint_loss"]) > 0)
    assert float(runs[0.0].model_state) == 0.0
    for a, b in zip(jax.tree_util.tree_leaves(erm_state.params),
                    jax.tree_util.tree_leaves(runs[0.0].params)):
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # a positive multiplier changes the trajectory
    moved = [np.abs(a - b).max() for a, b in zip(jax.tree_util.tree_leaves(erm_state.params),
                                                  jax.tree_util.tree_leaves(runs[1.0].params))]
    assert max(moved) > 1e-4


def test_primal_gradient_and_dual_update():
  with jax.enable_x64(True):
    model, params, batch = _toy_problem()
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
    x, y = batch["x"].astype(jnp.float64), batch["y"]
    rng, dual = jax.random.PRNGKey(3), jnp.array(0.7)
    pd = ca.primal_dual_loss(model.apply, margin=0.2, dual_lr=0.05, num_mh_steps=1)
    grads, (metrics, new_dual) = jax.jit(jax.grad(pd, has_aux=True))(params, {"x": x, "y": y}, rng, dual)
    # the MH sample, regenerated with the same key, fixes the reference objective
    propose = lambda k: ca.augment_batch(k, x)
    weight = lambda s: ca.per_example_cross_entropy(model.apply, params, s[0], y)
    (x_mh, _), _, _ = jax.jit(
        lambda k: ca.independent_metropolis_hastings(k, propose, weight, 1))(rng)
    reference = lambda p: (ca.per_example_cross_entropy(model.apply, p, x, y).mean()
                           + 0.7 * ca.per_example_cross_entropy(model.apply, p, x_mh, y).mean())
    expected = jax.jit(jax.grad(reference))(params)
    for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(expected)):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    constraint = ca.per_example_cross_entropy(model.apply, params, x_mh, y).mean()
    np.testing.assert_allclose(new_dual, max(0.0, 0.7 + 0.05 * (float(constraint) - 0.2)),
                               rtol=1e-12)
    np.testing.assert_allclose(metrics["constraint_loss"], constraint, rtol=1e-12)


def test_augmentations_are_the_named_transformations():
  x = jax.random.normal(jax.random.PRNGKey(4), (40,))
  key = jax.random.PRNGKey(5)
  op = {name: i for i, name in enumerate(ca.OPS)}
  np.testing.assert_array_equal(ca.augment_sequence(key, x, op["identity"], 7), x)
  np.testing.assert_array_equal(ca.augment_sequence(key, x, op["flip"], 3), x[::-1])
  shifted = ca.augment_sequence(key, x, op["shift"], 4)       # magnitude 0.5 → 5 samples
  assert any(np.array_equal(shifted, groups.shift_sequence(s, x)) for s in (5, -5))
  scaled = ca.augment_sequence(key, x, op["scale"], 9)        # factor e^{±0.4}
  assert any(np.allclose(scaled, groups.scale_sequence(f, x), atol=1e-4)
             for f in (np.exp(0.4), np.exp(-0.4)))
  erased = np.asarray(ca.augment_sequence(key, x, op["erase"], 4))  # round(0.5 · 16) = 8
  changed = erased != np.asarray(x)
  assert changed.sum() == 8 and np.all(erased[changed] == 0)
  assert np.ptp(np.flatnonzero(changed)) == 7                   # one contiguous window
  noise_small = ca.augment_sequence(key, x, op["noise"], 0) - x
  noise_large = ca.augment_sequence(key, x, op["noise"], 9) - x
  np.testing.assert_allclose(noise_large, 10 * noise_small, rtol=1e-4, atol=1e-6)


def test_uniform_proposal_covers_ops_and_levels_uniformly():
  op, level = ca.sample_op_level(jax.random.PRNGKey(6), 60000, 10)
  assert stats.chisquare(np.bincount(np.asarray(op), minlength=len(ca.OPS))).pvalue > 1e-3
  assert stats.chisquare(np.bincount(np.asarray(level), minlength=10)).pvalue > 1e-3
  x = jnp.ones((7, 40))
  out, ops = ca.augment_batch(jax.random.PRNGKey(7), x)
  assert out.shape == (7, 40) and ops.shape == (7,)


def test_primal_dual_task_with_zero_multiplier_trains_the_erm_run():
  """Through ``fit``: γ₀ = 0, η_γ = 0 gives the run ``classifier_task`` gives
  (same init key, minibatches and steps; float32, so equal up to fusion order)."""
  model = ca_experiment.ConvNet1D(10, 4)
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 40, 40))
  runs = {"key": jax.random.split(jax.random.PRNGKey(1), 1),
          "examples": {"x": x, "y": (jnp.arange(40) % 10)[None]}}
  optimizer = optax.adam(1e-2)
  erm = tasks.classifier_task(model.init, model.apply, optimizer, batch_size=8, replace=True)
  pd = ca.primal_dual_task(model.init, model.apply, optimizer, batch_size=8, replace=True,
                           margin=0.1, dual_lr=0.0, init_dual=0.0)
  erm_state = fit.fit(erm, runs, 4, name="erm", progress=False).state
  pd_state = fit.fit(pd, runs, 4, name="pd", progress=False).state
  assert float(pd_state.model_state[0]) == 0.0
  for a, b in zip(jax.tree_util.tree_leaves(erm_state.params),
                  jax.tree_util.tree_leaves(pd_state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_patch_conv_equals_flax_conv():
  import flax.linen as nn
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 11, 3))
  for kernel, stride in ((5, 1), (3, 2)):
    patch = PatchConv1D(4, kernel, stride)
    params = patch.init(jax.random.PRNGKey(1), x)
    w = params["params"]["Dense_0"]["kernel"].reshape(kernel, 3, 4)
    pad = kernel // 2
    conv = nn.Conv(4, (kernel,), strides=stride, padding=((pad, pad),))
    reference = conv.apply({"params": {"kernel": w, "bias": params["params"]["Dense_0"]["bias"]}},
                           x)
    np.testing.assert_allclose(patch.apply(params, x), reference, atol=1e-5)


def _flip_invariant_classifier(seed=8, length=40, classes=10):
  """logits = (x + reverse(x)) W + b: exactly invariant to the flip op."""
  rng = np.random.default_rng(seed)
  params = {"w": jnp.asarray(rng.normal(size=(length, classes)) / np.sqrt(length)),
            "b": jnp.asarray(rng.normal(size=classes))}
  return params, lambda p, x: (x + x[..., ::-1]) @ p["w"] + p["b"]


def test_uniform_baseline_is_one_draw_of_the_pd_proposal_and_sees_every_magnitude():
  """The TrivialAugment-style baseline's loss is the mean CE on exactly the batch the
  primal–dual sampler's proposal q draws with the same key, levels and magnitudes.
  With every magnitude zero the only non-identity op is the flip, so a flip-invariant
  classifier's baseline loss equals its clean loss for every key; with non-zero
  magnitudes it does not.

  Catches: the baseline trained on clean signals (``augmented`` → ``x``), magnitudes
  not forwarded to ``augment_batch`` (defaults used), ``num_levels`` not forwarded, and
  an op that ignores its magnitude (noise of std m instead of m·noise_std)."""
  params, apply_fn = _flip_invariant_classifier()
  x = jax.random.normal(jax.random.PRNGKey(9), (32, 40))
  y = jnp.arange(32) % 10
  batch = {"x": x, "y": y}
  clean = float(ca.per_example_cross_entropy(apply_fn, params, x, y).mean())
  magnitudes = {"max_shift": 3, "max_log_scale": 0.2, "noise_std": 0.5, "max_erase": 6}
  zero = {"max_shift": 0, "max_log_scale": 0.0, "noise_std": 0.0, "max_erase": 0}

  @jax.jit
  @jax.vmap
  def losses(key):
    """(baseline, its proposal draw, baseline at zero magnitudes)."""
    draw = ca.augment_batch(key, x, 4, **magnitudes)[0]
    return (ca.uniform_augmentation_loss(apply_fn, 4, **magnitudes)(params, batch, key)[0],
            ca.per_example_cross_entropy(apply_fn, params, draw, y).mean(),
            ca.uniform_augmentation_loss(apply_fn, 10, **zero)(params, batch, key)[0])

  baseline, proposal, flat = map(np.asarray, losses(jax.random.split(jax.random.PRNGKey(10), 4)))
  np.testing.assert_allclose(baseline, proposal, rtol=1e-6)
  assert np.min(np.abs(proposal - clean)) > 1e-2  # the other ops do move this classifier
  np.testing.assert_allclose(flat, clean, rtol=1e-6)
