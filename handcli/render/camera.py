"""Pinhole projection with OpenCV intrinsics (x right, y down, z forward), its OpenGL equivalent, and the
virtual camera that follows the hand when there is no video.

Pixel convention (OpenCV): pixel (i, j) covers [i - 0.5, i + 0.5] x [j - 0.5, j + 0.5], so `u = fx x / z + cx`
is a position in pixel units whose integer values are pixel centres. Both backends rasterise in this convention.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

NEAR = 0.01  # metres: geometry closer to the camera than this is clipped
FAR = 100.0


def project(points: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """points (..., 3) camera frame -> (pixels (..., 2) [u, v], depth (...,) z). Points with z <= 0 give inf."""
    points = np.asarray(points, np.float64)
    depth = points[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_z = np.where(depth > 0, 1.0 / depth, np.inf)
    u = K[0, 0] * points[..., 0] * inv_z + K[0, 1] * points[..., 1] * inv_z + K[0, 2]
    v = K[1, 1] * points[..., 1] * inv_z + K[1, 2]
    return np.stack([u, v], -1), depth


def gl_projection(K: np.ndarray, width: int, height: int, near: float = NEAR, far: float = FAR) -> np.ndarray:
    """The (4, 4) clip-space matrix that rasterises like `project` into a width x height framebuffer.

    x_ndc = (2u + 1) / W - 1 puts pixel centres where OpenCV has them. y_ndc = (2v + 1) / H - 1 keeps image
    row 0 at the framebuffer's first row, so the read-back buffer is already top-down (no flip). Depth is
    the usual perspective mapping of z in [near, far] to [-1, 1] with w = z.
    """
    fx, skew, cx = K[0, 0], K[0, 1], K[0, 2]
    fy, cy = K[1, 1], K[1, 2]
    return np.array([
        [2 * fx / width, 2 * skew / width, (2 * cx + 1) / width - 1, 0],
        [0, 2 * fy / height, (2 * cy + 1) / height - 1, 0],
        [0, 0, (far + near) / (far - near), -2 * far * near / (far - near)],
        [0, 0, 1, 0],
    ], np.float64)


def default_intrinsics(width: int, height: int, focal_scale: float = 1.2) -> np.ndarray:
    """(3, 3) a plausible phone-like camera: focal length 1.2 x the longer side, centred principal point."""
    focal = focal_scale * max(width, height)
    return np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1]], np.float64)


def follow_offsets(keypoints3d: np.ndarray, valid: np.ndarray, fps: float, K: np.ndarray, width: int,
                   height: int, fill: float = 0.7, smooth_seconds: float = 0.25) -> np.ndarray:
    """Per-frame shifts (T, 3) that move every hand in front of a virtual camera that follows them.

    keypoints3d (H, T, 21, 3), valid (H, T). The camera keeps the original camera's orientation (so the
    view matches the video's), is centred on the mean keypoint of all visible hands (gaps interpolated,
    Gaussian-smoothed over `smooth_seconds` so it glides rather than shakes) and stands at one fixed distance
    for the whole clip, chosen so the largest hand extent spans `fill` of the shorter image side. A point p
    of frame t is drawn at p + offsets[t].
    """
    num_frames = keypoints3d.shape[1]
    seen = valid.any(0)  # (T,)
    if not seen.any():
        return np.tile([0.0, 0.0, 0.5], (num_frames, 1))
    visible = np.where(valid[..., None, None], keypoints3d, np.nan).astype(np.float64)
    centres = _frame_centres(visible, seen)
    frames = np.arange(num_frames)
    centres = np.stack([np.interp(frames, frames[seen], centres[seen, axis]) for axis in range(3)], -1)
    sigma = smooth_seconds * fps
    if sigma > 0.5 and num_frames > 1:
        centres = gaussian_filter1d(centres, sigma, axis=0, mode="nearest")
    # radius of the hands around the camera centre across the view (x, y: depth does not widen the picture),
    # 95th percentile over frames (one outlier frame must not zoom the whole clip out); 2 cm margin for the
    # mesh around the keypoints
    spread = np.linalg.norm(visible[:, seen, :, :2] - centres[None, seen, None, :2], axis=-1)  # (H, T_seen, 21)
    radius = np.percentile(np.nanmax(spread, axis=(0, 2)), 95) + 0.02
    focal = min(K[0, 0], K[1, 1])
    distance = focal * radius / (0.5 * fill * min(width, height))
    return np.array([0.0, 0.0, distance]) - centres


def _frame_centres(visible: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """visible (H, T, 21, 3) with NaN where invalid -> (T, 3) mean visible keypoint (NaN on unseen frames)."""
    per_frame = visible.transpose(1, 0, 2, 3).reshape(visible.shape[1], -1, 3)
    centres = np.full((visible.shape[1], 3), np.nan)
    centres[seen] = np.nanmean(per_frame[seen], axis=1)
    return centres
