"""Invariance and equivariance: group actions, equivariance checks and the symmetry papers.

Toolkit (shared by the papers and the tests):

* ``groups`` — group elements as arrays with samplers and actions: permutations,
  SO(2)/O(2), SO(3)/O(3)/O(d) (Haar), E(3), GL⁺(2)/SL(2) on points and images
  (bilinear warps about the image centre), 1-D shifts and scalings.
* ``equivariance`` — ``equivariance_error(f, sample_g, act_in, act_out, x, key)``
  and ``assert_equivariant`` / ``assert_invariant`` test helpers.

Papers: ``frame_averaging`` (Puny et al. 2022), ``lie_decomposition``
(Mironenco & Forré 2024), ``soft_equivariance`` (Kim et al. 2023), and the
other symmetry modules of this folder.
"""
