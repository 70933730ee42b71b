"""What the estimate stage's error looks like on the benchmark: depth/scale, rotation and articulation, and how
each of them holds over time (issue #12, item 3: the statistics a training corruption has to reproduce).

Per clip the track the shared scorer picks (videoscore.pick_track) is compared with the truth, frame by frame:
  * depth: signed relative error of the hand's mean depth, pred / true - 1;
  * rotation: the rotation of the per-frame similarity alignment of the prediction onto the truth (the same
    alignment as videoscore's rot_deg), as a rotation vector (3,);
  * articulation: the per-joint residual after that alignment (what PA-MPJPE averages), (21, 3) metres.
Temporal structure: the autocorrelation of each at lags of 1, 5 and 15 frames, over pairs of covered frames.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

LAGS = (1, 5, 15)


def align(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Similarity alignment of pred (21, 3) onto truth (21, 3): (rotation vector (3,) taking the prediction's
    frame to the truth's, residual (21, 3) after alignment, scale)."""
    p0, t0 = pred - pred.mean(0), truth - truth.mean(0)
    u, s, vt = np.linalg.svd(p0.T @ t0)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt  # row-vector convention: p0 @ rotation ~ t0
    scale = (s * np.diag(d)).sum() / (p0**2).sum()
    residual = scale * p0 @ rotation - t0
    return Rotation.from_matrix(rotation.T).as_rotvec(), residual, float(scale)


def frame_errors(pred: np.ndarray, covered: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """pred, truth (T, 21, 3), covered (T,) -> depth (T,), rotvec (T, 3), residual (T, 21, 3), scale (T,);
    NaN on uncovered frames."""
    num_frames = len(truth)
    out = {"depth": np.full(num_frames, np.nan), "rotvec": np.full((num_frames, 3), np.nan),
           "residual": np.full((num_frames, 21, 3), np.nan), "scale": np.full(num_frames, np.nan)}
    for t in np.flatnonzero(covered):
        out["depth"][t] = pred[t, :, 2].mean() / truth[t, :, 2].mean() - 1
        out["rotvec"][t], out["residual"][t], out["scale"][t] = align(pred[t], truth[t])
    return out


def autocorrelation(series: np.ndarray, lag: int) -> float:
    """Correlation of (T, ...) values with themselves `lag` frames later, pooled over components, after removing
    the series' mean; NaN frames are skipped. nan if fewer than 10 pairs."""
    flat = series.reshape(len(series), -1)
    a, b = flat[:-lag], flat[lag:]
    keep = np.isfinite(a).all(1) & np.isfinite(b).all(1)
    if keep.sum() < 10:
        return float("nan")
    centre = np.nanmean(flat, 0)
    a, b = a[keep] - centre, b[keep] - centre
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()).clip(1e-12))


def clip_summary(errors: dict[str, np.ndarray]) -> dict[str, float]:
    """One clip's statistics (NaN-safe): depth bias and spread, rotation angle, articulation RMS, their
    autocorrelations and the share of the rotation error that is constant over the clip."""
    depth, rotvec, residual = errors["depth"], errors["rotvec"], errors["residual"]
    seen = np.isfinite(depth)
    if seen.sum() < 2:
        return {}
    angle = np.degrees(np.linalg.norm(rotvec[seen], axis=-1))
    mean_rotvec = rotvec[seen].mean(0)
    out = {"frames": int(seen.sum()), "depth_mean": float(depth[seen].mean()),
           "depth_sd": float(depth[seen].std()), "rot_median_deg": float(np.median(angle)),
           "rot_mean_part_deg": float(np.degrees(np.linalg.norm(mean_rotvec))),
           "rot_sd_deg": float(np.degrees(np.sqrt(((rotvec[seen] - mean_rotvec) ** 2).sum(-1).mean()))),
           "artic_rms_mm": float(1000 * np.sqrt((residual[seen] ** 2).sum(-1).mean())),
           "scale_sd": float(np.nanstd(errors["scale"]))}
    for lag in LAGS:
        out[f"depth_ac{lag}"] = autocorrelation(depth[:, None], lag)
        out[f"rot_ac{lag}"] = autocorrelation(rotvec, lag)
        out[f"artic_ac{lag}"] = autocorrelation(residual, lag)
    return out
