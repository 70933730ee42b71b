"""A learned 2D -> 3D articulation prior: 21 image keypoints of a right hand -> its 21 joints in 3D.

Why: the image fit (handcli.fitting.image) needs an articulation for what the 2D keypoints cannot tell along
the camera ray (which way a finger bends towards or away from the camera). MediaPipe's world landmarks were
that prior, and on the video benchmark they are most of what is left of the error: with the true articulation
as the prior, root-relative error falls from 27-65 mm to 10-19 mm (docs/results.md). This network is trained
on real hand motion (FPHA subjects 1-3, the tuning split) seen through random cameras, with MediaPipe's own 2D
error (measured on the video benchmark's tuning split) added to its input, so what it learns is the step from
MediaPipe's 2D keypoints to a plausible real articulation (handcli.training.lifter, scripts/train_lifter.py).

Inputs, of a right hand (left hands are mirrored first, as the image fit does), canonical keypoint order:
* normalised image coordinates (x/z, y/z) of the 21 keypoints, made translation- and scale-free: relative to
  their centroid, divided by their RMS spread, plus the centroid's own ray (which carries the perspective: a
  hand at the image's edge is seen from the side) and the log spread;
* MediaPipe's world landmarks, relative to the wrist, divided by their own hand length (shape only). They
  come from a network that saw the pixels (shading, occlusion), so they carry what 2D points cannot: which
  way a finger bends along the ray. The 2D keypoints are the more precise across it; the lifter learns to
  combine them, having been trained with MediaPipe's measured errors on both.
Outputs:
* the 21 joints relative to the wrist in the camera frame's axes, in units of the hand's length
  (handcli.handmodels.size.hand_length), i.e. shape and direction without size or distance;
* the hand's depth ratio log(mean joint depth x 2D spread / hand length): how far away a hand of known length
  is, given how large its keypoints spread in the image. A separate output because it does not suffer from the
  joints' sign ambiguity: a finger bent towards or away from the camera foreshortens alike, so the ratio is
  sharp where the joints regress to the flat mean of both (a flat hand spreads wider in the image, so a fit to
  the mean joints alone places the hand too far; docs/results.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "lifter.pt"
NUM_FEATURES = 21 * 2 + 2 + 1 + 20 * 3
SPREAD = 44  # index of the log spread among the features


def unit_shape(points):
    """(..., 21, 3) points, numpy or torch -> (..., 21, 3) relative to the wrist, in units of their hand length:
    the form of the lifter's landmark input and of its output joints."""
    from handcli.handmodels.size import hand_length

    centred = points - points[..., :1, :]
    length = hand_length(centred)
    length = length.clamp_min(1e-6) if isinstance(length, torch.Tensor) else np.maximum(length, 1e-6)
    return centred / length[..., None, None]


def lifter_features(normalised: torch.Tensor, world: torch.Tensor) -> torch.Tensor:
    """normalised (..., 21, 2) image coordinates (x/z, y/z) and world landmarks (..., 21, 3) (any unit) of
    right hands -> (..., 105) features: centred keypoints / their RMS spread (42), the centroid's ray (2),
    log of the spread (1), the landmarks' shape without the wrist (60)."""
    centre = normalised.mean(-2, keepdim=True)
    centred = normalised - centre
    spread = centred.pow(2).sum(-1).mean(-1).clamp_min(1e-12).sqrt()  # (...,)
    shape = centred / spread[..., None, None]
    return torch.cat([shape.flatten(-2), centre[..., 0, :], spread.log()[..., None],
                      unit_shape(world)[..., 1:, :].flatten(-2)], -1)


class _Block(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width), nn.GELU(), nn.Dropout(dropout),
                                    nn.Linear(width, width), nn.LayerNorm(width), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x):
        return x + self.layers(x)


class Lifter(nn.Module):
    """Residual MLP (the 'simple baseline' 2D -> 3D lifter shape): features (N, 45) -> (joints (N, 21, 3)
    relative to the wrist, hand lengths, camera axes; log depth ratio (N,))."""

    def __init__(self, width: int = 384, blocks: int = 2, dropout: float = 0.1):
        super().__init__()
        self.config = {"width": width, "blocks": blocks, "dropout": dropout}
        # multiplies the depth output: the median bias on the tuning split's MediaPipe keypoints taken out
        # (scripts/train_lifter.py measures it after training)
        self.depth_scale = 1.0
        self.inp = nn.Sequential(nn.Linear(NUM_FEATURES, width), nn.LayerNorm(width), nn.GELU())
        self.blocks = nn.Sequential(*[_Block(width, dropout) for _ in range(blocks)])
        self.out = nn.Linear(width, 20 * 3 + 1)  # the wrist is the origin; the last value is the depth ratio

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.out(self.blocks(self.inp(features)))
        joints = out[..., :60].reshape(*features.shape[:-1], 20, 3)
        return torch.cat([torch.zeros_like(joints[..., :1, :]), joints], -2), out[..., 60]

    def lift(self, normalised: torch.Tensor, world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """normalised (..., 21, 2), world landmarks (..., 21, 3) -> (joints (..., 21, 3) wrist-relative in
        hand lengths, mean joint depth (...,) in hand lengths); eval mode, no grad."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            features = lifter_features(normalised.reshape(-1, 21, 2).float(), world.reshape(-1, 21, 3).float())
            joints, log_ratio = self(features)
            spread = features[:, SPREAD].exp()
            depth = self.depth_scale * log_ratio.exp() / spread
        self.train(was_training)
        batch = normalised.shape[:-2]
        return joints.reshape(*batch, 21, 3).to(normalised.dtype), depth.reshape(batch).to(normalised.dtype)


class LifterEnsemble(nn.Module):
    """Lifters trained alike from different seeds, one `lift`: the mean of their joints and of their log depths.

    Why: each member's error has a part that depends on its seed (where it puts the flat mean of an
    ambiguous finger, how it turns the whole hand); averaging takes that part out, the way a deep ensemble
    does. On the video benchmark's tuning split two members turn the hand less wrongly than either alone
    (weights/lifter.md)."""

    def __init__(self, members: list[Lifter]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.depth_scale = 1.0  # multiplies the members' (calibrated) mean depth: the ensemble's own calibration

    def lift(self, normalised: torch.Tensor, world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As Lifter.lift: (joints (..., 21, 3) wrist-relative in hand lengths, mean joint depth (...,))."""
        lifted = [member.lift(normalised, world) for member in self.members]
        joints = torch.stack([j for j, _ in lifted]).mean(0)
        depth = torch.stack([d for _, d in lifted]).log().mean(0).exp()
        return joints, self.depth_scale * depth


def _member_record(model: Lifter) -> dict:
    return {"config": model.config, "state": model.state_dict(), "depth_scale": model.depth_scale}


def save_lifter(model: Lifter | LifterEnsemble, path: str | Path, card: dict) -> None:
    """One lifter, or an ensemble (its members and its own depth_scale), with its card."""
    if isinstance(model, LifterEnsemble):
        saved = {"members": [_member_record(m) for m in model.members], "depth_scale": model.depth_scale}
    else:
        saved = _member_record(model)
    torch.save({**saved, "card": card}, Path(path))


def _member(record: dict) -> Lifter:
    model = Lifter(**record["config"])
    model.load_state_dict(record["state"])
    model.depth_scale = float(record.get("depth_scale", 1.0))
    return model.eval()


def load_lifter(path: str | Path | None = None) -> Lifter | LifterEnsemble:
    """The shipped lifter (weights/lifter.pt) or the one at `path`, a single Lifter or a LifterEnsemble
    (both have `lift`); FileNotFoundError if absent."""
    path = Path(path) if path is not None else WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"lifter weights not found at {path} (scripts/train_lifter.py makes them)")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if "members" not in saved:
        return _member(saved)
    ensemble = LifterEnsemble([_member(record) for record in saved["members"]])
    ensemble.depth_scale = float(saved.get("depth_scale", 1.0))
    return ensemble.eval()
