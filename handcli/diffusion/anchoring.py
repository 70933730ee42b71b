"""Depth-aware anchoring: split the refined whole-hand position along and across the input's depth axis.

A per-frame monocular estimator is precise across the viewing ray and unreliable along it: its errors move the
whole hand back and forth along one direction (the depth axis). When the camera is known (the input carries
intrinsics), that axis is each frame's camera ray through the hand; otherwise the refiner estimates it as the
principal axis of the high-pass whole-hand disagreement between the input and the refined motion. Then it
- across the axis, puts the refined hand's position back on the observations (lightly smoothed), because the
  diffusion model's temporal prior lags true motion there more than the observations err. The observations'
  per-frame scale flicker about the wrist (monocular scale ambiguity; it moves the hand's centre) is first
  taken out: each frame's scale relative to the refined hand, high-passed, bounded and shrunk toward 1
  because that estimate is itself noisy;
- along the axis, smooths the refined position a little more than the diffusion model does.
Inside a short unobserved stretch the whole-hand path is interpolated from the anchored path on either side:
a smoothing spline across the axis (where that path is precise, so its curvature carries over) and a straight
line along it (where it is not); the articulation stays the diffusion model's infill.
Only the whole-hand offset changes (every joint of a frame moves by the same vector), so the articulation and
the bone lengths stay as refined. With a camera, `follow_image` then moves each joint on its own, within its
depth plane, so that its image position follows the observation's (smoothed). Tracks whose disagreement is not concentrated along one axis, is too small
to matter, or has too few observed frames to tell, are left as they are. All widths are in seconds.
Settings measured on the tuning split (docs/results.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import make_smoothing_spline
from scipy.ndimage import binary_dilation, gaussian_filter1d


@dataclass(frozen=True)
class AnchorConfig:
    across_seconds: float = 0.033  # smoothing of the observed whole-hand position across the depth axis
    along_seconds: float = 0.067  # extra smoothing of the refined whole-hand position along it
    axis_seconds: float = 0.033  # the disagreement's high-pass (for the axis) removes a Gaussian this wide
    scale_seconds: float = 0.1  # the observed scale's slow part (kept) is a Gaussian of this width
    scale_shrink: float = 0.5  # fraction of the fast scale flicker taken out (0 = none)
    max_flicker: float = 0.2  # a faster relative scale change is an outlier, not flicker: bounded to this
    gap_seconds: float = 0.5  # longest unobserved stretch whose whole-hand path is interpolated (0 = none)
    min_anisotropy: float = 2.0  # variance along the axis / variance across it, below which nothing changes
    min_depth_jitter: float = 0.0005  # m, RMS high-pass disagreement along the axis below which nothing changes
    min_frames: int = 16  # observed frames needed to estimate the axis
    # with a camera: each refined joint is moved across its camera ray so that its image position follows
    # the observed joint's, the difference smoothed by a Gaussian this wide (`follow_image`); 0 = off
    image_seconds: float = 0.067


OUTLIER_FACTOR = 5.0  # a frame further than this many medians from the typical one is an outlier
MIN_IMAGE_DEPTH = 0.02  # metres: joints nearer the camera plane than this take no part in `follow_image`


def clip_outliers(values: np.ndarray, valid: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """(T, k) -> (T, k): each observed row's departure from its observed neighbours (leave-one-out Gaussian of
    `sigma` rows) bounded to OUTLIER_FACTOR times the track's median departure, so single wild frames lose
    their pull. Rotation-equivariant (the bound acts on the departure's length)."""
    observed = values[valid]
    if len(observed) < 5:
        return values
    delta = np.zeros(2 * int(4 * sigma) + 1)
    delta[len(delta) // 2] = 1.0
    centre_weight = gaussian_filter1d(delta, sigma)[len(delta) // 2]
    neighbours = (gaussian_filter1d(observed, sigma, axis=0, mode="nearest") - centre_weight * observed) \
        / (1 - centre_weight)
    departure = observed - neighbours
    size = np.linalg.norm(departure, axis=1)
    bound = OUTLIER_FACTOR * max(float(np.median(size)), 1e-9)
    out = values.copy()
    out[valid] = neighbours + departure * np.minimum(1.0, bound / np.maximum(size, 1e-12))[:, None]
    return out


def smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with the ends padded by point reflection, so a linear trend runs
    through the ends unbiased (a constant pad would pull the end frames toward the hold value)."""
    if sigma <= 0 or len(values) < 2:
        return values.copy()
    pad = min(int(np.ceil(4 * sigma)), len(values) - 1)
    head = 2 * values[:1] - values[1:pad + 1][::-1]
    tail = 2 * values[-1:] - values[-pad - 1:-1][::-1]
    padded = np.concatenate([head, values, tail])
    return gaussian_filter1d(padded, sigma, axis=0, mode="nearest")[pad:pad + len(values)]


def along(vectors: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """(T, 3) -> (T, 3): each vector's component along `axis`, one unit vector (3,) or one per frame (T, 3)."""
    return (vectors * axis).sum(-1, keepdims=True) * axis


def _interpolate_unobserved(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T, k) -> (T, k): unobserved rows linearly interpolated from the observed ones (held at the ends)."""
    frames = np.arange(len(valid))
    return np.stack([np.interp(frames, frames[valid], values[valid, k]) for k in range(values.shape[1])], 1)


def depth_axis(disagreement: np.ndarray, valid: np.ndarray, sigma: float = 1.0, margin: int = 0,
               rays: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """disagreement (T, 3) whole-hand observed - refined, finite everywhere; valid (T,); sigma: high-pass width
    in frames; margin: frames next to the track's ends and to unobserved frames left out (the high-pass is
    unreliable there); rays: (T, 3) unit camera rays when the camera is known (they are then the axis).
    Returns (axis: unit (3,), or `rays`; anisotropy = variance along the axis / variance across it; RMS
    high-pass disagreement along the axis in metres); anisotropy 0 when too few frames remain.
    Without rays the axis is the principal one, so the anisotropy is the largest eigenvalue / the other two."""
    high_pass = disagreement - smooth(disagreement, sigma)
    usable = valid.copy()
    if margin > 0:  # beyond the ends counts as unobserved
        usable &= ~binary_dilation(~valid, iterations=margin, border_value=1)
    if usable.sum() < 3:
        return np.array([0.0, 0.0, 1.0]), 0.0, 0.0
    rows = high_pass[usable]
    size = np.linalg.norm(rows, axis=1)  # one wild frame must not set the axis: its length is capped
    rows = rows * np.minimum(1.0, OUTLIER_FACTOR * np.median(size) / np.maximum(size, 1e-12))[:, None]
    if rays is not None:
        energy_along = float((along(rows, rays[usable]) ** 2).sum())
        energy_across = float((rows**2).sum()) - energy_along
        return rays, energy_along / max(energy_across, 1e-18), float(np.sqrt(energy_along / len(rows)))
    eigenvalues, eigenvectors = np.linalg.eigh(rows.T @ rows)
    anisotropy = float(eigenvalues[-1] / max(eigenvalues[:2].sum(), 1e-18))
    return eigenvectors[:, -1], anisotropy, float(np.sqrt(max(eigenvalues[-1], 0.0) / len(rows)))


def track_depth_axis(refined: np.ndarray, observed: np.ndarray, valid: np.ndarray, fps: float,
                     config: AnchorConfig = AnchorConfig(), camera: bool = False) -> np.ndarray | None:
    """The track's depth axis, or None when the track is to be left alone. refined (T, 21, 3) (for several
    samples: their mean); observed (T, 21, 3), any value where not valid; valid (T,). camera: the keypoints are
    in a known camera's frame (the input came with intrinsics), so the depth axis of each frame is the camera
    ray through the refined hand's centre, (T, 3); otherwise one axis (3,) is estimated from the data."""
    valid = np.asarray(valid, bool) & np.isfinite(observed).all((1, 2))
    if valid.sum() < config.min_frames:
        return None
    observed = np.where(valid[:, None, None], observed, 0.0)
    disagreement = _interpolate_unobserved((observed - refined).mean(1), valid)
    sigma = config.axis_seconds * fps
    rays = None
    if camera:
        centre = refined.mean(1)
        rays = centre / np.maximum(np.linalg.norm(centre, axis=1, keepdims=True), 1e-12)
    axis, anisotropy, depth_jitter = depth_axis(disagreement, valid, sigma, margin=int(np.ceil(3 * sigma)),
                                                rays=rays)
    usable_enough = anisotropy >= config.min_anisotropy and depth_jitter >= config.min_depth_jitter
    return axis if usable_enough else None


def interior_gaps(valid: np.ndarray) -> list[tuple[int, int]]:
    """(T,) bool -> [(start, stop), ...] runs of unobserved frames with an observed frame on both sides."""
    edges = np.diff(np.r_[1, valid.astype(np.int8), 1])
    starts, stops = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)
    return [(int(a), int(b)) for a, b in zip(starts, stops) if a > 0 and b < len(valid)]


def interpolate_gaps(keypoints3d: np.ndarray, valid: np.ndarray, axis: np.ndarray, max_frames: float
                     ) -> np.ndarray:
    """(T, 21, 3) -> (T, 21, 3): in each interior gap of at most `max_frames` frames, the whole-hand position
    follows a smoothing spline (roughness chosen by generalised cross-validation) through the observed frames
    across `axis` ((3,) or per frame (T, 3)) and a straight line along it."""
    gaps = [(a, b) for a, b in interior_gaps(valid) if b - a <= max_frames]
    if not gaps or valid.sum() < 5:
        return keypoints3d
    centre = keypoints3d.mean(1)
    frames = np.arange(len(valid))
    spline = make_smoothing_spline(frames[valid], centre[valid], axis=0)
    target = centre.copy()
    for start, stop in gaps:
        inside = frames[start:stop]
        curve = spline(inside)
        weight = ((inside - (start - 1)) / (stop - start + 1))[:, None]
        line = centre[start - 1] * (1 - weight) + centre[stop] * weight
        target[start:stop] = curve + along(line - curve, axis[start:stop] if axis.ndim == 2 else axis)
    return keypoints3d + (target - centre)[:, None]


def remove_scale_flicker(observed: np.ndarray, refined: np.ndarray, valid: np.ndarray, sigma: float,
                         shrink: float, max_flicker: float = 0.2) -> np.ndarray:
    """observed, refined (T, 21, 3), valid (T,) -> observed with its fast per-frame scale about its own wrist,
    relative to the refined hand and bounded to ±max_flicker, scaled down by `shrink` (invalid frames
    unchanged)."""
    about_wrist = observed - observed[:, :1]
    reference = refined - refined[:, :1]
    scale = (about_wrist * reference).sum((1, 2)) / np.maximum((reference**2).sum((1, 2)), 1e-18)
    scale = _interpolate_unobserved(scale[:, None], valid)[:, 0]
    fast = np.clip(scale - smooth(scale, sigma), -max_flicker, max_flicker)
    corrected = observed[:, :1] + about_wrist / (1 + shrink * fast)[:, None, None]
    return np.where(valid[:, None, None], corrected, observed)


def anchor_track(refined: np.ndarray, observed: np.ndarray, valid: np.ndarray, fps: float,
                 config: AnchorConfig = AnchorConfig(), axis: np.ndarray | None = None) -> np.ndarray:
    """One track. refined (T, 21, 3) metres; observed (T, 21, 3) metres, any value where not valid; valid (T,);
    axis: the depth axis, (3,) or per frame (T, 3) (default: `track_depth_axis` of this track without a camera;
    several samples of one track should share the axis of their mean). Returns the anchored (T, 21, 3) keypoints (a copy of `refined` when the track is
    left alone)."""
    valid = np.asarray(valid, bool) & np.isfinite(observed).all((1, 2))
    if axis is None:
        axis = track_depth_axis(refined, observed, valid, fps, config)
    if axis is None or not valid.any():
        return refined.copy()
    observed = np.where(valid[:, None, None], observed, 0.0)
    if config.scale_shrink > 0:
        observed = remove_scale_flicker(observed, refined, valid, config.scale_seconds * fps, config.scale_shrink,
                                        config.max_flicker)
    disagreement = clip_outliers((observed - refined).mean(1), valid)
    # smoothed over observed frames only (normalised convolution: unobserved rows weigh 0), then interpolated
    # across the unobserved
    weight = valid.astype(np.float64)
    sigma = config.across_seconds * fps
    numerator = gaussian_filter1d(disagreement * weight[:, None], sigma, axis=0, mode="nearest")
    observed_offset = numerator / np.maximum(gaussian_filter1d(weight, sigma, mode="nearest"), 1e-12)[:, None]
    observed_offset = _interpolate_unobserved(observed_offset, valid)
    across = observed_offset - along(observed_offset, axis)
    depth = (refined.mean(1) * axis).sum(-1, keepdims=True)
    anchored = refined + (across + (smooth(depth, config.along_seconds * fps) - depth) * axis)[:, None]
    return interpolate_gaps(anchored, valid, axis, config.gap_seconds * fps)


def follow_image(refined: np.ndarray, observed: np.ndarray, valid: np.ndarray, K: np.ndarray, fps: float,
                 seconds: float) -> np.ndarray:
    """One track: each refined joint moved within its own depth plane so that its projection follows the
    observed joint's projection, the 2D difference smoothed over observed frames by a Gaussian of `seconds`.

    refined, observed: (T, 21, 3) metres, camera frame (observed: any value where not valid); valid: (T,);
    K: (3, 3). Returns (T, 21, 3); the depth of every joint is unchanged.

    Why: the diffusion model's temporal prior lags fast finger motion and its bone lengths differ from the
    per-frame fit's, so the refined joints drift off the image where the observation (the per-frame fit to
    the 2D keypoints) was right. The slow part of that 2D difference is the refiner's error, the fast part is
    the observation's jitter: smoothing it keeps the refiner's steadiness and puts the joints back on the
    image. In unobserved stretches the correction fades out (the normalised convolution's weight there is
    the share of observed frames nearby, and below a half it is scaled down with it)."""
    valid = np.asarray(valid, bool) & np.isfinite(observed).all((1, 2))
    if seconds <= 0 or not valid.any():
        return refined.copy()
    refined = np.asarray(refined, np.float64)
    observed = np.asarray(observed, np.float64)
    # a joint this close to the camera plane (or behind it) has no usable image position: it neither pulls nor
    # moves (a perturbed observation can put one there, as the variance's draws do)
    usable = (valid[:, None] & (np.nan_to_num(observed[..., 2]) > MIN_IMAGE_DEPTH)
              & (refined[..., 2] > MIN_IMAGE_DEPTH))  # (T, 21)
    depth = np.where(usable, refined[..., 2], 1.0)
    observed_depth = np.where(usable, observed[..., 2], 1.0)
    focal, centre = np.array([K[0, 0], K[1, 1]]), np.array([K[0, 2], K[1, 2]])
    image = refined[..., :2] / depth[..., None] * focal + centre  # (T, 21, 2) pixels
    observed_image = np.where(usable[..., None], observed[..., :2], 0.0) / observed_depth[..., None] * focal + centre
    weight = usable.astype(np.float64)[..., None]
    sigma = seconds * fps
    difference = gaussian_filter1d(np.where(weight > 0, observed_image - image, 0.0), sigma, axis=0, mode="nearest")
    difference /= np.maximum(gaussian_filter1d(weight, sigma, axis=0, mode="nearest"), 0.5)
    difference *= (refined[..., 2] > MIN_IMAGE_DEPTH)[..., None]
    moved = refined.copy()
    moved[..., :2] += difference / focal * refined[..., 2:3]  # at each joint's own depth, observed or not
    return moved
