"""Registry of the 53 papers jaxrep reimplements.

Each ``Paper`` records the exact title, a short stable id, a family, the one
claim our experiment tests, and where the implementation lives. ``status`` is
updated when a reproduction is run: "reproduced" means the claim held at the
experiment's default config, "failed" means it was measured and did not hold.
This module is pure data and imports only the standard library (the CLI
imports it).
"""
from __future__ import annotations

import dataclasses
import difflib

STATUSES = ("not started", "implemented", "reproduced", "failed")
FAMILIES = ("symmetry", "ssl", "shift", "causal", "probe", "diffusion", "compression",
            "editing", "theory", "generative")


@dataclasses.dataclass(frozen=True)
class Paper:
  """One paper: identity, the claim under test, and implementation state."""
  id: str
  title: str
  family: str
  claim: str
  module: str | None
  experiment: str | None
  status: str


def _todo(slug: str, title: str, family: str, claim: str) -> Paper:
  return Paper(slug, title, family, claim, None, None, "not started")


def _impl(slug: str, title: str, family: str, claim: str, module: str,
          experiment: str) -> Paper:
  return Paper(slug, title, family, claim, module, experiment, "implemented")


PAPERS: tuple[Paper, ...] = (
    _todo("kd3",
          "Distribution Shift Matters for Knowledge Distillation with Webly Collected Images",
          "shift",
          "Selecting web instances by combined teacher-student predictions, aligning weighted "
          "features and classifier weights, and adding MixDistribution contrastive "
          "perturbations yields a student, distilled from distribution-shifted web data, that "
          "beats existing data-free distillation methods on the original test distribution."),
    _impl("pac_invariance",
          "PAC Generalization via Invariant Representations",
          "causal",
          "An ε-invariant representation on T training environments fails 2ε-invariance on "
          "unseen environments at a rate that falls with T and does not grow with the ambient "
          "dimension.",
          "jaxrep.causal.pac_invariance", "pac_invariance"),
    _todo("iadg",
          "Instance-Aware Domain Generalization for Face Anti-Spoofing",
          "shift",
          "Aligning features at the instance level without domain labels (asymmetric instance "
          "adaptive whitening, dynamic kernels, categorical style assembly) lowers face "
          "anti-spoofing error on unseen domains below domain-label-based generalization "
          "methods."),
    _todo("catch_hate_speech",
          "Causality Guided Disentanglement for Cross-Platform Hate Speech Detection",
          "shift",
          "Disentangling inputs into platform-independent features that predict hate and "
          "platform-dependent features that predict its target lets a detector trained on one "
          "platform score higher on unseen platforms than models without the split."),
    _todo("hei_heterophily",
          "Leveraging Invariant Principle for Heterophilic Graph Structure Distribution Shifts",
          "shift",
          "Inferring latent environments from nodes' heterophily patterns, without augmentation, "
          "and training with an invariance penalty raises node-classification accuracy when "
          "train and test nodes differ in local homophily."),
    _impl("causal_de_finetti",
          "Causal de Finetti: On the Identification of Invariant Causal Structure in "
          "Exchangeable Data",
          "causal",
          "With two samples per environment, conditional-independence tests identify the causal "
          "direction with accuracy ≥ 0.9 at 500 environments, rising with the number of "
          "environments; with several binary variables (G-tests) its structural Hamming distance "
          "falls below a random guess.",
          "jaxrep.causal.de_finetti", "causal_de_finetti"),
    _impl("dsimplex_compatibility",
          "Stationary Representations: Optimally Approximating Compatibility and Implications "
          "for Improved Model Replacements",
          "probe",
          "A fixed d-simplex classifier keeps representations compatible across model "
          "replacement (average compatibility ≥ 0.9) where a learnable classifier does not "
          "(≤ 0.5).",
          "jaxrep.probe.dsimplex", "dsimplex_compatibility"),
    _todo("singular_distribution",
          "A likelihood approach to nonparametric estimation of a singular distribution using "
          "deep generative models",
          "generative",
          "Maximum-likelihood fitting of a deep generative model to data perturbed with instance "
          "noise estimates a distribution supported on a low-dimensional manifold consistently, "
          "whereas fitting the unperturbed data does not."),
    _impl("relative_representations",
          "Relative representations enable zero-shot latent space communication",
          "probe",
          "Anchor-cosine relative representations allow zero-shot stitching across seeds and "
          "architectures at ≥ 0.9× unstitched accuracy while absolute stitching is near chance.",
          "jaxrep.probe.relative", "relative_representations"),
    _todo("sie",
          "Self-supervised learning of Split Invariant Equivariant representations",
          "ssl",
          "Splitting the representation into invariant and equivariant parts, with a "
          "hypernetwork predictor conditioned on the transformation, predicts the applied "
          "transformation better than invariant self-supervised methods at similar "
          "classification accuracy."),
    _todo("rcal",
          "When Noisy Labels Meet Long Tail Dilemmas: A Representation Calibration Method",
          "shift",
          "Recovering per-class Gaussian distributions of contrastive representations from "
          "noisy, long-tailed data and training the classifier on samples drawn from them "
          "raises balanced accuracy over cross-entropy and prior noisy-label methods."),
    _impl("moment_probing",
          "Tuning Pre-trained Model via Moment Probing",
          "probe",
          "Probing first- and second-order token moments beats a linear probe by ≥ 2 points on "
          "transfer and solves a covariance-only task (≥ 90% vs ≤ 60%).",
          "jaxrep.probe.moment_probing", "moment_probing"),
    _impl("rich_representations",
          "Learning useful representations for shifting tasks and distributions",
          "probe",
          "Concatenating representations of independently trained networks transfers ≥ 3 points "
          "better than one equally wide network, at equal in-distribution accuracy.",
          "jaxrep.probe.concat_representations", "rich_representations"),
    _todo("transitive_invariance",
          "Transitive Invariance for Self-supervised Visual Representation Learning",
          "ssl",
          "Training a triplet-Siamese network on pairs obtained by composing inter-instance and "
          "intra-instance edges of an object graph gives representations that transfer better "
          "than training on either kind of invariance alone."),
    _todo("addp",
          "ADDP: Learning General Representations for Image Recognition and Generation with "
          "Alternating Denoising Diffusion Process",
          "diffusion",
          "Alternately decoding pixels from VQ tokens and predicting VQ tokens from pixels in a "
          "masked diffusion process yields one representation that generates images and whose "
          "pixel encoder transfers to recognition better than token-input encoders."),
    _todo("diffusionret",
          "DiffusionRet: Generative Text-Video Retrieval with Diffusion Model",
          "diffusion",
          "Modelling text-video retrieval as generating the joint query-candidate distribution "
          "from noise, trained with generation and contrastive losses, raises retrieval recall "
          "over contrastive-only retrieval, also on out-of-domain data."),
    _todo("invdiff",
          "InvDiff: Invariant Guidance for Bias Mitigation in Diffusion Models",
          "diffusion",
          "A lightweight module trained with a debiasing objective, without bias labels, guides "
          "a frozen diffusion model to samples with less attribute bias at nearly unchanged "
          "image quality."),
    _todo("obow",
          "OBoW: Online Bag-of-Visual-Words Generation for Self-Supervised Learning",
          "ssl",
          "Training a student to reconstruct, from a perturbed view, the bag-of-visual-words of "
          "an online teacher with an online-updated vocabulary learns representations that "
          "transfer better than prior contrastive self-supervised methods."),
    _impl("lie_decomposition",
          "Lie Group Decompositions for Equivariant Neural Networks",
          "symmetry",
          "An R²⋊SL(2) group-convolution network trained on untransformed digits beats a "
          "parameter-matched CNN by ≥ 5 points on affine-transformed digits.",
          "jaxrep.symmetry.lie_decomposition", "lie_decomposition"),
    _todo("deep_kernel_machines",
          "A theory of representation learning gives a deep generalisation of kernel methods",
          "theory",
          "In the Bayesian representation learning limit, deep Gaussian process posteriors are "
          "exactly multivariate Gaussian with covariances that maximise a log-likelihood minus "
          "KL objective, and wide finite deep GPs approach these covariances."),
    _todo("random_field_augmentations",
          "Random Field Augmentations for Self-Supervised Representation Learning",
          "ssl",
          "Augmentations whose transformation parameters vary per pixel as Gaussian random "
          "fields raise self-supervised linear-probe accuracy (+1.7% on ImageNet, +3.6% on "
          "iNaturalist) at mild strength, while strong fields degrade it."),
    _todo("binary_latent_diffusion",
          "Binary Latent Diffusion",
          "diffusion",
          "A diffusion prior over a Bernoulli autoencoder's binary latents generates images of "
          "quality comparable to state-of-the-art methods in as few as 16 sampling steps."),
    _impl("unsupervised_pretraining",
          "On the Provable Advantage of Unsupervised Pretraining",
          "theory",
          "MLE pretraining on m = 10⁴ unlabeled samples cuts excess risk at n = 50 labels to "
          "≤ 0.25× that of supervised learning, falling with m.",
          "jaxrep.theory.unsupervised_pretraining", "unsupervised_pretraining"),
    _todo("continuous_speculative_decoding",
          "Continuous Speculative Decoding for Autoregressive Image Generation",
          "generative",
          "Speculative decoding generalized to continuous-valued autoregressive image models, "
          "with a diffusion-tailored acceptance criterion and acceptance-rejection resampling, "
          "speeds sampling up to 2.33× while preserving the target model's output "
          "distribution."),
    _impl("frame_averaging",
          "Frame Averaging for Invariant and Equivariant Network Design",
          "symmetry",
          "Frame-averaging a non-equivariant backbone makes it exactly E(3)-equivariant and cuts "
          "n-body MSE to ≤ 0.7× that of the plain backbone and below rotation augmentation.",
          "jaxrep.symmetry.frame_averaging", "frame_averaging"),
    _impl("tester_learner",
          "An Efficient Tester-Learner for Halfspaces",
          "theory",
          "The tester-learner accepts Gaussian data with Massart noise ≥ 95% of the time with "
          "near-optimal error and accepts bad adversarial marginals ≤ 5% of the time.",
          "jaxrep.theory.tester_learner", "tester_learner"),
    _impl("invariance_constrained_augmentation",
          "Automatic Data Augmentation via Invariance-Constrained Learning",
          "symmetry",
          "Primal-dual augmentation with Metropolis-Hastings sampling beats uniform augmentation "
          "by ≥ 1 point on small-sample MNIST-1D, and a loose constraint drives its multiplier "
          "to 0.",
          "jaxrep.symmetry.constrained_augmentation", "constrained_augmentation"),
    _todo("repa",
          "Representation Alignment for Generation: Training Diffusion Transformers Is Easier "
          "Than You Think",
          "diffusion",
          "Aligning diffusion-transformer hidden states on noisy inputs with a pretrained "
          "encoder's clean-image representations reaches the baseline's generation quality in "
          "far fewer training steps (over 17.5× fewer for SiT-XL)."),
    _todo("diti",
          "Exploring Diffusion Time-steps for Unsupervised Representation Learning",
          "diffusion",
          "Learning time-step-specific features that make up for the attributes a pretrained "
          "diffusion model loses at each noise level gives disentangled representations that "
          "improve attribute classification and allow single-attribute counterfactual "
          "generation."),
    _impl("ood_unlabeled",
          "Out-Of-Domain Unlabeled Data Improves Generalization",
          "causal",
          "Adding pseudo-labeled out-of-domain unlabeled data to a distributionally robust loss "
          "raises two-Gaussian accuracy by ≥ 0.15 at n = 10⁴, increasing in n.",
          "jaxrep.causal.robust_self_supervised", "ood_unlabeled"),
    _todo("diffusion_subspace_clustering",
          "Diffusion Models Learn Low-Dimensional Distributions via Subspace Clustering",
          "diffusion",
          "For a mixture of low-rank Gaussians and a low-rank denoiser, diffusion training is "
          "equivalent to subspace clustering, and the number of samples needed to learn the "
          "subspaces grows linearly with their intrinsic dimension."),
    _impl("locality_dsd",
          "Role of Locality and Weight Sharing in Image-Based Tasks: A Sample Complexity "
          "Separation between CNNs, LCNs, and FCNs",
          "symmetry",
          "On the DSD task, sample complexity orders n_CNN < n_LCN < n_FCN, with n_LCN/n_CNN "
          "and n_FCN/n_LCN growing with the number of patches k.",
          "jaxrep.symmetry.locality", "locality_dsd"),
    _impl("invariance_transfer",
          "Understanding the Role of Invariance in Transfer Learning",
          "symmetry",
          "Pretraining with invariances matching the target task gains ≥ 10 transfer points, "
          "more than 4× data or 2× width.",
          "jaxrep.symmetry.invariance_transfer", "invariance_transfer"),
    _todo("cvae_attributes",
          "Learning Structured Output Representations from Attributes using Deep Conditional "
          "Generative Models",
          "generative",
          "A conditional VAE conditioned on attributes generates samples carrying the requested "
          "attributes, and up-weighting the KL term of its lower bound makes prior samples match "
          "the attributes more often at the cost of reconstruction error."),
    _todo("diffusion_classification",
          "Diffusion Models Beat GANs on Image Classification",
          "diffusion",
          "Pooled intermediate U-Net features of a diffusion model, at a well-chosen block and "
          "noise level, classify images better than comparable generative-discriminative "
          "representations such as BigBiGAN's."),
    _todo("pv_tuning",
          "PV-Tuning: Beyond Straight-Through Estimation for Extreme LLM Compression",
          "compression",
          "For 1-2-bit vector-quantized language models, alternately optimizing continuous "
          "parameters and discrete codes reaches lower held-out loss than straight-through "
          "estimator fine-tuning."),
    _impl("soft_equivariance",
          "Regularizing Towards Soft Equivariance Under Mixed Symmetries",
          "symmetry",
          "Projection-based soft-equivariance regularizers with auto-tuned strengths beat both "
          "an unconstrained MLP and an exactly O(3)-equivariant model on modified inertia, and "
          "put the largest strength on the exact symmetry.",
          "jaxrep.symmetry.soft_equivariance", "soft_equivariance"),
    _todo("beclr",
          "BECLR: Batch Enhanced Contrastive Few-Shot Learning",
          "ssl",
          "A dynamic clustered memory for positive sampling in contrastive pretraining, plus "
          "optimal-transport alignment of support prototypes to the query distribution at "
          "inference, raises unsupervised few-shot accuracy, most in low-shot settings."),
    _todo("masked_diffusion",
          "Masked Diffusion Models are Secretly Time-Agnostic Masked Models and Exploit "
          "Inaccurate Categorical Sampling",
          "diffusion",
          "Masked diffusion training and sampling are free of the time variable: a first-hitting "
          "sampler matches the original generative process about 20× faster, and inaccurate "
          "32-bit categorical sampling lowers the effective temperature and token diversity."),
    _todo("countgen",
          "Make It Count: Text-to-Image Generation with an Accurate Number of Objects",
          "diffusion",
          "Counting object instances from diffusion self-attention features during denoising and "
          "guiding with a predicted layout for missing objects raises exact-count accuracy of "
          "text-to-image generation over unguided baselines."),
    _impl("rep4ex",
          "Identifying Representations for Intervention Extrapolation",
          "causal",
          "An autoencoder constrained so that E[φ(X)|A] is affine identifies Z up to affine maps "
          "(R² ≥ 0.95) and extrapolates interventions with ≤ 0.2× the MSE of the unconstrained "
          "pipeline.",
          "jaxrep.causal.rep4ex", "rep4ex"),
    _impl("tinvnn",
          "Revisiting Transformation Invariant Geometric Deep Learning: Are Initial "
          "Representations All You Need?",
          "symmetry",
          "A modified-MDS initial representation makes a point-cloud classifier lose ≤ 1 point "
          "under random rigid and scale transforms while the plain backbone loses ≥ 30.",
          "jaxrep.symmetry.tinvnn", "tinvnn"),
    _todo("attention_random_features",
          "What can a Single Attention Layer Learn? A Study Through the Random Features Lens",
          "theory",
          "A multi-head attention layer with frozen random query-key weights and trained values "
          "learns key-permutation-invariant targets with fewer samples than a two-layer "
          "random-feature network, and non-zero-mean query-key weights help further on some "
          "targets."),
    _impl("topological_rsa",
          "The Topology and Geometry of Neural Representations",
          "probe",
          "Geo-topological RDM summaries identify network layers as well as plain RDMs at high "
          "SNR and better at low SNR.",
          "jaxrep.probe.topological_rsa", "topological_rsa"),
    _todo("quest",
          "QuEST: Low-bit Diffusion Model Quantization via Efficient Selective Finetuning",
          "compression",
          "Fine-tuning only the time-embedding and quantization-sensitive layers of a quantized "
          "diffusion model recovers most of the generation quality that post-training "
          "quantization loses at low bit-widths, down to 4-bit weights and activations."),
    _todo("crate",
          "White-Box Transformers via Sparse Rate Reduction: Compression Is All There Is?",
          "compression",
          "Transformer blocks derived by unrolling sparse rate reduction (attention compresses, "
          "the MLP sparsifies) lower the coding rate and raise sparsity layer by layer while "
          "reaching accuracy close to a standard ViT."),
    _todo("sbcl",
          "Subclass-balancing Contrastive Learning for Long-tailed Recognition",
          "shift",
          "Clustering head classes into subclasses of tail-class size and contrasting at both "
          "subclass and class level raises long-tailed balanced accuracy over supervised "
          "contrastive learning."),
    _todo("f_distill",
          "One-step Diffusion Models with f-Divergence Distribution Matching",
          "generative",
          "Distilling a diffusion model into a one-step generator with less mode-seeking "
          "f-divergences (forward KL, Jensen-Shannon) covers the teacher's modes better than "
          "reverse-KL variational score distillation."),
    _todo("mcquic",
          "Unified Multivariate Gaussian Mixture for Efficient Neural Image Compression",
          "compression",
          "A multivariate Gaussian mixture prior over vectorized latents, realized by "
          "probabilistic multi-codebook vector quantization, improves rate-distortion over "
          "univariate priors while compressing 3.18× faster."),
    _todo("ddmi",
          "DDMI: Domain-Agnostic Latent Diffusion Models for Synthesizing High-Quality Implicit "
          "Neural Representations",
          "generative",
          "Generating adaptive hierarchical positional embeddings with a latent diffusion model, "
          "instead of network weights, yields higher-quality implicit neural representations "
          "than weight-generating INR models across domains."),
    _impl("interaction_basis",
          "Using Degeneracy in the Loss Landscape for Mechanistic Interpretability",
          "probe",
          "The interaction basis counts the true number of non-degenerate directions and keeps "
          "99% accuracy with fewer directions than the PCA or neuron basis.",
          "jaxrep.probe.interaction_basis", "interaction_basis"),
    _todo("label_agnostic_forgetting",
          "Label-Agnostic Forgetting: A Supervision-Free Unlearning in Deep Models",
          "editing",
          "Unlearning without labels, by adapting representations with VAEs fitted to remaining "
          "and forgotten embeddings plus contrastive alignment to the original model, forgets "
          "about as well as supervised unlearning while preserving accuracy on remaining data."),
    _todo("atlas_task_vectors",
          "Knowledge Composition using Task Vectors with Learned Anisotropic Scaling",
          "editing",
          "Learning one coefficient per parameter block of each task vector composes task "
          "vectors with less interference than uniformly scaled task arithmetic and helps "
          "few-shot and test-time adaptation."),
)

# Outcome of each experiment's default-config run (2026-11-26, 2 CPU cores):
# "reproduced" = the claim held, "failed" = measured and it did not hold.
MEASURED_STATUS = {  # from default-config runs on 2 CPU cores (results.json `passed`)
    "causal_de_finetti": "reproduced",
    "frame_averaging": "reproduced",
    "interaction_basis": "reproduced",
    "moment_probing": "reproduced",
    "invariance_constrained_augmentation": "reproduced",
    "invariance_transfer": "reproduced",
    "ood_unlabeled": "reproduced",
    "pac_invariance": "reproduced",
    "rep4ex": "reproduced",
    "tinvnn": "reproduced",
    "unsupervised_pretraining": "reproduced",
    "dsimplex_compatibility": "failed",
    "lie_decomposition": "failed",
    "locality_dsd": "failed",
    "relative_representations": "failed",
    "rich_representations": "failed",
    "soft_equivariance": "failed",
    "tester_learner": "failed",
    "topological_rsa": "failed",
}
PAPERS = tuple(dataclasses.replace(p, status=MEASURED_STATUS.get(p.id, p.status))
               for p in PAPERS)

_BY_ID: dict[str, Paper] = {p.id: p for p in PAPERS}
_BY_EXPERIMENT: dict[str, Paper] = {p.experiment: p for p in PAPERS if p.experiment}


def get(paper_id: str) -> Paper:
  """The paper with this id; KeyError (naming close matches) if there is none."""
  try:
    return _BY_ID[paper_id]
  except KeyError:
    close = difflib.get_close_matches(paper_id, list(_BY_ID), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "no close matches"
    raise KeyError(f"unknown paper id '{paper_id}'; {hint}") from None


def by_experiment(name: str) -> Paper | None:
  """The paper whose experiment module is ``experiments.<name>``, or None."""
  return _BY_EXPERIMENT.get(name)
