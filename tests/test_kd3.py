"""KD³ (jaxrep.shift.kd3): MixDistribution's statistics, the selection rules, the
KD divergence against SciPy, and the loss's terms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from jaxrep.shift import kd3


def _feature_maps(seed=0, n=6, length=20, channels=5):
  rng = np.random.default_rng(seed)
  scale = rng.uniform(0.5, 3.0, size=(n, 1, channels))
  shift = rng.normal(size=(n, 1, channels)) * 2
  return jnp.asarray(rng.normal(size=(n, length, channels)) * scale + shift, jnp.float32)


def test_mix_distribution_output_statistics_are_the_lambda_mixed_statistics():
  """The paper's property: per-channel mean/std of h̃_i equal λμ_i + (1−λ)μ_j and
  λσ_i + (1−λ)σ_j (1e-5). Catches mixing the wrong partner's statistics, forgetting
  to normalise h by its own statistics, or swapping λ and 1 − λ."""
  h = _feature_maps()
  lam = jnp.array([0.0, 0.2, 0.5, 0.7, 0.9, 1.0])
  partner = jnp.array([3, 0, 5, 1, 2, 4])
  out = np.asarray(kd3.mix_distribution(h, lam, partner, eps=0.0), np.float64)
  h64 = np.asarray(h, np.float64)
  mean, std = h64.mean(1), h64.std(1)
  lam64 = np.asarray(lam, np.float64)[:, None]
  np.testing.assert_allclose(out.mean(1), lam64 * mean + (1 - lam64) * mean[partner],
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.std(1), lam64 * std + (1 - lam64) * std[partner],
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out[5], h64[5], rtol=1e-5, atol=1e-5)   # λ = 1: unchanged


@pytest.mark.reference
def test_kd_divergence_matches_scipy_relative_entropy():
  """Catches KL in the wrong direction, a missing T² or temperature not applied."""
  rng = np.random.default_rng(1)
  zt, zs = rng.normal(size=(4, 10)) * 3, rng.normal(size=(4, 10)) * 3
  temperature = 4.0
  pt, ps = special.softmax(zt / temperature, -1), special.softmax(zs / temperature, -1)
  expected = temperature ** 2 * special.rel_entr(pt, ps).sum(-1)
  np.testing.assert_allclose(kd3.kd_divergence(jnp.asarray(zt), jnp.asarray(zs), temperature),
                             expected, rtol=1e-4)


def test_selection_rules():
  """combined = top fraction by max ½(p_T + p_S); teacher = top fraction by max p_T;
  all = every row. Catches selecting on the teacher alone in KD³ (or on the student
  alone), and a selection that keeps nothing when the student is untrained."""
  teacher = jnp.array([[4.0, 0.0], [0.0, 0.1], [3.0, 0.0], [0.0, 2.0]])
  student = jnp.array([[0.0, 4.0], [0.0, 5.0], [3.0, 0.0], [0.0, 0.0]])
  pt, ps = jax.nn.softmax(teacher), jax.nn.softmax(student)
  combined = np.asarray(0.5 * (pt + ps)).max(-1)
  mask, conf = kd3.selection_mask(teacher, student, 0.5, "combined")
  np.testing.assert_allclose(conf, combined, rtol=1e-6)
  np.testing.assert_array_equal(mask, combined >= np.sort(combined)[-2])
  np.testing.assert_array_equal(mask, [0.0, 1.0, 1.0, 0.0])   # disagreement lowers, agreement lifts
  mask_t, _ = kd3.selection_mask(teacher, student, 0.5, "teacher")
  np.testing.assert_array_equal(mask_t, [1.0, 0.0, 1.0, 0.0])
  np.testing.assert_array_equal(kd3.selection_mask(teacher, student, 0.5, "all")[0], 1.0)
  uniform = jnp.zeros((4, 2))                                  # an untrained student
  assert kd3.selection_mask(teacher, uniform, 0.5, "combined")[0].sum() == 2


def test_kd3_loss_terms_and_ablation():
  """The loss is the weighted sum of its terms; with the extra weights at 0 it is
  the masked KD alone; classifier alignment is 0 for identical classifiers."""
  teacher = kd3.ConvNet1D((4, 4), 8)
  student = kd3.ConvNet1D((4, 4), 6, project_dim=8)
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 20))
  tp = teacher.init(jax.random.PRNGKey(1), x)
  sp = student.init(jax.random.PRNGKey(2), x)
  batch = {"x": x, "teacher_params": tp}
  full = kd3.kd3_loss_fn(student, teacher, keep_fraction=0.5, feature_weight=2.0,
                         classifier_weight=3.0, mix_weight=0.5)
  (loss, m), grads = jax.value_and_grad(full, has_aux=True)(sp, batch, jax.random.PRNGKey(3))
  np.testing.assert_allclose(loss, m["kd"] + 2 * m["feature"] + 3 * m["classifier"]
                             + 0.5 * m["mix_infonce"], rtol=1e-5)
  plain = kd3.kd3_loss_fn(student, teacher, selection="all", feature_weight=0.0,
                          classifier_weight=0.0, mix_weight=0.0)
  kd_loss, _ = plain(sp, batch, jax.random.PRNGKey(3))
  expected = kd3.kd_divergence(teacher.apply(tp, x), student.apply(sp, x), 4.0).mean()
  np.testing.assert_allclose(kd_loss, expected, rtol=1e-5)
  same = {"params": {**sp["params"], "classifier": tp["params"]["classifier"]}}
  assert float(kd3.classifier_alignment(same, tp)) == 0.0
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_junk_sequences_are_standardised_and_deterministic():
  junk = np.asarray(kd3.junk_sequences(jax.random.PRNGKey(4), 30, 40))
  np.testing.assert_allclose(junk.mean(1), 0.0, atol=1e-5)
  np.testing.assert_allclose(junk.std(1), 1.0, atol=1e-4)
  np.testing.assert_array_equal(junk, kd3.junk_sequences(jax.random.PRNGKey(4), 30, 40))
