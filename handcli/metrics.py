"""Evaluation metrics (docs/metrics.md defines each formula). Arrays are numpy, metres in, millimetres out."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata, spearmanr


def procrustes_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Similarity-align each frame of `source` onto `target` (rotation, uniform scale, translation).

    source, target: (N, J, 3) -> aligned source (N, J, 3).
    """
    source_mean, target_mean = source.mean(1, keepdims=True), target.mean(1, keepdims=True)
    source_c, target_c = source - source_mean, target - target_mean
    cross = np.einsum("nji,njk->nik", source_c, target_c)
    u, singular, vt = np.linalg.svd(cross)
    reflection = np.sign(np.linalg.det(u @ vt))  # forbid mirror solutions
    signs = np.ones_like(singular)
    signs[:, -1] = reflection
    rotation = np.einsum("nij,nj,njk->nik", u, signs, vt)
    scale = (singular * signs).sum(1) / np.maximum((source_c ** 2).sum((1, 2)), 1e-12)
    return scale[:, None, None] * np.einsum("nji,nik->njk", source_c, rotation) + target_mean


def per_frame_errors(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean joint error per frame, raw and after Procrustes alignment; (N, J, 3) each -> two (N,) in mm."""
    error = np.linalg.norm(pred - gt, axis=-1).mean(-1) * 1000
    pa_error = np.linalg.norm(procrustes_align(pred, gt) - gt, axis=-1).mean(-1) * 1000
    return error, pa_error


def acceleration_error(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-joint acceleration error (mm/frame^2) over every frame triple whose ground truth is valid.

    pred, gt: (T, J, 3); valid: (T,) ground-truth validity -> (M,) one value per (triple, joint)... averaged
    over joints: (M,)."""
    if len(pred) < 3:
        return np.zeros(0)
    second = lambda x: x[2:] - 2 * x[1:-1] + x[:-2]
    triple_ok = valid[2:] & valid[1:-1] & valid[:-2]
    diff = np.linalg.norm(second(pred) - second(gt), axis=-1).mean(-1) * 1000
    return diff[triple_ok]


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for boolean `labels` (Mann-Whitney form, ties averaged)."""
    labels = labels.astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3:
        return float("nan")
    return float(spearmanr(a, b)[0])


def evaluate_tracks(pred: np.ndarray, gt: np.ndarray, gt_valid: np.ndarray, *, var_joints: np.ndarray | None = None,
                    bad_frame_mm: float = 20.0) -> dict:
    """Score H tracks of predicted keypoints against ground truth.

    pred, gt: (H, T, 21, 3) metres; gt_valid: (H, T) frames with ground truth (all frames are scored there,
    including frames the prediction's input was missing); var_joints: optional (H, T, 21).
    Returns a dict of scalar metrics (mm, mm/frame^2) and frame counts.
    """
    errors, pa_errors, accels, variances = [], [], [], []
    for h in range(pred.shape[0]):
        mask = gt_valid[h]
        error, pa_error = per_frame_errors(pred[h][mask], gt[h][mask])
        errors.append(error)
        pa_errors.append(pa_error)
        accels.append(acceleration_error(pred[h], np.where(mask[:, None, None], gt[h], 0.0), mask))
        if var_joints is not None:
            variances.append(var_joints[h][mask].mean(-1))
    error, pa_error, accel = (np.concatenate(x) if x else np.zeros(0) for x in (errors, pa_errors, accels))
    result = {"frames": int(error.size), "mpjpe_mm": float(error.mean()) if error.size else float("nan"),
              "pa_mpjpe_mm": float(pa_error.mean()) if error.size else float("nan"),
              "accel_mm_per_frame2": float(accel.mean()) if accel.size else float("nan")}
    if var_joints is not None:
        variance = np.concatenate(variances)
        bad = error > bad_frame_mm
        result.update({"variance_spearman": spearman(variance, error), "bad_frame_mm": bad_frame_mm,
                       "bad_frames": int(bad.sum()), "variance_auroc_bad_frames": auroc(variance, bad)})
    return result
