"""How per-frame hand estimators fail, as a randomised corruption of clean keypoint tracks.

Every magnitude is drawn per sequence, log-uniformly from a range (`CorruptionConfig`); `scale` multiplies all
magnitudes and event rates (0 = no corruption). The ranges run from what MediaPipe itself does on a real clip
(docs/data.md, `scripts/datagen_stats.py calibrate`) up past the evaluation's `dev` protocol, so a model trained
on them sees easy and hard sequences alike. Corruptions, in the order they are applied:

* bone-scale flicker: per-frame scaling about the wrist, white + a slow AR(1) part (monocular scale ambiguity);
* orientation flicker: a small random rotation of the whole hand about the wrist per frame;
* orientation drift: a slow AR(1) rotation of the whole hand about its centre (off by default; what a fit to
  the image gets wrong, measured on the video benchmark: ~10 degrees within a clip, lag-1 autocorrelation
  0.8-0.95, scripts/estimate_errors.py);
* slow per-joint bias: Gaussian-smoothed noise per joint (systematic error drifting over time);
* pose-dependent bias: a random low-rank linear function of the hand's own articulation (in the hand's
  frame), so the error is the same for the same pose and jumps when the pose changes, as a learned
  estimator's systematic errors do (MediaPipe's bone lengths step with every open/close);
* jitter: white noise per joint, larger along the camera ray than across it;
* motion noise: extra white noise proportional to each joint's speed (motion blur);
* depth drift: AR(1) offset of the whole hand along the camera ray, relative to its depth;
* finger outliers: runs of frames on which one finger chain is wrong (bent about its MCP, shifted, or put on
  the neighbouring finger);
* left/right swaps: runs of frames on which the estimator returned the mirror-image hand. For a single track
  that is the depth-mirror: every keypoint moves along its own camera ray to the depth mirrored about the
  hand's mean depth, so the 2D keypoints stay put and the chirality flips (what a right-hand fitter returns
  on an image it took for a left hand, and vice versa);
* dropped segments: runs of frames with no detection (valid False, NaN).
2D keypoints are the clean keypoints projected with K plus pixel noise proportional to the hand's image size,
with the outlier finger's error visible in 2D too; the confidence is a per-frame detector score lowered on
joints with large 2D error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from handcli.handmodels.kinematics import CANONICAL_FINGERS

DEFAULT_IMAGE_SIZE = (1280, 720)
DEFAULT_FOCAL = 900.0  # pixels, ~71 x 44 degree view: the generator's hands fit inside


def default_intrinsics() -> np.ndarray:
    """(3, 3) pinhole K used when none is given."""
    width, height = DEFAULT_IMAGE_SIZE
    return np.array([[DEFAULT_FOCAL, 0.0, width / 2], [0.0, DEFAULT_FOCAL, height / 2], [0.0, 0.0, 1.0]])


@dataclass
class CorruptionConfig:
    """Per-sequence magnitude ranges; each sequence draws every magnitude log-uniformly from its range.

    Ranges are wide on purpose: from a smoothed video detector on an easy clip (MediaPipe, measured) up to
    jittery single-frame estimators, with the evaluation's `dev` protocol inside (docs/data.md).
    `scale` multiplies every magnitude and rate (0 = no corruption, 2 = twice as strong); `spread` scales the
    width of every range in log space about its geometric centre (0 = every sequence at the centre, 1 = the
    ranges below, 2 = twice as wide).
    """

    scale: float = 1.0
    spread: float = 1.0
    jitter: tuple[float, float] = (0.00003, 0.005)  # m, white noise std per axis across the camera ray
    jitter_depth_ratio: tuple[float, float] = (1.0, 3.0)  # jitter along the ray / across it (uniform, not scaled)
    rotation_jitter_deg: tuple[float, float] = (0.1, 3.0)  # white per-frame hand rotation about the wrist, std per axis
    rotation_drift_deg: tuple[float, float] = (0.0, 0.0)  # AR(1) hand rotation about its centre, std per axis
    rotation_drift_rho: tuple[float, float] = (0.8, 0.97)  # its per-frame AR coefficient (uniform, not scaled)
    bone_scale_fast: tuple[float, float] = (0.0007, 0.04)  # white per-frame relative scale about the wrist, std
    bone_scale_slow: tuple[float, float] = (0.015, 0.09)  # AR(1) relative scale about the wrist, stationary std
    bone_scale_rho: tuple[float, float] = (0.85, 0.99)  # its per-frame AR coefficient (uniform, not scaled)
    bias: tuple[float, float] = (0.0005, 0.007)  # m, slow per-joint bias, std per axis
    bias_timescale: tuple[float, float] = (4.0, 25.0)  # frames, its Gaussian smoothing sigma (uniform, not scaled)
    pose_bias: tuple[float, float] = (0.0003, 0.005)  # m, pose-dependent bias, std per axis
    pose_bias_rank: int = 3  # articulation directions the pose-dependent bias responds to
    motion_noise: tuple[float, float] = (0.03, 0.3)  # white noise std per axis / the joint's speed (per frame)
    depth_drift: tuple[float, float] = (0.005, 0.12)  # fraction of the hand's depth: std of the offset along the ray
    depth_drift_rho: tuple[float, float] = (0.6, 0.98)  # its per-frame AR coefficient (uniform, not scaled)
    depth_drift_direction_noise: float = 0.2  # drift direction = ray + this much isotropic noise, renormalised
    outlier_rate: tuple[float, float] = (0.002, 0.05)  # per frame: chance that a finger-outlier run starts
    outlier_length: tuple[int, int] = (1, 3)  # frames per run, uniform inclusive
    outlier_magnitude: tuple[float, float] = (0.008, 0.08)  # m, typical displacement of the fingertip
    swap_rate: tuple[float, float] = (0.0005, 0.01)  # per frame: chance that a mirrored-hand run starts
    swap_length: tuple[int, int] = (1, 12)
    drop_rate: tuple[float, float] = (0.002, 0.04)  # per frame: chance that a dropped segment starts
    drop_length: tuple[int, int] = (1, 20)
    pixel_noise: tuple[float, float] = (0.0005, 0.01)  # 2D noise std per axis / the hand's image diagonal

    # the log-uniform, `scale`d magnitudes; the other tuples are uniform ranges or run lengths
    MAGNITUDES = ("jitter", "rotation_jitter_deg", "bone_scale_fast", "bone_scale_slow", "bias", "pose_bias",
                  "motion_noise", "depth_drift", "outlier_rate", "outlier_magnitude", "swap_rate", "drop_rate",
                  "pixel_noise", "rotation_drift_deg")
    # added after weights were trained: not drawn while off, so earlier configurations keep their random stream
    OPTIONAL = ("rotation_drift_deg",)

    def ranges(self) -> dict[str, tuple[float, float]]:
        """name -> effective (low, high) of every magnitude after `scale` and `spread`."""
        out = {}
        for name in self.MAGNITUDES:
            low, high = getattr(self, name)
            if low <= 0:  # a range starting at zero: off (or fixed at zero) for every sequence
                out[name] = (0.0, 0.0) if high <= 0 else (0.0, self.scale * high)
                continue
            centre, half_width = np.sqrt(low * high), 0.5 * np.log(high / low) * max(self.spread, 0.0)
            out[name] = (self.scale * centre * np.exp(-half_width), self.scale * centre * np.exp(half_width))
        return out

    def sample(self, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Per-sequence magnitudes: name -> (B,), log-uniform within `ranges()`."""
        out = {}
        for name, (low, high) in self.ranges().items():
            if name in self.OPTIONAL and high <= 0:
                out[name] = np.zeros(batch)
            elif low <= 0:
                out[name] = rng.uniform(low, high, batch)  # a zero-based range: uniform instead
            elif high <= low:
                out[name] = np.full(batch, float(low))
            else:
                out[name] = np.exp(rng.uniform(np.log(low), np.log(high), batch))
        return out


@dataclass
class CorruptedKeypoints:
    """keypoints3d (B, T, 21, 3) float32, NaN where missing; valid (B, T) bool; outlier (B, T) bool: frames with
    a gross per-finger error; keypoints2d (B, T, 21, 3) [u, v, confidence], NaN where missing; swapped (B, T)
    bool: frames holding the mirrored (wrong-chirality) hand."""

    keypoints3d: np.ndarray
    valid: np.ndarray
    outlier: np.ndarray
    keypoints2d: np.ndarray
    swapped: np.ndarray


# ------------------------------------------------------------------------------------------------ helpers
def random_runs(rate: np.ndarray, length: tuple[int, int], num_frames: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Runs of frames starting with probability rate (B,) per frame, each U{length} long.

    Returns (covered (B, T) bool, start (B, T) int: the frame its run started on, -1 outside runs)."""
    batch = len(rate)
    starts = rng.random((batch, num_frames)) < rate[:, None]
    lengths = rng.integers(length[0], length[1] + 1, (batch, num_frames))
    frame = np.arange(num_frames)
    latest = np.maximum.accumulate(np.where(starts, frame, -1), axis=1)
    run_length = np.take_along_axis(lengths, np.maximum(latest, 0), 1)
    covered = (latest >= 0) & (frame - latest < run_length)
    return covered, np.where(covered, latest, -1)


def ar1(batch: int, num_frames: int, std: np.ndarray, rho: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stationary AR(1) series (B, T) with std (B,) and coefficient rho (B,)."""
    innovation = rng.normal(0, 1, (batch, num_frames))
    out = np.empty((batch, num_frames))
    out[:, 0] = innovation[:, 0]
    gain = np.sqrt(1 - rho**2)
    for t in range(1, num_frames):
        out[:, t] = rho * out[:, t - 1] + gain * innovation[:, t]
    return out * std[:, None]


def camera_rays(keypoints3d: np.ndarray) -> np.ndarray:
    """Unit direction from the camera to each sequence's mean hand position: (B, T, 21, 3) -> (B, 3)."""
    centre = np.nanmean(keypoints3d, axis=(1, 2))
    return centre / np.linalg.norm(centre, axis=-1, keepdims=True).clip(1e-9)


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection (..., 3) with K (3, 3) or (B, 3, 3) for points (B, ...) -> (..., 2) pixels."""
    if K.ndim == 2:
        K = np.broadcast_to(K, (points.shape[0], 3, 3))
        K = K.reshape(points.shape[0], *([1] * (points.ndim - 2)), 3, 3)
    else:
        K = K.reshape(K.shape[0], *([1] * (points.ndim - 2)), 3, 3)
    depth = np.clip(points[..., 2:], 1e-6, None)
    normalised = points[..., :2] / depth
    return normalised * K[..., [0, 1], [0, 1]] + K[..., :2, 2]


# ------------------------------------------------------------------------------------------ corruptions
def finger_outliers(keypoints3d: np.ndarray, runs: np.ndarray, start: np.ndarray, magnitude: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """Displacements (B, T, 21, 3) putting one finger chain wrong on the frames of each run (same error over a run).

    Kinds: bend (the chain rotated about its base so the tip moves ~magnitude), shift (displacement growing
    from the base to the tip), neighbour (the chain lands on the adjacent finger's keypoints)."""
    batch, frames = runs.shape
    # one draw per possible run start; a run reads the draw of the frame it started on
    finger = rng.integers(0, 5, (batch, frames))
    kind = rng.choice(3, (batch, frames), p=[0.5, 0.3, 0.2])
    size = magnitude[:, None] * rng.uniform(0.5, 1.5, (batch, frames))
    direction = rng.normal(size=(batch, frames, 3))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    neighbour = np.where(finger == 4, 3, np.where(finger == 0, 1, finger + rng.choice([-1, 1], (batch, frames))))

    out = np.zeros_like(keypoints3d)
    b_idx, t_idx = np.nonzero(runs)
    if len(b_idx) == 0:
        return out
    s_idx = start[b_idx, t_idx]
    finger, kind, size = finger[b_idx, s_idx], kind[b_idx, s_idx], size[b_idx, s_idx]
    direction, neighbour = direction[b_idx, s_idx], neighbour[b_idx, s_idx]
    chains = np.array(CANONICAL_FINGERS)  # (5, 4)
    chain = keypoints3d[b_idx, t_idx][np.arange(len(b_idx))[:, None], chains[finger]]  # (N, 4, 3)
    base = chain[:, :1]
    # bend: rotate about an axis perpendicular to base->tip so the tip moves by `size`
    reach = chain[:, 3] - chain[:, 0]
    length = np.linalg.norm(reach, axis=-1).clip(1e-6)
    axis = np.cross(reach, direction)
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True).clip(1e-9)
    angle = 2 * np.arcsin(np.clip(size / (2 * length), 0, 1))
    rotation = Rotation.from_rotvec(axis * angle[:, None]).as_matrix()
    bent = base + np.einsum("nij,nkj->nki", rotation, chain - base) - chain
    shifted = direction[:, None] * size[:, None, None] * (np.arange(1, 5) / 4)[None, :, None]
    other = keypoints3d[b_idx, t_idx][np.arange(len(b_idx))[:, None], chains[neighbour]] - chain
    delta = np.where(kind[:, None, None] == 0, bent, np.where(kind[:, None, None] == 1, shifted, other))
    out[b_idx[:, None], t_idx[:, None], chains[finger]] = delta
    return out


def hand_frames(keypoints3d: np.ndarray) -> np.ndarray:
    """Per-frame hand orientation from the wrist, index MCP and middle MCP: (..., 21, 3) -> (..., 3, 3), columns
    = hand axes in camera coordinates."""
    forward = keypoints3d[..., 9, :] - keypoints3d[..., 0, :]
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True).clip(1e-9)
    side = np.cross(keypoints3d[..., 5, :] - keypoints3d[..., 0, :], forward)
    side /= np.linalg.norm(side, axis=-1, keepdims=True).clip(1e-9)
    return np.stack([side, np.cross(forward, side), forward], -1)


def pose_dependent_bias(clean: np.ndarray, magnitude: np.ndarray, rank: int, rng: np.random.Generator) -> np.ndarray:
    """Bias (B, T, 21, 3) that is a fixed random rank-`rank` linear function of the articulation: the wrist-relative
    keypoints in the hand's own frame, minus their sequence mean; std per axis = magnitude (B,)."""
    batch, frames = clean.shape[:2]
    frame = hand_frames(clean)  # (B, T, 3, 3)
    local = np.einsum("btji,btkj->btki", frame, clean - clean[:, :, :1])  # frame^T (x - wrist)
    features = (local - local.mean(1, keepdims=True)).reshape(batch, frames, 63)
    reads = rng.normal(0, 1, (batch, 63, rank))
    writes = rng.normal(0, 1, (batch, 63, rank))
    bias_local = ((features @ reads) @ writes.transpose(0, 2, 1)).reshape(batch, frames, 21, 3)
    bias_local *= (magnitude / bias_local.std(axis=(1, 2, 3)).clip(1e-12))[:, None, None, None]
    return np.einsum("btij,btkj->btki", frame, bias_local)


def depth_mirror(keypoints3d: np.ndarray) -> np.ndarray:
    """The mirror-image hand with the same 2D keypoints: each point slides along its camera ray to the depth
    mirrored about the hand's mean depth. (..., 21, 3) -> (..., 21, 3)."""
    depth = keypoints3d[..., 2:]
    mirrored = 2 * depth.mean(-2, keepdims=True) - depth
    return keypoints3d * (mirrored / np.clip(depth, 1e-6, None))


def corrupt_keypoints(keypoints3d: np.ndarray, rng: np.random.Generator, config: CorruptionConfig = CorruptionConfig(),
                      K: np.ndarray | None = None) -> CorruptedKeypoints:
    """Corrupt clean tracks the way per-frame estimators fail (module docstring; docs/data.md).

    keypoints3d (B, T, 21, 3) metres, camera frame, canonical order; K (3, 3) or (B, 3, 3) for the 2D
    keypoints (None: `default_intrinsics()`). Returns CorruptedKeypoints.
    """
    clean = np.asarray(keypoints3d, np.float64)
    batch, frames = clean.shape[:2]
    K = default_intrinsics() if K is None else np.asarray(K, np.float64)
    mags = config.sample(batch, rng)
    wrist = clean[:, :, :1]
    ray = camera_rays(clean)  # (B, 3)

    def per_sequence(bounds):
        return rng.uniform(*bounds, batch)

    # bone-scale flicker about the wrist
    scale = 1 + rng.normal(0, 1, (batch, frames)) * mags["bone_scale_fast"][:, None]
    scale += ar1(batch, frames, mags["bone_scale_slow"], per_sequence(config.bone_scale_rho), rng)
    noisy = wrist + (clean - wrist) * scale[..., None, None]
    # orientation flicker about the wrist
    rotvec = rng.normal(0, 1, (batch, frames, 3)) * np.deg2rad(mags["rotation_jitter_deg"])[:, None, None]
    rotation = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(batch, frames, 3, 3)
    noisy = wrist + np.einsum("btij,btkj->btki", rotation, noisy - wrist)
    # orientation drift about the hand's centre (drawn only when on: the default stream stays as it was)
    if mags["rotation_drift_deg"].max() > 0:
        rho = per_sequence(config.rotation_drift_rho)
        rotvec = np.stack([ar1(batch, frames, np.deg2rad(mags["rotation_drift_deg"]), rho, rng) for _ in range(3)], -1)
        rotation = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(batch, frames, 3, 3)
        centre = noisy.mean(axis=2, keepdims=True)
        noisy = centre + np.einsum("btij,btkj->btki", rotation, noisy - centre)
    # slow per-joint bias
    bias = np.empty_like(clean)
    sigma = per_sequence(config.bias_timescale)
    white = rng.normal(0, 1, clean.shape)
    for b in range(batch):  # one timescale per sequence; gaussian_filter1d is C, the loop is over B only
        bias[b] = gaussian_filter1d(white[b], sigma[b], axis=0, mode="reflect")
    bias *= (mags["bias"] / bias.std(axis=(1, 2, 3)).clip(1e-12))[:, None, None, None]
    noisy += bias
    noisy += pose_dependent_bias(clean, mags["pose_bias"], config.pose_bias_rank, rng)
    # motion noise ~ joint speed (central differences of the clean track)
    speed = np.linalg.norm(np.gradient(clean, axis=1), axis=-1) if frames > 1 else np.zeros(clean.shape[:3])
    noisy += rng.normal(0, 1, clean.shape) * (mags["motion_noise"][:, None, None] * speed)[..., None]
    # jitter, stretched along the ray
    jitter = rng.normal(0, 1, clean.shape) * mags["jitter"][:, None, None, None]
    along = np.einsum("btjc,bc->btj", jitter, ray)
    stretch = per_sequence(config.jitter_depth_ratio) - 1
    noisy += jitter + stretch[:, None, None, None] * along[..., None] * ray[:, None, None]
    # depth drift along the ray (plus a little sideways)
    depth = clean[..., 2].mean(axis=(1, 2))
    drift_dir = ray + rng.normal(0, config.depth_drift_direction_noise, (batch, 3))
    drift_dir /= np.linalg.norm(drift_dir, axis=-1, keepdims=True)
    drift = ar1(batch, frames, mags["depth_drift"] * depth, per_sequence(config.depth_drift_rho), rng)
    noisy += drift[..., None, None] * drift_dir[:, None, None]
    # finger outliers
    outlier, outlier_start = random_runs(mags["outlier_rate"], config.outlier_length, frames, rng)
    displacement = finger_outliers(clean, outlier, outlier_start, mags["outlier_magnitude"], rng)
    noisy += displacement
    # left/right swaps
    swapped, _ = random_runs(mags["swap_rate"], config.swap_length, frames, rng)
    noisy[swapped] = depth_mirror(noisy[swapped])
    # dropped segments
    dropped, _ = random_runs(mags["drop_rate"], config.drop_length, frames, rng)
    valid = ~dropped
    noisy[dropped] = np.nan

    keypoints2d = keypoints_2d(clean, displacement, mags["pixel_noise"], K, swapped, rng)
    keypoints2d[dropped] = np.nan
    return CorruptedKeypoints(keypoints3d=noisy.astype(np.float32), valid=valid, outlier=outlier & valid,
                              keypoints2d=keypoints2d.astype(np.float32), swapped=swapped & valid)


def keypoints_2d(clean: np.ndarray, displacement: np.ndarray, pixel_noise: np.ndarray, K: np.ndarray,
                 swapped: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[u, v, confidence] (B, T, 21, 3): clean projection, the outlier finger's error, pixel noise ~ hand size.

    Confidence = a per-frame detector score (~0.97 median, as MediaPipe's hand score on a clean clip) times
    a per-joint factor that falls with the joint's 2D error; lower on mirrored-hand frames."""
    uv_clean = project(clean, K)
    uv = project(clean + displacement, K)
    diagonal = np.linalg.norm(uv_clean.max(-2) - uv_clean.min(-2), axis=-1)  # (B, T)
    noise_px = pixel_noise[:, None] * diagonal  # (B, T)
    uv = uv + rng.normal(0, 1, uv.shape) * noise_px[..., None, None]
    error = np.linalg.norm(uv - uv_clean, axis=-1) / diagonal[..., None].clip(1e-6)  # (B, T, 21) in hand sizes
    score = 1 - np.abs(rng.normal(0, 0.045, clean.shape[:2]))
    score = np.where(swapped, score * rng.uniform(0.5, 1.0, score.shape), score)
    confidence = score[..., None] * np.exp(-((error / 0.08) ** 2)) * (1 - np.abs(rng.normal(0, 0.02, error.shape)))
    return np.concatenate([uv, np.clip(confidence, 0, 1)[..., None]], -1)
