"""Turn raw per-frame observations into the refiner's normalised conditions (and back).

Everything the network sees lives in a window-local frame: right-hand space (left hands mirrored x -> -x),
translated so the mean observed wrist of the window sits at the origin, and divided by POSITION_SCALE so a
hand spans about one unit. Each condition carries a per-frame mask (UniHand): missing 3D frames are filled by
linear interpolation for the network's input but flagged, so the model infills them instead of copying.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from handcli.handmodels.kinematics import CANONICAL_PARENTS

POSITION_SCALE = 0.1  # metres per model unit
BASELINE_SIGMA = 2.0  # frames (at the model's 30 fps)
# a bank of temporal smoothings (frames); the backbone mixes them per frame (adaptive smoothing)
BANK_SIGMAS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0)
BONE_CHILDREN = tuple(range(1, 21))
BONE_PARENTS = tuple(CANONICAL_PARENTS[1:])


@dataclass
class Conditions:
    """Normalised conditions of B windows of W frames.

    keypoints3d: (B, W, 21, 3) filled initial 3D estimate y (model units); mask3d: (B, W) observed frames.
    baseline: (B, W, 21, 3) y smoothed in time (Gaussian, BASELINE_SIGMA frames), then projected onto the
    track's bone lengths: the backbone predicts a correction to it, so an untrained backbone is already a
    classic filter with rigid bones, and training learns what a fixed filter cannot (drift direction, pose
    prior, outliers, adaptive smoothing).
    track_bones: (B, 20) median bone lengths of the whole track's smoothed observations (model units): the
    track-level shape condition (PAD-Hand conditions on the sequence's mean shape beta_avg), reaching beyond
    the window so the bones stay constant along a track.
    bank_centroid: (B, K, W, 3) and bank_shape: (B, K, W, 21, 3): y smoothed with each of BANK_SIGMAS and
    projected onto the track bones, split into its keypoint centroid and the centred hand.
    drift_axis: (B, 3) unit direction along which the window's centroid jitters most (principal axis of its
    high-pass part): monocular depth errors move the whole hand along one direction, so the backbone smooths
    along and across it separately.
    keypoints2d: (B, W, 21, 3) [x, y, confidence] 2D offsets in model units (zeros where absent); mask2d: (B, W).
    anchor: (B, 3) metres, the window origin (right-hand space); mirror: (B,) True for left hands.
    """

    keypoints3d: torch.Tensor
    mask3d: torch.Tensor
    baseline: torch.Tensor
    track_bones: torch.Tensor
    bank_centroid: torch.Tensor
    bank_shape: torch.Tensor
    drift_axis: torch.Tensor
    keypoints2d: torch.Tensor
    mask2d: torch.Tensor
    anchor: torch.Tensor
    mirror: torch.Tensor

    def to_metres(self, positions: torch.Tensor) -> torch.Tensor:
        """(B, W, 21, 3) model units -> (B, W, 21, 3) metres in the camera frame (left hands mirrored back)."""
        metres = positions * POSITION_SCALE + self.anchor[:, None, None]
        return mirror_x(metres, self.mirror)

    def to_model(self, keypoints3d: torch.Tensor) -> torch.Tensor:
        """(B, W, 21, 3) camera-frame metres -> model units (the inverse of `to_metres`)."""
        return (mirror_x(keypoints3d, self.mirror) - self.anchor[:, None, None]) / POSITION_SCALE


def mirror_x(points: torch.Tensor, mirror: torch.Tensor) -> torch.Tensor:
    """Negate x of the batch items where mirror is True. points (B, ...,3), mirror (B,) bool."""
    sign = torch.where(mirror, -1.0, 1.0).to(points.dtype).reshape(-1, *([1] * (points.dim() - 1)))
    x, rest = points[..., :1], points[..., 1:]
    return torch.cat([x * sign, rest], -1)


def fill_missing(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Linear interpolation over time between valid frames, holding the edges.

    values: (B, T, ...) (NaN allowed where invalid); valid: (B, T) bool with at least one True per row.
    Returns (B, T, ...) finite where the row has any valid frame.
    """
    batch, frames = valid.shape
    time = torch.arange(frames, device=valid.device).expand(batch, frames)
    prev_idx = torch.where(valid, time, torch.full_like(time, -1)).cummax(1).values
    next_idx = torch.where(valid, time, torch.full_like(time, frames)).flip(1).cummin(1).values.flip(1)
    prev_safe = torch.where(prev_idx < 0, next_idx, prev_idx).clamp(0, frames - 1)
    next_safe = torch.where(next_idx >= frames, prev_safe, next_idx).clamp(0, frames - 1)
    gap = (next_safe - prev_safe).clamp_min(1).to(values.dtype)
    weight = ((time - prev_safe).to(values.dtype) / gap).clamp(0, 1)
    trailing = values.dim() - 2
    gather_shape = (batch, frames) + values.shape[2:]
    clean = torch.nan_to_num(values)
    prev_vals = torch.gather(clean, 1, prev_safe.reshape(batch, frames, *([1] * trailing)).expand(gather_shape))
    next_vals = torch.gather(clean, 1, next_safe.reshape(batch, frames, *([1] * trailing)).expand(gather_shape))
    weight = weight.reshape(batch, frames, *([1] * trailing))
    return prev_vals + weight * (next_vals - prev_vals)


def smooth_in_time(values: torch.Tensor, sigma: float = BASELINE_SIGMA) -> torch.Tensor:
    """Gaussian smoothing along time with edge replication. values (B, W, ...) -> (B, W, ...)."""
    radius = int(4 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=values.dtype, device=values.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    batch, frames = values.shape[:2]
    channels = values[0, 0].numel()
    flat = values.reshape(batch, frames, channels).transpose(1, 2).reshape(batch * channels, 1, frames)
    padded = torch.nn.functional.pad(flat, (radius, radius), mode="replicate")
    smoothed = torch.nn.functional.conv1d(padded, kernel.reshape(1, 1, -1))
    return smoothed.reshape(batch, channels, frames).transpose(1, 2).reshape(values.shape)


def project_bones(positions: torch.Tensor, lengths: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Move keypoints so each bone has its target length (position-based constraint projection: each bone
    splits its length error equally between its two ends, parents before children, a few sweeps).

    positions: (B, W, 21, 3); lengths: (B, 20) in the same units. Returns (B, W, 21, 3).
    """
    joints = list(positions.unbind(-2))
    targets = lengths[:, None, :, None]  # (B, 1, 20, 1)
    for _ in range(iterations):
        for bone, (child, parent) in enumerate(zip(BONE_CHILDREN, BONE_PARENTS)):
            offset = joints[child] - joints[parent]
            norm = offset.norm(dim=-1, keepdim=True).clamp_min(1e-9)
            half_error = 0.5 * (norm - targets[:, :, bone]) * offset / norm
            joints[child] = joints[child] - half_error
            joints[parent] = joints[parent] + half_error
    return torch.stack(joints, -2)


def track_bone_lengths(keypoints3d: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Median over observed frames of the bone lengths of the gap-filled, time-smoothed track.

    keypoints3d: (B, L, 21, 3) (NaN allowed where not valid); valid: (B, L) bool. Returns (B, 20), same units.
    """
    smoothed = smooth_in_time(fill_missing(keypoints3d, valid))
    lengths = (smoothed[..., BONE_CHILDREN, :] - smoothed[..., BONE_PARENTS, :]).norm(dim=-1)  # (B, L, 20)
    lengths = torch.where(valid[..., None], lengths, torch.full_like(lengths, float("nan")))
    return lengths.nanmedian(1).values


def normalise_keypoints2d(keypoints2d: torch.Tensor, K: torch.Tensor, anchor: torch.Tensor,
                          mirror: torch.Tensor) -> torch.Tensor:
    """Pixels -> lateral offsets in model units, comparable with the 3D condition.

    keypoints2d: (B, W, 21, 3) [u, v, confidence] (camera frame, before mirroring); K: (B, 3, 3);
    anchor: (B, 3) metres in right-hand space. Normalised image coordinates times the anchor depth, minus the
    anchor's lateral position, approximate x - anchor_x and y - anchor_y for joints near the anchor depth.
    Returns (B, W, 21, 3) [dx, dy, confidence].
    """
    fx, fy = K[:, 0, 0], K[:, 1, 1]
    cx, cy = K[:, 0, 2], K[:, 1, 2]
    u = (keypoints2d[..., 0] - cx[:, None, None]) / fx[:, None, None]
    v = (keypoints2d[..., 1] - cy[:, None, None]) / fy[:, None, None]
    u = torch.where(mirror[:, None, None], -u, u)
    depth = anchor[:, 2].clamp_min(0.05)[:, None, None]
    dx = (u * depth - anchor[:, 0, None, None]) / POSITION_SCALE
    dy = (v * depth - anchor[:, 1, None, None]) / POSITION_SCALE
    return torch.stack([dx, dy, keypoints2d[..., 2]], -1)


def build_conditions(keypoints3d: torch.Tensor, valid: torch.Tensor, is_right: torch.Tensor,
                     keypoints2d: torch.Tensor | None = None, valid2d: torch.Tensor | None = None,
                     K: torch.Tensor | None = None, track_bones: torch.Tensor | None = None) -> Conditions:
    """Normalise a batch of windows.

    keypoints3d: (B, W, 21, 3) metres, camera frame, NaN allowed where not valid; valid: (B, W) bool (at least
    one True per window); is_right: (B,) bool; keypoints2d: (B, W, 21, 3) pixels + confidence or None;
    valid2d: (B, W) bool or None (default: finite and confident); K: (B, 3, 3) or None (2D is then masked out);
    track_bones: (B, 20) metres from `track_bone_lengths` over the whole track (default: over the window).
    """
    mirror = ~is_right.bool()
    valid = valid.bool()
    filled = mirror_x(fill_missing(keypoints3d, valid), mirror)
    weights = valid.to(filled.dtype)
    anchor = (filled[:, :, 0] * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1)
    condition3d = (filled - anchor[:, None, None]) / POSITION_SCALE
    batch, frames = valid.shape
    if keypoints2d is None or K is None:
        condition2d = condition3d.new_zeros(batch, frames, 21, 3)
        mask2d = torch.zeros_like(valid)
    else:
        finite = torch.isfinite(keypoints2d).all(-1).all(-1)
        mask2d = finite if valid2d is None else (valid2d.bool() & finite)
        mask2d = mask2d & (torch.nan_to_num(keypoints2d[..., 2]).mean(-1) > 0)
        condition2d = normalise_keypoints2d(torch.nan_to_num(keypoints2d), K, anchor, mirror)
        condition2d = torch.where(mask2d[..., None, None], condition2d, torch.zeros_like(condition2d))
    if track_bones is None:
        track_bones = track_bone_lengths(keypoints3d, valid)
    track_bones = track_bones / POSITION_SCALE
    bank = torch.stack([project_bones(smooth_in_time(condition3d, sigma), track_bones) for sigma in BANK_SIGMAS], 1)
    bank_centroid = bank.mean(-2)
    baseline = bank[:, BANK_SIGMAS.index(BASELINE_SIGMA)]
    return Conditions(condition3d, valid, baseline, track_bones, bank_centroid, bank - bank_centroid[..., None, :],
                      drift_axis(condition3d, valid), condition2d, mask2d, anchor, mirror)


def drift_axis(keypoints3d: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, W, 21, 3), (B, W) -> (B, 3): principal axis of the observed frames' high-pass centroid motion."""
    centroid = keypoints3d.mean(-2)
    high_pass = (centroid - smooth_in_time(centroid, 3.0)) * valid[..., None].to(centroid.dtype)
    covariance = torch.einsum("bwi,bwj->bij", high_pass, high_pass) + 1e-9 * torch.eye(3, dtype=centroid.dtype)
    return torch.linalg.eigh(covariance.double())[1][..., -1].to(centroid.dtype)
