"""BVH (Biovision hierarchy): one skeleton per file, one file per track (docs/export.md).

* Hierarchy: ROOT `wrist`, then the fingers thumb, index, middle, ring, pinky, each `<finger>1` → `2` → `3`
  → End Site at the fingertip, so all 21 keypoints are in the file. OFFSETs are the track's rest skeleton from
  its fitted shape (betas; left hands mirrored as the hand model does), in metres, in the output frame.
* Channels: the root has `Xposition Yposition Zposition Zrotation Yrotation Xrotation`, every joint
  `Zrotation Yrotation Xrotation`, in degrees. As usual for BVH, the local rotation is the product of the
  channel rotations in the listed order, R = Rz · Ry · Rx, applied to column vectors (x' = R x), and a joint's
  world position is parent position + parent world rotation · OFFSET. The root's OFFSET is zero: its position
  channels hold the wrist position itself.
* Output frame: with frame rotation C (camera → output), offsets are C · rest offsets and each local rotation
  is C · R · Cᵀ, so forward kinematics gives C · (the hand model's keypoints).
* `Frame Time` is 1 / fps; every artifact frame is written (BVH cannot mark missing frames: invalid frames
  carry the artifact's pose, held from the nearest usable frame where it is not finite).
"""

from __future__ import annotations

import numpy as np

from handcli.export.common import MANO21_NAMES, TrackMotion, TrackRig

# finger chains in MANO21 node ids (base, middle, distal, tip), thumb first as in the canonical order
FINGER_CHAINS = ((13, 14, 15, 16), (1, 2, 3, 17), (4, 5, 6, 18), (10, 11, 12, 19), (7, 8, 9, 20))
ROTATION_CHANNELS = "Zrotation Yrotation Xrotation"
EULER_ORDER = "ZYX"  # scipy intrinsic: R = Rz · Ry · Rx


def bvh_text(rig: TrackRig, motion: TrackMotion, fps: float, frame_rotation: np.ndarray) -> str:
    """The whole BVH file for one track."""
    from scipy.spatial.transform import Rotation

    C = frame_rotation
    offsets = rig.offsets @ C.T  # (21, 3): rest offsets in the output frame
    lines = ["HIERARCHY", "ROOT wrist", "{", "\tOFFSET 0.000000 0.000000 0.000000",
             f"\tCHANNELS 6 Xposition Yposition Zposition {ROTATION_CHANNELS}"]
    order = [0]  # MANO joint ids in the order their channels appear in a frame line
    for chain in FINGER_CHAINS:
        depth = 1
        for node in chain[:3]:
            tab = "\t" * depth
            lines += [f"{tab}JOINT {MANO21_NAMES[node]}", f"{tab}{{", f"{tab}\tOFFSET {_xyz(offsets[node])}",
                      f"{tab}\tCHANNELS 3 {ROTATION_CHANNELS}"]
            order.append(node)
            depth += 1
        tab = "\t" * depth
        lines += [f"{tab}End Site", f"{tab}{{", f"{tab}\tOFFSET {_xyz(offsets[chain[3]])}", f"{tab}}}"]
        for level in range(depth - 1, 0, -1):
            lines.append("\t" * level + "}")
    lines.append("}")

    # motion: conjugate every local rotation into the output frame, then Euler angles per joint
    local = motion.local_rotations()[:, order]  # (T, 16, 3, 3)
    local = C @ local @ C.T
    euler = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_euler(EULER_ORDER, degrees=True).reshape(len(local), 16, 3)
    # same rotations, no 360° jumps between frames (tools that interpolate channels would spin the finger)
    euler = np.unwrap(euler, axis=0, period=360.0)
    root = motion.wrist_positions(rig) @ C.T  # (T, 3)
    values = np.concatenate([root, euler.reshape(len(euler), -1)], 1)
    lines += ["MOTION", f"Frames: {len(values)}", f"Frame Time: {1.0 / fps:.8f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in values]
    return "\n".join(lines) + "\n"


def _xyz(vector: np.ndarray) -> str:
    return " ".join(f"{v:.6f}" for v in vector)
