"""Training losses of the refiner, on window-local positions (model units; differences are scaled to cm).

Data terms (PAD-Hand L_data plus velocity/acceleration consistency, as PAD-Hand's appendix L_g / L_r), a
bone-length term (per-track constant bones: monocular estimators flicker in scale), and DIP's intuitive
physics: motion-state cross-entropy, least-kinetic motion in reaching/releasing and stability in stable grasp.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from handcli.diffusion.conditions import BONE_CHILDREN, BONE_PARENTS, POSITION_SCALE

TO_CM = POSITION_SCALE / 0.01  # model units -> centimetres
REACHING, STABLE_GRASP, MANIPULATION, RELEASING = 0, 1, 2, 3
FINGER_KEYPOINTS = tuple(range(1, 21))


def data_loss(predicted: torch.Tensor, clean: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """Mean per-joint position error (cm; squared cm^2 as PAD-Hand eq. 7 when `squared`). (B, W, 21, 3) each."""
    error = (predicted - clean) * TO_CM
    return (error ** 2).sum(-1).mean() if squared else error.norm(dim=-1).mean()


def velocity_loss(predicted: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Mean error of first differences in time (cm/frame). (B, W, 21, 3) each."""
    return ((predicted.diff(dim=1) - clean.diff(dim=1)) * TO_CM).norm(dim=-1).mean()


def acceleration_loss(predicted: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Mean error of second differences in time (cm/frame^2). (B, W, 21, 3) each."""
    return ((predicted.diff(n=2, dim=1) - clean.diff(n=2, dim=1)) * TO_CM).norm(dim=-1).mean()


def bone_lengths(positions: torch.Tensor) -> torch.Tensor:
    """(B, W, 21, 3) -> (B, W, 20)."""
    return (positions[..., BONE_CHILDREN, :] - positions[..., BONE_PARENTS, :]).norm(dim=-1)


def bone_loss(predicted: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Bone lengths should match the truth and stay constant over the window (cm)."""
    lengths = bone_lengths(predicted) * TO_CM
    target = bone_lengths(clean) * TO_CM
    return (lengths - target).abs().mean() + (lengths - lengths.mean(1, keepdim=True)).abs().mean()


def state_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """DIP L_state: cross-entropy over frames with a label (label -1 = none). logits (B, W, S), labels (B, W)."""
    labelled = labels >= 0
    if not labelled.any():
        return logits.sum() * 0
    return F.cross_entropy(logits[labelled], labels[labelled])


def kinetic_loss(predicted: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """DIP least-kinetic constraint: in reaching/releasing, joints keep their direction of motion.

    Penalises reversals relu(-v_t . v_{t+1}) (cm^2/frame^2) over triplets of frames all in those states.
    """
    moving = (labels == REACHING) | (labels == RELEASING)
    triplet = moving[:, :-2] & moving[:, 1:-1] & moving[:, 2:]
    if not triplet.any():
        return predicted.sum() * 0
    velocity = predicted.diff(dim=1) * TO_CM
    reversal = F.relu(-(velocity[:, :-1] * velocity[:, 1:]).sum(-1)).mean(-1)  # (B, W-2)
    return reversal[triplet].mean()


def stability_loss(predicted: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """DIP stability: in stable grasp, fingers stay still relative to the wrist (squared cm/frame)."""
    grasp = (labels == STABLE_GRASP)
    pair = grasp[:, :-1] & grasp[:, 1:]
    if not pair.any():
        return predicted.sum() * 0
    relative = (predicted[..., FINGER_KEYPOINTS, :] - predicted[..., :1, :]) * TO_CM
    motion = (relative.diff(dim=1) ** 2).sum(-1).mean(-1)  # (B, W-1)
    return motion[pair].mean()
