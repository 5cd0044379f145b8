"""Model selection for domain generalisation, DomainBed's way (NumPy only).

Gulrajani & Lopez-Paz, "In Search of Lost Domain Generalization", ICLR 2021,
§3 and ``domainbed/model_selection.py``. A *candidate* is one (hyperparameter
setting, checkpoint) pair of a sweep for one test environment.

* ``training_domain_validation`` (DomainBed's default, "training-domain
  validation set"): pick the candidate with the highest mean accuracy over the
  training environments' held-out splits and report its test-environment
  accuracy. It is never given any test-environment validation number, so it
  cannot select on the test domain.
* ``oracle_test_domain_validation`` ("test-domain validation set (oracle)"):
  per hyperparameter setting take the *last* checkpoint (no early stopping),
  pick the setting with the highest accuracy on a held-out split of the test
  environment. It looks at the test domain by design: an upper reference, never
  a result to claim.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from jaxrep.core.config import ConfigError


@dataclasses.dataclass(frozen=True)
class Selection:
  """The picked candidate's index (into the candidate axes), the selection score
  it was picked by, and its test-environment accuracy."""

  method: str
  index: tuple[int, ...]
  val_accuracy: float
  test_accuracy: float


def training_domain_validation(val_accuracy: np.ndarray, test_accuracy: np.ndarray
                               ) -> Selection:
  """argmax over candidates of mean_e val_accuracy[..., e]; report its test accuracy.

  Args:
    val_accuracy: (*candidates, E_train) accuracy of each candidate on each
      training environment's held-out split.
    test_accuracy: (*candidates,) accuracy on the test environment (only read
      at the picked index).
  Returns:
    ``Selection`` (ties go to the first candidate in C order).
  """
  val_accuracy = np.asarray(val_accuracy, np.float64)
  test_accuracy = np.asarray(test_accuracy, np.float64)
  if val_accuracy.ndim < 2 or val_accuracy.shape[:-1] != test_accuracy.shape:
    raise ConfigError(f"val_accuracy (*candidates, E_train) {val_accuracy.shape} and "
                      f"test_accuracy (*candidates,) {test_accuracy.shape} do not match")
  score = val_accuracy.mean(axis=-1)
  index = np.unravel_index(int(np.argmax(score)), score.shape)
  return Selection("training-domain validation", tuple(int(i) for i in index),
                   float(score[index]), float(test_accuracy[index]))


def oracle_test_domain_validation(test_val_accuracy: np.ndarray, test_accuracy: np.ndarray
                                  ) -> Selection:
  """ORACLE (looks at the test domain): per setting, its last checkpoint; the
  setting with the highest test-environment held-out accuracy; its test accuracy.

  Args:
    test_val_accuracy: (num_settings, num_checkpoints) accuracy on a held-out
      split of the test environment.
    test_accuracy: (num_settings, num_checkpoints) accuracy on the rest of it.
  Returns:
    ``Selection`` with index (setting, last checkpoint).
  """
  test_val_accuracy = np.asarray(test_val_accuracy, np.float64)
  test_accuracy = np.asarray(test_accuracy, np.float64)
  if test_val_accuracy.ndim != 2 or test_val_accuracy.shape != test_accuracy.shape:
    raise ConfigError("oracle selection takes two (num_settings, num_checkpoints) arrays, "
                      f"got {test_val_accuracy.shape} and {test_accuracy.shape}")
  last = test_val_accuracy.shape[1] - 1
  setting = int(np.argmax(test_val_accuracy[:, last]))
  return Selection("test-domain validation (oracle)", (setting, last),
                   float(test_val_accuracy[setting, last]),
                   float(test_accuracy[setting, last]))
