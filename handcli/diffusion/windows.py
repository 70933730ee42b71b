"""Cut long tracks into overlapping fixed-length windows and blend the refined windows back smoothly."""

from __future__ import annotations

import math

import numpy as np


def plan_windows(length: int, window: int, stride: int) -> list[int]:
    """Start frames of windows of `window` frames covering frames 0..length-1; the last window ends at the
    last frame. A track shorter than a window gets one window (the caller pads it)."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def blend_weights(window: int) -> np.ndarray:
    """(window,) a raised-sine bump: overlapping windows fade into each other without seams; never zero, so
    the first and last frames of a track (covered by one window) keep their value."""
    phase = (np.arange(window) + 0.5) / window
    return np.sin(math.pi * phase) ** 2 + 1e-3


def cut(values: np.ndarray, starts: list[int], window: int, fill=np.nan) -> np.ndarray:
    """values (L, ...) -> (len(starts), window, ...); frames past the end are `fill`."""
    out = np.full((len(starts), window) + values.shape[1:], fill, dtype=values.dtype)
    for i, start in enumerate(starts):
        chunk = values[start:start + window]
        out[i, :len(chunk)] = chunk
    return out


def blend(windows: np.ndarray, starts: list[int], length: int) -> np.ndarray:
    """Weighted average of overlapping windows. windows (n, window, ...) -> (length, ...)."""
    window = windows.shape[1]
    weights = blend_weights(window)
    total = np.zeros((length,) + windows.shape[2:], dtype=np.float64)
    weight_sum = np.zeros(length, dtype=np.float64)
    for values, start in zip(windows, starts):
        used = min(window, length - start)
        shape = (used,) + (1,) * (windows.ndim - 2)
        total[start:start + used] += values[:used] * weights[:used].reshape(shape)
        weight_sum[start:start + used] += weights[:used]
    return total / weight_sum.reshape((length,) + (1,) * (windows.ndim - 2))
