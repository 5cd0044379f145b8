"""Paper-agnostic plumbing: train state and step, evaluation, logging, configs, results.

The names below load on first use (PEP 562), so importing a jax-free submodule
(``jaxrep.core.config``, ``jaxrep.core.claims``) does not import jax: the CLI
answers ``jaxrep list`` and bad input before jax is loaded.
"""
from jaxrep import lazy

_EXPORTS = {
    "Checkpoints": "checkpoint", "CheckpointError": "checkpoint",
    "ConfigError": "config",
    "accuracy": "evaluate", "knn_accuracy": "evaluate", "linear_predict": "evaluate",
    "logistic_probe_accuracy": "evaluate", "logistic_probe_fit": "evaluate",
    "ridge_probe_accuracy": "evaluate", "ridge_probe_fit": "evaluate",
    "standardize": "evaluate",
    "Context": "experiment", "Experiment": "experiment", "Outcome": "experiment",
    "execute": "experiment",
    "FitResult": "fit", "parse_mesh": "fit",
    "Task": "tasks", "classifier_task": "tasks", "cross_entropy_loss_fn": "tasks",
    "minibatch_indices": "tasks", "minibatch_task": "tasks", "shard_batch": "tasks",
    "NonFiniteLossError": "loop", "train_loop": "loop",
    "summarize": "results",
    "TrainState": "train", "init_train_state": "train", "make_train_step": "train",
    "scan_steps": "train", "weighted_sum": "train", "check_axis_name": "train",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy.exports(__name__, _EXPORTS, globals())
