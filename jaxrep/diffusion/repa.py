r"""REPA: representation alignment of a diffusion transformer's hidden states.

Yu, Kwak, Jang, Jeong, Huang, Shin, Xie, "Representation Alignment for Generation:
Training Diffusion Transformers Is Easier Than You Think", ICLR 2025
(official code: github.com/sihyun-yu/REPA, ``loss.py`` (``SILoss``) and
``models/sit.py`` (``build_mlp``, the projector); ``train.py`` for λ and depth).

SiT (Ma et al. 2024) is trained on the linear interpolant
x_t = (1 − t) x₀ + t ε, t ~ U[0, 1], with velocity prediction
v*(x_t, t) = ε − x₀ = ∂x_t/∂t (``schedules.LinearInterpolant``,
``parameterization`` kind ``"velocity"``). REPA adds, for the hidden state
H_t = f_θ^{[k]}(x_t) ∈ R^{N×D} after block k of the transformer (N patches),
a trainable projector h_φ (an MLP: Linear–SiLU–Linear–SiLU–Linear) and a frozen
encoder's patch features y* = f(x₀) ∈ R^{N×D_e} of the *clean* input:

    L_REPA(θ, φ) = −E_{x₀, ε, t} [ (1/N) Σ_n sim(y*^{[n]}, h_φ(H_t^{[n]})) ],
    sim(a, b) = ⟨a, b⟩ / (‖a‖ ‖b‖)                                  (paper eq. 8),

    L = L_velocity(θ) + λ L_REPA(θ, φ),   λ = 0.5 (the paper's default)   (eq. 9).

The encoder's features enter through a stop-gradient: the encoder is frozen and
receives no gradient. In the official code the alignment is taken at the output
of block ``encoder_depth`` = 8 of 28 (SiT-XL/2) and the projector's hidden width
is 2048; here ``block`` is the 0-based index of the ``dit.DiT`` block whose sown
output ("block_{k}") is aligned.

``repa_loss_fn`` composes the core's pieces (``parameterization.noisy_inputs``,
``denoising_errors``), so it makes the same random draws as
``parameterization.denoising_loss_fn``, and with λ = 0 it returns exactly the plain
SiT loss of that function for the same key. ``with_params_snapshot`` keeps a copy
of the (EMA) parameters at a chosen step, so one training run of 2N steps also
yields the model at N steps (the baseline-at-N / baseline-at-2N comparison).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxrep.diffusion import ema as ema_lib
from jaxrep.diffusion import parameterization, schedules
from jaxrep.diffusion.schedules import NoiseProcess

PyTree = Any


class ProjectionMLP(nn.Module):
  """h_φ: (…, D) → (…, features), Linear–SiLU–Linear–SiLU–Linear (REPA's projector)."""

  features: int
  hidden: int = 256

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    h = nn.silu(nn.Dense(self.hidden)(h))
    h = nn.silu(nn.Dense(self.hidden)(h))
    return nn.Dense(self.features)(h)


def alignment_loss(projected: jax.Array, target: jax.Array, eps: float = 1e-12
                   ) -> jax.Array:
  """−mean over (batch, patches) of cos(projected, target); both (batch, N, D).

  Each vector is divided by max(‖·‖, eps) (``torch.nn.functional.normalize``)."""
  if projected.shape != target.shape:
    raise ValueError(f"projected {projected.shape} and target {target.shape} differ")
  unit = lambda a: a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), eps)
  return -jnp.mean(jnp.sum(unit(projected) * unit(target), axis=-1))


def hidden_states(dit_apply: Callable[..., Any], params: PyTree, x: jax.Array,
                  t: jax.Array, block: int) -> tuple[jax.Array, jax.Array]:
  """(prediction, H_t) of a ``dit.DiT``: its output and block ``block``'s tokens
  (batch, N, D), read from the "intermediates" it sows."""
  out, state = dit_apply(params, x, t, mutable=["intermediates"])
  return out, state["intermediates"][f"block_{block}"][0]


def repa_loss_fn(dit_apply: Callable[..., Any], project_apply: Callable[..., jax.Array],
                 encode_fn: Callable[[PyTree, jax.Array], jax.Array],
                 process: NoiseProcess | None = None, *, weight: float = 0.5,
                 block: int = 0, prediction: str = "velocity") -> Callable[..., Any]:
  """SiT's velocity loss plus λ times the REPA alignment loss, as ``loss_fn``.

  Args:
    dit_apply: ``dit.DiT.apply`` (it must sow "block_{block}").
    project_apply: ``ProjectionMLP.apply``; maps (batch, N, D) → (batch, N, D_e).
    encode_fn: ``encode_fn(encoder_params, x₀)`` → patch features (batch, N, D_e)
      of the clean batch; the encoder is frozen (stop-gradient).
    process: the noise process (default ``LinearInterpolant()``, SiT's).
    weight: λ (0.5 in the paper); λ = 0 gives exactly ``denoising_loss_fn``'s loss.
    block: the 0-based index of the aligned block.
    prediction: the network's output kind (``"velocity"``: SiT / REPA).
  Returns:
    ``loss_fn(params, batch, rng, axis_name=None) → (loss, {"denoise_mse",
    "alignment"})`` with params ``{"denoiser": …, "projector": …}`` and batch
    ``{"x": (batch, H, W, C), "encoder": encoder params}`` (the encoder's
    parameters travel in the batch, e.g. through ``minibatch_task``'s "hparams").
  """
  process = schedules.LinearInterpolant() if process is None else process

  def loss_fn(params, batch, rng, axis_name=None):
    del axis_name
    x0 = batch["x"]
    t, eps, x_t, _ = parameterization.noisy_inputs(process, x0, rng)   # its draws
    out, hidden = hidden_states(dit_apply, params["denoiser"], x_t, t, block)
    c = schedules.coefficients(process, t, x0)
    mse = jnp.mean(parameterization.denoising_errors(out, prediction, x_t, x0, eps, c))
    target = jax.lax.stop_gradient(encode_fn(batch["encoder"], x0))
    align = alignment_loss(project_apply(params["projector"], hidden), target)
    return mse + weight * align, {"denoise_mse": mse, "alignment": align}

  return loss_fn


# ---------------------------------------------------------------------------
# The parameters at step N of a longer run


class SnapshotState(NamedTuple):
  """The wrapped optimizer's state, the update count and the stored parameters."""

  inner: optax.OptState
  count: jax.Array
  snapshot: PyTree


def with_params_snapshot(optimizer: optax.GradientTransformation, at_step: int
                         ) -> optax.GradientTransformation:
  """``optimizer`` whose state also stores the parameters after update ``at_step``.

  If the wrapped optimizer is ``ema.with_params_ema``, the stored copy is θ̄ (the
  EMA parameters one samples with) rather than θ. The update must get ``params``.
  """

  def init(params):
    return SnapshotState(optimizer.init(params), jnp.zeros((), jnp.int32),
                         jax.tree.map(jnp.array, params))

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("with_params_snapshot needs params in update()")
    updates, inner = optimizer.update(updates, state.inner, params)
    if isinstance(inner, ema_lib.ParamsEmaState):
      current = ema_lib.ema_params(inner)
    else:
      current = optax.apply_updates(params, updates)
    count = state.count + 1
    snapshot = jax.tree.map(lambda new, old: jnp.where(count == at_step, new, old),
                            current, state.snapshot)
    return updates, SnapshotState(inner, count, snapshot)

  return optax.GradientTransformation(init, update)


def snapshot_params(opt_state: SnapshotState) -> PyTree:
  """The parameters stored by ``with_params_snapshot``."""
  if not isinstance(opt_state, SnapshotState):
    raise TypeError(f"not a with_params_snapshot state: {type(opt_state).__name__}")
  return opt_state.snapshot
