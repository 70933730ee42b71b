"""Per-sample keyframe tracks, evaluated with minimum-jerk profiles between consecutive keyframes.

Each sample of a batch appends its own keyframes (at its own times); a track is evaluated at (B, T) times.
Between two keyframes every value follows the minimum-jerk profile 10s^3 - 15s^4 + 6s^5 (Flash & Hogan):
zero velocity and acceleration at both ends, the smoothest point-to-point movement. Rotations follow the
same profile along the geodesic.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def minimum_jerk(s: np.ndarray) -> np.ndarray:
    """Progress 0..1 -> 0..1 of a minimum-jerk movement."""
    s = np.clip(s, 0.0, 1.0)
    return s * s * s * (10.0 + s * (-15.0 + 6.0 * s))


class KeyframeTrack:
    """Keyframes of shape `value_shape` per sample; `add` appends for a subset of samples."""

    def __init__(self, batch: int, value_shape: tuple[int, ...], capacity: int = 16):
        self.times = np.full((batch, capacity), np.inf)
        self.values = np.zeros((batch, capacity, *value_shape))
        self.count = np.zeros(batch, np.int64)

    def add(self, samples: np.ndarray, times: np.ndarray, values: np.ndarray) -> None:
        """samples (N,) indices; times (N,) seconds, not before that sample's last keyframe; values (N, *shape)."""
        if len(samples) == 0:
            return
        slot = self.count[samples]
        if slot.max() >= self.times.shape[1]:
            grow = self.times.shape[1]
            self.times = np.concatenate([self.times, np.full((len(self.times), grow), np.inf)], 1)
            self.values = np.concatenate([self.values, np.zeros((len(self.values), grow, *self.values.shape[2:]))], 1)
        self.times[samples, slot] = times
        self.values[samples, slot] = values
        self.count[samples] += 1

    def _segments(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """t (B, T) -> (index of the keyframe before, index after, min-jerk progress), each (B, T)."""
        used = self.times[:, : int(self.count.max())]
        before = (used[:, None, :] <= t[:, :, None]).sum(-1) - 1
        last = self.count[:, None] - 1
        before = np.clip(before, 0, last)
        after = np.minimum(before + 1, last)
        rows = np.arange(len(t))[:, None]
        start, end = used[rows, before], used[rows, after]
        span = end - start
        progress = np.where(span > 0, (t - start) / np.where(span > 0, span, 1.0), 1.0)
        return before, after, minimum_jerk(progress)

    def evaluate(self, t: np.ndarray) -> np.ndarray:
        """Values at times t (B, T) -> (B, T, *shape)."""
        before, after, weight = self._segments(t)
        rows = np.arange(len(t))[:, None]
        start, end = self.values[rows, before], self.values[rows, after]
        weight = weight.reshape(*weight.shape, *([1] * (start.ndim - 2)))
        return start + weight * (end - start)

    def evaluate_rotation(self, t: np.ndarray) -> np.ndarray:
        """For tracks of rotation matrices (3, 3): geodesic min-jerk interpolation -> (B, T, 3, 3)."""
        before, after, weight = self._segments(t)
        rows = np.arange(len(t))[:, None]
        start, end = self.values[rows, before], self.values[rows, after]
        relative = np.einsum("btji,btjk->btik", start, end)  # start^T end
        rotvec = Rotation.from_matrix(relative.reshape(-1, 3, 3)).as_rotvec().reshape(*t.shape, 3)
        step = Rotation.from_rotvec((rotvec * weight[..., None]).reshape(-1, 3)).as_matrix().reshape(*t.shape, 3, 3)
        return start @ step

    def evaluate_step(self, t: np.ndarray) -> np.ndarray:
        """Piecewise-constant read-out (the last keyframe at or before t): (B, T, *shape)."""
        used = self.times[:, : int(self.count.max())]
        before = np.clip((used[:, None, :] <= t[:, :, None]).sum(-1) - 1, 0, None)
        return self.values[np.arange(len(t))[:, None], before]
