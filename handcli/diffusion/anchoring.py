"""Depth-aware anchoring: split the refined whole-hand position along and across the input's depth axis.

A per-frame monocular estimator is precise across the viewing ray and unreliable along it: its errors move the
whole hand back and forth along one direction (the depth axis). The refiner estimates that axis as the
principal axis of the high-pass whole-hand disagreement between the input and the refined motion, then
- across the axis, puts the refined hand's position back on the observations (lightly smoothed), because the
  diffusion model's temporal prior lags true motion there more than the observations err. The observations'
  per-frame scale flicker about the wrist (monocular scale ambiguity; it moves the hand's centre) is first
  taken out: each frame's scale relative to the refined hand, high-passed and shrunk toward 1 because that
  estimate is itself noisy;
- along the axis, smooths the refined position a little more than the diffusion model does.
Inside a short unobserved stretch the whole-hand path is interpolated from the anchored path on either side:
a cubic spline across the axis (where that path is precise, so its curvature carries over) and a straight
line along it (where it is not); the articulation stays the diffusion model's infill.
Only the whole-hand offset changes (every joint of a frame moves by the same vector), so the articulation and
the bone lengths stay as refined. Tracks whose disagreement is not concentrated along one axis, or that have
too few observed frames to tell, are left as they are. Settings measured on the tuning split (docs/results.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.ndimage import gaussian_filter1d


@dataclass(frozen=True)
class AnchorConfig:
    across_seconds: float = 0.033  # smoothing of the observed whole-hand position across the depth axis
    along_seconds: float = 0.067  # extra smoothing of the refined whole-hand position along it
    scale_seconds: float = 0.1  # the observed scale's slow part (kept) is a Gaussian of this width
    scale_shrink: float = 0.5  # fraction of the fast scale flicker taken out (0 = none)
    gap_seconds: float = 0.5  # longest unobserved stretch whose whole-hand path is interpolated (0 = none)
    min_anisotropy: float = 2.0  # variance along the axis / variance across it, below which nothing changes
    min_frames: int = 16  # observed frames needed to estimate the axis


def depth_axis(offsets: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, float]:
    """offsets (T, 3) whole-hand disagreement (observed - refined), finite everywhere; valid (T,).
    Returns (unit axis (3,), anisotropy = largest eigenvalue / sum of the other two) of the observed frames'
    high-pass disagreement (one-frame Gaussian removed: the depth error decorrelates within a few frames)."""
    high_pass = (offsets - gaussian_filter1d(offsets, 1.0, axis=0, mode="nearest"))[valid]
    eigenvalues, eigenvectors = np.linalg.eigh(high_pass.T @ high_pass)
    return eigenvectors[:, -1], float(eigenvalues[-1] / max(eigenvalues[:2].sum(), 1e-18))


def _smooth_observed(values: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """(T, 3) -> (T, 3): Gaussian smoothing over the observed frames only (normalised convolution), then
    linear interpolation across the unobserved ones, so a long gap gets no discontinuity."""
    weight = valid.astype(np.float64)
    numerator = gaussian_filter1d(values * weight[:, None], sigma, axis=0, mode="nearest")
    denominator = gaussian_filter1d(weight, sigma, mode="nearest")
    smooth = numerator / np.maximum(denominator, 1e-12)[:, None]
    frames = np.arange(len(values))
    return np.stack([np.interp(frames, frames[valid], smooth[valid, k]) for k in range(3)], 1)


def interior_gaps(valid: np.ndarray) -> list[tuple[int, int]]:
    """(T,) bool -> [(start, stop), ...] runs of unobserved frames with an observed frame on both sides."""
    edges = np.diff(np.r_[1, valid.astype(np.int8), 1])
    starts, stops = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)
    return [(int(a), int(b)) for a, b in zip(starts, stops) if a > 0 and b < len(valid)]


def interpolate_gaps(keypoints3d: np.ndarray, valid: np.ndarray, axis: np.ndarray, max_frames: float
                     ) -> np.ndarray:
    """(T, 21, 3) -> (T, 21, 3): in each interior gap of at most `max_frames` frames, the whole-hand position
    follows a cubic spline through the observed frames across `axis` and a straight line along it."""
    gaps = [(a, b) for a, b in interior_gaps(valid) if b - a <= max_frames]
    if not gaps:
        return keypoints3d
    centre = keypoints3d.mean(1)
    frames = np.arange(len(valid))
    spline = CubicSpline(frames[valid], centre[valid], axis=0)
    target = centre.copy()
    for start, stop in gaps:
        inside = frames[start:stop]
        curve = spline(inside)
        weight = ((inside - (start - 1)) / (stop - start + 1))[:, None]
        line = centre[start - 1] * (1 - weight) + centre[stop] * weight
        target[start:stop] = curve + np.outer((line - curve) @ axis, axis)
    return keypoints3d + (target - centre)[:, None]


def remove_scale_flicker(observed: np.ndarray, refined: np.ndarray, valid: np.ndarray, sigma: float,
                         shrink: float) -> np.ndarray:
    """observed, refined (T, 21, 3), valid (T,) -> observed with its fast per-frame scale about its own wrist,
    relative to the refined hand, scaled down by `shrink` (invalid frames unchanged)."""
    about_wrist = observed - observed[:, :1]
    reference = refined - refined[:, :1]
    scale = (about_wrist * reference).sum((1, 2)) / np.maximum((reference**2).sum((1, 2)), 1e-18)
    frames = np.arange(len(valid))
    scale = np.interp(frames, frames[valid], scale[valid])
    fast = scale - gaussian_filter1d(scale, sigma, mode="nearest")
    corrected = observed[:, :1] + about_wrist / (1 + shrink * fast)[:, None, None]
    return np.where(valid[:, None, None], corrected, observed)


def anchor_track(refined: np.ndarray, observed: np.ndarray, valid: np.ndarray, fps: float,
                 config: AnchorConfig = AnchorConfig()) -> np.ndarray:
    """One track. refined (T, 21, 3) metres; observed (T, 21, 3) metres, any value where not valid; valid (T,).
    Returns the anchored (T, 21, 3) keypoints (a new array; `refined` unchanged when the track is skipped)."""
    valid = np.asarray(valid, bool) & np.isfinite(observed).all((1, 2))
    if valid.sum() < config.min_frames:
        return refined.copy()
    observed = np.nan_to_num(observed)
    if config.scale_shrink > 0:
        observed = remove_scale_flicker(observed, refined, valid, config.scale_seconds * fps, config.scale_shrink)
    disagreement = np.where(valid[:, None], (observed - refined).mean(1), 0.0)
    frames = np.arange(len(valid))
    filled = np.stack([np.interp(frames, frames[valid], disagreement[valid, k]) for k in range(3)], 1)
    axis, anisotropy = depth_axis(filled, valid)
    if anisotropy < config.min_anisotropy:
        return refined.copy()
    observed_offset = _smooth_observed(filled, valid, config.across_seconds * fps)
    across = observed_offset - np.outer(observed_offset @ axis, axis)
    depth = refined.mean(1) @ axis
    along = gaussian_filter1d(depth, config.along_seconds * fps, mode="nearest") - depth
    anchored = refined + (across + np.outer(along, axis))[:, None]
    return interpolate_gaps(anchored, valid, axis, config.gap_seconds * fps)
