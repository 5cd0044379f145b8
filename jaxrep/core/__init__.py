"""Paper-agnostic plumbing: train state and step, evaluation, logging, configs, results."""
from jaxrep.core.checkpoint import Checkpoints, CheckpointError
from jaxrep.core.config import ConfigError
from jaxrep.core.evaluate import (accuracy, knn_accuracy, linear_predict,
                                  logistic_probe_accuracy, logistic_probe_fit,
                                  ridge_probe_accuracy, ridge_probe_fit, standardize)
from jaxrep.core.experiment import Context, Experiment, Outcome, execute
from jaxrep.core.loop import NonFiniteLossError, train_loop
from jaxrep.core.results import summarize
from jaxrep.core.train import (TrainState, init_train_state, make_train_step, scan_steps,
                               weighted_sum)
