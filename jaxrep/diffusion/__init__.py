"""Diffusion core: noise processes, parameterizations, samplers, denoisers, metrics.

* ``schedules`` — noise processes as data, x_t = α(t) x₀ + σ(t) ε: ``VPLinear``
  (DDPM), ``VPCosine`` (improved DDPM), ``EDM`` (Karras et al.),
  ``LinearInterpolant`` (rectified flow / SiT); ``q_sample``, ``coefficients``.
* ``parameterization`` — ε-, x₀-, v-, velocity- and score-prediction with exact
  conversions; ``denoising_loss_fn`` → ``loss_fn(params, batch, rng)`` with
  optional condition dropout for classifier-free guidance; loss weightings
  (``edm_weighting``, ``min_snr_weighting``) and ``edm_preconditioned``.
* ``samplers`` — ``ddpm_sample``, ``ddim_sample`` (η), ``euler_sample``,
  ``heun_sample``, ``ddim_invert``; ``guided`` (classifier-free guidance).
* ``unet`` / ``dit`` — a small 1-D/2-D U-Net (class and cross-attention
  conditioning) and a small DiT/SiT with adaLN-zero; ``embeddings``.
* ``ema`` — ``with_params_ema``: θ̄ carried in the optimizer state.
* ``features`` — pooled U-Net block activations at a noise level t as image
  features, and a linear-probe grid over (block, t) (Mukhopadhyay et al. 2023).
* ``frechet`` — Fréchet distance and k-NN precision/recall/density/coverage on
  features of a network we train ourselves.
* ``gaussian_mixture`` — the exact denoiser of a Gaussian mixture (a reference).
* ``diti`` — DiTi (Yue et al. 2024): nested time-step masks on an encoder's feature
  blocks, conditioning a decoder that compensates a frozen DDPM (PDAE's shift).
* ``repa`` — REPA (Yu et al. 2025): a projector from a DiT block's tokens aligned by
  cosine similarity with a frozen encoder's patch features, added to SiT's loss;
  ``with_params_snapshot`` keeps the parameters of step N of a longer run.
* ``subspace_clustering`` — mixtures of low-rank Gaussians (MoLRG) and the low-rank
  denoiser of Wang et al. (2024), trained with ``denoising_loss_fn`` under a QR
  (Stiefel) retraction; subspace recovery by principal angles.

Training composes with the core's road: ``jaxrep.core.tasks.minibatch_task(init,
denoising_loss_fn(model.apply, process), with_params_ema(optimizer), batch_size=…)``
trained by ``jaxrep.core.fit.fit``; sample with ``ema_params(state.opt_state)``.
"""
from jaxrep.diffusion import (dit, diti, ema, embeddings, features, frechet,
                              gaussian_mixture, parameterization, repa, samplers, schedules,
                              subspace_clustering, unet)
from jaxrep.diffusion.dit import DiT, DiTBlock, patchify, unpatchify
from jaxrep.diffusion.diti import (diti_loss_fn, diti_weighting, nested_masks,
                                   shift_coefficient)
from jaxrep.diffusion.ema import ema_params, with_params_ema
from jaxrep.diffusion.embeddings import sinusoidal_embedding
from jaxrep.diffusion.frechet import (feature_statistics, frechet_distance,
                                      frechet_distance_features, gaussian_statistics,
                                      precision_recall_coverage)
from jaxrep.diffusion.gaussian_mixture import (gaussian_mixture_denoiser,
                                               sample_gaussian_mixture)
from jaxrep.diffusion.parameterization import (PREDICTIONS, convert, denoising_loss_fn,
                                               edm_preconditioned, edm_weighting, from_x0_eps,
                                               min_snr_weighting, to_x0_eps)
from jaxrep.diffusion.repa import (ProjectionMLP, alignment_loss, repa_loss_fn,
                                   snapshot_params, with_params_snapshot)
from jaxrep.diffusion.samplers import (ddim_invert, ddim_sample, ddpm_sample, euler_sample,
                                       guided, heun_sample)
from jaxrep.diffusion.schedules import (EDM, Coefficients, LinearInterpolant, VPCosine,
                                        VPLinear, coefficients, edm_sigmas, q_sample,
                                        time_grid)
from jaxrep.diffusion.unet import UNet

__all__ = [
    "Coefficients", "coefficients", "convert", "ddim_invert", "ddim_sample", "ddpm_sample",
    "denoising_loss_fn", "DiT", "dit", "DiTBlock", "diti", "diti_loss_fn", "diti_weighting",
    "nested_masks", "shift_coefficient", "EDM", "edm_preconditioned",
    "edm_sigmas", "edm_weighting", "ema", "ema_params", "embeddings", "euler_sample",
    "feature_statistics", "features", "frechet", "frechet_distance",
    "frechet_distance_features",
    "from_x0_eps", "gaussian_mixture", "gaussian_mixture_denoiser", "gaussian_statistics",
    "guided", "heun_sample", "LinearInterpolant", "min_snr_weighting", "parameterization",
    "patchify", "precision_recall_coverage", "PREDICTIONS", "ProjectionMLP", "q_sample",
    "alignment_loss", "repa", "repa_loss_fn", "snapshot_params", "with_params_snapshot",
    "sample_gaussian_mixture", "samplers", "schedules", "sinusoidal_embedding",
    "subspace_clustering", "time_grid",
    "to_x0_eps", "UNet", "unet", "unpatchify", "VPCosine", "VPLinear", "with_params_ema",
]
