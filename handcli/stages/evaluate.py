"""eval stage: score a prediction artifact against a ground-truth artifact (docs/metrics.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handcli.errors import BadInput
from handcli.inputs import load_input
from handcli.metrics import evaluate_tracks


@dataclass
class EvalConfig:
    bad_frame_mm: float = 20.0  # frames with a larger mean joint error count as "bad" for the variance AUROC
    physics: bool = True  # also report the Euler-Lagrange residual R(q) against the ground truth's forces


def evaluate_files(pred_path: Path, gt_path: Path, config: EvalConfig = EvalConfig()) -> dict:
    pred, _ = load_input(pred_path)
    gt, _ = load_input(gt_path)
    if pred.keypoints3d.shape != gt.keypoints3d.shape:
        raise BadInput(f"prediction has {pred.num_tracks} track(s) x {pred.num_frames} frame(s), ground truth has "
                       f"{gt.num_tracks} x {gt.num_frames}; they must match")
    if not gt.valid.any():
        raise BadInput(f"{gt_path}: ground truth has no valid frame")
    if not np.isfinite(pred.keypoints3d[gt.valid]).all():
        raise BadInput(f"{pred_path}: prediction is missing (NaN) on frames where ground truth exists; "
                       "evaluate a refined artifact")
    result = evaluate_tracks(pred.keypoints3d.astype(np.float64), np.nan_to_num(gt.keypoints3d.astype(np.float64)),
                             gt.valid, var_joints=pred.var_joints, bad_frame_mm=config.bad_frame_mm)
    if config.physics:
        from handcli.physics.metric import residual_metric

        result["R_q"] = residual_metric(pred.keypoints3d, gt.keypoints3d, gt.valid, gt.is_right, gt.fps)
    result["pred"], result["gt"] = str(pred_path), str(gt_path)
    return result
