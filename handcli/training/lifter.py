"""Training data and loop of the 2D -> 3D articulation prior (handcli.fitting.lifter).

Samples: a frame of real hand motion (FPHA subjects 1-3, right hands, metres) is put in front of a random
camera and projected; MediaPipe's measured 2D error is added; the network learns the 3D joints back.

* Cameras: half the samples in one of the video benchmark's three situations (egocentric, frontal, top-down:
  handcli.videobench.cameras.base_orientation plus a 25 degree perturbation), half at a uniformly random
  orientation, so that the prior is not tied to the benchmark's viewpoints. Distance 0.2-1.3 m, field of view
  45-90 degrees, the hand anywhere in the central 80 % of the frame.
* 2D error: residual_bank turns MediaPipe's 2D keypoints on rendered clips with known truth (the video
  benchmark's tuning split) into per-frame residuals (21, 2) in the hand's own image frame (x along the
  projected wrist -> middle knuckle, y across it) and in units of the hand's apparent length; a sample draws
  one whole frame of residuals (keeping MediaPipe's correlated, structured errors such as a finger bent the
  wrong way) and rotates and scales it onto its own hand.
* World-landmark error, from the same frames (world_error_bank): the whole-hand rotation between the true
  shape and MediaPipe's (camera frame), and what is left per joint in the hand's own 3D frame. A sample
  draws the same frame as for its 2D error, so the two errors stay as correlated as MediaPipe makes them.
* With view_matched_errors, that frame is drawn among those whose hand showed the camera the same side as
  the sample's (palm, back or edge on: `view_bin`): MediaPipe's errors on a palm are not its errors on a back
  mirrored, and edge-on views have twice the rotation error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from handcli.fitting.lifter import SPREAD, Lifter, lifter_features, unit_shape
from handcli.handmodels.size import hand_length

SITUATIONS = ("egocentric", "frontal", "topdown")


@dataclass
class LifterTrainConfig:
    steps: int = 6000
    batch: int = 1024
    lr: float = 1e-3
    weight_decay: float = 1e-4
    width: int = 384
    blocks: int = 2
    dropout: float = 0.1
    situation_share: float = 0.5  # share of samples in the benchmark's situations (the rest: any orientation)
    depth_loss_weight: float = 1.0  # of the log depth ratio's L1 against the joints' mean distance
    extra_noise: float = 0.01  # Gaussian 2D noise on top of the residual, hand lengths
    view_matched_errors: bool = False  # draw MediaPipe's errors from frames seen from the same side (above)
    seed: int = 0


def image_frame(points2d: np.ndarray) -> np.ndarray:
    """(..., 21, 2) -> (..., 2, 2) rotation whose first column is the projected wrist -> middle knuckle."""
    along = points2d[..., 9, :] - points2d[..., 0, :]
    along = along / np.maximum(np.linalg.norm(along, axis=-1, keepdims=True), 1e-12)
    across = np.stack([-along[..., 1], along[..., 0]], -1)
    return np.stack([along, across], -1)


def residual_bank(observed_px: np.ndarray, truth_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """MediaPipe's 2D error of N frames in hand-local units: observed_px (N, 21, 2) pixels, truth_cam
    (N, 21, 3) metres camera frame, K (N, 3, 3) -> (N, 21, 2) residuals in the hand's image frame, divided by
    the hand's apparent length (focal x hand length / centre depth, pixels)."""
    focal = K[:, 0, 0]
    projected = truth_cam[..., :2] / truth_cam[..., 2:3] * focal[:, None, None] + K[:, None, :2, 2]
    apparent = focal * hand_length(truth_cam) / truth_cam.mean(1)[:, 2]
    frame = image_frame(projected)
    local = np.einsum("nji,nkj->nki", frame, observed_px - projected)  # frame^T @ residual per keypoint
    return local / apparent[:, None, None]


# cosine between the palm's normal and the direction to the camera: below -EDGE_ON the camera sees the back,
# above EDGE_ON the palm, between them the hand edge on
EDGE_ON = 0.3


def facing_cosine(keypoints_cam: np.ndarray) -> np.ndarray:
    """(..., 21, 3) right hands, camera frame -> (...,) cosine between the palm's normal and the direction
    from the hand to the camera (1: the palm faces the camera, -1: the back does)."""
    from handcli.videobench.cameras import hand_axes

    centre = keypoints_cam.mean(-2)
    to_camera = -centre / np.maximum(np.linalg.norm(centre, axis=-1, keepdims=True), 1e-12)
    return np.sum(hand_axes(keypoints_cam)[..., 2] * to_camera, -1)


def view_bin(cosine: np.ndarray) -> np.ndarray:
    """(...,) facing_cosine -> (...,) 0 back, 1 edge on, 2 palm."""
    return np.digitize(cosine, [-EDGE_ON, EDGE_ON])


@dataclass
class ErrorBank:
    """MediaPipe's errors on N frames: image (N, 21, 2) residual_bank's 2D residuals; rotation (N, 3, 3) and
    articulation (N, 21, 3) world_error_bank's world-landmark errors (hand lengths); view (N,) the true
    hand's facing_cosine in that frame (None: unknown, so draws cannot match the view)."""

    image: np.ndarray
    rotation: np.ndarray
    articulation: np.ndarray
    view: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.image)

    def draw(self, rng: np.random.Generator, count: int, views: np.ndarray | None = None) -> np.ndarray:
        """(count,) indices of one bank frame per sample: at random, or, given the samples' facing_cosine
        `views` (count,), among the frames of the same view_bin (at random where the bank has none of it)."""
        drawn = rng.integers(len(self), size=count)
        if views is None:
            return drawn
        if self.view is None:  # matching asked for and impossible: say so rather than draw at random unseen
            raise ValueError("view-matched draws need the bank's views (ErrorBank.view)")
        bank_bins, sample_bins = view_bin(self.view), view_bin(views)
        for which in np.unique(sample_bins):
            pool = np.flatnonzero(bank_bins == which)
            if len(pool):
                samples = sample_bins == which
                drawn[samples] = pool[rng.integers(len(pool), size=int(samples.sum()))]
        return drawn


def world_error_bank(world: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's world landmarks (N, 21, 3) against the true joints (N, 21, 3), both as shapes (wrist
    origin, unit hand length) -> (rotation (N, 3, 3): the best rotation about the centroid taking the true
    shape onto MediaPipe's; articulation (N, 21, 3): what is left per joint after it, in the true hand's
    frame (handcli.videobench.cameras.hand_axes), hand lengths)."""
    from handcli.videobench.cameras import hand_axes

    true_shape, mp_shape = unit_shape(truth), unit_shape(world)
    true_centred = true_shape - true_shape.mean(1, keepdims=True)
    mp_centred = mp_shape - mp_shape.mean(1, keepdims=True)
    u, _, vt = np.linalg.svd(np.einsum("nki,nkj->nij", mp_centred, true_centred))
    fix = np.ones((len(u), 3))
    fix[:, 2] = np.sign(np.linalg.det(u @ vt))
    rotation = (u * fix[:, None]) @ vt  # mp ~ rotation @ true
    aligned = np.einsum("nji,nkj->nki", rotation, mp_centred) + true_shape.mean(1, keepdims=True)
    articulation = np.einsum("nji,nkj->nki", hand_axes(true_shape), aligned - true_shape)
    return rotation, articulation


def apply_world_error(shape: np.ndarray, rotation: np.ndarray, articulation: np.ndarray) -> np.ndarray:
    """What MediaPipe would report for true shapes (B, 21, 3): the articulation error put on in each hand's
    own frame, then the whole-hand rotation about the centroid. -> (B, 21, 3)."""
    from handcli.videobench.cameras import hand_axes

    bent = shape + np.einsum("nij,nkj->nki", hand_axes(shape), articulation)
    centre = bent.mean(1, keepdims=True)
    return np.einsum("nij,nkj->nki", rotation, bent - centre) + centre


def random_cameras(frames: np.ndarray, rng: np.random.Generator, situation_share: float) -> np.ndarray:
    """Place right-hand frames (N, 21, 3) in front of random cameras -> (N, 21, 3) camera frame, metres."""
    from handcli.videobench.cameras import PERTURB_DEGREES, base_orientation, hand_axes, random_rotation

    n = len(frames)
    axes = hand_axes(frames)  # (N, 3, 3)
    targets = Rotation.random(n, random_state=rng.integers(1 << 31)).as_matrix()
    for i in np.flatnonzero(rng.random(n) < situation_share):
        base, _ = base_orientation(SITUATIONS[int(rng.integers(3))], rng)
        targets[i] = random_rotation(PERTURB_DEGREES, rng)[0] @ base
    rotation = targets @ axes.transpose(0, 2, 1)
    centred = frames - frames.mean(1, keepdims=True)
    placed = np.einsum("nij,nkj->nki", rotation, centred)
    depth = rng.uniform(0.2, 1.3, n)
    half_fov = np.radians(rng.uniform(45, 90, n)) / 2
    lateral = rng.uniform(-0.8, 0.8, (n, 2)) * (np.tan(half_fov) * depth)[:, None] * np.array([1.0, 0.75])
    return placed + np.concatenate([lateral, depth[:, None]], 1)[:, None]


def make_batch(frames: np.ndarray, bank: ErrorBank, rng: np.random.Generator, config: LifterTrainConfig
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features (B, 105), joint targets (B, 21, 3), log depth ratio targets (B,)) from random frames of
    `frames` (N, 21, 3)."""
    picked = frames[rng.integers(len(frames), size=config.batch)]
    cam = random_cameras(picked, rng, config.situation_share)
    cam = cam[cam[..., 2].min(1) > 0.08]
    normalised = cam[..., :2] / cam[..., 2:3]
    length = hand_length(cam)
    scale = (length / cam.mean(1)[:, 2])[:, None, None]  # apparent hand length in normalised units
    # one MediaPipe frame's errors, 2D and 3D together
    drawn = bank.draw(rng, len(cam), facing_cosine(cam) if config.view_matched_errors else None)
    noisy = normalised + np.einsum("nij,nkj->nki", image_frame(normalised), bank.image[drawn]) * scale
    noisy = noisy + rng.normal(0, config.extra_noise, noisy.shape) * scale
    targets = (cam - cam[:, :1]) / length[:, None, None]
    world = apply_world_error(targets, bank.rotation[drawn], bank.articulation[drawn])
    features = lifter_features(torch.as_tensor(noisy, dtype=torch.float32), torch.as_tensor(world, dtype=torch.float32))
    # the depth ratio is read against the spread the network sees (the noisy keypoints')
    log_ratio = torch.as_tensor(np.log(cam[..., 2].mean(1) / length), dtype=torch.float32) + features[:, SPREAD]
    return features, torch.as_tensor(targets, dtype=torch.float32), log_ratio


def train_lifter(train_frames: np.ndarray, val_frames: np.ndarray, bank: ErrorBank, config: LifterTrainConfig,
                 log=print) -> tuple[Lifter, dict]:
    """Train on `train_frames` (N, 21, 3), report on `val_frames`; returns the model and its metrics
    (validation mean joint error in hand lengths and in mm at a 181.5 mm hand)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = Lifter(config.width, config.blocks, config.dropout)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.lr, total_steps=config.steps, pct_start=0.05)
    val_rng = np.random.default_rng(config.seed + 1)
    val_batches = [make_batch(val_frames, bank, val_rng, config) for _ in range(4)]
    started = time.perf_counter()
    for step in range(1, config.steps + 1):
        features, targets, log_ratio = make_batch(train_frames, bank, rng, config)
        joints, predicted_ratio = model(features)
        depth_loss = (predicted_ratio - log_ratio).abs().mean()
        loss = (joints - targets).norm(dim=-1).mean() + config.depth_loss_weight * depth_loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 500 == 0 or step == config.steps:
            val, depth = evaluate(model, val_batches)
            log(f"step {step}: train {loss.item():.4f}, val {val:.4f} hand lengths ({val * 181.5:.1f} mm), "
                f"depth {100 * depth:.1f} %, {time.perf_counter() - started:.0f} s")
    val, depth = evaluate(model, val_batches)
    return model.eval(), {"val_mean_joint_error_hand_lengths": round(val, 5),
                          "val_mean_joint_error_mm_at_181mm": round(val * 181.5, 2),
                          "val_depth_median_abs_error_pct": round(100 * depth, 2),
                          "train_seconds": round(time.perf_counter() - started, 1)}


def evaluate(model: Lifter, batches) -> tuple[float, float]:
    """Mean joint error (hand lengths) and median |depth error| (fraction) over validation batches."""
    model.eval()
    joint_errors, depth_errors = [], []
    with torch.no_grad():
        for features, targets, log_ratio in batches:
            joints, predicted_ratio = model(features)
            joint_errors.append((joints - targets).norm(dim=-1).mean().item())
            depth_errors.append((predicted_ratio - log_ratio).exp().sub(1).abs())
    model.train()
    return float(np.mean(joint_errors)), float(torch.cat(depth_errors).median())
