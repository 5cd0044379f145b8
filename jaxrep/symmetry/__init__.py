"""Invariance and equivariance: group actions, equivariance checks and the symmetry papers."""
