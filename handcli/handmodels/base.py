"""`HandModel`: a 16-joint LBS hand (MANO or the open hand) behind one interface.

Conventions (docs/hand_models.md):
* Right-hand rest frame as MANO's: fingers along -x, palm facing -y (back of the hand +y), thumb towards +z.
* `hand_pose` (B, 15, 3) axis-angle per MANO joint 1..15 relative to its parent, flat hand = zero pose.
* `global_orient` rotates about the rest wrist; `transl` is added last. The open hand's rest wrist is the
  origin, so there `transl` is the wrist position.
* Left hands: unless the model carries a real left-hand model (MANO_LEFT), a left hand is the mirror image
  of the right hand across x=0 with mirrored parameters: left(θ, t) = M · right(M θ, M t), M = diag(-1, 1, 1),
  axis-angle mirrored as (x, -y, -z). The mirrored mesh is again a proper LBS model with the same
  parameters; its triangles need the opposite winding (`faces_for(is_right=False)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from handcli.handmodels.kinematics import (
    MANO21_TO_CANONICAL,
    MANO_PARENTS,
    axis_angle_to_matrix,
    forward_kinematics_by_level,
    mirror_axis_angle,
    mirror_points,
)
from handcli.handmodels.lbs import blend_shapes, linear_blend_skinning, pose_feature, skin_points


@dataclass
class HandOutput:
    """vertices (B, V, 3); joints (B, 21, 3) in canonical keypoint order."""

    vertices: torch.Tensor
    joints: torch.Tensor


def as_side_mask(is_right: bool | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """bool or (B,) -> BoolTensor (B,)."""
    if isinstance(is_right, torch.Tensor):
        mask = is_right.to(device=device, dtype=torch.bool).reshape(-1)
        return mask.expand(batch) if mask.numel() == 1 else mask
    return torch.full((batch,), bool(is_right), dtype=torch.bool, device=device)


class HandModel(torch.nn.Module):
    """A right-hand LBS model; left hands by mirroring, or by `left_model` when a real one is loaded.

    Buffers: v_template (V, 3), shapedirs (V, 3, nb), posedirs (135, V*3) (may be empty), joint_template
    (16, 3), joint_shapedirs (16, 3, nb), skinning_weights (V, 16), faces (F, 3) right-hand winding,
    tip_vertex_ids (5,) thumb..pinky, hands_mean (15, 3) (MANO's mean pose; zeros for the open hand).
    """

    parents = MANO_PARENTS

    def __init__(self, name: str, *, v_template, shapedirs, joint_template, joint_shapedirs, skinning_weights,
                 faces, tip_vertex_ids, posedirs=None, hands_mean=None, left_model: "HandModel | None" = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.name = name

        def floats(value):
            return torch.as_tensor(value, dtype=dtype).clone()

        self.register_buffer("v_template", floats(v_template))
        self.register_buffer("shapedirs", floats(shapedirs))
        num_vertices = self.v_template.shape[0]
        self.register_buffer("posedirs", floats(posedirs) if posedirs is not None else torch.zeros(0, num_vertices * 3, dtype=dtype))
        self.register_buffer("joint_template", floats(joint_template))
        self.register_buffer("joint_shapedirs", floats(joint_shapedirs))
        self.register_buffer("skinning_weights", floats(skinning_weights))
        self.register_buffer("faces", torch.as_tensor(faces, dtype=torch.long).clone())
        self.register_buffer("tip_vertex_ids", torch.as_tensor(tip_vertex_ids, dtype=torch.long).clone())
        self.register_buffer("hands_mean", floats(hands_mean).reshape(15, 3) if hands_mean is not None else torch.zeros(15, 3, dtype=dtype))
        self.left_model = left_model
        assert self.shapedirs.shape[:2] == (num_vertices, 3) and self.skinning_weights.shape == (num_vertices, 16)
        assert self.joint_template.shape == (16, 3) and self.joint_shapedirs.shape[:2] == (16, 3)

    @property
    def num_betas(self) -> int:
        return self.shapedirs.shape[-1]

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    def faces_for(self, is_right: bool = True) -> torch.Tensor:
        """Triangles (F, 3) with outward winding for that side (mirroring flips orientation)."""
        if is_right or self.left_model is not None:
            return self.faces if is_right else self.left_model.faces
        return self.faces[:, [0, 2, 1]]

    # ----------------------------------------------------------------------------------------------- rest
    def rest_joints16(self, betas: torch.Tensor) -> torch.Tensor:
        """Right-hand rest joints: betas (B, nb) -> (B, 16, 3)."""
        return blend_shapes(betas, self.joint_template, self.joint_shapedirs)

    def rest_joints21(self, betas: torch.Tensor, is_right: bool | torch.Tensor = True) -> torch.Tensor:
        """Rest pose keypoints in MANO21 order (16 joints, then tips thumb..pinky): betas (B, nb) -> (B, 21, 3)."""
        right = as_side_mask(is_right, betas.shape[0], betas.device)
        if self.left_model is not None and not bool(right.all()):
            return torch.where(right[:, None, None], self._rest21_right(betas), self.left_model._rest21_right(betas))
        joints = self._rest21_right(betas)
        return torch.where(right[:, None, None], joints, mirror_points(joints))

    def _rest21_right(self, betas: torch.Tensor) -> torch.Tensor:
        tips = blend_shapes(betas, self.v_template[self.tip_vertex_ids], self.shapedirs[self.tip_vertex_ids])
        return torch.cat([self.rest_joints16(betas), tips], 1)

    # -------------------------------------------------------------------------------------------- forward
    def forward(self, global_orient: torch.Tensor, hand_pose: torch.Tensor, betas: torch.Tensor,
                transl: torch.Tensor, is_right: bool | torch.Tensor = True) -> HandOutput:
        """Pose the mesh.

        global_orient (B, 3); hand_pose (B, 15, 3) (or (B, 45)); betas (B, nb); transl (B, 3);
        is_right bool or (B,) -> HandOutput(vertices (B, V, 3), joints (B, 21, 3) canonical order).
        """
        return self._run(global_orient, hand_pose, betas, transl, is_right, full_mesh=True)

    def keypoints(self, global_orient: torch.Tensor, hand_pose: torch.Tensor, betas: torch.Tensor,
                  transl: torch.Tensor, is_right: bool | torch.Tensor = True) -> torch.Tensor:
        """Only the 21 keypoints (canonical order), skinning just the 5 tip vertices: (B, 21, 3). For fitting."""
        return self._run(global_orient, hand_pose, betas, transl, is_right, full_mesh=False).joints

    def _run(self, global_orient, hand_pose, betas, transl, is_right, full_mesh: bool) -> HandOutput:
        batch = global_orient.shape[0]
        hand_pose = hand_pose.reshape(batch, 15, 3)
        right = as_side_mask(is_right, batch, global_orient.device)
        if self.left_model is not None:
            if bool(right.all()):
                return self._run_right(global_orient, hand_pose, betas, transl, full_mesh)
            if not bool(right.any()):
                return self.left_model._run_right(global_orient, hand_pose, betas, transl, full_mesh)
            out_r = self._run_right(global_orient, hand_pose, betas, transl, full_mesh)
            out_l = self.left_model._run_right(global_orient, hand_pose, betas, transl, full_mesh)
            pick = right[:, None, None]
            return HandOutput(torch.where(pick, out_r.vertices, out_l.vertices), torch.where(pick, out_r.joints, out_l.joints))
        # mirrored left hands: left(θ, t) = M · right(Mθ, Mt)
        flip = ~right
        orient_r = torch.where(flip[:, None], mirror_axis_angle(global_orient), global_orient)
        pose_r = torch.where(flip[:, None, None], mirror_axis_angle(hand_pose), hand_pose)
        transl_r = torch.where(flip[:, None], mirror_points(transl), transl)
        out = self._run_right(orient_r, pose_r, betas, transl_r, full_mesh)
        return HandOutput(torch.where(flip[:, None, None], mirror_points(out.vertices), out.vertices),
                          torch.where(flip[:, None, None], mirror_points(out.joints), out.joints))

    def _run_right(self, global_orient, hand_pose, betas, transl, full_mesh: bool) -> HandOutput:
        rotations = axis_angle_to_matrix(torch.cat([global_orient[:, None], hand_pose], 1))  # (B, 16, 3, 3)
        if full_mesh:
            vertices, joints16 = linear_blend_skinning(
                rotations, betas, self.v_template, self.shapedirs, self.joint_template, self.joint_shapedirs,
                self.skinning_weights, self.posedirs, self.parents)
            tips = vertices[:, self.tip_vertex_ids]
        else:
            ids = self.tip_vertex_ids
            tips_rest = blend_shapes(betas, self.v_template[ids], self.shapedirs[ids])
            if self.posedirs.numel():
                posedirs_tips = self.posedirs.reshape(self.posedirs.shape[0], -1, 3)[:, ids].reshape(self.posedirs.shape[0], -1)
                tips_rest = tips_rest + (pose_feature(rotations) @ posedirs_tips).reshape(tips_rest.shape)
            joints16, transforms = forward_kinematics_by_level(rotations, self.rest_joints16(betas), self.parents)
            tips = skin_points(tips_rest, transforms, self.skinning_weights[ids])
            vertices = tips
        joints21 = torch.cat([joints16, tips], 1)[:, list(MANO21_TO_CANONICAL)]
        offset = transl[:, None]
        return HandOutput(vertices + offset, joints21 + offset)
