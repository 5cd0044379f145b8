"""Probing and comparing representations of any encoder ``apply(params, x) -> features``.

Probes (from ``jaxrep.core.evaluate``): closed-form ridge, L-BFGS logistic, k-NN.
Similarity of representations: CKA (``cka``), RDMs and RSA (``rdm``,
``topological_rsa``). Paper modules: ``relative`` (relative representations and
stitching), ``dsimplex`` (stationary representations and compatibility),
``moment_probing`` (MHC³ moment probe), ``interaction_basis``. Small encoders for
MNIST-1D: ``encoders``.
"""
from jaxrep.core.evaluate import (accuracy, knn_accuracy, knn_predict, linear_predict,
                                  logistic_probe_accuracy, logistic_probe_fit,
                                  ridge_probe_accuracy, ridge_probe_fit, standardize)
from jaxrep.probe import (cka, dsimplex, encoders, interaction_basis, moment_probing, rdm,
                          relative, topological_rsa)
from jaxrep.probe.cka import cka_from_grams, linear_cka, linear_cka_features, rbf_cka
from jaxrep.probe.dsimplex import (average_compatibility, compatibility_loss,
                                   compatibility_matrix, fixed_classifier_logits, hoc_loss,
                                   identification_accuracy)
from jaxrep.probe.moment_probing import MHC3, LinearProbe, MomentProbe
from jaxrep.probe.relative import (mean_cosine, relative_projection, relative_representation,
                                   stitched_logits, stratified_anchor_indices)

__all__ = ["accuracy", "average_compatibility", "cka", "cka_from_grams",
           "compatibility_loss", "compatibility_matrix", "dsimplex", "encoders",
           "fixed_classifier_logits", "hoc_loss", "identification_accuracy",
           "interaction_basis", "knn_accuracy", "knn_predict", "linear_cka",
           "linear_cka_features", "linear_predict", "LinearProbe",
           "logistic_probe_accuracy", "logistic_probe_fit", "mean_cosine", "MHC3",
           "moment_probing", "MomentProbe", "rbf_cka", "rdm", "relative",
           "relative_projection", "relative_representation", "ridge_probe_accuracy",
           "ridge_probe_fit", "standardize", "stitched_logits",
           "stratified_anchor_indices", "topological_rsa"]
