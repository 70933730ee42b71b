"""The denoising backbone f_phi(x^n, y, n): per-frame skeleton features + temporal Transformer encoder.

PAD-Hand encodes meshes with a MeshCNN; we diffuse in keypoint space, so the spatial encoder is an MLP over
the skeleton graph's natural features (positions, bone vectors, bone lengths) of the noisy state and of each
condition. A Transformer encoder mixes the frames of a window. The last layer is a plain nn.Linear (`head`)
on the penultimate feature (`features`), so a last-layer Laplace approximation can be fitted on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from handcli.diffusion.conditions import BANK_SIGMAS, BASELINE_SIGMA, BONE_CHILDREN, BONE_PARENTS, Conditions
from handcli.diffusion.schedule import ShiftSchedule

NUM_MOTION_STATES = 4  # DIP: reaching, stable grasp, manipulation, releasing


@dataclass
class BackboneConfig:
    window: int = 64  # frames per window (positional embeddings are learned for this length)
    width: int = 128
    layers: int = 4
    heads: int = 4
    ff_width: int = 256
    num_steps: int = 4
    num_states: int = NUM_MOTION_STATES
    dropout: float = 0.0
    baseline_std: float = 0.15  # typical error of the baseline (model units), sets the skip weights

    def to_dict(self) -> dict:
        return asdict(self)


def skeleton_features(positions: torch.Tensor) -> torch.Tensor:
    """(B, W, 21, 3) -> (B, W, 143): positions (63), bone vectors (60), bone lengths (20)."""
    bones = positions[..., BONE_CHILDREN, :] - positions[..., BONE_PARENTS, :]
    lengths = bones.norm(dim=-1)
    return torch.cat([positions.flatten(-2), bones.flatten(-2), lengths], -1)


NUM_BANK = len(BANK_SIGMAS)
FRAME_FEATURES = 143 + 143 + 143 + 20 + 20 + 63 + 1 + 63 + 42 + 1 + 3 * NUM_BANK + 3 + 1 + NUM_BANK


class RefinerBackbone(nn.Module):
    """f_phi: (x^n, conditions, n) -> (x_hat, motion-state logits). Positions in model units."""

    def __init__(self, config: BackboneConfig = BackboneConfig(), schedule: ShiftSchedule | None = None):
        super().__init__()
        self.config = config
        schedule = schedule or ShiftSchedule(num_steps=config.num_steps)
        # fixed by the schedule (EDM-style preconditioning); buffers so they travel with the module
        self.register_buffer("etas", schedule.etas.float(), persistent=False)
        self.register_buffer("skip", schedule.skip_weights(config.baseline_std).float(), persistent=False)
        width = config.width
        self.frame_encoder = nn.Sequential(nn.Linear(FRAME_FEATURES, 2 * width), nn.GELU(),
                                           nn.Linear(2 * width, width))
        self.step_embedding = nn.Embedding(config.num_steps + 1, width)
        self.position_embedding = nn.Embedding(config.window, width)
        layer = nn.TransformerEncoderLayer(width, config.heads, config.ff_width, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.temporal = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 21 * 3)
        self.state_head = nn.Linear(width, config.num_states)
        # per-frame mixture over the smoothing bank: along the drift axis, across it, and for the centred hand
        self.bank_head = nn.Linear(width, 3 * NUM_BANK)
        # start close to the classic filter x_hat = smoothed y with rigid bones (the BASELINE_SIGMA member)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        nn.init.zeros_(self.bank_head.weight)
        with torch.no_grad():
            self.bank_head.bias.zero_()
            # 3, not larger: a saturated softmax passes almost no gradient (measured: with 10 the mixture had
            # barely moved after 1,000 steps); e^3 / (e^3 + 5) = 0.8 on the baseline member
            self.bank_head.bias.view(3, NUM_BANK)[:, BANK_SIGMAS.index(BASELINE_SIGMA)] = 3.0

    def features(self, noisy: torch.Tensor, conditions: Conditions, step: torch.Tensor) -> torch.Tensor:
        """Penultimate features. noisy: (B, W, 21, 3); step: (B,) long in 1..N. Returns (B, W, width)."""
        condition3d = conditions.keypoints3d
        lateral2d = conditions.keypoints2d[..., :2] - condition3d[..., :2]
        baseline = skeleton_features(conditions.baseline)
        # bank centroids relative to the baseline's, per frame: (B, W, K, 3)
        bank_centroid = (conditions.bank_centroid - conditions.baseline.mean(-2)[:, None]).transpose(1, 2)
        frame = torch.cat([
            skeleton_features(noisy),
            skeleton_features(condition3d),
            baseline,
            conditions.track_bones[:, None].expand(-1, noisy.shape[1], -1),
            baseline[..., -20:] - conditions.track_bones[:, None],
            (noisy - condition3d).flatten(-2),
            conditions.mask3d[..., None].to(noisy.dtype),
            conditions.keypoints2d.flatten(-2),
            lateral2d.flatten(-2) * conditions.mask2d[..., None].to(noisy.dtype),
            conditions.mask2d[..., None].to(noisy.dtype),
            bank_centroid.flatten(-2),
            conditions.drift_axis[:, None].expand(-1, noisy.shape[1], -1),
            (condition3d.mean(-2) * conditions.drift_axis[:, None]).sum(-1, keepdim=True),
            (bank_centroid * conditions.drift_axis[:, None, None]).sum(-1),
        ], -1)
        frames = noisy.shape[1]
        tokens = self.frame_encoder(frame) + self.step_embedding(step)[:, None]
        tokens = tokens + self.position_embedding.weight[:frames]
        return self.final_norm(self.temporal(tokens))

    def smoothed(self, features: torch.Tensor, conditions: Conditions) -> torch.Tensor:
        """Adaptive smoothing: per frame, softmax mixtures of the bank for the centroid along the drift axis,
        across it, and for the centred hand. (B, W, width) -> (B, W, 21, 3)."""
        mixture = torch.softmax(self.bank_head(features).unflatten(-1, (3, NUM_BANK)), -1)  # (B, W, 3, K)
        along_weight, across_weight, shape_weight = mixture.unbind(-2)
        axis = conditions.drift_axis[:, None, None]
        centroid = conditions.bank_centroid  # (B, K, W, 3)
        along = (centroid * axis).sum(-1, keepdim=True) * axis
        mixed = (torch.einsum("bwk,bkwc->bwc", along_weight, along)
                 + torch.einsum("bwk,bkwc->bwc", across_weight, centroid - along))
        return mixed[:, :, None] + torch.einsum("bwk,bkwjc->bwjc", shape_weight, conditions.bank_shape)

    def skip_base(self, features: torch.Tensor, noisy: torch.Tensor, conditions: Conditions,
                  step: torch.Tensor) -> torch.Tensor:
        """The non-linear part of x_hat: the adaptive smoothing blended with x^n's own clean estimate
        z_n = (x^n - eta_n y) / (1 - eta_n) by the schedule's skip weight w_n. (B, W, 21, 3)."""
        shape = (-1, 1, 1, 1)
        eta = self.etas[step].reshape(shape)
        weight = self.skip[step].reshape(shape)
        estimate = (noisy - eta * conditions.keypoints3d) / (1 - eta).clamp_min(1e-3)
        smoothed = self.smoothed(features, conditions)
        return smoothed + weight * (estimate - smoothed)

    def decode(self, features: torch.Tensor, conditions: Conditions, noisy: torch.Tensor,
               step: torch.Tensor) -> torch.Tensor:
        """Clean keypoints: `skip_base` plus a linear correction of the features (`head`, the last layer of
        the Laplace approximation: x_hat is affine in its weights). -> (B, W, 21, 3)."""
        return self.skip_base(features, noisy, conditions, step) + self.head(features).unflatten(-1, (21, 3))

    def forward(self, noisy: torch.Tensor, conditions: Conditions,
                step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (x_hat (B, W, 21, 3) model units, motion-state logits (B, W, num_states))."""
        features = self.features(noisy, conditions, step)
        return self.decode(features, conditions, noisy, step), self.state_head(features)
