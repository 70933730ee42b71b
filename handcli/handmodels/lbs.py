"""Linear blend skinning for 16-joint hand models (MANO's formulation, shared by every model).

v_shaped = v_template + shapedirs · betas
v_posed  = v_shaped + posedirs · (R_1..15 - I)            (pose blend shapes, optional)
joints   = joint_template + joint_shapedirs · betas         (J_regressor folded in: it is linear)
vertices = Σ_j w_vj · G_j(pose, joints) · v_posed           (G_j: the bone transforms of forward_kinematics)
"""

from __future__ import annotations

import torch

from handcli.handmodels.kinematics import MANO_PARENTS, forward_kinematics_by_level


def blend_shapes(betas: torch.Tensor, template: torch.Tensor, shapedirs: torch.Tensor) -> torch.Tensor:
    """Shape a template linearly.

    betas (B, nb); template (N, 3); shapedirs (N, 3, nb) -> (B, N, 3).
    """
    return template + torch.einsum("bk,ndk->bnd", betas, shapedirs[..., : betas.shape[-1]])


def pose_feature(rotations: torch.Tensor) -> torch.Tensor:
    """MANO's pose-blend-shape input: (R_j - I) of the 15 finger joints, flattened.

    rotations (B, 16, 3, 3) -> (B, 135).
    """
    eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
    return (rotations[:, 1:] - eye).reshape(rotations.shape[0], -1)


def skin_points(points: torch.Tensor, transforms: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Blend the bone transforms per point and apply them.

    points (B, N, 3) rest-space; transforms (B, J, 4, 4); weights (N, J) -> (B, N, 3).
    """
    blended = torch.einsum("nj,bjrc->bnrc", weights, transforms[..., :3, :])  # (B, N, 3, 4)
    return (blended[..., :3] @ points[..., None])[..., 0] + blended[..., 3]


def linear_blend_skinning(
    rotations: torch.Tensor,
    betas: torch.Tensor,
    v_template: torch.Tensor,
    shapedirs: torch.Tensor,
    joint_template: torch.Tensor,
    joint_shapedirs: torch.Tensor,
    skinning_weights: torch.Tensor,
    posedirs: torch.Tensor | None = None,
    parents: tuple[int, ...] = MANO_PARENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape, pose and skin a model.

    rotations (B, 16, 3, 3) local rotations (0: global orientation about the rest wrist); betas (B, nb);
    v_template (V, 3); shapedirs (V, 3, nb); joint_template (16, 3); joint_shapedirs (16, 3, nb);
    skinning_weights (V, 16); posedirs (135, V*3) or None.
    Returns (vertices (B, V, 3), posed joints (B, 16, 3)), before any translation.
    """
    v_shaped = blend_shapes(betas, v_template, shapedirs)
    rest_joints = blend_shapes(betas, joint_template, joint_shapedirs)
    if posedirs is not None and posedirs.numel():
        v_shaped = v_shaped + (pose_feature(rotations) @ posedirs).reshape(v_shaped.shape)
    posed_joints, transforms = forward_kinematics_by_level(rotations, rest_joints, parents)
    return skin_points(v_shaped, transforms, skinning_weights), posed_joints
