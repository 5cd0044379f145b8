"""Compression as representation learning: white-box coding-rate networks and quantization.

- ``crate``: CRATE, white-box transformer layers unrolled from sparse rate reduction
  (Yu et al. 2023): multi-head subspace self-attention, the one-step ISTA block, the
  coding rate R(Z), the compression term R^c(Z; U) and the sparsity measure.
"""
from jaxrep.compression import crate
from jaxrep.compression.crate import (CRATE, CRATEBlock, ViT, coding_rate,
                                      coding_rate_gradient, compression_term, ista_block,
                                      ista_solve, ista_step, layer_measures, mssa,
                                      subspace_compression, zero_fraction)

__all__: list[str] = [  # submodules, one per paper or shared piece, then their names
    "crate",
    "CRATE", "CRATEBlock", "ViT", "coding_rate", "coding_rate_gradient", "compression_term",
    "ista_block", "ista_solve", "ista_step", "layer_measures", "mssa",
    "subspace_compression", "zero_fraction",
]
