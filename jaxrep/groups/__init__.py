"""Group actions and equivariance checks, shared by every module and test.

* ``actions`` — group elements as arrays: samplers ``sample_*(key, ...) -> g`` and
  named actions ``act(g, x) -> g·x`` (permutations, SO(2)/O(2), SO(3)/O(3)/O(d),
  E(3), Sim(3), GL⁺(2)/SL(2) and affine maps on points and images, 1-D shifts
  and scalings).
* ``pairs`` — each group as a ``Group(sample, act)`` pair: ``SO2``, ``O2``, ``SO3``,
  ``O3``, ``E3``, ``orthogonal_group(d)``, ``permutation_group(n)``, ...
* ``equivariance`` — ``equivariance_error`` / ``assert_equivariant`` /
  ``assert_invariant`` (float-valued test helpers) and ``equivariance_residual``
  (jittable, array-valued, a regulariser).
"""
from jaxrep.groups import actions, equivariance, pairs
from jaxrep.groups.actions import (affine_warp_image, apply_affine_points, apply_e3,
                                   apply_e3_with_vectors, apply_similarity,
                                   inverse_permutation, permute, rotate_points, rotation_2d,
                                   sample_e3, sample_gl2_plus, sample_log_scale, sample_o2,
                                   sample_o3, sample_orthogonal, sample_permutation,
                                   sample_shift, sample_similarity, sample_sl2, sample_so2,
                                   sample_so3, scale_sequence, shift_sequence, warp_image)
from jaxrep.groups.equivariance import (assert_equivariant, assert_invariant,
                                        equivariance_error, equivariance_residual,
                                        invariance_error, invariance_residual, trivial_action)
from jaxrep.groups.pairs import (E3, O2, O3, SO2, SO3, Group, image_group, orthogonal_group,
                                 permutation_group, scale_group, shift_group, similarity_group)

__all__ = ["actions", "affine_warp_image", "apply_affine_points", "apply_e3",
           "apply_e3_with_vectors", "apply_similarity", "assert_equivariant",
           "assert_invariant", "E3", "equivariance", "equivariance_error",
           "equivariance_residual", "Group", "image_group", "invariance_error",
           "invariance_residual", "inverse_permutation", "O2", "O3", "orthogonal_group",
           "pairs", "permutation_group", "permute", "rotate_points", "rotation_2d",
           "sample_e3", "sample_gl2_plus", "sample_log_scale", "sample_o2", "sample_o3",
           "sample_orthogonal", "sample_permutation", "sample_shift",
           "sample_similarity", "sample_sl2", "sample_so2", "sample_so3", "scale_group",
           "scale_sequence", "shift_group", "shift_sequence", "similarity_group", "SO2",
           "SO3", "trivial_action", "warp_image"]
