"""Distribution shift: the shared DomainBed-style baselines.

Gulrajani & Lopez-Paz, "In Search of Lost Domain Generalization" (ICLR 2021):
every shift claim is compared with the best of these under the same budget.

* ``baselines`` — ERM, IRMv1 (Arjovsky et al. 2019), V-REx (Krueger et al. 2021)
  and CORAL (Sun & Saenko 2016, DomainBed's form) as ``*_loss_fn(apply_fn, ...)``
  factories over environment-stacked batches {"x": (E, n, ...), "y": (E, n)};
* ``groupdro`` — GroupDRO (Sagawa et al. 2020): the weight update and a stateful
  loss whose weights live in ``TrainState.model_state``;
* ``envs`` — per-environment train/held-out splits, one-minibatch-per-environment
  training through ``jaxrep.core.fit`` (``environment_task``), per-environment
  accuracy, a synthetic linear Colored-MNIST;
* ``hparams`` — DomainBed's (default, sampler) rule seeded by a hash (NumPy only);
* ``selection`` — training-domain validation model selection (and the oracle,
  labelled as such; NumPy only).

The names below load on first use (PEP 562), so ``jaxrep.shift.hparams`` and
``jaxrep.shift.selection`` import without jax.
"""
from jaxrep import lazy

_EXPORTS = {
    "annealed_weight": "baselines", "coral_distance": "baselines",
    "coral_loss_fn": "baselines", "coral_penalty": "baselines", "env_logits": "baselines",
    "env_risks": "baselines", "erm_loss_fn": "baselines", "irm_loss_fn": "baselines",
    "irm_penalty": "baselines", "vrex_loss_fn": "baselines", "vrex_penalty": "baselines",
    "colored_linear_envs": "envs", "env_accuracy": "envs", "env_minibatch_indices": "envs",
    "environment_task": "envs", "split_environments": "envs",
    "stack_environments": "envs", "take_env_rows": "envs", "take_envs": "envs",
    "groupdro_init": "groupdro", "groupdro_loss_fn": "groupdro",
    "groupdro_task": "groupdro", "groupdro_update": "groupdro",
    "ALGORITHMS": "hparams", "default_hparams": "hparams", "random_hparams": "hparams",
    "run_hparams": "hparams", "seed_hash": "hparams", "sweep_hparams": "hparams",
    "Selection": "selection", "oracle_test_domain_validation": "selection",
    "training_domain_validation": "selection",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy.exports(__name__, _EXPORTS, globals())
