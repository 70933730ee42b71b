"""Training batches: synthetic clean motion (handcli.datagen), corrupted the way per-frame estimators fail.

Training data is synthetic only. Generating motion is slower than a training step on 2 CPU cores, so clean
tracks live in a pool that is refreshed a few tracks per step, while the corruption is drawn fresh for every
batch. Augmentations: a random speed factor per generated chunk (the program is sampled at fps / factor and
read at fps), a random rotation of each track about its centre before corruption (no camera-orientation
prior), and for batches without 2D keypoints a second joint rotation of truth and observation after corruption,
so depth drift is seen along any direction, not only along the camera ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from handcli.diffusion.conditions import track_bone_lengths


@dataclass
class Batch:
    clean: np.ndarray  # (B, W, 21, 3) metres, ground truth
    observed: np.ndarray  # (B, W, 21, 3) metres, NaN where not valid
    valid: np.ndarray  # (B, W) bool
    is_right: np.ndarray  # (B,) bool
    keypoints2d: np.ndarray | None  # (B, W, 21, 3) [u, v, confidence] pixels
    K: np.ndarray | None  # (B, 3, 3)
    motion_state: np.ndarray  # (B, W) int, -1 = no label
    track_bones: np.ndarray  # (B, 20) metres, from the whole corrupted track the window was cut from


def random_camera(rng: np.random.Generator) -> np.ndarray:
    """(3, 3) pinhole intrinsics of a typical webcam / phone video (50-80 degree horizontal field of view)."""
    width, height = (640, 480) if rng.random() < 0.5 else (1280, 720)
    focal = width / (2 * np.tan(np.deg2rad(rng.uniform(50, 80)) / 2))
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def rotate_about_centre(points: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Rotate each track of several (B, T, 21, 3) arrays by one random rotation per track about the centre of
    the first array's track (NaN-safe)."""
    rotations = Rotation.random(len(points[0]), random_state=int(rng.integers(2**31))).as_matrix()
    centre = np.nanmean(points[0], axis=(1, 2), keepdims=True)
    return [np.einsum("bij,btkj->btki", rotations, p - centre) + centre for p in points]


class SyntheticBatches:
    """Endless batches of (clean, corrupted) windows from a module with the handcli.datagen API."""

    def __init__(self, batch_size: int, window: int, rng: np.random.Generator, datagen: ModuleType | None = None,
                 rotate: bool = True, prob_2d: float = 0.5, corruption: dict | None = None,
                 pool_size: int = 512, track_frames: int = 192, refresh: int = 2, windows_per_track: int = 2,
                 speed: tuple[float, float] = (1.0, 2.2)):
        if datagen is None:
            import handcli.datagen as datagen
        self.datagen = datagen
        self.batch_size = batch_size
        self.window = window
        self.rng = rng
        self.rotate = rotate
        self.prob_2d = prob_2d
        self.corruption = None
        if corruption is not None and hasattr(datagen, "CorruptionConfig"):
            self.corruption = datagen.CorruptionConfig(**corruption)
        self.track_frames = max(track_frames, window)
        self.refresh = refresh
        self.windows_per_track = windows_per_track
        self.speed = speed
        self.pool_keypoints = np.empty((pool_size, self.track_frames, 21, 3), np.float32)
        self.pool_states = np.empty((pool_size, self.track_frames), np.int64)
        chunk = 32
        for begin in range(0, pool_size, chunk):
            self._generate(np.arange(begin, min(begin + chunk, pool_size)))

    def _generate(self, slots: np.ndarray) -> None:
        """Fill pool slots with freshly sampled clean motion (one speed factor per call)."""
        factor = self.rng.uniform(*self.speed)
        motion = self.datagen.sample_motion(len(slots), self.track_frames, self.rng, fps=30.0 / factor)
        self.pool_keypoints[slots] = motion.keypoints3d
        states = motion.motion_state
        self.pool_states[slots] = -1 if states is None else states

    def next(self) -> Batch:
        if self.refresh:
            self._generate(self.rng.choice(len(self.pool_keypoints), self.refresh, replace=False))
        tracks = max(1, self.batch_size // self.windows_per_track)
        picks = self.rng.choice(len(self.pool_keypoints), tracks, replace=tracks > len(self.pool_keypoints))
        # a random track length: the track-level bone condition is noisier on short tracks
        frames = int(self.rng.integers(self.window, self.track_frames + 1))
        offset = int(self.rng.integers(0, self.track_frames - frames + 1))
        clean = self.pool_keypoints[picks, offset:offset + frames].astype(np.float64)
        labels = self.pool_states[picks, offset:offset + frames]
        if self.rotate:
            (clean,) = rotate_about_centre([clean], self.rng)
        use_2d = self.rng.random() < self.prob_2d
        K = random_camera(self.rng) if use_2d else None
        kwargs = {} if self.corruption is None else {"config": self.corruption}
        if K is not None:
            kwargs["K"] = K
        corrupted = self.datagen.corrupt_keypoints(clean, self.rng, **kwargs)
        observed = np.asarray(corrupted.keypoints3d, np.float64)
        valid = np.asarray(corrupted.valid, bool)
        keypoints2d = np.asarray(corrupted.keypoints2d, np.float64) if use_2d else None
        if self.rotate and not use_2d:
            clean, observed = rotate_about_centre([clean, observed], self.rng)
        for row in np.flatnonzero(~valid.any(1)):  # a track needs one observation
            valid[row, 0] = True
            observed[row, 0] = clean[row, 0] + self.rng.normal(0, 0.005, (21, 3))
        observed[~valid] = np.nan
        track_bones = track_bone_lengths(torch.as_tensor(observed), torch.as_tensor(valid)).numpy()
        owner = np.repeat(np.arange(tracks), self.windows_per_track)[:self.batch_size]
        if len(owner) < self.batch_size:
            owner = np.resize(owner, self.batch_size)
        start = self.rng.integers(0, frames - self.window + 1, len(owner))
        pick = start[:, None] + np.arange(self.window)
        rows = owner[:, None]
        window_valid = valid[rows, pick]
        window_observed = observed[rows, pick]
        for row in np.flatnonzero(~window_valid.any(1)):  # a window needs one observation
            window_valid[row, 0] = True
            window_observed[row, 0] = clean[owner[row], start[row]] + self.rng.normal(0, 0.005, (21, 3))
        return Batch(clean[rows, pick], window_observed, window_valid, np.ones(len(owner), bool),
                     None if keypoints2d is None else keypoints2d[rows, pick],
                     None if K is None else np.repeat(K[None], len(owner), 0), labels[rows, pick],
                     track_bones[owner])
