"""The ``jaxrep`` commands, one module per group; ``jaxrep.cli`` parses and dispatches.

Every module here imports only the standard library and ``jaxrep.registry`` at
import time (``jaxrep list`` and bad input are answered before jax loads); jax,
numpy and ml_collections are imported inside the commands that need them.
"""

__all__ = ["budget", "papers", "records", "reproduce", "sweep", "usage"]
