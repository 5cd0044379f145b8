"""The long-tailed / noisy-label sampler: exact counts, uniform subsets, the noise law."""
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from jaxrep.data import long_tail


def _labels(per_class=30, num_classes=5):
  return jnp.asarray(np.repeat(np.arange(num_classes), per_class)[::-1].copy(), jnp.int32)


def test_counts_are_the_exponential_profile():
  """Mutation caught: the exponent −c/C instead of −c/(C−1) (tail ≠ max/ρ)."""
  counts = long_tail.long_tail_counts(400, 10, 100)
  assert counts[0] == 400 and counts[-1] == 4
  assert counts == tuple(int(400 * 0.01 ** (c / 9)) for c in range(10))


def test_indices_keep_n_c_distinct_rows_of_class_c_in_static_blocks():
  """Mutation caught: a block start off by one (rows of the wrong class) or sampling
  with replacement (repeated rows)."""
  y = _labels()
  counts = (30, 12, 7, 3, 1)
  index = np.asarray(jax.jit(long_tail.long_tail_indices, static_argnums=2)(
      jax.random.key(0), y, counts))
  assert len(np.unique(index)) == len(index) == sum(counts)
  blocks = np.repeat(np.arange(5), counts)
  np.testing.assert_array_equal(np.asarray(y)[index], blocks)


def test_subsets_are_uniform_and_a_function_of_the_key():
  """Mutation caught: keeping the first n_c rows of each class (not a random subset):
  inclusion frequencies then fail the χ² test."""
  y = _labels()
  counts = (30, 10, 10, 5, 2)
  sample = jax.jit(jax.vmap(lambda k: long_tail.long_tail_indices(k, y, counts)))
  keys = jax.random.split(jax.random.key(1), 600)
  index = np.asarray(sample(keys))
  np.testing.assert_array_equal(index[0], np.asarray(sample(keys[:1]))[0])
  hits = np.bincount(index.ravel(), minlength=len(y))
  for c, n in enumerate(counts):
    members = np.flatnonzero(np.asarray(y) == c)
    if n < len(members):   # each member kept with probability n/30
      assert stats.chisquare(hits[members]).pvalue > 1e-3


def test_symmetric_noise_rate_and_uniform_other_class():
  """Mutation caught: offsets drawn from {0, …, C−1} (a flip to the same class: the
  realised rate falls to η(C−1)/C) or a non-uniform target class."""
  num_classes, rate = 5, 0.4
  y = jnp.asarray(np.arange(20000) % num_classes, jnp.int32)
  noisy = np.asarray(jax.jit(lambda k: long_tail.symmetric_label_noise(
      k, y, rate, num_classes))(jax.random.key(2)))
  flipped = noisy != np.asarray(y)
  assert stats.binomtest(int(flipped.sum()), len(y), rate).pvalue > 1e-3
  offsets = (noisy[flipped] - np.asarray(y)[flipped]) % num_classes
  assert stats.chisquare(np.bincount(offsets, minlength=num_classes)[1:]).pvalue > 1e-3


def test_long_tail_sample_groups_by_clean_class_and_keeps_x_with_y():
  """Mutation caught: noise applied before the subset (blocks no longer by clean class)
  or x gathered with different indices than y."""
  y = _labels()
  x = jnp.asarray(np.arange(len(y)), jnp.float32)[:, None] * jnp.ones((1, 3))
  out = jax.jit(long_tail.long_tail_sample, static_argnums=(3, 4))(
      jax.random.key(3), x, y, (20, 10, 5, 3, 2), 0.5)
  np.testing.assert_array_equal(out["y_clean"], np.repeat(np.arange(5), (20, 10, 5, 3, 2)))
  np.testing.assert_array_equal(out["x"][:, 0], out["index"])
  assert 0 < float(jnp.mean(out["y"] != out["y_clean"])) < 1
