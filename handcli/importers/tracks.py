"""Detections (one row per detected hand, with a frame number) -> H hand tracks over T frames.

Handedness is the key: a left and a right detection never share a track (the tools label every detection
with a side — WiLoR's detector class, HaMeR's body-keypoint hands — but give no identity). Within one side,
detections are matched frame to frame by the Hungarian algorithm on wrist distance measured as the
camera sees it: the difference of the normalised image coordinates (x/z, y/z) plus half the difference of
log depth, so the gate does not depend on the tool's (often fictitious) focal length. A detection further
than `GATE` from every open track starts a new track; tracks stay open across gaps, matched against
their last position. Tracks are ordered by first appearance, left before right on ties.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from handcli.errors import BadInput

GATE = 0.3  # ~17 degrees of view between consecutive sightings of the same hand
MAX_FRAMES = 10_000_000


def frame_span(frame: np.ndarray) -> tuple[int, int]:
    """(first frame, number of frames T) covering every detection; gaps become invalid frames."""
    if frame.size == 0:
        raise BadInput("no detections in the file")
    first, last = int(frame.min()), int(frame.max())
    if first < 0:
        raise BadInput(f"frame index {first} is negative")
    if last - first + 1 > MAX_FRAMES:
        raise BadInput(f"frame indices span {last - first + 1} frames; is the frame index column right?")
    return first, last - first + 1


def _view_coordinates(wrist: np.ndarray) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 3) [x/z, y/z, log(z)/2] (metric fallback when z <= 0)."""
    depth = wrist[:, 2:3]
    ok = np.isfinite(wrist).all(1, keepdims=True) & (depth > 1e-6)
    safe_depth = np.where(ok, depth, 1.0)
    view = np.concatenate([wrist[:, :2] / safe_depth, 0.5 * np.log(safe_depth)], axis=1)
    return np.where(ok, view, np.nan_to_num(wrist))


def assign_tracks(frame: np.ndarray, is_right: np.ndarray, wrist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """frame (N,) int, is_right (N,) bool, wrist (N, 3) camera frame ->
    (track of each detection (N,), is_right per track (H,))."""
    view = _view_coordinates(wrist)
    track = np.full(frame.shape[0], -1, np.int64)
    first_seen: list[tuple[int, int]] = []  # (first frame, side) per track, for the final ordering
    track_side: list[bool] = []
    for side in (False, True):
        last_view: dict[int, np.ndarray] = {}
        side_rows = np.flatnonzero(is_right == side)
        for f in np.unique(frame[side_rows]):
            rows = side_rows[frame[side_rows] == f]
            open_tracks = list(last_view)
            matched: set[int] = set()
            if open_tracks:
                previous = np.stack([last_view[t] for t in open_tracks])
                cost = np.linalg.norm(view[rows][:, None] - previous[None], axis=-1)
                det_idx, trk_idx = linear_sum_assignment(cost)
                for d, t in zip(det_idx, trk_idx):
                    if cost[d, t] <= GATE:
                        track[rows[d]] = open_tracks[t]
                        matched.add(d)
            for d, row in enumerate(rows):
                if d not in matched:
                    track[row] = len(track_side)
                    track_side.append(side)
                    first_seen.append((int(f), int(side)))
                last_view[int(track[row])] = view[row]
    order = sorted(range(len(track_side)), key=lambda t: first_seen[t])
    renumber = np.empty(len(order), np.int64)
    renumber[order] = np.arange(len(order))
    return renumber[track], np.array([track_side[t] for t in order], bool)
