"""Place MediaPipe's metric hand-centred landmarks in the camera frame.

MediaPipe's world landmarks are metric and hand-centred but their axes are aligned with the camera (x right,
y down, z away from the camera, like OpenCV; checked on real footage in docs/detect.md). So only a
translation t is unknown: find t such that the points W_j + t project onto the detected 2D keypoints
(u_j, v_j) through K. Per point the projection equations are linear in t:

    fx (Wx_j + tx) - (u_j - cx) (Wz_j + tz) = 0
    fy (Wy_j + ty) - (v_j - cy) (Wz_j + tz) = 0

Least squares over the 21 points gives t; a second pass divides each equation by the first pass's depth of
that point, which turns the algebraic residual into the reprojection error in pixels.
"""

from __future__ import annotations

import numpy as np


def solve_translation(world_landmarks: np.ndarray, keypoints2d: np.ndarray, K: np.ndarray,
                      weights: np.ndarray | None = None) -> np.ndarray:
    """world_landmarks (N, J, 3) metres, keypoints2d (N, J, 2) pixels, K (3, 3), weights (N, J) or None
    -> (N, 3) camera-frame translation of each hand's landmark origin, metres."""
    world = np.asarray(world_landmarks, np.float64)
    uv = np.asarray(keypoints2d, np.float64)
    weights = np.ones(world.shape[:2]) if weights is None else np.asarray(weights, np.float64)
    if world.shape[0] == 0:
        return np.zeros((0, 3))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    du, dv = uv[..., 0] - cx, uv[..., 1] - cy
    zeros = np.zeros_like(du)
    # (N, J, 2, 3) rows and (N, J, 2) right-hand sides of the two equations per point
    rows = np.stack([np.stack([np.full_like(du, fx), zeros, -du], -1),
                     np.stack([zeros, np.full_like(dv, fy), -dv], -1)], -2)
    rhs = np.stack([du * world[..., 2] - fx * world[..., 0], dv * world[..., 2] - fy * world[..., 1]], -1)
    translation = _weighted_least_squares(rows, rhs, weights)
    depth = np.maximum(world[..., 2] + translation[:, None, 2], 1e-3)
    return _weighted_least_squares(rows, rhs, weights / depth**2)


def _weighted_least_squares(rows: np.ndarray, rhs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """rows (N, J, 2, 3), rhs (N, J, 2), weights (N, J) -> (N, 3) minimising sum_j w_j |rows_j t - rhs_j|^2."""
    normal = np.einsum("nj,njki,njkl->nil", weights, rows, rows)
    moment = np.einsum("nj,njki,njk->ni", weights, rows, rhs)
    return np.linalg.solve(normal, moment[..., None])[..., 0]


def project(points3d: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(..., 3) camera-frame points -> (..., 2) pixels."""
    projected = points3d @ np.asarray(K, points3d.dtype).T
    return projected[..., :2] / projected[..., 2:3]
