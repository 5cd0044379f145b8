"""DomainBed's hyperparameter rule for the shift baselines: (default, sampler) per name.

Gulrajani & Lopez-Paz, "In Search of Lost Domain Generalization", ICLR 2021
(``domainbed/hparams_registry.py``, ``scripts/train.py``). Each hyperparameter is
a pair (default, sampler); a run's hyperparameters are

* the defaults when ``hparams_seed == 0``;
* otherwise random draws: with seed s = seed_hash(hparams_seed, trial_seed), the
  hyperparameter ``name`` is ``sampler(RandomState(seed_hash(s, name)))``,

where seed_hash(*args) = int(md5(str(args))) mod 2³¹. Each name has its own
stream, so the draws equal DomainBed's for the same (algorithm, hparams_seed,
trial_seed) — the names DomainBed defines but these baselines do not use
(architecture switches, dropout) are left out without changing any value.
``scale="small"`` is DomainBed's small-image branch (Colored/Rotated MNIST:
lr 10^U(−4.5, −2.5), no weight decay, batch 2^U(3, 9)); ``"large"`` its general
one. NumPy only (no jax), so sweep planning stays cheap.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np

from jaxrep.core.config import ConfigError

Sampler = Callable[[np.random.RandomState], Any]
Registry = dict[str, tuple[Any, Sampler]]

_COMMON: dict[str, Registry] = {
    "small": {
        "lr": (1e-3, lambda r: 10 ** r.uniform(-4.5, -2.5)),
        "weight_decay": (0.0, lambda r: 0.0),
        "batch_size": (64, lambda r: int(2 ** r.uniform(3, 9))),
    },
    "large": {
        "lr": (5e-5, lambda r: 10 ** r.uniform(-5, -3.5)),
        "weight_decay": (0.0, lambda r: 10 ** r.uniform(-6, -2)),
        "batch_size": (32, lambda r: int(2 ** r.uniform(3, 5.5))),
    },
}

_ALGORITHMS: dict[str, Registry] = {
    "ERM": {},
    "IRM": {
        "irm_lambda": (1e2, lambda r: 10 ** r.uniform(-1, 5)),
        "irm_penalty_anneal_iters": (500, lambda r: int(10 ** r.uniform(0, 4))),
    },
    "VREx": {
        "vrex_lambda": (1e1, lambda r: 10 ** r.uniform(-1, 5)),
        "vrex_penalty_anneal_iters": (500, lambda r: int(10 ** r.uniform(0, 4))),
    },
    "GroupDRO": {"groupdro_eta": (1e-2, lambda r: 10 ** r.uniform(-3, -1))},
    "CORAL": {"mmd_gamma": (1.0, lambda r: 10 ** r.uniform(-1, 1))},
}

ALGORITHMS = tuple(_ALGORITHMS)


def seed_hash(*args: Any) -> int:
  """DomainBed's seed derivation: int(md5(str(args))) mod 2³¹ (NumPy integers
  are read as Python ints, so ``str`` prints them the same way)."""
  args = tuple(int(a) if isinstance(a, np.integer) else a for a in args)
  return int(hashlib.md5(str(args).encode("utf-8")).hexdigest(), 16) % (2 ** 31)


def registry(algorithm: str, scale: str = "small") -> Registry:
  """{name: (default, sampler)} for ``algorithm`` (one of ``ALGORITHMS``)."""
  if algorithm not in _ALGORITHMS:
    raise ConfigError(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
  if scale not in _COMMON:
    raise ConfigError(f"scale must be one of {sorted(_COMMON)}, got {scale!r}")
  return {**_ALGORITHMS[algorithm], **_COMMON[scale]}


def _plain(value: Any) -> Any:
  return value.item() if isinstance(value, np.generic) else value


def default_hparams(algorithm: str, scale: str = "small") -> dict[str, Any]:
  """Every hyperparameter's default."""
  return {name: default for name, (default, _) in registry(algorithm, scale).items()}


def random_hparams(algorithm: str, seed: int, scale: str = "small") -> dict[str, Any]:
  """Every hyperparameter drawn from its sampler with RandomState(seed_hash(seed, name))."""
  return {name: _plain(sampler(np.random.RandomState(seed_hash(seed, name))))
          for name, (_, sampler) in registry(algorithm, scale).items()}


def run_hparams(algorithm: str, hparams_seed: int = 0, trial_seed: int = 0,
            scale: str = "small") -> dict[str, Any]:
  """DomainBed's choice for one run: defaults when ``hparams_seed == 0``, else
  ``random_hparams(algorithm, seed_hash(hparams_seed, trial_seed))``."""
  if hparams_seed == 0:
    return default_hparams(algorithm, scale)
  return random_hparams(algorithm, seed_hash(hparams_seed, trial_seed), scale)


def sweep_hparams(algorithm: str, num_hparams: int, trial_seed: int = 0,
                  scale: str = "small") -> dict[str, np.ndarray]:
  """``run_hparams`` for hparams_seed = 0, …, num_hparams − 1 (row 0: the defaults),
  stacked per name as arrays (num_hparams,), ready to be a ``fit`` run axis."""
  if num_hparams < 1:
    raise ConfigError(f"num_hparams must be ≥ 1, got {num_hparams}")
  rows = [run_hparams(algorithm, h, trial_seed, scale) for h in range(num_hparams)]
  return {name: np.asarray([row[name] for row in rows]) for name in rows[0]}
