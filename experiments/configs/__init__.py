"""Jax-free configs of the experiments: ``get_config``, ``quick``, ``validate``.

One module per experiment (same name as ``experiments/<name>.py``); they import
only the standard library, ml_collections and ``jaxrep.core.config``, so the CLI
checks a run's config in well under a second, before jax is imported.
"""
