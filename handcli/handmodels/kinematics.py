"""The hand's kinematic tree in MANO's convention, shared by every hand model, the physics and the data generator.

Two joint orders matter:

* MANO order (16 rotating joints): 0 wrist; 1-3 index MCP, PIP, DIP; 4-6 middle; 7-9 pinky; 10-12 ring;
  13-15 thumb CMC, MCP, IP. `hand_pose` (…,15,3) holds joints 1..15 in this order, axis-angle, relative to
  the parent, with the flat hand as the zero pose.
* Canonical order (21 keypoints, OpenPose/MediaPipe): wrist; thumb CMC, MCP, IP, TIP; index MCP, PIP, DIP, TIP;
  middle …; ring …; pinky …. Every artifact stores `keypoints3d` in this order.

"Joints21 in MANO order" means the 16 MANO joints followed by the five fingertips (thumb, index, middle,
ring, pinky); `MANO21_TO_CANONICAL` reorders that into the canonical order.
"""

from __future__ import annotations

import torch

NUM_MANO_JOINTS = 16
NUM_KEYPOINTS = 21

# parent of each MANO joint (-1: root)
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
# fingertips (thumb, index, middle, ring, pinky) hang off these MANO joints
TIP_PARENTS = (15, 3, 6, 12, 9)
# 16 MANO joints + 5 tips -> canonical 21-keypoint order
MANO21_TO_CANONICAL = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
# canonical keypoint -> its parent keypoint in the canonical order (-1 for the wrist)
CANONICAL_PARENTS = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)
# canonical keypoint index of each finger's chain, thumb to pinky, base to tip
CANONICAL_FINGERS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
# the 21-node tree used for keypoints: MANO joints then tips, each tip rigidly attached to its distal joint
MANO21_PARENTS = MANO_PARENTS + TIP_PARENTS
# MANO fingertip vertex ids (thumb, index, middle, ring, pinky), as smplx uses them
MANO_TIP_VERTICES = (744, 320, 443, 554, 671)


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, differentiable at zero.

    axis_angle: (..., 3) -> rotation matrices (..., 3, 3).
    """
    angle_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]  # (...,1,1)
    angle = torch.sqrt(angle_sq + 1e-16)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*axis_angle.shape[:-1], 3, 3)
    # sin(a)/a and (1-cos(a))/a^2 with Taylor series near zero so gradients stay finite
    small = angle_sq < 1e-8
    sin_term = torch.where(small, 1 - angle_sq / 6, torch.sin(angle) / angle)
    cos_term = torch.where(small, 0.5 - angle_sq / 24, (1 - torch.cos(angle)) / angle_sq.clamp_min(1e-16))
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(skew)
    return eye + sin_term * skew + cos_term * (skew @ skew)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of `axis_angle_to_matrix` via the quaternion (stable near 0 and pi).

    matrix: (..., 3, 3) -> axis-angle (..., 3) with angle in [0, pi].
    """
    quat = matrix_to_quaternion(matrix)
    quat = torch.where(quat[..., :1] < 0, -quat, quat)
    vec = quat[..., 1:]
    sin_half = vec.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, quat[..., :1])
    scale = torch.where(sin_half < 1e-8, 2.0 / quat[..., :1].clamp_min(1e-8), angle / sin_half.clamp_min(1e-12))
    return vec * scale


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (w, x, y, z)."""
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    candidates = torch.stack(
        [
            torch.stack([1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22, m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1], 1 - m00 + m11 - m22, m[..., 2, 1] + m[..., 1, 2]], -1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2], 1 - m00 - m11 + m22], -1),
        ],
        -2,
    )  # (...,4,4): row k is 4*q_k*q scaled; pick the row with the largest diagonal term for stability
    diag = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = diag.argmax(-1)
    row = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    return row / row.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def forward_kinematics(rotations: torch.Tensor, rest_joints: torch.Tensor,
                       parents: tuple[int, ...] = MANO_PARENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose a kinematic tree.

    rotations: (B, J, 3, 3) local rotations (joint 0 is the global orientation about the rest wrist);
    rest_joints: (B, J, 3) or (J, 3) joint positions in the rest pose. Parents must precede children.
    Returns (posed_joints (B, J, 3), world_transforms (B, J, 4, 4)); world_transforms map rest-space points
    rigidly attached to joint j to posed space (the LBS bone transforms: R_world, p - R_world @ p_rest).
    """
    batch = rotations.shape[0]
    rest = rest_joints.expand(batch, *rest_joints.shape[-2:]) if rest_joints.dim() == 2 else rest_joints
    world_rot: list[torch.Tensor] = []
    world_pos: list[torch.Tensor] = []
    for j, parent in enumerate(parents):
        if parent < 0:
            world_rot.append(rotations[:, j])
            world_pos.append(rest[:, j])
        else:
            world_rot.append(world_rot[parent] @ rotations[:, j])
            offset = (rest[:, j] - rest[:, parent])[..., None]
            world_pos.append(world_pos[parent] + (world_rot[parent] @ offset)[..., 0])
    rot = torch.stack(world_rot, 1)
    pos = torch.stack(world_pos, 1)
    transforms = torch.zeros(batch, len(parents), 4, 4, dtype=rot.dtype, device=rot.device)
    transforms[..., :3, :3] = rot
    transforms[..., :3, 3] = pos - (rot @ rest[..., None])[..., 0]
    transforms[..., 3, 3] = 1
    return pos, transforms


def mirror_axis_angle(axis_angle: torch.Tensor) -> torch.Tensor:
    """Mirror rotations across the x=0 plane (right hand <-> left hand): (x, y, z) -> (x, -y, -z)."""
    sign = axis_angle.new_tensor([1.0, -1.0, -1.0])
    return axis_angle * sign


def mirror_points(points: torch.Tensor) -> torch.Tensor:
    """Mirror points across the x=0 plane: (..., 3) -> (..., 3)."""
    return points * points.new_tensor([-1.0, 1.0, 1.0])


def kinematic_levels(parents: tuple[int, ...] = MANO_PARENTS) -> tuple[tuple[int, ...], ...]:
    """Joints grouped by depth in the tree (root first); every joint's parent is in an earlier group."""
    depth: list[int] = []
    for parent in parents:
        depth.append(0 if parent < 0 else depth[parent] + 1)
    return tuple(tuple(j for j, d in enumerate(depth) if d == level) for level in range(max(depth) + 1))


def forward_kinematics_by_level(rotations: torch.Tensor, rest_joints: torch.Tensor,
                                parents: tuple[int, ...] = MANO_PARENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """Same result as `forward_kinematics`, one batched step per tree depth (4 for a hand, not 16): much
    faster for large batches. rotations (B, J, 3, 3); rest_joints (B, J, 3) or (J, 3) -> ((B, J, 3), (B, J, 4, 4))."""
    batch, num_joints = rotations.shape[:2]
    rest = rest_joints.expand(batch, *rest_joints.shape[-2:]) if rest_joints.dim() == 2 else rest_joints
    levels = kinematic_levels(parents)
    slot = {j: k for level in levels for k, j in enumerate(level)}  # position of a joint inside its level
    level_rot = [rotations[:, list(levels[0])]]
    level_pos = [rest[:, list(levels[0])]]
    for depth in range(1, len(levels)):
        ids = list(levels[depth])
        parent_ids = [parents[j] for j in ids]
        pick = [slot[p] for p in parent_ids]
        parent_rot, parent_pos = level_rot[-1], level_pos[-1]
        if pick != list(range(parent_rot.shape[1])):
            parent_rot, parent_pos = parent_rot[:, pick], parent_pos[:, pick]
        level_rot.append(parent_rot @ rotations[:, ids])
        level_pos.append(parent_pos + (parent_rot @ (rest[:, ids] - rest[:, parent_ids])[..., None])[..., 0])
    order = [j for level in levels for j in level]
    to_joint_order = sorted(range(num_joints), key=order.__getitem__)
    rot = torch.cat(level_rot, 1)[:, to_joint_order]
    pos = torch.cat(level_pos, 1)[:, to_joint_order]
    translation = pos - (rot @ rest[..., None])[..., 0]
    bottom = rot.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(batch, num_joints, 1, 4)
    transforms = torch.cat([torch.cat([rot, translation[..., None]], -1), bottom], -2)
    return pos, transforms
