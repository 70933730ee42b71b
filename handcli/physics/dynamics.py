"""Inverse dynamics of the hand: a floating wrist plus 15 spherical joints, by recursive Newton–Euler (RNEA).

The hand is a tree of 16 rigid parts in MANO's kinematic order (`MANO_PARENTS`). Every part has a frame at
its joint: the origin at the posed joint position, the axes those of the rest mesh rotated by the part's
world rotation (so in the rest pose all frames are parallel to the mesh frame, as in LBS).

Generalized coordinates q: wrist world rotation R = rotations[0] and position, 15 local joint rotations
rotations[1:] (child relative to parent, as `forward_kinematics` and `hand_pose` use them). The wrist
position never enters inverse dynamics (gravity is uniform), so it is not an input here.

Generalized velocity / acceleration / force, (..., 51) = (..., 6 + 3 * 15), the convention of Pinocchio's
FreeFlyer and Spherical joints (so `tests/test_physics.py` compares with `pinocchio.rnea` exactly):

    [0:3]   wrist linear velocity of the wrist point, in the wrist frame:      v = Rᵀ ṗ
    [3:6]   wrist angular velocity, in the wrist frame:                       ω, with Ṙ = R [ω]×
    [6:51]  joint j = 1..15 angular velocity relative to its parent, in joint j's frame: ṙ_j = r_j [ω_j]×
    acceleration: the time derivative of those components, so the wrist part is  a = Rᵀ p̈ − ω × v,  ω̇.
    force: the wrist force (N) and torque (N m, about the wrist point) in the wrist frame, then each joint's
    torque (N m) in its own frame, i.e. τ = M(q) q̈ + C(q, q̇) + g(q).

Gravity is a free-fall acceleration in the world (camera) frame. For video the camera's roll is unknown;
`GRAVITY_CAMERA_Y_DOWN` (+y is down in OpenCV axes) assumes an upright camera; pass `gravity=None` to
switch it off.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from handcli.errors import BadInput
from handcli.handmodels.kinematics import MANO_PARENTS, axis_angle_to_matrix
from handcli.physics.derivatives import generalized_derivatives
from handcli.physics.inertia import PartInertia

GRAVITY_CAMERA_Y_DOWN = (0.0, 9.81, 0.0)  # m/s^2, world = OpenCV camera frame held upright
Gravity = tuple[float, float, float] | torch.Tensor | None  # free-fall acceleration (3,) or None
NUM_JOINTS = len(MANO_PARENTS)
NUM_DOF = 6 + 3 * (NUM_JOINTS - 1)  # 51


def _matvec(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    return (matrix @ vector[..., None])[..., 0]


def _matvec_transposed(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    return (matrix.transpose(-1, -2) @ vector[..., None])[..., 0]


@lru_cache(maxsize=None)
def _schedule(parents: tuple[int, ...]):
    """Order joints by depth so each tree level is one contiguous slice and is processed in one batched step.

    Returns (order, position_of_joint, level slices [(start, stop)], per level>0 a (n_parent_level, n_level)
    0/1 matrix that sums children into their parents).
    """
    if parents[0] != -1 or any(not 0 <= p < j for j, p in enumerate(parents) if j > 0):
        raise BadInput("parents must have a single root at 0 and list every parent before its child")
    depth = [0] * len(parents)
    for j, p in enumerate(parents[1:], 1):
        depth[j] = depth[p] + 1
    order = tuple(sorted(range(len(parents)), key=lambda j: (depth[j], j)))
    position = [0] * len(parents)
    for pos, j in enumerate(order):
        position[j] = pos
    slices, scatter = [], []
    for level in range(max(depth) + 1):
        members = [position[j] for j in order if depth[j] == level]
        slices.append((members[0], members[-1] + 1))
        if level:
            parent_start, parent_stop = slices[level - 1]
            matrix = torch.zeros(parent_stop - parent_start, len(members))
            for column, pos in enumerate(members):
                matrix[position[parents[order[pos]]] - parent_start, column] = 1.0
            scatter.append(matrix)
    return order, tuple(position), tuple(slices), tuple(scatter)


def inverse_dynamics(rotations: torch.Tensor, velocity: torch.Tensor, acceleration: torch.Tensor,
                     rest_joints: torch.Tensor, inertia: PartInertia,
                     gravity: Gravity = GRAVITY_CAMERA_Y_DOWN,
                     parents: tuple[int, ...] = MANO_PARENTS) -> torch.Tensor:
    """Generalized forces τ = M(q) q̈ + C(q, q̇) + g(q) by RNEA (layout and frames in the module doc).

    rotations: (..., J, 3, 3) local rotations, [0] = wrist rotation in the world frame;
    velocity, acceleration: (..., 6 + 3 (J-1));
    rest_joints: (..., J, 3) rest-pose joint positions (broadcast against the leading dims);
    inertia: PartInertia in the rest mesh frame, mass (..., J), com (..., J, 3), inertia (..., J, 3, 3);
    gravity: (3,) free-fall acceleration in the world frame (m/s^2), or None.
    Returns (..., 6 + 3 (J-1)). Pure out-of-place torch: works with autograd, torch.func.jacrev and vmap.
    """
    order, position, slices, scatter = _schedule(tuple(parents))
    num_joints = len(parents)
    if rotations.shape[-3:] != (num_joints, 3, 3):
        raise BadInput(f"rotations must be (..., {num_joints}, 3, 3), got {tuple(rotations.shape)}")
    num_dof = 6 + 3 * (num_joints - 1)
    if velocity.shape[-1] != num_dof or acceleration.shape[-1] != num_dof:
        raise BadInput(f"velocity and acceleration must be (..., {num_dof})")
    dtype, device = rotations.dtype, rotations.device
    order_index = torch.tensor(order, device=device)

    # per-part constants in level order; the root's "offset" is unused
    parent_index = torch.tensor([max(p, 0) for p in parents], device=device)
    offsets = (rest_joints - rest_joints[..., parent_index, :])[..., order_index, :]
    com = (inertia.com - rest_joints)[..., order_index, :]  # centre of mass relative to the joint, part frame
    mass = inertia.mass[..., order_index, None]
    inertia_com = inertia.inertia[..., order_index, :, :]
    rot = rotations[..., order_index, :, :]

    joint_velocity = torch.cat([velocity[..., 3:6], velocity[..., 6:]], -1).unflatten(-1, (num_joints, 3))
    joint_acceleration = torch.cat([acceleration[..., 3:6], acceleration[..., 6:]], -1).unflatten(-1, (num_joints, 3))
    joint_velocity = joint_velocity[..., order_index, :]
    joint_acceleration = joint_acceleration[..., order_index, :]

    # forward pass: spatial velocity (omega, vel) and acceleration (alpha, acc) of every part, in its frame,
    # linear parts taken at the joint origin (Featherstone's spatial convention)
    root_rot = rot[..., 0, :, :]
    root_linear_acceleration = acceleration[..., :3]
    if gravity is not None:
        gravity_vector = torch.as_tensor(gravity, dtype=dtype, device=device)
        # the base accelerates upwards at g instead of gravity pulling every part down
        root_linear_acceleration = root_linear_acceleration - _matvec_transposed(root_rot, gravity_vector)
    omega = [joint_velocity[..., :1, :]]
    vel = [velocity[..., None, :3]]
    alpha = [joint_acceleration[..., :1, :]]
    acc = [root_linear_acceleration[..., None, :]]
    for level, (start, stop) in enumerate(slices[1:], 1):
        pick = scatter[level - 1].to(dtype=dtype, device=device).T  # (n, n_parent) selects each child's parent
        omega_parent, vel_parent, alpha_parent, acc_parent = (pick @ q[level - 1] for q in (omega, vel, alpha, acc))
        r, d = rot[..., start:stop, :, :], offsets[..., start:stop, :].expand_as(omega_parent)
        w_joint, dw_joint = joint_velocity[..., start:stop, :], joint_acceleration[..., start:stop, :]
        omega_child = _matvec_transposed(r, omega_parent) + w_joint
        vel_child = _matvec_transposed(r, vel_parent + torch.cross(omega_parent, d, dim=-1))
        alpha_child = _matvec_transposed(r, alpha_parent) + dw_joint + torch.cross(omega_child, w_joint, dim=-1)
        acc_child = (_matvec_transposed(r, acc_parent + torch.cross(alpha_parent, d, dim=-1))
                     + torch.cross(vel_child, w_joint, dim=-1))
        omega.append(omega_child)
        vel.append(vel_child)
        alpha.append(alpha_child)
        acc.append(acc_child)
    omega, vel, alpha, acc = (torch.cat(q, -2) for q in (omega, vel, alpha, acc))

    # Newton–Euler per part: f = I a + v x* (I v), about the joint origin, in the part frame
    com = com.expand_as(omega)
    momentum = mass * (vel + torch.cross(omega, com, dim=-1))
    angular_momentum = _matvec(inertia_com, omega) + torch.cross(com, momentum, dim=-1)
    mass_acceleration = mass * (acc + torch.cross(alpha, com, dim=-1))
    force = mass_acceleration + torch.cross(omega, momentum, dim=-1)
    torque = (_matvec(inertia_com, alpha) + torch.cross(com, mass_acceleration, dim=-1)
              + torch.cross(omega, angular_momentum, dim=-1) + torch.cross(vel, momentum, dim=-1))

    # backward pass: each part carries its own wrench plus its subtree's, moved to the parent frame
    level_force = [force[..., start:stop, :] for start, stop in slices]
    level_torque = [torque[..., start:stop, :] for start, stop in slices]
    for level in range(len(slices) - 1, 0, -1):
        start, stop = slices[level]
        r, d = rot[..., start:stop, :, :], offsets[..., start:stop, :]
        force_in_parent = _matvec(r, level_force[level])
        d = d.expand_as(force_in_parent)
        torque_in_parent = _matvec(r, level_torque[level]) + torch.cross(d, force_in_parent, dim=-1)
        gather = scatter[level - 1].to(dtype=dtype, device=device)
        level_force[level - 1] = level_force[level - 1] + gather @ force_in_parent
        level_torque[level - 1] = level_torque[level - 1] + gather @ torque_in_parent

    joint_torque = torch.cat(level_torque, -2)[..., list(position[1:]), :]  # (..., J-1, 3) in MANO order
    return torch.cat([level_force[0][..., 0, :], level_torque[0][..., 0, :], joint_torque.flatten(-2)], -1)


def mass_matrix(rotations: torch.Tensor, rest_joints: torch.Tensor, inertia: PartInertia,
                parents: tuple[int, ...] = MANO_PARENTS) -> torch.Tensor:
    """Joint-space inertia matrix M(q), (..., D, D) with D = 6 + 3 (J-1): column k = RNEA(q, 0, e_k), no gravity.

    rotations: (..., J, 3, 3); other arguments as `inverse_dynamics`.
    """
    num_dof = 6 + 3 * (len(parents) - 1)
    batch = rotations.shape[:-3]
    unit = torch.eye(num_dof, dtype=rotations.dtype, device=rotations.device).expand(*batch, num_dof, num_dof)
    columns = inverse_dynamics(rotations[..., None, :, :, :], torch.zeros_like(unit), unit,
                               _unsqueeze_batch(rest_joints, 2), _unsqueeze_inertia(inertia), None, parents)
    return columns.transpose(-1, -2)


def bias_forces(rotations: torch.Tensor, velocity: torch.Tensor, rest_joints: torch.Tensor, inertia: PartInertia,
                gravity: Gravity = GRAVITY_CAMERA_Y_DOWN,
                parents: tuple[int, ...] = MANO_PARENTS) -> torch.Tensor:
    """C(q, q̇) + g(q), (..., D): RNEA with zero acceleration."""
    return inverse_dynamics(rotations, velocity, torch.zeros_like(velocity), rest_joints, inertia, gravity, parents)


def _unsqueeze_batch(tensor: torch.Tensor, event_dims: int) -> torch.Tensor:
    """Insert a broadcast dim just before the last `event_dims` dims when the tensor carries batch dims."""
    return tensor.unsqueeze(-event_dims - 1) if tensor.dim() > event_dims else tensor


def _unsqueeze_inertia(inertia: PartInertia) -> PartInertia:
    return PartInertia(_unsqueeze_batch(inertia.mass, 1), _unsqueeze_batch(inertia.com, 2),
                       _unsqueeze_batch(inertia.inertia, 3))


def sequence_dynamics(rotations: torch.Tensor, transl: torch.Tensor, fps: float, rest_joints: torch.Tensor,
                      inertia: PartInertia,
                      gravity: Gravity = GRAVITY_CAMERA_Y_DOWN,
                      parents: tuple[int, ...] = MANO_PARENTS) -> torch.Tensor:
    """Generalized forces along a motion sequence, derivatives by finite differences on the rotation manifold.

    rotations: (..., T, J, 3, 3) local rotation matrices or (..., T, J, 3) axis-angle ([0] = global orient,
    then `hand_pose`); transl: (..., T, 3); fps: frames per second;
    rest_joints: (J, 3) or (..., J, 3) per sequence; inertia: PartInertia, unbatched or batched per sequence.
    Returns (..., T, 6 + 3 (J-1)). Velocities and accelerations come from `generalized_derivatives`
    (second-order central differences; one-sided second-order differences at the first and last frame).
    """
    if rotations.shape[-1] == 3 and rotations.shape[-2] == len(parents):
        rotations = axis_angle_to_matrix(rotations)
    velocity, acceleration = generalized_derivatives(rotations, transl, fps)
    return inverse_dynamics(rotations, velocity, acceleration, _unsqueeze_batch(rest_joints, 2),
                            _unsqueeze_inertia(inertia), gravity, parents)
