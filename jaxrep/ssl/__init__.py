"""Self-supervised objectives and views: what a user composes in their own code.

One loss per module, each a pure function of embeddings with its paper's equation in
the docstring, plus a ``*_loss_fn`` factory that returns
``loss_fn(params, batch, rng, axis_name=None) -> (loss, metrics)`` for the core's train
step, with ``batch = {"view1": x1, "view2": x2}`` (and ``"y"`` labels for SupCon).
Every loss gives the same value on 1 device and on D devices (``axis_name`` set by
``jaxrep.core.parallel``): contrastive negatives are gathered from the global batch
and VICReg's statistics are summed over it.

- ``infonce``: InfoNCE / NT-Xent (CPC, SimCLR).
- ``supcon``: supervised contrastive L^sup_out (Khosla et al. 2020).
- ``byol``: BYOL's symmetrised normalized MSE, the EMA target update
  ``ema_update``, its cosine decay schedule and ``with_ema_target``, an optax
  wrapper that trains online and target parameters on the one train step.
- ``vicreg``: variance–invariance–covariance (Bardes et al. 2022).
- ``sbcl``: subclass-balancing contrastive loss, per-class k-means subclasses, class
  temperatures and the LDAM linear stage (Hou et al. 2023).
- ``rcal``: representation calibration for noisy long-tailed labels: per-class LOF,
  class Gaussians, tail calibration from head classes, balanced sampling (Zhang et
  al. 2023).
- ``sie``: split invariant–equivariant representations with a hypernetwork
  predictor conditioned on the transformation (Garrido et al. 2023).
- ``random_fields``: Gaussian random field augmentations: per-pixel affine warps and
  colour transforms whose parameters are smooth random fields (Mansfield et al. 2023).
- ``beclr``: BECLR (Poulakakis-Daktylidis & Jamali-Rad 2024): OpTA, optimal-transport
  alignment of few-shot prototypes (ott-jax Sinkhorn), and the DyCE clustered memory.
- ``obow``: OBoW (Gidaris et al. 2021): an EMA teacher's soft bag-of-visual-words
  targets over an online queue vocabulary, predicted by the student's dynamic head.
- ``transitive``: transitive invariance: intra-/inter-instance graph, transitive pairs
  and the triplet ranking loss with hard-negative mining (Wang et al. 2017).
- ``views``: augmentations as pure functions of a key (crops, flips, colour jitter
  for images; shift, stretch, scale, noise for sequences) and ``two_views``.
"""
from jaxrep.ssl import byol, infonce, random_fields, sie, supcon, transitive, vicreg, views
from jaxrep.ssl.byol import (byol_loss, byol_loss_fn, ema_update, normalized_mse,
                             target_decay_schedule, with_ema_target)
from jaxrep.ssl import beclr, obow
from jaxrep.ssl.beclr import dyce_positives, dyce_update, equipartition_assignments, opta
from jaxrep.ssl.infonce import infonce_loss, infonce_loss_fn
from jaxrep.ssl.obow import bow_prediction_loss, bow_target, obow_loss_fn, update_vocabulary
from jaxrep.ssl.random_fields import (augmented_loss_fn, gaussian_random_field,
                                     local_affine, local_colour, random_field_augment)
from jaxrep.ssl.rcal import (calibrate_tail, class_gaussians, local_outlier_factor,
                             lof_keep_mask, sample_calibrated)
from jaxrep.ssl.sbcl import (class_temperatures, ldam_loss, sbcl_loss, sbcl_loss_fn,
                             subclass_counts, subclass_labels)
from jaxrep.ssl.sie import (HyperLinearPredictor, SIEModel, hyper_linear_predict,
                            hypernetwork_weights, sie_loss, sie_loss_fn)
from jaxrep.ssl.supcon import supcon_loss, supcon_loss_fn
from jaxrep.ssl.transitive import (inter_instance_edges, intra_instance_edges, rank_loss,
                                   rank_loss_fn, select_negatives, transitive_edges,
                                   transitive_pair_list)
from jaxrep.ssl.vicreg import covariance_term, variance_term, vicreg_loss, vicreg_loss_fn
from jaxrep.ssl.views import (colour_jitter, flip_left_right, gaussian_noise, image_augment,
                              intensity_jitter, random_amplitude_scale, random_flip,
                              random_grayscale, random_resized_crop, random_shift,
                              random_time_scale, resized_crop, sequence_augment, two_views)

__all__ = [
    # modules
    "byol", "infonce", "random_fields", "sie", "supcon", "transitive", "vicreg", "views",
    "beclr", "obow",
    "opta", "equipartition_assignments", "dyce_update", "dyce_positives",
    # losses
    "bow_target", "bow_prediction_loss", "obow_loss_fn", "update_vocabulary",
    "infonce_loss", "infonce_loss_fn",
    "supcon_loss", "supcon_loss_fn",
    "byol_loss", "byol_loss_fn", "normalized_mse",
    "ema_update", "target_decay_schedule", "with_ema_target",
    "vicreg_loss", "vicreg_loss_fn", "variance_term", "covariance_term",
    "sbcl_loss", "sbcl_loss_fn", "subclass_counts", "subclass_labels",
    "class_temperatures", "ldam_loss",
    "local_outlier_factor", "lof_keep_mask", "class_gaussians", "calibrate_tail",
    "sample_calibrated",
    "sie_loss", "sie_loss_fn", "SIEModel", "HyperLinearPredictor", "hyper_linear_predict",
    "hypernetwork_weights",
    # views
    "resized_crop", "random_resized_crop", "flip_left_right", "random_flip",
    "intensity_jitter", "colour_jitter", "random_grayscale", "image_augment",
    "random_shift", "random_time_scale", "random_amplitude_scale", "gaussian_noise",
    "sequence_augment", "two_views",
    "gaussian_random_field", "local_affine", "local_colour", "random_field_augment",
    "augmented_loss_fn",
    "intra_instance_edges", "inter_instance_edges", "transitive_edges", "transitive_pair_list",
    "select_negatives", "rank_loss", "rank_loss_fn",
]
