"""Probing and comparing representations of any encoder ``apply(params, x) -> features``."""
from jaxrep.core.evaluate import (knn_accuracy, knn_predict, linear_predict,
                                  logistic_probe_accuracy, logistic_probe_fit,
                                  ridge_probe_accuracy, ridge_probe_fit, standardize)
from jaxrep.probe.cka import (center_gram, cka_from_grams, hsic, linear_cka,
                              linear_cka_features, linear_gram, median_bandwidth, rbf_cka,
                              rbf_gram)
