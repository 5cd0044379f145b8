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
  labelled as such; NumPy only);
* ``catch`` — CATCH (Sheth et al., WSDM 2024): causal/target disentanglement for
  cross-platform hate speech, with a synthetic multi-platform token generator;
* ``kd3`` — KD³ (Tang et al., ICCV 2023): distillation on shifted web data by
  combined-confidence selection, feature/classifier alignment, MixDistribution;
* ``iadg`` — IADG's components (Zhou et al., CVPR 2023): dynamic per-instance
  kernels, categorical style assembly, asymmetric instance-adaptive whitening;
* ``hei`` — HEI (WWW 2025): environments inferred from neighbour patterns and a soft
  IRM penalty for node-homophily shift, with a contextual-SBM graph sampler.

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
    "CatchModel": "catch", "TokenClassifier": "catch", "TokenEncoder": "catch",
    "bag_reconstruction_nll": "catch", "catch_init": "catch", "catch_loss_fn": "catch",
    "categorical_kl_to_uniform": "catch", "env_macro_f1": "catch", "gaussian_kl": "catch",
    "gumbel_softmax": "catch", "hate_logits_from_latents": "catch", "macro_f1": "catch",
    "platform_token_envs": "catch", "platform_vocab_size": "catch",
    "ConvNet1D": "kd3", "channel_statistics": "kd3", "classifier_alignment": "kd3",
    "combined_confidence": "kd3", "junk_sequences": "kd3", "kd3_loss_fn": "kd3",
    "kd_divergence": "kd3", "masked_mean": "kd3", "mix_distribution": "kd3",
    "sample_mix": "kd3", "selection_mask": "kd3", "top_fraction_mask": "kd3",
    "DynamicKernelGenerator": "iadg", "aiaw_loss": "iadg", "assemble_styles": "iadg",
    "csa_restyle": "iadg", "depthwise_conv": "iadg", "dynamic_depthwise_conv": "iadg",
    "farthest_point_sampling": "iadg", "instance_covariance": "iadg",
    "instance_statistics": "iadg", "sensitive_covariance_mask": "iadg",
    "whitening_loss": "iadg",
    "EgoNeighbourGNN": "hei", "EnvironmentNet": "hei", "Graph": "hei", "csbm_graph": "hei",
    "edge_mean": "hei", "hei_objectives": "hei", "neighbour_mean": "hei",
    "neighbour_pattern": "hei", "node_homophily": "hei", "soft_irm_penalty": "hei",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy.exports(__name__, _EXPORTS, globals())
