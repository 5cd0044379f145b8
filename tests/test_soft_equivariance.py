"""PER projectors and regularizers (Kim et al., ICML 2023): projectors are
symmetric and idempotent, P W is equivariant, R = 0 iff W is equivariant,
block-wise projection equals the dense SVD projector, auto-λ, and the
modified-inertia target's symmetries."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep import groups
from jaxrep.groups import equivariance as eq
from jaxrep.symmetry import soft_equivariance as se

REP_IN = se.TensorRep((2, 2, 1))
REP_OUT = se.TensorRep((1, 1, 2))


def _o2z_sample(key):
  q = groups.sample_o2(key)
  return jnp.eye(3).at[:2, :2].set(q)


SAMPLERS = {"O3": groups.sample_o3, "SO3": groups.sample_so3, "O2_z": _o2z_sample,
            "O2_x": lambda k: se.sample_element(k, se.o2_about(0))}
GROUPS = {"O3": se.o3(), "SO3": se.so3(), "O2_z": se.o2_about(2), "O2_x": se.o2_about(0)}


def test_equivariant_dimensions_match_theory():
  """dim Hom_G(T_a, T_b): O(3) has 1 (T0→T0), 1 (T1→T1), 3 (T2→T2), 1 (T0→T2),
  0 for odd total rank; SO(3) adds ε (T1→T2); O(2) about an axis has 2 (T1→T1)."""
  dim = lambda g, b, a: int(round(np.trace(se.rank_block_projector(g, b, a))))
  o3, so3, o2 = se.o3(), se.so3(), se.o2_about(2)
  assert [dim(o3, 0, 0), dim(o3, 1, 1), dim(o3, 2, 2), dim(o3, 2, 0), dim(o3, 2, 1)] == [1, 1, 3, 1, 0]
  assert dim(so3, 2, 1) == 1 and dim(so3, 1, 0) == 0
  assert [dim(o2, 1, 1), dim(o2, 1, 0), dim(o2, 2, 2)] == [2, 1, 10]


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_projector_symmetric_idempotent_and_matches_blockwise(name):
  group = GROUPS[name]
  dense = se.dense_projector(group, REP_IN, REP_OUT)
  np.testing.assert_allclose(dense, dense.T, atol=1e-10)
  np.testing.assert_allclose(dense @ dense, dense, atol=1e-10)
  with jax.enable_x64(True):
    w = jax.random.normal(jax.random.PRNGKey(0), (REP_OUT.size, REP_IN.size))
    blockwise = se.project_weight(w, group, REP_IN, REP_OUT)
    np.testing.assert_allclose(blockwise, (dense @ np.asarray(w).reshape(-1)).reshape(w.shape),
                               atol=1e-10)
    np.testing.assert_allclose(se.project_weight(blockwise, group, REP_IN, REP_OUT), blockwise,
                               atol=1e-10)


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_projected_weights_are_equivariant_and_penalty_vanishes(name):
  group, sample = GROUPS[name], SAMPLERS[name]
  with jax.enable_x64(True):
    w = jax.random.normal(jax.random.PRNGKey(1), (REP_OUT.size, REP_IN.size))
    b = jax.random.normal(jax.random.PRNGKey(2), (REP_OUT.size,))
    pw = se.project_weight(w, group, REP_IN, REP_OUT)
    pb = se.project_bias(b, group, REP_OUT)
    for seed in range(4):
      g = sample(jax.random.PRNGKey(10 + seed))
      rho_in, rho_out = se.rep_rho(REP_IN, g), se.rep_rho(REP_OUT, g)
      np.testing.assert_allclose(rho_out @ pw, pw @ rho_in, atol=1e-10)
      np.testing.assert_allclose(rho_out @ pb, pb, atol=1e-10)
    assert float(se.projection_penalty(pw, pb, group, REP_IN, REP_OUT)) < 1e-20
    penalty = float(se.projection_penalty(w, b, group, REP_IN, REP_OUT))
    expected = float(0.5 * jnp.sum((w - pw) ** 2) + 0.5 * jnp.sum((b - pb) ** 2))
    assert penalty == pytest.approx(expected, rel=1e-10) and penalty > 1e-2
    # a random g maps the unprojected W off the equivariant space
    g = sample(jax.random.PRNGKey(99))
    assert np.abs(se.rep_rho(REP_OUT, g) @ w - w @ se.rep_rho(REP_IN, g)).max() > 1e-2


def test_penalty_is_zero_exactly_for_the_groups_a_map_respects():
  """v ↦ (e_z·v) e_z is O(2)_z- but not O(3)- or O(2)_x-equivariant."""
  with jax.enable_x64(True):
    rep = se.TensorRep((0, 1))
    w = jnp.zeros((3, 3)).at[2, 2].set(1.0)
    b = jnp.zeros(3)
    r = {n: float(se.projection_penalty(w, b, GROUPS[n], rep, rep)) for n in GROUPS}
    assert r["O2_z"] < 1e-20
    assert r["O3"] > 0.1 and r["O2_x"] > 0.1
    identity = jnp.eye(3)
    assert max(float(se.projection_penalty(identity, b, GROUPS[n], rep, rep)) for n in GROUPS) < 1e-20


def test_auto_lambda():
  lambdas = jnp.array([0.0, 100.0, 100.0, 100.0])
  penalties = jnp.array([5.0, 0.5, 1.0, 2.0])
  out = np.asarray(se.auto_lambda(lambdas, penalties, 2.0))
  np.testing.assert_allclose(out, [0.0, 100.0, 25.0, 6.25])
  assert int(np.argmax(out)) == 1


def test_tensor_network_exact_models_and_inertia_symmetries():
  with jax.enable_x64(True):
    x, y = se.modified_inertia(jax.random.PRNGKey(0), 16)
    assert x.shape == (16, 20) and y.shape == (16, 9) and (x[:, :5] > 0).all()
    rep_in, rep_out = se.TensorRep((5, 5)), se.TensorRep((0, 0, 1))
    act_in = lambda g, x: x @ se.rep_rho(rep_in, g).T
    act_out = lambda g, y: y @ se.rep_rho(rep_out, g).T
    key = jax.random.PRNGKey(1)
    # the target: O(2) about z exact, O(3) broken, α = 0 restores O(3)
    target = jax.jit(se.inertia_target)
    eq.assert_equivariant(target, _o2z_sample, act_in, act_out, x, key, atol=1e-10)
    assert eq.equivariance_error(target, groups.sample_o3, act_in, act_out, x, key) > 1e-2
    pure = jax.jit(lambda x: se.inertia_target(x, alpha=0.0))
    eq.assert_equivariant(pure, groups.sample_o3, act_in, act_out, x, key, atol=1e-10)
    # exactly projected networks are equivariant; the free one is not
    for name, sample in (("O3", groups.sample_o3), ("O2_z", _o2z_sample)):
      model = se.TensorMLP(rep_in, se.TensorRep((3, 2, 2)), rep_out, 2, GROUPS[name])
      params = jax.jit(model.init)(key, x)
      f = jax.jit(lambda x: model.apply(params, x))
      eq.assert_equivariant(f, sample, act_in, act_out, x, key, atol=1e-9)
    free = se.TensorMLP(rep_in, se.TensorRep((3, 2, 2)), rep_out, 2)
    params = jax.jit(free.init)(key, x)
    assert eq.equivariance_error(jax.jit(lambda x: free.apply(params, x)), groups.sample_o3,
                                 act_in, act_out, x, key) > 1e-3
    penalties = jax.jit(lambda p: se.network_penalties(p, free, [GROUPS["O3"], GROUPS["O2_z"]]))(
        params)
    assert penalties.shape == (2,) and penalties[0] >= penalties[1] > 0  # O(2)_z ⊂ O(3)


def test_nonlinearity_and_products_are_o3_equivariant():
  with jax.enable_x64(True):
    rep = se.TensorRep((3, 2, 2))
    x = jax.random.normal(jax.random.PRNGKey(0), (4, se.gated(rep).size))
    act_g = lambda g, x: x @ se.rep_rho(se.gated(rep), g).T
    act = lambda g, x: x @ se.rep_rho(rep, g).T
    f = jax.jit(lambda x: se.gated_nonlinearity(x + se.equivariant_products(x, se.gated(rep)), rep))
    eq.assert_equivariant(f, groups.sample_o3, act_g, act, x, jax.random.PRNGKey(1), atol=1e-10)


def test_network_penalties_match_layerwise_projection_penalty():
  with jax.enable_x64(True):
    model = se.TensorMLP(se.TensorRep((5, 5)), se.TensorRep((3, 2, 2)), se.TensorRep((0, 0, 1)), 2)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 20)))
    group_list = [GROUPS[n] for n in sorted(GROUPS)]
    expected = [sum(float(se.projection_penalty(params["params"][f"linear_{i}_kernel"],
                                                params["params"][f"linear_{i}_bias"], g, ri, ro))
                    for i, (ri, ro) in enumerate(model.layer_reps())) for g in group_list]
    penalties = jax.jit(lambda p: se.network_penalties(p, model, group_list))(params)
    np.testing.assert_allclose(penalties, expected, rtol=1e-10)


def test_per_loss_is_mse_plus_weighted_penalties_plus_weight_decay():
  with jax.enable_x64(True):
    model = se.TensorMLP(se.TensorRep((5, 5)), se.TensorRep((3, 2, 2)), se.TensorRep((0, 0, 1)), 2)
    x, y = se.modified_inertia(jax.random.PRNGKey(0), 8)
    params = jax.jit(model.init)(jax.random.PRNGKey(1), x)
    group_list = [GROUPS["O3"], GROUPS["O2_z"]]
    lambdas = jnp.array([3.0, 0.5])
    loss, metrics = se.per_loss_fn(model, group_list, 0.01)(
        params, {"x": x, "y": y, "lambdas": lambdas}, None)
    mse = float(jnp.mean((model.apply(params, x) - y) ** 2))
    penalties = se.network_penalties(params, model, group_list)
    decay = sum(0.5 * float(jnp.sum(v**2)) for k, v in params["params"].items()
                if k.startswith("linear_"))
    np.testing.assert_allclose(metrics["mse"], mse, rtol=1e-12)
    np.testing.assert_allclose(metrics["penalties"], penalties, rtol=1e-12)
    np.testing.assert_allclose(loss, mse + float(lambdas @ penalties) + 0.01 * decay, rtol=1e-12)
    assert float(lambdas @ penalties) > 0 and decay > 0
