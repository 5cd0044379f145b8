"""Invariance and equivariance: the symmetry papers.

Group samplers, named actions ``act(g, x)``, ``(sample, act)`` pairs and the
equivariance checks live in the paper-agnostic ``jaxrep.groups``, shared with
``jaxrep.data`` and the tests.

Papers: ``frame_averaging`` (Puny et al. 2022), ``lie_decomposition``
(Mironenco & Forré 2024), ``soft_equivariance`` (Kim et al. 2023), and the
other symmetry modules of this folder.
"""

__all__ = ["constrained_augmentation", "frame_averaging", "invariance_transfer",
           "lie_decomposition", "locality", "soft_equivariance", "tensor_reps", "tinvnn"]  # submodules, one per paper or shared piece
