"""CSV and Parquet: one row per (track, frame, joint), for pandas (`pd.read_csv` / `pd.read_parquet`).

Columns (docs/export.md): track, track_id, is_right, frame, video_frame, time_s, valid, observed, joint,
joint_name, x, y, z (keypoints3d in the output frame, metres), u, v, confidence (2D keypoints, pixels, empty
without them), std_mm (per-joint standard deviation from var_joints, empty without it), std_extrapolated
(True where that standard deviation extrapolates the calibration, `beyond_calibration`; empty without the
flag), and rx, ry, rz:
the joint's local rotation (axis-angle, radians, relative to its parent; the wrist: global_orient; tips and
the artifact's held frames as stored) in the camera frame, empty for the fingertips.
"""

from __future__ import annotations

import csv

import numpy as np

from handcli.artifacts import Artifact
from handcli.errors import BadInput
from handcli.export.common import CANONICAL_NAMES, TrackMotion, std_mm
from handcli.handmodels.kinematics import MANO21_TO_CANONICAL

COLUMNS = ("track", "track_id", "is_right", "frame", "video_frame", "time_s", "valid", "observed", "joint",
           "joint_name", "x", "y", "z", "u", "v", "confidence", "std_mm", "std_extrapolated", "rx", "ry", "rz")
# True / False / missing: object arrays of bool and None, a nullable bool in Parquet, an empty field in CSV
NULLABLE_BOOL_COLUMNS = ("std_extrapolated",)
PARQUET_EXTRA = "export"


def table_columns(artifact: Artifact, motions: dict[int, TrackMotion], frame_rotation: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """Column name -> (rows,) array; rows ordered by track, frame, joint (canonical order)."""
    tracks = sorted(motions)
    T = artifact.num_frames
    rows_per_track = T * 21
    columns: dict[str, list[np.ndarray]] = {name: [] for name in COLUMNS}
    frame = np.repeat(np.arange(T), 21)
    joint = np.tile(np.arange(21), T)
    for h in tracks:
        motion = motions[h]
        columns["track"].append(np.full(rows_per_track, h, np.int64))
        track_id = int(artifact.track_id[h]) if artifact.track_id is not None else h
        columns["track_id"].append(np.full(rows_per_track, track_id, np.int64))
        columns["is_right"].append(np.full(rows_per_track, bool(artifact.is_right[h])))
        columns["frame"].append(frame)
        video_frame = artifact.frame_index if artifact.frame_index is not None else np.arange(T)
        columns["video_frame"].append(np.repeat(np.asarray(video_frame, np.int64), 21))
        columns["time_s"].append(frame / artifact.fps)
        columns["valid"].append(np.repeat(motion.valid, 21))
        columns["observed"].append(np.repeat(motion.observed, 21))
        columns["joint"].append(joint)
        columns["joint_name"].append(np.array(CANONICAL_NAMES, dtype=object)[joint])
        points = np.asarray(artifact.keypoints3d[h], np.float64) @ frame_rotation.T  # (T, 21, 3)
        for k, axis in enumerate("xyz"):
            columns[axis].append(points[..., k].reshape(-1))
        if artifact.keypoints2d is not None:
            for k, name in enumerate(("u", "v", "confidence")):
                columns[name].append(np.asarray(artifact.keypoints2d[h, ..., k], np.float64).reshape(-1))
        else:
            for name in ("u", "v", "confidence"):
                columns[name].append(np.full(rows_per_track, np.nan))
        std = (std_mm(artifact.var_joints[h]).reshape(-1) if artifact.var_joints is not None
               else np.full(rows_per_track, np.nan))
        columns["std_mm"].append(std)
        flags = (np.repeat(artifact.beyond_calibration[h], 21).astype(object)
                 if artifact.beyond_calibration is not None else np.full(rows_per_track, None, object))
        columns["std_extrapolated"].append(flags)
        # local rotations per canonical joint (MANO joint m sits at canonical position c); tips: NaN
        axis_angle = np.concatenate([motion.global_orient[:, None], motion.hand_pose], 1)  # (T, 16, 3) MANO order
        per_joint = np.full((T, 21, 3), np.nan)
        for c, m in enumerate(MANO21_TO_CANONICAL):
            if m < 16:
                per_joint[:, c] = axis_angle[:, m]
        for k, name in enumerate(("rx", "ry", "rz")):
            columns[name].append(per_joint[..., k].reshape(-1))
    return {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in columns.items()}


def write_csv(columns: dict[str, np.ndarray], path) -> None:
    """Plain CSV, header row first; floats with enough digits for micrometres, missing values empty."""
    formatted = {}
    for name in COLUMNS:
        values = columns[name]
        if name in NULLABLE_BOOL_COLUMNS:
            formatted[name] = ["" if v is None else ("True" if v else "False") for v in values.tolist()]
        elif values.dtype.kind == "f":
            formatted[name] = [("" if not np.isfinite(v) else f"{v:.9g}") for v in values.tolist()]
        elif values.dtype.kind == "b":
            formatted[name] = ["True" if v else "False" for v in values.tolist()]  # pandas reads bool
        else:
            formatted[name] = [str(v) for v in values.tolist()]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(zip(*(formatted[name] for name in COLUMNS)))


def require_pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise BadInput(f"writing .parquet needs pyarrow: pip install 'handcli[{PARQUET_EXTRA}]'") from None


def write_parquet(columns: dict[str, np.ndarray], path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name in COLUMNS:
        values = columns[name]
        if name in NULLABLE_BOOL_COLUMNS:
            arrays[name] = pa.array([None if v is None else bool(v) for v in values.tolist()], pa.bool_())
        elif values.dtype == object:
            arrays[name] = pa.array(values.tolist(), pa.string())
        elif values.dtype.kind == "f":
            arrays[name] = pa.array(values, pa.float64(), mask=~np.isfinite(values))  # missing -> null
        else:
            arrays[name] = pa.array(values)
    pq.write_table(pa.table(arrays), str(path))
