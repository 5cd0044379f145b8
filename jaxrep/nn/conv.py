r"""Convolution with a CPU-fast kernel gradient; a drop-in for ``flax.linen.Conv``.

For input x ∈ R^{N×S₁×…×S_d×C}, kernel K ∈ R^{k₁×…×k_d×C×O} (HWIO), stride s and
padding, the convolution (cross-correlation, as in ``lax.conv_general_dilated``) is

    y[n, p, o] = Σ_{q, c} x̃[n, s·p + q, c] · K[q, c, o],          x̃ = padded x,

and its gradients are

    ∂L/∂x = conv_transpose(∂L/∂y, K),
    ∂L/∂K[q, c, o] = Σ_{n, p} x̃[n, s·p + q, c] · ∂L/∂y[n, p, o]  =  Pᵀ · ∂L/∂Y,

with P ∈ R^{(N·|p|) × (|q|·C)} the im2col patch matrix (one row per output
position, one column per kernel tap and channel).

Where the time goes on the CPU (jax 0.10.2, 2 cores, ``SmallCNN`` at batch 256,
measured with ``jax.profiler``): XLA hands the forward and the input gradient to
its convolution library at close to the machine's matmul rate, but the kernel
gradient is a convolution whose "kernel" is ∂L/∂y (the whole image) and whose
output is the tiny k₁×k₂ window: it ran at about a sixth of the matmul rate and
cost ~5× the forward. One im2col matrix and one GEMM would be fast for the
GEMM but slow overall: P is 9× the input (300 MB for a 32-channel layer at batch
256), so filling it is DRAM-bound, and XLA's concatenate is slow. Here the
kernel gradient is a loop over chunks of the batch: each chunk's patch matrix
(≈ ``CHUNK_BYTES``, cache-resident) is built from shifted strided slices and
contracted with its rows of ∂L/∂y,

    ∂L/∂K = Σ_chunks P_chunkᵀ · ∂L/∂Y_chunk,

the same sum in a different order (fp32 differences ~1e-6 relative), now about
as fast as the forward. The library convolution is also slow for an input with
few channels (an RGB image: ~3 GFLOP/s), so such a forward is the same chunked
GEMM, Y_chunk = P_chunk · K. Other forwards and ∂L/∂x stay XLA's, so their
outputs are bitwise those of ``flax.linen.Conv``. On GPU/TPU
(``lax.platform_dependent``) everything is XLA's convolution.

``Conv`` has ``flax.linen.Conv``'s parameters (``kernel`` k₁×…×k_d×C×O, ``bias``
O), initialisers, padding conventions ("SAME", "VALID", an int, or per-dimension
pairs) and strides; it loads the same checkpoints. Dilations, feature groups and
an explicit ``precision`` go to ``lax.conv_general_dilated`` unchanged.
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

PaddingLike = str | int | Sequence[int | tuple[int, int]]
Pairs = tuple[tuple[int, int], ...]

# Target size of one chunk's patch matrix: small enough to stay in cache.
CHUNK_BYTES = 2 * 2**20


def _dimension_numbers(num_spatial: int) -> lax.ConvDimensionNumbers:
  spatial = "HWDXYZ"[:num_spatial]
  return lax.conv_dimension_numbers(
      (1,) * (num_spatial + 2), (1,) * (num_spatial + 2),
      ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C"))


def padding_pairs(padding: PaddingLike, in_shape: Sequence[int], kernel: Sequence[int],
                  strides: Sequence[int]) -> Pairs:
  """Explicit (low, high) padding per spatial dim, with flax's conventions."""
  if isinstance(padding, str):
    return tuple(lax.padtype_to_pads(in_shape, kernel, strides, padding.upper()))
  if isinstance(padding, int):
    return ((padding, padding),) * len(kernel)
  pairs = []
  for p in padding:
    pairs.append((p, p) if isinstance(p, int) else tuple(p))
  if len(pairs) != len(kernel):
    raise ValueError(f"padding {padding!r} must give one entry per spatial dim ({len(kernel)})")
  return tuple(pairs)


def _xla_conv(x, kernel, strides, pads):
  return lax.conv_general_dilated(x, kernel, strides, pads,
                                  dimension_numbers=_dimension_numbers(x.ndim - 2))


def _out_shape(spatial, kernel, strides, pads):
  return tuple((s + lo + hi - k) // st + 1
               for s, k, st, (lo, hi) in zip(spatial, kernel, strides, pads))


def _patches(x_padded: jax.Array, kernel: Sequence[int], strides: Sequence[int],
             out: Sequence[int]) -> jax.Array:
  """im2col: (n, *out, |kernel|·C), columns ordered (tap, channel) like K's HWIO."""
  slices = []
  for offset in itertools.product(*(range(k) for k in kernel)):
    start = (0,) + offset + (0,)
    limit = ((x_padded.shape[0],) + tuple(o + (p - 1) * s + 1
                                          for o, p, s in zip(offset, out, strides))
             + (x_padded.shape[-1],))
    slices.append(lax.slice(x_padded, start, limit, (1,) + tuple(strides) + (1,)))
  return jnp.concatenate(slices, axis=-1)


def _groups(batch: int, rows_per_example: int, patch_width: int, itemsize: int) -> int:
  """How many batch chunks G (a divisor of ``batch``) keep a chunk's patches ≈ CHUNK_BYTES."""
  per_example = rows_per_example * patch_width * itemsize
  wanted = max(1, min(batch, math.ceil(batch * per_example / CHUNK_BYTES)))
  divisors = [g for g in range(1, batch + 1) if batch % g == 0]
  return min(divisors, key=lambda g: (abs(math.log(g / wanted)), g))


def _chunk(x: jax.Array, groups: int, g: jax.Array) -> jax.Array:
  """Examples g, g + G, g + 2G, … of x (a strided split keeps a data-sharded
  leading axis sharded the same way)."""
  grouped = x.reshape((x.shape[0] // groups, groups) + x.shape[1:])
  return lax.dynamic_index_in_dim(grouped, g, 1, keepdims=False)


def kernel_gradient(x: jax.Array, dy: jax.Array, kernel_shape: Sequence[int],
                    strides: Sequence[int], pads: Pairs) -> jax.Array:
  """∂L/∂K = Σ_chunks P_chunkᵀ ∂L/∂Y_chunk, shape kernel_shape (…, C, O)."""
  n, c = x.shape[0], x.shape[-1]
  out, o = dy.shape[1:-1], dy.shape[-1]
  window = tuple(kernel_shape[:-2])
  taps = math.prod(window)
  groups = _groups(n, math.prod(out), taps * c, x.dtype.itemsize)
  accumulate_dtype = jnp.promote_types(x.dtype, jnp.float32)

  def chunk_product(g):
    xg = jnp.pad(_chunk(x, groups, g), ((0, 0),) + tuple(pads) + ((0, 0),))
    patches = _patches(xg, window, strides, out).reshape(-1, taps * c)
    dyg = _chunk(dy, groups, g).reshape(-1, o)
    return lax.dot_general(patches, dyg, (((0,), (0,)), ((), ())),
                           preferred_element_type=accumulate_dtype)

  # The first chunk starts the sum, so the carry has the inputs' type (device-varying
  # inside shard_map), not that of a fresh constant.
  total = lax.fori_loop(1, groups, lambda g, total: total + chunk_product(g),
                        chunk_product(0))
  return total.reshape(tuple(kernel_shape)).astype(x.dtype)


def gemm_conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int], pads: Pairs) -> jax.Array:
  """y = x ⋆ K as Y_chunk = P_chunk · K (one GEMM per cache-sized batch chunk)."""
  n, c = x.shape[0], x.shape[-1]
  window, o = tuple(kernel.shape[:-2]), kernel.shape[-1]
  out = _out_shape(x.shape[1:-1], window, strides, pads)
  taps = math.prod(window)
  groups = _groups(n, math.prod(out), taps * c, x.dtype.itemsize)
  matrix = kernel.reshape(taps * c, o)

  def chunk_output(g):
    xg = jnp.pad(_chunk(x, groups, g), ((0, 0),) + tuple(pads) + ((0, 0),))
    yg = _patches(xg, window, strides, out).reshape(-1, taps * c) @ matrix
    return yg.reshape((n // groups,) + out + (o,))

  # Chunks as a map (no carry: a constant carry would not be device-varying under
  # shard_map); chunk g holds examples g, g + G, …, so interleave them back.
  y = lax.map(chunk_output, jnp.arange(groups))  # (G, n/G, *out, o)
  return jnp.swapaxes(y, 0, 1).reshape((n,) + out + (o,))


# Inputs with at most this many channels (an image's first layer) use the GEMM
# forward on the CPU: XLA's library convolution runs C = 3 at a few GFLOP/s.
SMALL_CHANNELS = 8


def _forward(x, kernel, strides, pads):
  if x.shape[-1] > SMALL_CHANNELS:
    return _xla_conv(x, kernel, strides, pads)
  return lax.platform_dependent(
      x, kernel, cpu=lambda x_, k_: gemm_conv(x_, k_, strides, pads),
      default=lambda x_, k_: _xla_conv(x_, k_, strides, pads))


def _xla_kernel_gradient(x, dy, kernel, strides, pads):
  _, vjp = jax.vjp(lambda k_: _xla_conv(x, k_, strides, pads), kernel)
  return vjp(dy)[0]


def as_cotangent_of(local_grad: jax.Array, primal: jax.Array) -> jax.Array:
  """``local_grad`` summed as JAX sums a cotangent flowing back to ``primal``.

  Inside ``shard_map`` a replicated parameter's cotangent is the sum over the mesh
  axes its inputs vary along (the transpose of the implicit broadcast); outside,
  this is the identity. Written as the VJP of p ↦ Σ local_grad ⊙ p.
  """
  out, vjp = jax.vjp(lambda p: jnp.sum(local_grad * p), primal)
  return vjp(jnp.ones_like(out))[0]


def input_gradient(dy: jax.Array, kernel: jax.Array, x: jax.Array,
                   strides: Sequence[int], pads: Pairs) -> jax.Array:
  """∂L/∂x: XLA's transposed convolution (linear in x, so taken at x itself, which
  gives the cotangent x's own type inside shard_map)."""
  _, vjp = jax.vjp(lambda x_: _xla_conv(x_, kernel, strides, pads), x)
  return vjp(dy)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def convolution(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...], pads: Pairs) -> jax.Array:
  """y = x ⋆ K (channels-last, one batch axis, kernel HWIO, explicit pads).

  On the CPU ∂L/∂K is ``kernel_gradient`` (and the forward of a ≤ 8-channel
  input is ``gemm_conv``); on GPU/TPU everything is XLA's convolution.
  """
  return _forward(x, kernel, strides, pads)


def _conv_fwd(x, kernel, strides, pads):
  return _forward(x, kernel, strides, pads), (x, kernel)


def _conv_bwd(strides, pads, residuals, dy):
  x, kernel = residuals
  dkernel = lax.platform_dependent(
      x, dy, cpu=lambda x_, dy_: as_cotangent_of(
          kernel_gradient(x_, dy_, kernel.shape, strides, pads), kernel),
      default=lambda x_, dy_: _xla_kernel_gradient(x_, dy_, kernel, strides, pads))
  return input_gradient(dy, kernel, x, strides, pads), dkernel


convolution.defvjp(_conv_fwd, _conv_bwd)


def _as_tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
  return (value,) * n if isinstance(value, int) else tuple(value)


class Conv(nn.Module):
  """``flax.linen.Conv`` (same fields, parameters and results) with a fast ∂L/∂K.

  Input (*batch, *spatial, C) or unbatched (*spatial, C); kernel k₁×…×k_d×C×O.
  """

  features: int
  kernel_size: int | Sequence[int]
  strides: int | Sequence[int] = 1
  padding: PaddingLike = "SAME"
  input_dilation: int | Sequence[int] = 1
  kernel_dilation: int | Sequence[int] = 1
  feature_group_count: int = 1
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None
  kernel_init: Callable = nn.linear.default_kernel_init
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    window = ((self.kernel_size,) if isinstance(self.kernel_size, int)
              else tuple(self.kernel_size))
    d = len(window)
    strides = _as_tuple(self.strides, d)
    unbatched = x.ndim == d + 1
    if unbatched:
      x = x[None]
    batch_shape = x.shape[:-(d + 1)]
    x = x.reshape((-1,) + x.shape[-(d + 1):])
    in_features = x.shape[-1]
    kernel = self.param("kernel", self.kernel_init,
                        window + (in_features // self.feature_group_count, self.features),
                        self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    input_dilation = _as_tuple(self.input_dilation, d)
    kernel_dilation = _as_tuple(self.kernel_dilation, d)
    if isinstance(self.padding, str) and self.padding.upper() not in ("SAME", "VALID"):
      raise ValueError(f"padding {self.padding!r} is not supported by jaxrep.nn.Conv; "
                       "use 'SAME', 'VALID', ints or pairs (or flax.linen.Conv)")
    simple = (self.feature_group_count == 1 and self.precision is None
              and input_dilation == (1,) * d and kernel_dilation == (1,) * d)
    if simple:
      pads = padding_pairs(self.padding, x.shape[1:-1], window, strides)
      y = convolution(x, kernel, strides, pads)
    else:
      padding = (self.padding.upper() if isinstance(self.padding, str)
                 else padding_pairs(self.padding, x.shape[1:-1], window, strides))
      y = lax.conv_general_dilated(
          x, kernel, strides, padding, lhs_dilation=input_dilation,
          rhs_dilation=kernel_dilation, dimension_numbers=_dimension_numbers(d),
          feature_group_count=self.feature_group_count, precision=self.precision)
    if bias is not None:
      y = y + bias
    y = y.reshape(batch_shape + y.shape[1:])
    return y[0] if unbatched else y
