"""Per-joint reliability covariates of the condition, for the heteroscedastic noise of the Laplace predictive.

The backbone's features say little about how trustworthy each input keypoint is; these covariates do, and are
all observable at inference. For frame t and joint j, with y the condition and x̂ the backbone's prediction:

    observed · log(|y_j - x̂_j - r|² + ε)   the input disagrees with the model, beyond a whole-hand shift r
    observed · log(|r|² + ε)              r = mean over joints of (y - x̂): whole-hand disagreement
    1 - observed                          the frame is infilled
    log(1 + frames to the nearest observed frame)
    2D confidence of the joint, and whether the frame has 2D keypoints (both 0 without 2D)

ε = (1 mm)². All in the model's normalised units (1 unit = 0.1 m).
"""

from __future__ import annotations

import torch

from handcli.diffusion.conditions import POSITION_SCALE, Conditions

NUM_COVARIATES = 6
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
    observed = conditions.mask3d.to(prediction.dtype)[..., None]  # (B, W, 1)
    offset = conditions.keypoints3d - prediction
    shift = offset.mean(-2, keepdim=True)
    local = torch.log((offset - shift).square().sum(-1) + EPSILON)  # (B, W, 21)
    whole = torch.log(shift.square().sum(-1) + EPSILON).expand_as(local)
    distance = torch.log1p(frames_to_observation(conditions.mask3d.bool())).to(prediction.dtype)[..., None]
    has2d = conditions.mask2d.to(prediction.dtype)[..., None]
    confidence = conditions.keypoints2d[..., 2] * has2d
    return torch.stack([observed * local, observed * whole, (1 - observed).expand_as(local),
                        distance.expand_as(local), confidence, has2d.expand_as(local)], -1)
