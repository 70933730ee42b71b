"""Euler–Lagrange physics of the hand for the physics-aware refiner (PAD-Hand §3.1, §3.3, App. A, eq. 28).

inertia      per-part mass / centre of mass / inertia from a skinned mesh (closed parts, signed tetrahedra)
derivatives  generalized velocities and accelerations by finite differences on SO(3)
dynamics     RNEA inverse dynamics τ = M q̈ + C + g of a floating wrist + 15 spherical joints, M(q)
residual     residual Z, losses L_EL and L^D_EL, metric R(q), force Jacobian and variance (eq. 17)
motion       forces straight from MANO parameters or 3D keypoints (via the analytic IK)
See docs/physics.md for the conventions.
"""

from handcli.physics.derivatives import angular_derivatives, generalized_derivatives, linear_derivatives, rotation_log
from handcli.physics.dynamics import (GRAVITY_CAMERA_Y_DOWN, NUM_DOF, bias_forces, inverse_dynamics, mass_matrix,
                                      sequence_dynamics)
from handcli.physics.inertia import HAND_DENSITY, PartInertia, PartMesh, mesh_volume, part_inertia
from handcli.physics.motion import forces_from_keypoints, forces_from_pose, hand_physics
from handcli.physics.residual import (banded_force_jacobian, banded_force_variance, el_l1_loss, el_nll_loss, el_residual_metric, euler_lagrange_residual,
                                      force_jacobian, force_variance)

__all__ = [
    "GRAVITY_CAMERA_Y_DOWN", "HAND_DENSITY", "NUM_DOF", "PartInertia", "PartMesh", "angular_derivatives", "banded_force_jacobian", "banded_force_variance",
    "bias_forces", "el_l1_loss", "el_nll_loss", "el_residual_metric", "euler_lagrange_residual",
    "force_jacobian", "force_variance", "forces_from_keypoints", "forces_from_pose", "generalized_derivatives",
    "hand_physics", "inverse_dynamics", "linear_derivatives", "mass_matrix", "mesh_volume", "part_inertia",
    "rotation_log", "sequence_dynamics",
]
