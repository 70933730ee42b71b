"""Per-clip scores with the shared video scorer (../shared/bench/videoscore.py, imported by path, never
copied): its `pick_track`, `score` and `gaussian_runs`, exactly as the held-out real-video evaluation uses
them. On top, for pooling across clips (aggregate.py) and error analysis:

* counts: how many frames / joint-frames / frame triplets each mean metric averaged over;
* per-frame values of depth_pct and rot_deg with videoscore's definitions (so a situation's median is over
  its frames, not a median of clip medians), and the signed depth error (negative = placed too near);
* MediaPipe's own 2D error: detect's keypoints2d of the track videoscore picks on each frame, against the
  ground truth projected with K.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from handcli.artifacts import Artifact

SHARED_SCORER = Path(__file__).resolve().parents[3] / "shared" / "bench" / "videoscore.py"
STAGES = ("detect", "estimate", "gaussian(2)", "refine")
MEAN_METRICS = ("coverage", "mpjpe", "rootrel", "pa", "px", "accel")
MEDIAN_METRICS = ("depth_pct", "rot_deg")


def load_videoscore(path: str | Path = SHARED_SCORER):
    """The shared scorer as a module; FileNotFoundError when it is absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"shared video scorer not found at {path}")
    spec = importlib.util.spec_from_file_location("videoscore", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def truth_arrays(truth: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt (T, 21, 3), gt_valid (T, 21), K) as videoscore.load_gt makes them from the GT file's arrays."""
    gt = truth["keypoints3d"].astype(float)
    valid = truth["valid"].astype(bool)
    if valid.ndim == 1:
        valid = np.repeat(valid[:, None], 21, 1)
    return gt, valid & np.isfinite(gt).all(-1), truth["K"].astype(float)


def per_frame(vs, pred: np.ndarray, cov: np.ndarray, gt: np.ndarray, gt_valid: np.ndarray) -> dict[str, np.ndarray]:
    """Per scored frame (videoscore.score's frames: covered with some valid truth), in frame order:
    depth_pct (N,) |mean depth error| / true mean depth in percent; depth_signed_pct (N,) the same signed
    (negative: the hand placed nearer than it is); rot_deg (M,) the Procrustes rotation angle, on frames with
    at least 4 valid joints (videoscore.similarity)."""
    depth, signed, rot = [], [], []
    for t in np.flatnonzero(cov & gt_valid.any(1)):
        m = gt_valid[t]
        p, g = pred[t], gt[t]
        error = p[m, 2].mean() - g[m, 2].mean()
        depth.append(100 * abs(error) / g[m, 2].mean())
        signed.append(100 * error / g[m, 2].mean())
        if m.sum() >= 4:
            rot.append(vs.similarity(p[m], g[m])[1])
    return {"depth_pct": np.array(depth), "depth_signed_pct": np.array(signed), "rot_deg": np.array(rot)}


def counts(cov: np.ndarray, gt_valid: np.ndarray) -> dict[str, int]:
    """What each mean metric of videoscore.score averages over, as weights for pooling clips: frames with
    truth (coverage), scored frames (mpjpe, rootrel, pa, px: all 21 joints are valid on every rendered
    frame, so frames weight like joints), and frame triplets (accel)."""
    has_truth = gt_valid.any(1)
    scored = cov & has_truth
    triplets = cov[2:] & cov[1:-1] & cov[:-2] if len(cov) > 2 else np.zeros(0, bool)
    return {"truth_frames": int(has_truth.sum()), "scored_frames": int(scored.sum()),
            "triplets": int(triplets.sum())}


def picked_tracks(vs, artifact: Artifact, gt: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """videoscore.pick_track on an artifact, plus which track it took per frame (-1: none):
    (pred (T, 21, 3), cov (T,), track (T,)). The track is recovered by matching the picked keypoints, so the
    choice is exactly pick_track's."""
    kp = artifact.keypoints3d.astype(float)
    pred, cov = vs.pick_track(kp, artifact.valid, gt, K)
    track = np.full(len(cov), -1)
    for t in np.flatnonzero(cov):
        track[t] = next(h for h in range(kp.shape[0]) if np.array_equal(kp[h, t], pred[t]))
    return pred, cov, track


def mediapipe_px(detected: Artifact, track: np.ndarray, gt: np.ndarray, gt_valid: np.ndarray,
                 K: np.ndarray, vs) -> tuple[float, int, list[float]]:
    """Mean pixel distance of MediaPipe's own 2D keypoints (detect's keypoints2d[..., :2] of the picked
    track) to the projected truth, over covered frames' valid joints; the number of frames; and the mean per
    joint (21,) (all joints are valid on rendered frames), which separates where MediaPipe puts a landmark
    from where the hand model has that joint (the thumb CMC differs most)."""
    errors = []
    for t in np.flatnonzero((track >= 0) & gt_valid.any(1)):
        m = gt_valid[t]
        error = np.full(21, np.nan)
        error[m] = np.linalg.norm(detected.keypoints2d[track[t], t, m, :2] - vs.project(gt[t, m], K), axis=-1)
        errors.append(error)
    if not errors:
        return float("nan"), 0, [float("nan")] * 21
    errors = np.array(errors)
    return float(np.nanmean(errors)), len(errors), [float(v) for v in np.nanmean(errors, 0)]


def score_clip(vs, truth: dict, artifacts: dict[str, Artifact]) -> dict[str, dict]:
    """{stage: {metric: value, ..., "counts": {...}, "frames": per_frame arrays}} for detect, estimate,
    gaussian(2) (videoscore.gaussian_runs on the estimate, sigma 2 frames) and refine, plus "mediapipe2d"
    ({"coverage", "px", "counts"})."""
    gt, gt_valid, K = truth_arrays(truth)
    rows: dict[str, dict] = {}
    picks = {}
    for stage in ("detect", "estimate", "refine"):
        picks[stage] = picked_tracks(vs, artifacts[stage], gt, K)
    picks["gaussian(2)"] = (vs.gaussian_runs(picks["estimate"][0], picks["estimate"][1]), picks["estimate"][1], None)
    for stage in STAGES:
        pred, cov, _ = picks[stage]
        row = dict(vs.score(pred, cov, gt, gt_valid, K, True))
        row["counts"] = counts(cov, gt_valid)
        row["frames"] = per_frame(vs, pred, cov, gt, gt_valid)
        row["depth_signed_pct"] = (float(np.median(row["frames"]["depth_signed_pct"]))
                                   if len(row["frames"]["depth_signed_pct"]) else float("nan"))
        rows[stage] = row
    px, frames, per_joint = mediapipe_px(artifacts["detect"], picks["detect"][2], gt, gt_valid, K, vs)
    rows["mediapipe2d"] = {"coverage": rows["detect"]["coverage"], "px": px, "px_per_joint": per_joint,
                           "counts": {**rows["detect"]["counts"], "scored_frames": frames}}
    return rows
