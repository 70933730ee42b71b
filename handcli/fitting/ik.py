"""Analytic inverse kinematics: 21 keypoints -> MANO-convention pose, batched and differentiable.

1. Global orientation: weighted Kabsch of the rigid palm (wrist, thumb base, four MCPs) from rest to observed.
2. Down each finger, every joint gets the minimal rotation (swing) taking its rest child bone onto the
   observed one, expressed in the parent's frame. The twist about the bone, which keypoints cannot see on
   the bone itself, is chosen so the joint's rest flexion axis lines up with the plane the next two observed
   bones bend in; with a straight finger that plane is undefined and the twist fades to zero.
With consistent bone lengths FK(IK(x)) reproduces x exactly; otherwise every bone direction still matches.
"""

from __future__ import annotations

import torch

from handcli.handmodels.kinematics import MANO21_TO_CANONICAL, matrix_to_axis_angle

# MANO21 index of each canonical keypoint's inverse: mano21[k] = canonical[CANONICAL_TO_MANO21[k]]
CANONICAL_TO_MANO21 = tuple(sorted(range(21), key=lambda c: MANO21_TO_CANONICAL[c]))
# per finger (thumb, index, middle, ring, pinky): base joint, two more joints, tip; MANO21 indices
FINGER_CHAINS_MANO21 = ((13, 14, 15, 16), (1, 2, 3, 17), (4, 5, 6, 18), (10, 11, 12, 19), (7, 8, 9, 20))
# rigid palm points for the global orientation and their weights (the thumb base is less reliably placed)
PALM_JOINTS = (0, 1, 4, 7, 10, 13)
PALM_WEIGHTS = (2.0, 1.0, 1.0, 1.0, 1.0, 0.5)
# direction each finger flexes towards in the right-hand rest frame: the palm faces -y; the thumb's pad faces
# the palm and the index finger (the bend of MANO's flat-hand thumb; the open hand's thumb is turned to match)
PAD_DIRECTIONS = ((-0.49, -0.60, -0.64),) + ((0.0, -1.0, 0.0),) * 4
PLANE_RELIABLE_SIN = 0.34  # bends beyond ~20 degrees define the flexion plane fully


def _normalize(vector: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return vector / vector.norm(dim=-1, keepdim=True).clamp_min(eps)


def _skew(vector: torch.Tensor) -> torch.Tensor:
    x, y, z = vector.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*vector.shape, 3)


def rotation_between(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Minimal rotations taking directions `source` onto `target`: (..., 3), (..., 3) -> (..., 3, 3)."""
    a, b = _normalize(source), _normalize(target)
    cross = torch.cross(a, b, dim=-1)
    cos = (a * b).sum(-1)[..., None, None]
    skew = _skew(cross)
    eye = torch.eye(3, dtype=a.dtype, device=a.device).expand_as(skew)
    rotation = eye + skew + skew @ skew / (1 + cos).clamp_min(1e-6)
    # opposite directions: half turn about any axis perpendicular to the source
    helper = torch.where(a[..., :1].abs() < 0.9, a.new_tensor([1.0, 0, 0]).expand_as(a), a.new_tensor([0, 1.0, 0]).expand_as(a))
    axis = _normalize(torch.cross(a, helper, dim=-1))
    half_turn = 2 * axis[..., :, None] * axis[..., None, :] - eye
    return torch.where(cos < -0.9999, half_turn, rotation)


def _axis_rotation(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotation by `angle` (...,) about unit `axis` (..., 3) -> (..., 3, 3)."""
    skew = _skew(axis)
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device).expand_as(skew)
    return eye + torch.sin(angle)[..., None, None] * skew + (1 - torch.cos(angle))[..., None, None] * (skew @ skew)


def kabsch(source: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Rotation R (..., 3, 3) minimising sum_i w_i |R (s_i - s̄) - (t_i - t̄)|^2; source/target (..., N, 3), weights (N,)."""
    w = (weights / weights.sum())[:, None]
    src = source - (w * source).sum(-2, keepdim=True)
    tgt = target - (w * target).sum(-2, keepdim=True)
    covariance = (w * src).transpose(-1, -2) @ tgt  # (..., 3, 3)
    u, _, vh = torch.linalg.svd(covariance)
    det = torch.det(vh.transpose(-1, -2) @ u.transpose(-1, -2))
    fix = torch.ones_like(u[..., 0])
    fix = torch.cat([fix[..., :2], det.sign()[..., None]], -1)
    return vh.transpose(-1, -2) @ (fix[..., :, None] * u.transpose(-1, -2))


def analytic_ik(keypoints3d: torch.Tensor, rest_joints21: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-hand pose from keypoints (mirror left hands first).

    keypoints3d: (..., 21, 3) canonical order; rest_joints21: (..., 21, 3) or (21, 3), MANO21 order (16 joints
    then the tips), the rest pose of the hand model with the track's shape.
    Returns global_orient (..., 3), hand_pose (..., 15, 3), transl (..., 3) such that the model's forward
    pass reproduces the keypoints (exactly when the bone lengths agree).
    """
    lead = keypoints3d.shape[:-2]
    observed = keypoints3d.reshape(-1, 21, 3)[:, list(CANONICAL_TO_MANO21)]
    rest = rest_joints21.expand(*lead, 21, 3).reshape(-1, 21, 3).to(observed)
    weights = observed.new_tensor(PALM_WEIGHTS)

    global_rot = kabsch(rest[:, list(PALM_JOINTS)], observed[:, list(PALM_JOINTS)], weights)  # (N, 3, 3)
    w = (weights / weights.sum())[:, None]
    rest_centre = (w * rest[:, list(PALM_JOINTS)]).sum(1)
    observed_centre = (w * observed[:, list(PALM_JOINTS)]).sum(1)
    wrist = rest[:, 0]
    transl = observed_centre - (global_rot @ (rest_centre - wrist)[..., None])[..., 0] - wrist

    chains = torch.tensor(FINGER_CHAINS_MANO21, device=observed.device)  # (5, 4)
    pads = observed.new_tensor(PAD_DIRECTIONS)  # (5, 3)
    parent_rot = global_rot[:, None].expand(-1, 5, 3, 3)
    local = observed.new_zeros(observed.shape[0], 16, 3, 3)
    for level in range(3):
        joint, child = chains[:, level], chains[:, level + 1]
        rest_bone = rest[:, child] - rest[:, joint]  # (N, 5, 3)
        seen_bone = (parent_rot.transpose(-1, -2) @ (observed[:, child] - observed[:, joint])[..., None])[..., 0]
        rotation = rotation_between(rest_bone, seen_bone)  # swing, in the parent's frame
        if level < 2:
            grandchild = chains[:, level + 2]
            seen_next = (parent_rot.transpose(-1, -2) @ (observed[:, grandchild] - observed[:, child])[..., None])[..., 0]
            rotation = _twist_to_flexion_plane(rotation, rest_bone, seen_bone, seen_next, pads) @ rotation
        local[:, joint] = rotation
        parent_rot = parent_rot @ rotation
    hand_pose = matrix_to_axis_angle(local[:, 1:])
    global_orient = matrix_to_axis_angle(global_rot)
    return global_orient.reshape(*lead, 3), hand_pose.reshape(*lead, 15, 3), transl.reshape(*lead, 3)


def _twist_to_flexion_plane(swing, rest_bone, seen_bone, seen_next, pads) -> torch.Tensor:
    """Rotation about the observed bone that turns the swung rest flexion axis into the observed one.

    All (N, 5, ...) in the parent's frame; returns (N, 5, 3, 3).
    """
    bone = _normalize(seen_bone)
    rest_axis = _normalize(torch.cross(rest_bone, pads.expand_as(rest_bone), dim=-1))
    swung_axis = (swing @ rest_axis[..., None])[..., 0]
    bend = torch.cross(bone, _normalize(seen_next), dim=-1)
    reliability = (bend.norm(dim=-1, keepdim=True) / PLANE_RELIABLE_SIN).clamp(max=1.0)
    seen_axis = _normalize(bend)
    seen_axis = seen_axis * torch.where((seen_axis * swung_axis).sum(-1, keepdim=True) < 0, -1.0, 1.0)
    target = _normalize(reliability * seen_axis + (1 - reliability) * swung_axis)
    # both axes are perpendicular to the bone up to round-off; measure the angle in that plane
    sin = (torch.cross(swung_axis, target, dim=-1) * bone).sum(-1)
    cos = (swung_axis * target).sum(-1)
    return _axis_rotation(bone, torch.atan2(sin, cos))
