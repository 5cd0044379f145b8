"""Frame averaging (Puny et al., ICLR 2022) and the charged n-body simulator:
frame equivariance F(gX) = gF(X), exact E(3) equivariance of averaged
non-equivariant backbones, and the simulator against a NumPy port of the
EGNN generator."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep import groups
from jaxrep.data import nbody
from jaxrep.groups import equivariance as eq
from jaxrep.symmetry import frame_averaging as fa


def _cloud(seed=0, n=7):
  """A generic anisotropic cloud (distinct covariance eigenvalues)."""
  x = jax.random.normal(jax.random.PRNGKey(seed), (n, 3))
  return x * jnp.array([3.0, 1.5, 0.5]) + jnp.array([1.0, -2.0, 0.5])


def _set_distance(a, b):
  """max over a of the distance to the nearest element of b (and vice versa)."""
  d = np.abs(np.asarray(a)[:, None] - np.asarray(b)[None]).max(axis=(2, 3))
  return max(d.min(axis=1).max(), d.min(axis=0).max())


@pytest.mark.parametrize("group,sampler,size", [("O3", groups.sample_o3, 8),
                                                ("SO3", groups.sample_so3, 4)])
def test_pca_frames_are_equivariant(group, sampler, size):
  with jax.enable_x64(True):
    x = _cloud()
    rotations, centre = fa.pca_frames(x, group)
    assert rotations.shape == (size, 3, 3)
    np.testing.assert_allclose(jnp.einsum("kji,kjl->kil", rotations, rotations),
                               np.broadcast_to(np.eye(3), (size, 3, 3)), atol=1e-12)
    if group == "SO3":
      np.testing.assert_allclose(jnp.linalg.det(rotations), 1.0, atol=1e-12)
    for seed in range(3):
      r, t = groups.sample_e3(jax.random.PRNGKey(seed))
      if group == "SO3":
        r = r * jnp.linalg.det(r)
      moved_rotations, moved_centre = fa.pca_frames(groups.apply_e3((r, t), x), group)
      np.testing.assert_allclose(moved_centre, r @ centre + t, atol=1e-12)
      assert _set_distance(moved_rotations, r[None] @ rotations) < 1e-10
      # and the frame is not simply invariant
      assert _set_distance(moved_rotations, rotations) > 1e-2


def _mlp_backbone(seed=0, n=7, out=3):
  """A non-equivariant backbone: an MLP on the flattened coordinates."""
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
  w1 = jax.random.normal(k1, (n * 6, 32)) / 4
  w2 = jax.random.normal(k2, (32, n * out)) / 4
  b = jax.random.normal(k3, (32,))

  def backbone(points, vectors, scale):
    h = jnp.tanh(jnp.concatenate([points, vectors], -1).reshape(-1) @ w1 + b)
    return scale * (h @ w2).reshape(n, out)

  return backbone


def _e3_actions(output):
  act_out = {"points": groups.apply_e3,
             "vectors": lambda g, y: groups.rotate_points(g[0], y),
             "invariant": eq.trivial_action}[output]
  return groups.apply_e3_with_vectors, act_out


@pytest.mark.parametrize("output", ["points", "vectors", "invariant"])
def test_frame_average_is_exactly_e3_equivariant_with_reflections(output):
  with jax.enable_x64(True):
    x = (_cloud(1), jax.random.normal(jax.random.PRNGKey(2), (7, 3)))
    backbone = _mlp_backbone()
    averaged = fa.frame_average(backbone, "O3", output)
    f = jax.jit(lambda x: averaged(x[0], x[1], 2.0))
    act_in, act_out = _e3_actions(output)
    key = jax.random.PRNGKey(3)
    error = eq.assert_equivariant(f, groups.sample_e3, act_in, act_out, x, key,
                                  num_samples=6, atol=1e-5)
    assert error < 1e-9
    raw = lambda x: backbone(x[0], x[1], 2.0)
    assert eq.equivariance_error(raw, groups.sample_e3, act_in, act_out, x, key) > 1e-2


def test_so3_frames_give_rotation_but_not_reflection_equivariance():
  with jax.enable_x64(True):
    x = (_cloud(4), jax.random.normal(jax.random.PRNGKey(5), (7, 3)))
    averaged = fa.frame_average(_mlp_backbone(1), "SO3", "points")
    f = jax.jit(lambda x: averaged(x[0], x[1], 1.0))
    act_in, act_out = _e3_actions("points")
    sample_se3 = lambda k: (groups.sample_so3(k), jax.random.normal(k, (3,)))
    eq.assert_equivariant(f, sample_se3, act_in, act_out, x, jax.random.PRNGKey(6), atol=1e-8)
    reflect = lambda k: (-groups.sample_so3(k), jnp.zeros(3))
    assert eq.equivariance_error(f, reflect, act_in, act_out, x, jax.random.PRNGKey(7)) > 1e-3


def test_frame_average_of_an_equivariant_map_is_the_map():
  with jax.enable_x64(True):
    x, v = _cloud(8), jax.random.normal(jax.random.PRNGKey(9), (7, 3))
    identity = fa.frame_average(lambda p, vv: p + 0.5 * vv, "O3", "points")
    np.testing.assert_allclose(identity(x, v), x + 0.5 * v, atol=1e-12)
    norms = fa.frame_average(lambda p, vv: jnp.linalg.norm(p, axis=-1), "O3", "invariant")
    np.testing.assert_allclose(norms(x), jnp.linalg.norm(x - x.mean(0), axis=-1), atol=1e-12)


def test_fa_gnn_is_e3_and_permutation_equivariant():
  with jax.enable_x64(True):
    n = 5
    model = fa.NBodyGNN(hidden=8, layers=2)
    loc, vel = _cloud(10, n), jax.random.normal(jax.random.PRNGKey(11), (n, 3))
    charges = jnp.array([1.0, -1.0, 1.0, 1.0, -1.0])
    params = jax.jit(model.init)(jax.random.PRNGKey(12), loc, vel, charges)
    averaged = fa.frame_average(lambda p, v, q: model.apply(params, p, v, q), "O3", "points")
    f = jax.jit(lambda x: averaged(x[0], x[1], charges))
    act_in, act_out = _e3_actions("points")
    eq.assert_equivariant(f, groups.sample_e3, act_in, act_out, (loc, vel),
                          jax.random.PRNGKey(13), atol=1e-9)
    # permutations act on particles (and charges) of inputs and outputs
    g = jax.jit(lambda x: averaged(x[0], x[1], x[2]))
    perms = groups.permutation_group(n)
    perm_in = lambda p, x: tuple(perms.act(p, a) for a in x)
    eq.assert_equivariant(g, perms.sample, perm_in, perms.act, (loc, vel, charges),
                          jax.random.PRNGKey(14), atol=1e-9)
    plain = jax.jit(lambda x: model.apply(params, x[0], x[1], charges))
    assert eq.equivariance_error(plain, groups.sample_e3, act_in, act_out, (loc, vel),
                                 jax.random.PRNGKey(13)) > 1e-3


def _generator_reference(loc, vel, charges, num_frames, freq, dt=1e-3, max_force=100.0):
  """NumPy port of ChargedParticlesSim.sample_trajectory's loop (no noise)."""
  loc, vel = loc.T.copy(), vel.T.copy()
  edges = np.outer(charges, charges)

  def force(x):
    diff = x[:, :, None] - x[:, None, :]
    d3 = np.sum(diff**2, 0) ** 1.5
    np.fill_diagonal(d3, 1.0)
    size = edges / d3
    np.fill_diagonal(size, 0.0)
    return np.clip((size[None] * diff).sum(-1), -max_force, max_force)

  vel = vel + dt * force(loc)
  locs, vels = [], []
  for i in range(1, (num_frames + 1) * freq):
    loc = loc + dt * vel
    if i % freq == 0:
      locs.append(loc.T.copy())
      vels.append(vel.T.copy())
    vel = vel + dt * force(loc)
  return np.stack(locs[:num_frames]), np.stack(vels[:num_frames])


def test_simulator_matches_numpy_generator():
  with jax.enable_x64(True):
    loc, vel, charges = nbody.initial_state(jax.random.PRNGKey(0), 5)
    assert set(np.unique(charges)) <= {-1.0, 1.0}
    np.testing.assert_allclose(jnp.linalg.norm(vel, axis=-1), 0.5, atol=1e-12)
    # squeeze particles together so the force clip is exercised
    traj = nbody.integrate(0.3 * loc, vel, charges, num_frames=4, sample_every=50)
    ref_loc, ref_vel = _generator_reference(np.asarray(0.3 * loc), np.asarray(vel),
                                            np.asarray(charges), 4, 50)
    np.testing.assert_allclose(traj.loc, ref_loc, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(traj.vel, ref_vel, rtol=1e-9, atol=1e-9)


def test_simulator_is_e3_equivariant_without_clipping_and_conserves_momentum():
  with jax.enable_x64(True):
    loc, vel, charges = nbody.initial_state(jax.random.PRNGKey(3), 5)
    loc = 2.0 * loc  # well separated: forces stay below the clip
    r, t = groups.sample_e3(jax.random.PRNGKey(4))
    a = nbody.integrate(loc, vel, charges, 3, 20)
    b = nbody.integrate(*groups.apply_e3_with_vectors((r, t), (loc, vel)), charges, 3, 20)
    np.testing.assert_allclose(b.loc, groups.apply_e3((r, t), a.loc), atol=1e-10)
    np.testing.assert_allclose(a.vel.sum(1), np.broadcast_to(vel.sum(0), (3, 3)), atol=1e-12)


def test_prediction_task_shapes_and_frames():
  task = nbody.nbody_prediction_task(jax.random.PRNGKey(0), 3, frame_in=1, frame_out=2,
                                     sample_every=10)
  assert task.loc.shape == task.target.shape == (3, 5, 3) and task.charges.shape == (3, 5)
  traj = nbody.charged_trajectory(jax.random.split(jax.random.PRNGKey(0), 3)[1], 5, 3, 10)
  np.testing.assert_allclose(task.loc[1], traj.loc[1], atol=1e-6)
  np.testing.assert_allclose(task.target[1], traj.loc[2], atol=1e-6)
  with pytest.raises(ValueError):
    nbody.nbody_prediction_task(jax.random.PRNGKey(0), 3, frame_in=2, frame_out=2)

