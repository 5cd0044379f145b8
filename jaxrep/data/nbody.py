"""Charged n-body dynamics in 3-D: the simulator behind the EGNN / Frame
Averaging n-body benchmark, as a pure function of a PRNG key.

Follows ``ChargedParticlesSim`` of the NRI/EGNN generator (used unchanged by
Puny et al., "Frame Averaging for Invariant and Equivariant Network Design",
ICLR 2022): n particles with charges c_i ∈ {−1, +1} (probability ½ each),
positions x_i ~ N(0, σ²I₃) with σ = loc_std·(n/5)^{1/3}, velocities of norm
``vel_norm`` in uniformly random directions, Coulomb forces

    F_i = Σ_{j≠i} s · c_i c_j (x_i − x_j) / ‖x_i − x_j‖³,

each component clipped to ±max_force, and the generator's integrator with
Δt = 10⁻³: one kick v ← v + Δt·F(x), then per step x ← x + Δt·v,
v ← v + Δt·F(x) (symplectic Euler). Positions and velocities are recorded
after steps sample_every, 2·sample_every, …, giving frames t = 0, 1, …;
frame t is the state after (t + 1)·sample_every steps. No box, no noise
(as in the generator: the wall clamp is commented out there).

The EGNN "nbody_small" task, which Frame Averaging reports on, uses
sample_every = 100 and predicts frame 40 from positions and velocities at
frame 30 (1,000 integration steps later).
"""
from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from jaxrep.nn import l2_normalize

DT = 1e-3
MAX_FORCE = 0.1 / DT


class Trajectory(NamedTuple):
  loc: jax.Array      # (frames, n, 3)
  vel: jax.Array      # (frames, n, 3)
  charges: jax.Array  # (n,) in {−1, +1}


def coulomb_forces(loc: jax.Array, charges: jax.Array, strength: float = 1.0,
                   max_force: float = MAX_FORCE) -> jax.Array:
  """F_i = Σ_{j≠i} s·c_i c_j (x_i − x_j)/‖x_i − x_j‖³, clipped per component; (n, 3)."""
  diff = loc[:, None, :] - loc[None, :, :]
  dist2 = jnp.sum(diff**2, axis=-1)
  n = loc.shape[0]
  off_diagonal = ~jnp.eye(n, dtype=bool)
  safe = jnp.where(off_diagonal, dist2, 1.0)
  size = jnp.where(off_diagonal, strength * jnp.outer(charges, charges) / safe**1.5, 0.0)
  force = jnp.sum(size[:, :, None] * diff, axis=1)
  return jnp.clip(force, -max_force, max_force)


def initial_state(key: jax.Array, n: int, loc_std: float = 1.0, vel_norm: float = 0.5
                  ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(loc (n,3), vel (n,3), charges (n,)) as in the generator."""
  key_c, key_x, key_v = jax.random.split(key, 3)
  charges = jnp.where(jax.random.bernoulli(key_c, 0.5, (n,)), 1.0, -1.0)
  loc = jax.random.normal(key_x, (n, 3)) * loc_std * (n / 5.0) ** (1.0 / 3.0)
  vel = vel_norm * l2_normalize(jax.random.normal(key_v, (n, 3)))
  return loc, vel, charges


def integrate(loc: jax.Array, vel: jax.Array, charges: jax.Array, num_frames: int,
              sample_every: int = 100, strength: float = 1.0, dt: float = DT,
              max_force: float = MAX_FORCE) -> Trajectory:
  """Runs num_frames·sample_every steps from (loc, vel) with ``lax.scan`` and
  records the state after every ``sample_every``-th step.

  The generator's loop (initial kick, then drift–record–kick) is the
  kick–drift map v_k = v_{k−1} + Δt·F(x_{k−1}), x_k = x_{k−1} + Δt·v_k, and it
  records (x_k, v_k).
  """
  def step(carry, _):
    x, v = carry
    v = v + dt * coulomb_forces(x, charges, strength, max_force)
    x = x + dt * v
    return (x, v), None

  def frame(carry, _):
    carry, _ = jax.lax.scan(step, carry, None, length=sample_every)
    return carry, carry

  _, (locs, vels) = jax.lax.scan(frame, (loc, vel), None, length=num_frames)
  return Trajectory(locs, vels, charges)


def charged_trajectory(key: jax.Array, n: int = 5, num_frames: int = 49,
                       sample_every: int = 100, loc_std: float = 1.0,
                       vel_norm: float = 0.5, strength: float = 1.0) -> Trajectory:
  """One trajectory: frames (num_frames, n, 3) of positions and velocities."""
  loc, vel, charges = initial_state(key, n, loc_std, vel_norm)
  return integrate(loc, vel, charges, num_frames, sample_every, strength)


class NBodyTask(NamedTuple):
  """Predict ``target`` (positions at the output frame) from the input frame."""

  loc: jax.Array      # (N, n, 3) positions at frame_in
  vel: jax.Array      # (N, n, 3) velocities at frame_in
  charges: jax.Array  # (N, n)
  target: jax.Array   # (N, n, 3) positions at frame_out


def nbody_prediction_task(key: jax.Array, num: int, n: int = 5, frame_in: int = 30,
                          frame_out: int = 40, sample_every: int = 100) -> NBodyTask:
  """``num`` independent trajectories reduced to (input frame, output frame).

  Defaults give the EGNN "nbody_small" task (5 particles, frame 30 → 40).
  """
  if not 0 <= frame_in < frame_out:
    raise ValueError(f"need 0 <= frame_in < frame_out, got {frame_in}, {frame_out}")
  keys = jax.random.split(key, num)
  traj = jax.vmap(lambda k: charged_trajectory(k, n, frame_out + 1, sample_every))(keys)
  task = NBodyTask(traj.loc[:, frame_in], traj.vel[:, frame_in], traj.charges,
                   traj.loc[:, frame_out])
  chex.assert_shape([task.loc, task.vel, task.target], (num, n, 3))
  return task
