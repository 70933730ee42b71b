"""What every export format shares: joint names, the output coordinate frame, each track's rest rig (skeleton,
mesh, skinning weights, side applied) and its per-frame parameters with unusable frames held.

The rig is the hand model's own linear-blend-skinning model, so a format that stores "rest skeleton + local
joint rotations + root translation" reproduces `HandModel.forward` exactly (up to MANO's pose blend shapes,
which no interchange format here can carry):

* Right hands (and left hands when a real left model is loaded) use the model's rest data directly.
* Left hands of a mirrored model are left(θ, t) = M · right(Mθ, Mt), M = diag(-1, 1, 1). Because
  M · R(Mθ) · M = R(θ), that is again an LBS model whose rest skeleton and mesh are M · (right rest) and
  whose local rotations are the artifact's axis-angles *unchanged*; only the triangle winding flips. So
  every format writes the artifact's rotations as they are, with the mirrored rest pose.
* The root rotates about the rest wrist, then `transl` is added: the wrist sits at rest_wrist + transl.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from handcli.artifacts import Artifact
from handcli.errors import BadInput
from handcli.handmodels.kinematics import (
    MANO21_TO_CANONICAL,
    MANO_PARENTS,
    TIP_PARENTS,
    axis_angle_to_matrix,
)

# canonical 21-keypoint order (docs/artifacts.md)
CANONICAL_NAMES = (
    "wrist",
    "thumb1", "thumb2", "thumb3", "thumb_tip",
    "index1", "index2", "index3", "index_tip",
    "middle1", "middle2", "middle3", "middle_tip",
    "ring1", "ring2", "ring3", "ring_tip",
    "pinky1", "pinky2", "pinky3", "pinky_tip",
)
# MANO21 order: the 16 rotating joints (MANO order), then the five tips thumb..pinky
# (canonical keypoint c is MANO21 node MANO21_TO_CANONICAL[c])
MANO21_NAMES = tuple(CANONICAL_NAMES[MANO21_TO_CANONICAL.index(m)] for m in range(21))
# parent of each MANO21 node (tips hang off their finger's distal joint)
MANO21_PARENTS = MANO_PARENTS + TIP_PARENTS

# output frames: rotation taking the artifact's OpenCV camera frame (x right, y down, z forward) to the
# output frame. "world-up" is the OpenGL / glTF camera convention (x right, y up, camera looking down -z):
# a 180° turn about x, a proper rotation, so handedness and triangle winding are kept.
FRAMES = {
    "camera": np.eye(3),
    "world-up": np.diag([1.0, -1.0, -1.0]),
}


def frame_rotation(frame: str) -> np.ndarray:
    """(3, 3) rotation from the camera frame to `frame`."""
    if frame not in FRAMES:
        raise BadInput(f"--frame: unknown frame {frame!r} (choose from {', '.join(FRAMES)})")
    return FRAMES[frame]


@dataclass
class TrackRig:
    """One track's hand in its rest pose, in the hand model's rest frame (metres), side applied.

    joints (21, 3): rest positions in MANO21 order (16 joints, then tips thumb..pinky); vertices (V, 3);
    faces (F, 3) with outward winding for this side; skinning_weights (V, 16) over the MANO joints (rows sum
    to 1). The tips are single skinned vertices of the model; `tips_rigid` says each is bound only to its
    finger's distal joint, so attaching them there as end nodes reproduces the model.
    """

    track: int
    is_right: bool
    joints: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray
    skinning_weights: np.ndarray
    tips_rigid: bool

    @property
    def offsets(self) -> np.ndarray:
        """(21, 3) each MANO21 node's rest position relative to its parent (the wrist: its rest position)."""
        parents = np.array([max(p, 0) for p in MANO21_PARENTS])
        offsets = self.joints - self.joints[parents]
        offsets[0] = self.joints[0]
        return offsets


@torch.no_grad()
def track_rig(model, betas: np.ndarray, is_right: bool, track: int = 0) -> TrackRig:
    """The rest rig of one track. model: HandModel; betas (nb,)."""
    betas_t = torch.as_tensor(np.asarray(betas, np.float32))[None]
    zeros3 = torch.zeros(1, 3)
    # rest_joints21 and a zero-pose forward pass both apply the side (mirror or real left model)
    joints = model.rest_joints21(betas_t, bool(is_right))[0].numpy().astype(np.float64)
    vertices = model(zeros3, torch.zeros(1, 15, 3), betas_t, zeros3, bool(is_right)).vertices[0].numpy()
    source = model.left_model if (not is_right and model.left_model is not None) else model
    weights = source.skinning_weights.numpy().astype(np.float64)
    tip_weights = weights[source.tip_vertex_ids.numpy()]  # (5, 16)
    tips_rigid = bool(np.allclose(tip_weights[np.arange(5), list(TIP_PARENTS)], 1.0, atol=1e-6))
    return TrackRig(track, bool(is_right), joints, vertices.astype(np.float64),
                    model.faces_for(bool(is_right)).numpy().astype(np.int64), weights, tips_rigid)


@dataclass
class TrackMotion:
    """One track's parameters over T frames, unusable frames filled in.

    global_orient (T, 3), hand_pose (T, 15, 3) axis-angle (MANO order, as in the artifact); transl (T, 3);
    valid (T,) bool: the artifact's `valid`; observed (T,) bool (all True without refine's mask); held
    (T,) bool: frames whose parameters were not finite and were copied from the nearest usable frame.
    """

    global_orient: np.ndarray
    hand_pose: np.ndarray
    transl: np.ndarray
    valid: np.ndarray
    observed: np.ndarray
    held: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.valid)

    def local_rotations(self) -> np.ndarray:
        """(T, 16, 3, 3) local rotation of every MANO joint (0: the root, about the rest wrist)."""
        axis_angle = np.concatenate([self.global_orient[:, None], self.hand_pose], 1)
        return axis_angle_to_matrix(torch.as_tensor(axis_angle, dtype=torch.float64)).numpy()

    def wrist_positions(self, rig: TrackRig) -> np.ndarray:
        """(T, 3) the posed wrist: the root rotates about the rest wrist, then transl is added."""
        return rig.joints[0] + self.transl


def track_motion(artifact: Artifact, h: int) -> TrackMotion | None:
    """Track h's parameters with non-finite frames held from the nearest usable frame (earlier frames win
    ties); None when no frame of the track has finite parameters. Frames that are finite but not `valid`
    keep their values (refine writes held or interpolated values there); formats mark them as documented."""
    orient = np.asarray(artifact.global_orient[h], np.float64)
    pose = np.asarray(artifact.hand_pose[h], np.float64)
    transl = np.asarray(artifact.transl[h], np.float64)
    usable = np.isfinite(orient).all(-1) & np.isfinite(pose).all((-2, -1)) & np.isfinite(transl).all(-1)
    if not usable.any():
        return None
    nearest = _nearest_usable(usable)
    observed = artifact.observed[h] if artifact.observed is not None else np.ones(len(usable), bool)
    return TrackMotion(orient[nearest], pose[nearest], transl[nearest], artifact.valid[h].astype(bool),
                       np.asarray(observed, bool), ~usable)


def _nearest_usable(usable: np.ndarray) -> np.ndarray:
    """(T,) bool -> (T,) index of the nearest True frame (itself when usable)."""
    frames = np.flatnonzero(usable)
    position = np.searchsorted(frames, np.arange(len(usable)))
    before = frames[np.clip(position - 1, 0, len(frames) - 1)]
    after = frames[np.clip(position, 0, len(frames) - 1)]
    index = np.arange(len(usable))
    return np.where(np.abs(index - before) <= np.abs(after - index), before, after)


def require_params(artifact: Artifact, source: str) -> None:
    """BadInput unless the artifact carries the hand-model parameters every export format needs."""
    missing = [k for k in ("global_orient", "hand_pose", "transl", "betas") if getattr(artifact, k) is None]
    if missing:
        raise BadInput(f"{source}: no hand-model parameters ({', '.join(missing)} missing); export needs a fitted "
                       "artifact (run `handcli estimate` or `handcli refine` first)")


def check_betas(artifact: Artifact, model) -> None:
    if artifact.betas.shape[1] != model.num_betas:
        raise BadInput(f"betas: the input has {artifact.betas.shape[1]} shape values per track but hand model "
                       f"'{model.name}' takes {model.num_betas} (was it made with another --hand-model?)")


@torch.no_grad()
def model_vertices(model, motion: TrackMotion, betas: np.ndarray, is_right: bool, frames: np.ndarray
                   ) -> np.ndarray:
    """(len(frames), V, 3) posed vertices (camera frame) of the given frames."""

    def tensor(array):
        return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)

    count = len(frames)
    return model(tensor(motion.global_orient[frames]), tensor(motion.hand_pose[frames]),
                 tensor(betas)[None].expand(count, -1), tensor(motion.transl[frames]), bool(is_right)).vertices.numpy()


def vertex_variance(artifact: Artifact, h: int, spread: np.ndarray | None) -> np.ndarray | None:
    """(T, V) per-vertex variance in m² of track h: `var_vertices`, else `var_joints` carried onto the
    vertices with spread (V, 21) (render.hands.HandMeshes.joint_spread); None without either."""
    if artifact.var_vertices is not None:
        return np.asarray(artifact.var_vertices[h], np.float64)
    if artifact.var_joints is not None and spread is not None:
        return np.asarray(artifact.var_joints[h], np.float64) @ spread.T.astype(np.float64)
    return None


def std_mm(variance: np.ndarray) -> np.ndarray:
    """Variance (m²) -> standard deviation (mm); negative round-off clipped, NaN kept."""
    return np.sqrt(np.maximum(np.asarray(variance, np.float64), 0.0)) * 1000.0
