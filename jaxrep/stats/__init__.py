"""Shared statistics: kernels, HSIC, MMR, the KCI test and Gaussian moment-matching tests."""
from jaxrep.stats import kci, kernels, moments
from jaxrep.stats.kernels import (center_kernel, hsic_biased, hsic_unbiased, linear_kernel,
                                  median_bandwidth, median_bandwidth_with_diagonal, mmr,
                                  rbf_kernel, squared_distances)
from jaxrep.stats.kci import (TestResult, gamma_p_value, kci_conditional, kci_unconditional,
                              zscore)
from jaxrep.stats.moments import MomentTest, hermite_features, moment_matching_test

__all__ = ["center_kernel", "gamma_p_value", "hermite_features", "hsic_biased",
           "hsic_unbiased", "kci", "kci_conditional", "kci_unconditional", "kernels",
           "linear_kernel", "median_bandwidth", "median_bandwidth_with_diagonal", "mmr",
           "moment_matching_test", "moments", "MomentTest", "rbf_kernel",
           "squared_distances", "TestResult", "zscore"]
