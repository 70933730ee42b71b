"""Array plumbing shared by importers: numeric checks, shape matching, rotation formats, mirroring, units."""

from __future__ import annotations

from typing import Any

import numpy as np

from handcli.errors import BadInput

MIRROR = np.array([-1.0, 1.0, 1.0])  # x -> -x: right hand <-> left hand
AXIS_ANGLE_MIRROR = np.array([1.0, -1.0, -1.0])  # the same reflection acting on an axis-angle vector


def numeric(value: Any, name: str) -> np.ndarray:
    """float64 array from numbers/arrays/lists; BadInput naming `name` otherwise."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise BadInput(f"{name}: not a numeric array") from None
    if array.dtype.kind == "b":
        return array.astype(np.float64)
    if array.dtype.kind not in "fiu":
        raise BadInput(f"{name}: not a numeric array (dtype {array.dtype})")
    return array.astype(np.float64)


def _core(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(size for size in shape if size != 1)


def fit_shape(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """`value` reshaped to `shape` when they agree up to singleton axes ((1,15,3) fits (15,3)); else BadInput."""
    array = numeric(value, name)
    if array.shape == shape:
        return array
    if _core(array.shape) == _core(shape) and array.size == int(np.prod(shape, dtype=np.int64)):
        return array.reshape(shape)
    raise BadInput(f"{name}: expected shape {shape}, got {array.shape}")


def hand_pose_layout(shape: tuple[int, ...]) -> tuple[tuple[int, ...], str]:
    """(batch shape, 'matrix' | 'axis-angle' | 'flat') of a hand_pose array: (...,15,3,3), (...,15,3), (...,45)."""
    if len(shape) >= 3 and shape[-3:] == (15, 3, 3):
        return shape[:-3], "matrix"
    if len(shape) >= 2 and shape[-2:] == (15, 3):
        return shape[:-2], "axis-angle"
    if len(shape) >= 1 and shape[-1] == 45:
        return shape[:-1], "flat"
    raise BadInput(f"hand_pose: expected (...,15,3) axis-angle, (...,45) or (...,15,3,3) rotation matrices, "
                   f"got {tuple(shape)}")


def orient_layout(shape: tuple[int, ...], batch: tuple[int, ...], name: str = "global_orient") -> str:
    """'matrix' or 'axis-angle' for a global orientation whose leading axes must be `batch`."""
    for suffix, kind in (((1, 3, 3), "matrix"), ((3, 3), "matrix"), ((1, 3), "axis-angle"), ((3,), "axis-angle")):
        if tuple(shape) == tuple(batch) + suffix:
            return kind
    raise BadInput(f"{name}: shape {tuple(shape)} does not match hand_pose's leading axes {tuple(batch)} "
                   "(expected (...,3) axis-angle or (...,3,3) / (...,1,3,3) rotation matrices)")


def matrices_to_axis_angle(matrices: np.ndarray, name: str) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle; BadInput if they are not rotations."""
    import torch

    from handcli.handmodels.kinematics import matrix_to_axis_angle

    flat = matrices.reshape(-1, 3, 3)
    finite = np.isfinite(flat).all(axis=(1, 2))
    if finite.any():
        checked = flat[finite]
        gram_error = np.abs(checked @ checked.transpose(0, 2, 1) - np.eye(3)).max()
        det = np.linalg.det(checked)
        if gram_error > 0.05 or det.min() < 0.9:
            raise BadInput(f"{name}: not rotation matrices (orthonormality error {gram_error:.3g}, "
                           f"smallest determinant {det.min():.3g})")
    safe = np.where(finite[:, None, None], flat, np.eye(3))
    axis_angle = matrix_to_axis_angle(torch.as_tensor(safe, dtype=torch.float64)).numpy()
    axis_angle[~finite] = np.nan
    return axis_angle.reshape(*matrices.shape[:-2], 3)


def axis_angle_to_matrices(axis_angle: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3)."""
    import torch

    from handcli.handmodels.kinematics import axis_angle_to_matrix

    return axis_angle_to_matrix(torch.as_tensor(axis_angle, dtype=torch.float64)).numpy()


def pose_to_axis_angle(global_orient: Any, hand_pose: Any) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], str]:
    """Either rotation format -> (global_orient (*batch, 3), hand_pose (*batch, 15, 3), batch, format name)."""
    hand_pose = numeric(hand_pose, "hand_pose")
    global_orient = numeric(global_orient, "global_orient")
    batch, pose_kind = hand_pose_layout(hand_pose.shape)
    orient_kind = orient_layout(global_orient.shape, batch)
    if pose_kind == "matrix":
        pose = matrices_to_axis_angle(hand_pose, "hand_pose")
    else:
        pose = hand_pose.reshape(*batch, 15, 3)
    if orient_kind == "matrix":
        orient = matrices_to_axis_angle(global_orient.reshape(*batch, 3, 3), "global_orient")
    else:
        orient = global_orient.reshape(*batch, 3)
    fmt = "rotation matrices" if "matrix" in (pose_kind, orient_kind) else "axis-angle"
    return orient, pose, tuple(batch), fmt


def mirror_axis_angle(axis_angle: np.ndarray) -> np.ndarray:
    """Reflect rotations across x=0 (right <-> left hand): (x, y, z) -> (x, -y, -z)."""
    return axis_angle * AXIS_ANGLE_MIRROR


def mirror_points(points: np.ndarray) -> np.ndarray:
    return points * MIRROR


def flags(value: Any, size: int, name: str) -> np.ndarray:
    """Booleans from bools / 0-1 floats / ints, broadcast from one value to `size`."""
    array = numeric(value, name).reshape(-1)
    if array.size == 1:
        array = np.repeat(array, size)
    if array.size != size:
        raise BadInput(f"{name}: expected {size} values, got {array.size}")
    if not np.isfinite(array).all():
        raise BadInput(f"{name}: contains NaN")
    return array > 0.5


def hand_scale_to_metres(keypoints3d: np.ndarray, name: str = "keypoints") -> float:
    """1, 0.01 or 0.001: the factor that makes the hand's palm (wrist to middle MCP, ~9 cm) metric.

    keypoints3d (..., 21, 3) in the canonical order. The three candidates are a factor 10 apart, so the
    measured palm length decides; an implausible size in every unit is a BadInput.
    """
    palm = np.linalg.norm(keypoints3d[..., 9, :] - keypoints3d[..., 0, :], axis=-1)
    palm = palm[np.isfinite(palm) & (palm > 0)]
    if palm.size == 0:
        raise BadInput(f"{name}: no finite frame to measure the hand size")
    length = float(np.median(palm))
    for scale in (1.0, 0.01, 0.001):
        if 0.03 <= length * scale <= 0.3:
            return scale
    raise BadInput(f"{name}: wrist-to-middle-knuckle distance {length:.3g} is not a hand size in metres, "
                   "centimetres or millimetres (wrong joint order or not hand keypoints?)")
