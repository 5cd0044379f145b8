"""Shared statistics: kernels, HSIC, MMR, the KCI test, Gaussian moment-matching tests and
exact (Clopper–Pearson) bounds on a proportion."""
from jaxrep.stats import kci, kernels, moments, proportions
from jaxrep.stats.kernels import (center_kernel, hsic_biased, hsic_unbiased, linear_kernel,
                                  median_bandwidth, median_bandwidth_with_diagonal, mmr,
                                  rbf_kernel, squared_distances)
from jaxrep.stats.kci import (TestResult, gamma_p_value, kci_conditional, kci_unconditional,
                              zscore)
from jaxrep.stats.moments import MomentTest, hermite_features, moment_matching_test
from jaxrep.stats.proportions import clopper_pearson_lower, clopper_pearson_upper

__all__ = ["center_kernel", "clopper_pearson_lower", "clopper_pearson_upper", "gamma_p_value", "hermite_features", "hsic_biased",
           "hsic_unbiased", "kci", "kci_conditional", "kci_unconditional", "kernels",
           "linear_kernel", "median_bandwidth", "median_bandwidth_with_diagonal", "mmr",
           "moment_matching_test", "moments", "MomentTest", "proportions", "rbf_kernel",
           "squared_distances", "TestResult", "zscore"]
