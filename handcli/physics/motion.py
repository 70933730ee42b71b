"""Generalized forces straight from the refiner's motion representations (MANO parameters or 3D keypoints)."""

from __future__ import annotations

import weakref

import torch

from handcli.physics.dynamics import GRAVITY_CAMERA_Y_DOWN, Gravity, sequence_dynamics
from handcli.physics.inertia import HAND_DENSITY, PartInertia, PartMesh


def forces_from_pose(global_orient: torch.Tensor, hand_pose: torch.Tensor, transl: torch.Tensor, fps: float,
                     rest_joints: torch.Tensor, inertia: PartInertia,
                     gravity: Gravity = GRAVITY_CAMERA_Y_DOWN) -> torch.Tensor:
    """F = M q̈ + C + g along a MANO-parameter motion.

    global_orient: (..., T, 3) axis-angle; hand_pose: (..., T, 15, 3) axis-angle; transl: (..., T, 3);
    rest_joints: (16, 3) or (..., 16, 3) rest joints of the track's shape; inertia: PartInertia (16 parts).
    Returns (..., T, 51).
    """
    pose = torch.cat([global_orient[..., None, :], hand_pose], -2)  # (..., T, 16, 3)
    return sequence_dynamics(pose, transl, fps, rest_joints, inertia, gravity)


def forces_from_keypoints(keypoints3d: torch.Tensor, rest_joints21: torch.Tensor, inertia: PartInertia, fps: float,
                          gravity: Gravity = GRAVITY_CAMERA_Y_DOWN) -> torch.Tensor:
    """F = M q̈ + C + g along a keypoint motion of a right hand, through the differentiable analytic IK.

    keypoints3d: (B, T, 21, 3) canonical order, metres, camera frame (mirror left hands first);
    rest_joints21: (21, 3) or (B, 21, 3), MANO21 order (16 joints then the tips) as `analytic_ik` takes them;
    inertia: PartInertia of the same hand, unbatched or per sequence. Returns (B, T, 51).
    Differentiable, also under torch.func.jacfwd / jacrev (see `force_jacobian`).
    """
    from handcli.fitting import analytic_ik  # lazy: fitting is not needed by the rest of the physics

    rest_per_frame = rest_joints21 if rest_joints21.dim() == 2 else rest_joints21[:, None]  # broadcast over T
    global_orient, hand_pose, transl = analytic_ik(keypoints3d, rest_per_frame)
    return forces_from_pose(global_orient, hand_pose, transl, fps, rest_joints21[..., :16, :], inertia, gravity)


_PART_MESHES: "weakref.WeakKeyDictionary[torch.nn.Module, PartMesh]" = weakref.WeakKeyDictionary()


def hand_physics(hand_model: torch.nn.Module, betas: torch.Tensor | None = None,
                 density: float = HAND_DENSITY) -> tuple[torch.Tensor, PartInertia]:
    """Rest joints and part inertia of a `HandModel` (right hand) for a shape.

    hand_model: a `handcli.handmodels.base.HandModel` (uses v_template, shapedirs, faces, skinning_weights,
    rest_joints16); betas: (B, nb) or None for the template shape.
    Returns (rest_joints (B, 16, 3), PartInertia(mass (B, 16), com (B, 16, 3), inertia (B, 16, 3, 3))),
    computed on the rest (flat, shaped) mesh, so the part frames of the dynamics are the mesh axes.
    Left hands: use the right-hand physics on the mirrored motion; mirroring maps forces and torques
    component-wise up to sign, so residual norms are unchanged.
    """
    from handcli.handmodels.lbs import blend_shapes

    if betas is None:
        betas = torch.zeros(1, hand_model.num_betas, dtype=hand_model.v_template.dtype,
                            device=hand_model.v_template.device)
    if hand_model not in _PART_MESHES:  # the topology work is done once per model
        _PART_MESHES[hand_model] = PartMesh(hand_model.faces, hand_model.skinning_weights)
    rest_vertices = blend_shapes(betas, hand_model.v_template, hand_model.shapedirs)
    return hand_model.rest_joints16(betas), _PART_MESHES[hand_model].inertia(rest_vertices, density)
