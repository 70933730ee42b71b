"""Keypoint files: 21 joints per hand in the canonical (OpenPose / MediaPipe) order.

* npy or npz arrays (21,3), (T,21,3) or (H,T,21,3) under any key (npz: the one array shaped (...,21,3), or
  `keypoints` / `joints` / ... when several are), optional `valid` (H,T) / (T,), `is_right`, `fps`;
* pickles: one such array, or a list with one entry per frame, each None (no hand), a (21,3) array or a
  one-element list of it. That is what MediaPipe world-landmark dumps look like, e.g.
  dexretarget_open_close.mediapipe_world_landmarks.pkl: a list of 621 float64 (21,3) arrays.

Units: metres, centimetres or millimetres, decided by the palm length (`hand_scale_to_metres`). A frame
with any NaN is invalid. The frame the points are in is reported in `meta.import.frame`: keypoints whose
centre stays within 5 cm of the origin are hand-centred (MediaPipe world landmarks: metric, origin at the
hand's centre, the camera's axes) and are also stored as `world_landmarks`; a wrist always at the origin
with a constant wrist-to-middle-knuckle direction is a wrist frame with the hand's orientation removed
(the shared dexretarget pickle is of this kind: dex-retargeting rotates MediaPipe's landmarks into its
canonical wrist frame). Either way they stay `keypoints3d`: there is no camera translation to recover.
These files carry no handedness: tracks are right hands unless the npz has `is_right`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from handcli.errors import BadInput
from handcli.importers.build import Rows, rows_to_artifact
from handcli.importers.convert import flags, hand_scale_to_metres, numeric
from handcli.importers.source import Source

PREFERRED_KEYS = ("keypoints", "keypoints_3d", "joints3d", "joints_3d", "joints", "kp3d", "world_landmarks",
                  "landmarks", "arr_0")
HAND_CENTRED_RADIUS = 0.05  # m: a hand-centred cloud's centre stays this close to the origin


def _is_keypoint_shape(shape: tuple[int, ...]) -> bool:
    return 2 <= len(shape) <= 4 and tuple(shape[-2:]) == (21, 3)


def _npz_keypoint_key(headers: dict) -> str | None:
    candidates = [key for key, (shape, dtype) in headers.items() if _is_keypoint_shape(shape) and dtype.kind in "fiu"]
    if len(candidates) == 1:
        return candidates[0]
    return next((key for key in PREFERRED_KEYS if key in candidates), None)


class KeypointArrayNpy:
    name = "keypoints-npy"
    description = "a .npy array of 21 keypoints: (T,21,3) or (H,T,21,3)"

    def sniff(self, source: Source) -> bool:
        return source.kind == "npy" and _is_keypoint_shape(source.npy_header[0])

    def load(self, source: Source):
        return keypoint_artifact(source.npy_array, {}, fmt=self.name)


class KeypointArrayNpz:
    name = "keypoints-array-npz"
    description = "an .npz with one (T,21,3) / (H,T,21,3) keypoint array under any name"

    def sniff(self, source: Source) -> bool:
        headers = source.npz_headers
        return "keypoints3d" not in headers and "hand_pose" not in headers and _npz_keypoint_key(headers) is not None

    def load(self, source: Source):
        key = _npz_keypoint_key(source.npz_headers)
        arrays = source.npz_arrays
        return keypoint_artifact(arrays[key], arrays, fmt=self.name, details={"key": key})


class KeypointPickle:
    name = "keypoints-pkl"
    description = "a pickled keypoint array or per-frame list of (21,3) arrays (e.g. MediaPipe world landmarks)"

    def sniff(self, source: Source) -> bool:
        return source.kind in ("pickle", "torch-zip") and _pickle_kind(source.pickled) is not None

    def load(self, source: Source):
        obj = source.pickled
        if _pickle_kind(obj) == "array":
            return keypoint_artifact(obj, {}, fmt=self.name)
        keypoints, valid = _frame_list(obj)
        return keypoint_artifact(keypoints, {}, valid, fmt=self.name)


def _entry_shape(entry: Any) -> tuple[int, ...] | None:
    if isinstance(entry, np.ndarray):
        return entry.shape
    if isinstance(entry, (list, tuple)) and entry and all(isinstance(e, np.ndarray) for e in entry):
        return (len(entry), *entry[0].shape)
    return None


def _pickle_kind(obj: Any) -> str | None:
    if isinstance(obj, np.ndarray) and _is_keypoint_shape(obj.shape):
        return "array"
    if isinstance(obj, (list, tuple)) and obj:
        shapes = [_entry_shape(e) for e in obj if e is not None and not (isinstance(e, (list, tuple)) and not e)]
        if shapes and all(s is not None and s[-2:] == (21, 3) and len(s) in (2, 3) for s in shapes):
            return "frames"
    return None


def _frame_list(obj: list) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame entries -> (keypoints (1, T, 21, 3) with NaN where absent, valid (1, T))."""
    keypoints = np.full((1, len(obj), 21, 3), np.nan)
    for t, entry in enumerate(obj):
        if entry is None or (isinstance(entry, (list, tuple)) and not entry):
            continue
        hands = np.asarray(numeric(entry, f"frame {t}")).reshape(-1, 21, 3)
        if hands.shape[0] > 1:
            raise BadInput(f"frame {t} holds {hands.shape[0]} hands; a landmark list without handedness or "
                           "identity can only be imported with one hand per frame")
        keypoints[0, t] = hands[0]
    valid = np.isfinite(keypoints).all(axis=(2, 3))
    return keypoints, valid


def _frame_kind(points: np.ndarray) -> tuple[str, bool]:
    """What frame valid keypoints (N, 21, 3) are in, and whether they are detector world landmarks."""
    if points.shape[0] == 0:
        return "camera frame (as given)", False
    wrist = np.linalg.norm(points[:, 0], axis=-1)
    if float(np.max(wrist)) < 1e-3:
        knuckle = points[:, 9] - points[:, 0]
        knuckle /= np.linalg.norm(knuckle, axis=-1, keepdims=True) + 1e-12
        if points.shape[0] > 1 and float(knuckle.std(0).max()) < 1e-3:
            return ("wrist frame: wrist at the origin and the palm's orientation removed on every frame (as "
                    "dex-retargeting's canonical frame); finger motion only, no global motion"), False
        return "wrist-centred (no camera translation)", False
    centres = points.mean(axis=1)
    if float(np.median(np.linalg.norm(centres, axis=-1))) < HAND_CENTRED_RADIUS:
        return "hand-centred landmarks (no camera translation): also stored as world_landmarks", True
    return "camera frame (as given)", False


def keypoint_artifact(keypoints: Any, arrays: dict, valid: np.ndarray | None = None, *, fmt: str,
                      details: dict | None = None):
    """(21,3) / (T,21,3) / (H,T,21,3) keypoints (+ optional 'valid', 'is_right', 'fps' in `arrays`) -> Artifact."""
    points = numeric(keypoints, "keypoints")
    points = points.reshape((1,) * (4 - points.ndim) + points.shape)
    num_tracks, num_frames = points.shape[:2]
    if num_frames == 0:
        raise BadInput("keypoints: no frames")
    details = dict(details or {})
    if valid is None:
        valid = np.isfinite(points).all(axis=(2, 3))
        if "valid" in arrays:
            given = numeric(arrays["valid"], "valid")
            if given.size != num_tracks * num_frames:
                raise BadInput(f"valid: expected {num_tracks * num_frames} values (H={num_tracks}, T={num_frames}), "
                               f"got shape {given.shape}")
            valid &= given.reshape(num_tracks, num_frames) > 0.5
    scale = hand_scale_to_metres(points[valid] if valid.any() else points, "keypoints")
    points = points * scale
    details["units"] = {1.0: "metres", 0.01: "centimetres (converted to metres)",
                        0.001: "millimetres (converted to metres)"}[scale]
    details["frame"], hand_centred = _frame_kind(points[valid])
    if "is_right" in arrays:
        is_right = flags(arrays["is_right"], num_tracks, "is_right")
    else:
        is_right = np.ones(num_tracks, bool)
        details["is_right"] = "not in the file: assumed right hands"
    grid_track, grid_time = np.divmod(np.arange(num_tracks * num_frames), num_frames)
    extras = {}
    if "fps" in arrays:
        extras["fps"] = float(numeric(arrays["fps"], "fps").reshape(-1)[0])
    rows = Rows(track=grid_track, time=grid_time, num_frames=num_frames, is_right=is_right,
                valid=valid.reshape(-1), keypoints3d=points.reshape(-1, 21, 3), world_landmarks=hand_centred,
                extras=extras)
    return rows_to_artifact(rows, fmt=fmt, details=details)
