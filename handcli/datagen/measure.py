"""Keypoint-only measurements shared by the generator's tests and scripts/datagen_stats.py.

All take canonical 21-keypoint tracks (T, 21, 3) or (B, T, 21, 3) in metres and need no hand model, so the
same numbers can be computed on synthetic data, mocap ground truth and detector output alike.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import savgol_coeffs, savgol_filter

from handcli.handmodels.kinematics import CANONICAL_FINGERS, CANONICAL_PARENTS

BONE_CHILDREN = tuple(range(1, 21))
BONE_PARENTS = tuple(CANONICAL_PARENTS[1:])
# joints whose bend is measured: per finger (thumb..pinky) the three joints between four bones
BEND_JOINTS = {
    "thumb_cmc": 1, "thumb_mcp": 2, "thumb_ip": 3,
    **{f"{name}_{level}": CANONICAL_FINGERS[f][k]
       for f, name in enumerate(("thumb", "index", "middle", "ring", "pinky")) if f > 0
       for k, level in enumerate(("mcp", "pip", "dip"))},
}


def bone_lengths(keypoints3d: np.ndarray) -> np.ndarray:
    """(..., 21, 3) -> (..., 20) lengths of the 20 bones (child k+1 to its parent)."""
    return np.linalg.norm(keypoints3d[..., BONE_CHILDREN, :] - keypoints3d[..., BONE_PARENTS, :], axis=-1)


def bend_angles(keypoints3d: np.ndarray) -> dict[str, np.ndarray]:
    """Unsigned bend (degrees, 0 = straight) at each joint in BEND_JOINTS: the angle between the bone into the
    joint and the bone out of it. (..., 21, 3) -> name -> (...)."""
    out = {}
    for name, joint in BEND_JOINTS.items():
        parent = CANONICAL_PARENTS[joint]
        child = joint + 1
        into = keypoints3d[..., joint, :] - keypoints3d[..., parent, :]
        away = keypoints3d[..., child, :] - keypoints3d[..., joint, :]
        cos = (into * away).sum(-1) / (np.linalg.norm(into, axis=-1) * np.linalg.norm(away, axis=-1)).clip(1e-12)
        out[name] = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    return out


def speeds(keypoints3d: np.ndarray) -> np.ndarray:
    """Per-joint speed, metres per frame: (..., T, 21, 3) -> (..., T-1, 21)."""
    return np.linalg.norm(np.diff(keypoints3d, axis=-3), axis=-1)


def accelerations(keypoints3d: np.ndarray) -> np.ndarray:
    """Per-joint acceleration magnitude, metres per frame^2 (second differences): (..., T, 21, 3) -> (..., T-2, 21)."""
    second = keypoints3d[..., 2:, :, :] - 2 * keypoints3d[..., 1:-1, :, :] + keypoints3d[..., :-2, :, :]
    return np.linalg.norm(second, axis=-1)


def highpass_residual(series: np.ndarray, window: int = 7, order: int = 2) -> np.ndarray:
    """Residual from a local polynomial (Savitzky-Golay) fit along axis 0, rescaled so that for white noise its
    std equals the noise std (the fit absorbs a share h0 of each sample: divide by sqrt(1 - h0))."""
    centre_weight = savgol_coeffs(window, order)[window // 2]
    return (series - savgol_filter(series, window, order, axis=0)) / np.sqrt(1 - centre_weight)


def quiet_frames(keypoints3d: np.ndarray, quantile: float = 0.3, smoothing: float = 3.0) -> np.ndarray:
    """(T,) bool: the frames where the (smoothed) hand moves least, below the given speed quantile."""
    from scipy.ndimage import gaussian_filter1d

    smooth = gaussian_filter1d(keypoints3d, smoothing, axis=0)
    speed = np.linalg.norm(np.diff(smooth, axis=0), axis=-1).mean(-1)
    speed = np.concatenate([speed, speed[-1:]])
    return speed <= np.quantile(speed, quantile)


def autocorrelation(series: np.ndarray, lags) -> np.ndarray:
    """Mean autocorrelation over columns of (T, ...) at the given lags -> (len(lags),)."""
    flat = series.reshape(len(series), -1)
    flat = flat - flat.mean(0)
    var = (flat**2).mean(0).clip(1e-30)
    return np.array([((flat[:-lag] * flat[lag:]).mean(0) / var).mean() for lag in lags])
