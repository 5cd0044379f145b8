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
- ``views``: augmentations as pure functions of a key (crops, flips, colour jitter
  for images; shift, stretch, scale, noise for sequences) and ``two_views``.
"""
from jaxrep.ssl import byol, infonce, supcon, vicreg, views
from jaxrep.ssl.byol import (byol_loss, byol_loss_fn, ema_update, normalized_mse,
                             target_decay_schedule, with_ema_target)
from jaxrep.ssl.infonce import infonce_loss, infonce_loss_fn
from jaxrep.ssl.supcon import supcon_loss, supcon_loss_fn
from jaxrep.ssl.vicreg import covariance_term, variance_term, vicreg_loss, vicreg_loss_fn
from jaxrep.ssl.views import (colour_jitter, flip_left_right, gaussian_noise, image_augment,
                              intensity_jitter, random_amplitude_scale, random_flip,
                              random_grayscale, random_resized_crop, random_shift,
                              random_time_scale, resized_crop, sequence_augment, two_views)

__all__ = [
    # modules
    "byol", "infonce", "supcon", "vicreg", "views",
    # losses
    "infonce_loss", "infonce_loss_fn",
    "supcon_loss", "supcon_loss_fn",
    "byol_loss", "byol_loss_fn", "normalized_mse",
    "ema_update", "target_decay_schedule", "with_ema_target",
    "vicreg_loss", "vicreg_loss_fn", "variance_term", "covariance_term",
    # views
    "resized_crop", "random_resized_crop", "flip_left_right", "random_flip",
    "intensity_jitter", "colour_jitter", "random_grayscale", "image_augment",
    "random_shift", "random_time_scale", "random_amplitude_scale", "gaussian_noise",
    "sequence_augment", "two_views",
]
