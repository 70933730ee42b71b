"""Where a detector's 2D landmarks sit on the hand model: a fixed offset per keypoint, riding on its bone.

MediaPipe's annotators marked landmarks on the skin (the wrist crease, the knuckle tops, the pad of a finger
tip), while the hand model's keypoints are joint centres inside the hand and tip vertices. Measured on the
video benchmark's tuning renders, MediaPipe's wrist sits about 7 % of the hand length towards the fingers of
the model's wrist joint and its knuckles a few per cent towards the wrist: fitting the model's own keypoints
to those landmarks turns and shortens the hand. Each keypoint k therefore gets an offset o_k, in units of
hand length, expressed in the frame of the bone k rides on (its parent joint in the MANO tree; the root for
the wrist), so the landmark the image fit compares with MediaPipe's is

    landmark_k = p_k + L * W_parent(k) o_k        (p_k keypoint, W global rotation, L hand length).

The offsets are fitted by `solve_offsets` (linear least squares on the benchmark's tuning split:
`scripts/calibrate_landmarks.py`) and shipped in weights/landmark_offsets.npz (card:
weights/landmark_offsets.md). The keypoints the stages output stay the model's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handcli.handmodels.kinematics import MANO21_PARENTS, MANO21_TO_CANONICAL

OFFSETS_PATH = Path(__file__).resolve().parents[2] / "weights" / "landmark_offsets.npz"
FORMAT = "handcli-landmark-offsets/1"
# MANO21 keypoint -> the joint whose global rotation carries its offset (the root carries the wrist)
LANDMARK_PARENT = tuple(max(parent, 0) for parent in MANO21_PARENTS)


def load_offsets(path: str | Path | None = None) -> np.ndarray:
    """(21, 3) float64 offsets in hand lengths, canonical order; zeros when no calibration file is shipped
    at the default path (an explicit path must exist)."""
    path = OFFSETS_PATH if path is None else Path(path)
    if not path.exists() and path == OFFSETS_PATH:
        return np.zeros((21, 3))
    with np.load(path, allow_pickle=False) as data:
        if str(data["format"]) != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} file")
        return np.asarray(data["offsets"], np.float64)


def to_mano21(offsets: np.ndarray) -> np.ndarray:
    """(21, 3) canonical order -> MANO21 order."""
    return np.asarray(offsets)[[MANO21_TO_CANONICAL.index(k) for k in range(21)]]


def solve_offsets(keypoints: np.ndarray, parent_rotations: np.ndarray, hand_lengths: np.ndarray,
                  normalised: np.ndarray, weights: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Least-squares offsets that move the true keypoints onto the detected landmarks.

    keypoints (N, 21, 3) metres camera frame and parent_rotations (N, 21, 3, 3) (W_parent(k), canonical
    order) of the true hand, hand_lengths (N,) metres, normalised (N, 21, 2) the detector's landmarks in
    normalised image coordinates ((u - cx) / fx, (v - cy) / fy), weights (N, 21) (0 drops a landmark).
    Linearised projection: n ~ x/z + J d with J = [1/z, 0, -x/z^2; 0, 1/z, -y/z^2] and d = L W o, solved
    per keypoint with a ridge of `ridge` per unit offset (relative to the data term's scale). -> (21, 3)."""
    x, y, z = (keypoints[..., i] for i in range(3))
    zero = np.zeros_like(z)
    jac = np.stack([np.stack([1 / z, zero, -x / z**2], -1), np.stack([zero, 1 / z, -y / z**2], -1)], -2)  # N,21,2,3
    design = jac @ parent_rotations * hand_lengths[:, None, None, None]  # (N, 21, 2, 3)
    target = normalised - keypoints[..., :2] / z[..., None]  # (N, 21, 2)
    offsets = np.zeros((21, 3))
    for k in range(21):
        w = weights[:, k, None, None]
        a = (design[:, k].transpose(0, 2, 1) @ (design[:, k] * w)).sum(0)
        b = (design[:, k].transpose(0, 2, 1) @ (target[:, k, :, None] * w)).sum(0)[:, 0]
        a = a + ridge * np.trace(a) / 3 * np.eye(3)
        offsets[k] = np.linalg.solve(a, b)
    return offsets
