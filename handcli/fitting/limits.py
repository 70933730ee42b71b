"""Soft joint-angle limits: each joint's axis-angle read in its anatomical frame (bone, flexion axis, spread axis).

For the angles a hand reaches, the axis-angle components along these three axes are close to twist,
flexion and abduction angles. Ranges follow the usual clinical ones (e.g. DIP flexes 0 to ~90 degrees with one
degree of freedom; MCPs flex ~90 degrees and spread ~20), widened a little so real hands sit inside them.
"""

from __future__ import annotations

import math

import torch

from handcli.fitting.ik import FINGER_CHAINS_MANO21, PAD_DIRECTIONS

# degrees: (flexion min, max), (abduction min, max), (twist min, max) per level of a finger chain
LONG_FINGER_LIMITS = (((-35, 95), (-25, 25), (-15, 15)),   # MCP
                      ((-5, 115), (-8, 8), (-10, 10)),     # PIP
                      ((-25, 95), (-8, 8), (-10, 10)))     # DIP
THUMB_LIMITS = (((-45, 60), (-45, 45), (-40, 40)),         # CMC
                ((-25, 80), (-20, 20), (-25, 25)),         # MCP
                ((-35, 95), (-10, 10), (-15, 15)))         # IP
# The fitter's prior: the same flexion ranges, the distal joints as hinges (PIP, DIP, thumb IP: no spread, no
# twist) and little twist elsewhere. Beyond a limit the cost is quadratic (fit.LIMIT_WEIGHT), so a zero-width
# range is a pull towards the hinge, not a hard constraint. Why: per-frame estimates put their per-joint
# errors into these small off-axis angles; measured on FPHA under the benchmark's noise (subject 4) the refine
# stage's projection went from MPJPE 12.53 / PA-MPJPE 4.96 to 12.38 / 4.67 mm, while a fit to clean FPHA joints
# got 0.3 mm worse (docs/hand_models.md). The generator keeps sampling the anatomical ranges above.
FIT_LONG_FINGER_LIMITS = (((-35, 95), (-25, 25), (-2, 2)),   # MCP
                          ((-5, 115), (0, 0), (0, 0)),       # PIP
                          ((-25, 95), (0, 0), (0, 0)))       # DIP
FIT_THUMB_LIMITS = (((-45, 60), (-45, 45), (-20, 20)),       # CMC
                    ((-25, 80), (-10, 10), (-10, 10)),       # MCP
                    ((-35, 95), (0, 0), (0, 0)))             # IP


def anatomical_frames(rest_joints21: torch.Tensor) -> torch.Tensor:
    """Per MANO joint 1..15 the rows (flexion axis, abduction axis, bone axis) from the right-hand rest pose.

    rest_joints21: (21, 3) MANO21 order -> (15, 3, 3).
    """
    frames = rest_joints21.new_zeros(16, 3, 3)
    for finger, chain in enumerate(FINGER_CHAINS_MANO21):
        pad = rest_joints21.new_tensor(PAD_DIRECTIONS[finger])
        for level in range(3):
            bone = rest_joints21[chain[level + 1]] - rest_joints21[chain[level]]
            bone = bone / bone.norm()
            flexion = torch.linalg.cross(bone, pad)
            flexion = flexion / flexion.norm()
            frames[chain[level]] = torch.stack([flexion, torch.linalg.cross(bone, flexion), bone])
    return frames[1:]


def limit_bounds(dtype=torch.float32, device=None, table: str = "fit") -> tuple[torch.Tensor, torch.Tensor]:
    """(lower, upper) radians (15, 3) in the (flexion, abduction, twist) order of `anatomical_frames`.
    table: "fit" (the fitter's prior, FIT_*) or "anatomical" (the ranges a hand can reach)."""
    thumb, fingers = {"fit": (FIT_THUMB_LIMITS, FIT_LONG_FINGER_LIMITS),
                      "anatomical": (THUMB_LIMITS, LONG_FINGER_LIMITS)}[table]
    bounds = torch.zeros(16, 3, 2, dtype=dtype, device=device)
    for finger, chain in enumerate(FINGER_CHAINS_MANO21):
        levels = thumb if finger == 0 else fingers
        for level in range(3):
            bounds[chain[level]] = torch.tensor(levels[level], dtype=dtype) * (math.pi / 180)
    return bounds[1:, :, 0], bounds[1:, :, 1]


def limit_violation(hand_pose: torch.Tensor, frames: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Squared excess beyond the limits, radians^2, summed over joints: hand_pose (..., 15, 3) -> (...)."""
    angles = (frames @ hand_pose[..., None])[..., 0]
    return ((lower - angles).clamp_min(0) ** 2 + (angles - upper).clamp_min(0) ** 2).sum((-1, -2))
