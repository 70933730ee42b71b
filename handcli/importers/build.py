"""Rows of per-hand, per-frame data -> a validated Artifact (the last step every importer shares)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from handcli.artifacts import Artifact, artifact_from_arrays, make_meta
from handcli.importers.handmodel import keypoints_from_params


@dataclass
class Rows:
    """M rows (one hand seen on one frame), already in the artifact's conventions.

    track, time (M,) int: where each row goes in the (H, T) grid; is_right (H,) per track; valid (M,).
    Parameters (optional as a group): global_orient (M,3), hand_pose (M,15,3), transl (M,3), betas (M,10).
    keypoints3d (M,21,3) or None (then computed from the parameters). boxes (M,4) optional.
    """

    track: np.ndarray
    time: np.ndarray
    num_frames: int
    is_right: np.ndarray
    valid: np.ndarray
    keypoints3d: np.ndarray | None = None
    global_orient: np.ndarray | None = None
    hand_pose: np.ndarray | None = None
    transl: np.ndarray | None = None
    betas: np.ndarray | None = None
    boxes: np.ndarray | None = None
    world_landmarks: bool = False  # keypoints3d are hand-centred detector landmarks (also stored as such)
    extras: dict = field(default_factory=dict)  # fps, K, image_size, frame_index


def _grid(values: np.ndarray, rows: Rows, num_tracks: int) -> np.ndarray:
    out = np.full((num_tracks, rows.num_frames, *values.shape[1:]), np.nan)
    out[rows.track, rows.time] = values
    return out


def rows_to_artifact(rows: Rows, *, fmt: str, details: dict, hand_model: str | None = None) -> Artifact:
    """Fill the (H, T) grid (NaN where a track is not valid), compute missing keypoints, validate."""
    num_tracks = int(rows.is_right.shape[0])
    valid = rows.valid.astype(bool)
    details = dict(details)
    betas = track_betas(rows, valid, num_tracks) if rows.betas is not None else None
    if rows.keypoints3d is None:
        keypoints = np.full((valid.shape[0], 21, 3), np.nan)
        if valid.any():
            # the track's one shape, so the artifact's own parameters reproduce its keypoints
            side = rows.is_right[rows.track[valid]]
            keypoints[valid], model_name = keypoints_from_params(
                rows.global_orient[valid], rows.hand_pose[valid], betas[rows.track[valid]], rows.transl[valid], side)
            details["keypoints_from"] = (f"hand model '{model_name}' posed with the file's parameters"
                                         + ("" if model_name == "mano" else
                                            " (not MANO: constant offset of MANO's rest wrist, mean shape)"))
    else:
        keypoints = rows.keypoints3d
        details.setdefault("keypoints_from", "the file")
    valid = valid & np.isfinite(keypoints).all(axis=(1, 2))
    grid_valid = np.zeros((num_tracks, rows.num_frames), bool)
    grid_valid[rows.track, rows.time] = valid
    keep = lambda values: np.where(valid.reshape(-1, *[1] * (values.ndim - 1)), values, np.nan)  # noqa: E731
    arrays: dict[str, np.ndarray] = {
        "keypoints3d": _grid(keep(keypoints), rows, num_tracks),
        "valid": grid_valid,
        "is_right": rows.is_right.astype(bool),
    }
    if rows.global_orient is not None:
        arrays["global_orient"] = _grid(keep(rows.global_orient), rows, num_tracks)
        arrays["hand_pose"] = _grid(keep(rows.hand_pose), rows, num_tracks)
        arrays["transl"] = _grid(keep(rows.transl), rows, num_tracks)
        arrays["betas"] = betas
    if rows.boxes is not None:
        arrays["boxes"] = _grid(keep(rows.boxes), rows, num_tracks)
    if rows.world_landmarks:
        arrays["world_landmarks"] = arrays["keypoints3d"]
    arrays.update({key: np.asarray(value) for key, value in rows.extras.items() if value is not None})
    meta = make_meta("import", hand_model=hand_model, config={"format": fmt})
    meta["import"] = details
    arrays["meta"] = np.array(_json(meta))
    return artifact_from_arrays(arrays, source=fmt, frame_known="frame" in details)


def track_betas(rows: Rows, valid: np.ndarray, num_tracks: int) -> np.ndarray:
    """(H, 10): each track's mean shape over its valid rows (tools estimate betas per frame)."""
    betas = np.zeros((num_tracks, rows.betas.shape[1]))
    for h in range(num_tracks):
        mine = valid & (rows.track == h) & np.isfinite(rows.betas).all(1)
        if mine.any():
            betas[h] = rows.betas[mine].mean(0)
    return betas


def _json(meta: dict) -> str:
    import json

    return json.dumps(meta, sort_keys=True, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
