"""One absl entrypoint per paper: ``python -m experiments.NAME --workdir=DIR``."""
