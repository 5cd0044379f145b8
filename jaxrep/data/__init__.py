"""Datasets: stored (TFDS, prepared locally or read offline) and synthetic samplers."""
from jaxrep.data.dsd import dsd_bayes_error, dsd_bayes_logit, dsd_sample, random_signal
from jaxrep.data.iterate import BatchIterator, process_shard
from jaxrep.data.stored import (BUILTIN, DEFAULT_DATA_DIR, ArrayDataset,
                                DatasetMissingError, load, source)

__all__ = ["ArrayDataset", "BatchIterator", "BUILTIN", "DatasetMissingError",
           "DEFAULT_DATA_DIR", "dsd_bayes_error", "dsd_bayes_logit", "dsd_sample",
           "load", "process_shard", "random_signal", "source"]
