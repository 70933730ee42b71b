"""R(q) (PAD-Hand eq. 28) for keypoint tracks: the mean L1 distance between the generalized forces
M q̈ + C + g of a motion and those of the ground truth, both through the same hand (shape from the ground
truth's bone lengths) and the analytic IK."""

from __future__ import annotations

import numpy as np
import torch

from handcli.handmodels.kinematics import mirror_points
from handcli.physics.motion import forces_from_keypoints, hand_physics


def residual_metric(pred: np.ndarray, gt: np.ndarray, gt_valid: np.ndarray, is_right: np.ndarray, fps: float,
                    hand_model=None) -> float:
    """pred, gt: (H, T, 21, 3) metres; gt_valid: (H, T); is_right: (H,). Returns R(q) averaged over the frames
    whose ground truth and both neighbours are valid (the finite differences need them)."""
    from handcli.fitting.fit import estimate_shape
    from handcli.fitting.interpolate import fill_linear
    from handcli.handmodels import load_hand_model

    model = hand_model or load_hand_model("open")
    total, count = 0.0, 0
    for h in range(pred.shape[0]):
        valid = torch.as_tensor(gt_valid[h])
        if valid.sum() < 3:
            continue
        sign = 1.0 if is_right[h] else -1.0  # physics is for the right hand; mirror left tracks
        truth = torch.as_tensor(np.nan_to_num(gt[h]), dtype=torch.float64)
        truth = fill_linear(truth[None], valid[None])[0]
        estimate = torch.as_tensor(pred[h], dtype=torch.float64)
        if sign < 0:
            truth, estimate = mirror_points(truth), mirror_points(estimate)
        betas = estimate_shape(model, truth[None].float(), valid[None, :, None].expand(1, -1, 21)).double()
        rest21 = model.rest_joints21(betas.float()).double()
        _, inertia = hand_physics(model, betas.float())
        inertia = type(inertia)(*(x.double()[0] for x in inertia))
        with torch.no_grad():
            forces = forces_from_keypoints(torch.stack([estimate, truth]), rest21[0], inertia, fps)
        scored = valid.clone()
        scored[1:-1] &= valid[:-2] & valid[2:]
        scored[[0, -1]] = False
        distance = (forces[0] - forces[1]).abs().sum(-1)[scored]
        total += float(distance.sum())
        count += int(scored.sum())
    return total / count if count else float("nan")
