"""Per-joint reliability covariates of the condition, for the heteroscedastic noise of the Laplace predictive.

The backbone's features say little about how trustworthy each input keypoint is; these covariates do, and are
all observable at inference. For frame t and joint j, with y the condition, x̂ the backbone's prediction and
r_t = mean_j (y_j - x̂_j) the whole-hand part of their difference:

    DISAGREEMENT        observed · log(|y_j - x̂_j - r_t|² + ε): the joint disagrees with the model
    DISAGREEMENT_LEVEL  log(window mean of that + ε): the window's typical articulation disagreement
    SURPRISE            observed · max(0, log(first / typical) - log 2): far above the typical one, an outlier
    SHIFT_LEVEL         log(window mean of |r_t|² + ε): the window's typical whole-hand disagreement
    INFILLED            1 - observed
    DISTANCE            log(1 + frames to the nearest observed frame)
    CONFIDENCE, HAS_2D  2D confidence of the joint, whether the frame has 2D keypoints (0 without 2D)

Window means run over the observed frames. The whole-hand disagreement enters only as a window level: frame by
frame it is dominated by the part of the noise the model removed, which says nothing about the part it could
not. ε = (1 mm)². All in the model's normalised units (1 unit = 0.1 m).
"""

from __future__ import annotations

import math

import torch

from handcli.diffusion.conditions import POSITION_SCALE, Conditions

NUM_COVARIATES = 8
DISAGREEMENT, DISAGREEMENT_LEVEL, SURPRISE, SHIFT_LEVEL, INFILLED, DISTANCE, CONFIDENCE, HAS_2D = range(8)
# articulation disagreement above this many times the window's typical one counts as surprise; chosen on FPHA
# subjects 1-3 (outlier AUROC 0.867 / 0.872 / 0.866 / 0.849 for 1.5 / 2 / 3 / 4)
OUTLIER_RATIO = 2.0
EPSILON = (0.001 / POSITION_SCALE) ** 2


def frames_to_observation(mask: torch.Tensor) -> torch.Tensor:
    """(B, W) bool observed frames -> (B, W) float distance in frames to the nearest observed frame (0 on
    observed frames; W for a window without any)."""
    batch, frames = mask.shape
    time = torch.arange(frames, device=mask.device).expand(batch, frames)
    previous = torch.where(mask, time, torch.full_like(time, -2 * frames)).cummax(1).values
    following = torch.where(mask, time, torch.full_like(time, 3 * frames)).flip(1).cummin(1).values.flip(1)
    distance = torch.minimum(time - previous, following - time)
    return distance.clamp(max=frames).to(torch.float32)


def condition_covariates(conditions: Conditions, prediction: torch.Tensor) -> torch.Tensor:
    """(B, W, 21, NUM_COVARIATES) covariates; prediction: (B, W, 21, 3) x̂ in model units."""
    observed = conditions.mask3d.to(prediction.dtype)  # (B, W)
    count = observed.sum(1).clamp_min(1)[:, None, None]  # (B, 1, 1)
    offset = conditions.keypoints3d - prediction
    shift = offset.mean(-2, keepdim=True)
    local = (offset - shift).square().sum(-1)  # (B, W, 21)
    local_level = (local.mean(-1) * observed).sum(1)[:, None, None] / count
    shift_level = (shift.square().sum(-1)[..., 0] * observed).sum(1)[:, None, None] / count
    distance = torch.log1p(frames_to_observation(conditions.mask3d.bool())).to(prediction.dtype)
    has2d = conditions.mask2d.to(prediction.dtype)[..., None]
    confidence = conditions.keypoints2d[..., 2] * has2d
    shape = local.shape
    log_local, log_level = torch.log(local + EPSILON), torch.log(local_level + EPSILON)
    surprise = (log_local - log_level - math.log(OUTLIER_RATIO)).clamp_min(0)
    return torch.stack([observed[..., None] * log_local, log_level.expand(shape), observed[..., None] * surprise,
                        torch.log(shift_level + EPSILON).expand(shape),
                        (1 - observed)[..., None].expand(shape), distance[..., None].expand(shape),
                        confidence, has2d.expand(shape)], -1)
