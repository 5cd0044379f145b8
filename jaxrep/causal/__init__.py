"""Causal representation learning and causal discovery (pac_invariance, de_finetti, rep4ex, ...)."""
