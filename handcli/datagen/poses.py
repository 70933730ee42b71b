"""Hand articulations for the generator: joint angles in each joint's anatomical frame, grasp synergies, gestures.

An articulation is (..., 15, 3) degrees per MANO joint 1..15 (index, middle, pinky, ring, thumb; base to tip),
columns (flexion, abduction, twist) in the frames of `handcli.fitting.limits.anatomical_frames` — the fitter's
own convention, so its joint limits and ours agree. Flexion bends towards the palm (the thumb towards the palm
and the index finger); positive abduction turns a long finger towards the thumb. `to_hand_pose` turns an
articulation into MANO axis-angle (`hand_pose`) as the fitter reads it: axis-angle = frame^T @ angles.

Long fingers are set by (MCP flexion, PIP flexion, MCP spread); the DIP follows the PIP at about 2/3 (the
tendon coupling of a free finger). The thumb is set by (CMC flexion, CMC abduction, CMC twist, MCP flexion,
IP flexion). Anchor poses for the thumb in pinches and fists were solved on the open hand so that the thumb
tip meets its target (index tip, index/middle midpoint, side of the index, middle phalanges) within ~2 mm.
"""

from __future__ import annotations

import numpy as np
import torch

from handcli.fitting.limits import LONG_FINGER_LIMITS, THUMB_LIMITS, anatomical_frames

# rows of each digit in a (15, 3) articulation (MANO joints 1..15 -> rows 0..14), thumb..pinky, base to tip
DIGIT_ROWS = {"thumb": (12, 13, 14), "index": (0, 1, 2), "middle": (3, 4, 5), "ring": (9, 10, 11), "pinky": (6, 7, 8)}
LONG_FINGERS = ("index", "middle", "ring", "pinky")
DIP_PIP_RATIO = 2.0 / 3.0
# the generator stays this far (degrees) inside the fitter's limits
LIMIT_MARGIN = 5.0


def joint_limits_degrees() -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) (15, 3) degrees: the fitter's limits narrowed by LIMIT_MARGIN."""
    lower, upper = np.zeros((15, 3)), np.zeros((15, 3))
    for name, rows in DIGIT_ROWS.items():
        table = THUMB_LIMITS if name == "thumb" else LONG_FINGER_LIMITS
        for level, row in enumerate(rows):
            lower[row] = [lim[0] + LIMIT_MARGIN for lim in table[level]]
            upper[row] = [lim[1] - LIMIT_MARGIN for lim in table[level]]
    return lower, upper


def articulation(fingers: dict[str, tuple[float, float, float]],
                 thumb: tuple[float, float, float, float, float]) -> np.ndarray:
    """One (15, 3) articulation: fingers name -> (MCP flexion, PIP flexion, spread), thumb (CMC flex, CMC abd,
    CMC twist, MCP flex, IP flex); degrees. DIP = 2/3 PIP."""
    angles = np.zeros((15, 3))
    for name, (mcp, pip, spread) in fingers.items():
        rows = DIGIT_ROWS[name]
        angles[rows[0]] = [mcp, spread, 0.0]
        angles[rows[1], 0] = pip
        angles[rows[2], 0] = DIP_PIP_RATIO * pip
    rows = DIGIT_ROWS["thumb"]
    angles[rows[0]] = thumb[:3]
    angles[rows[1], 0] = thumb[3]
    angles[rows[2], 0] = thumb[4]
    return angles


def _fingers(index, middle, ring, pinky, spread=(0.0, 0.0, 0.0, 0.0)):
    return {name: (*flex, s) for name, flex, s in zip(LONG_FINGERS, (index, middle, ring, pinky), spread)}


# anchor poses (degrees); spread > 0 turns a finger towards the thumb
OPEN = articulation(_fingers((0, 0), (0, 0), (0, 0), (0, 0), spread=(8, 0, -6, -12)), (-10, -10, 0, 0, 0))
RELAXED = articulation(_fingers((15, 20), (20, 25), (25, 30), (30, 35), spread=(3, 0, -2, -5)), (15, 5, 5, 10, 15))
FIST = articulation(_fingers((80, 100), (85, 100), (85, 100), (85, 100)), (7, -3, -23, 58, 70))
THUMB_EXTENDED = (-10.0, -10.0, 0.0, 0.0, 0.0)
THUMB_FOLDED = FIST[12, 0], FIST[12, 1], FIST[12, 2], FIST[13, 0], FIST[14, 0]

# grasp synergies: the grasp's articulation at full closure; a synergy direction is GRASP - RELAXED
GRASPS = {
    "power": articulation(_fingers((55, 70), (60, 75), (60, 75), (62, 75)), (35, 15, 10, 20, 20)),
    "precision": articulation(_fingers((50, 55), (35, 45), (30, 40), (30, 40)), (14, 8, 10, 37, 42)),
    "tripod": articulation(_fingers((45, 50), (45, 50), (55, 54), (65, 58)), (39, 5, 5, 20, 16)),
    "lateral": articulation(_fingers((70, 95), (75, 100), (80, 100), (80, 100)), (-1, -9, -8, 35, 50)),
}
GRASP_NAMES = tuple(GRASPS)
SYNERGIES = np.stack([GRASPS[name] - RELAXED for name in GRASP_NAMES])  # (4, 15, 3)
# the pinch the pinch gesture closes into (thumb on the index tip, other fingers relaxed)
PINCH_CLOSED = articulation(_fingers((50, 55), (20, 25), (25, 30), (30, 35)), (14, 8, 10, 37, 42))
PINCH_OPEN = articulation(_fingers((10, 10), (15, 20), (20, 25), (25, 30)), (0, -5, 0, 5, 5))


def couple_dips(angles: np.ndarray, rng: np.random.Generator, spread_deg: float = 4.0) -> np.ndarray:
    """Set every long-finger DIP flexion to 2/3 of its PIP plus a per-pose offset. (..., 15, 3) in place."""
    for name in LONG_FINGERS:
        _, pip, dip = DIGIT_ROWS[name]
        angles[..., dip, 0] = DIP_PIP_RATIO * angles[..., pip, 0] + rng.normal(0, spread_deg, angles.shape[:-2])
    return angles


def clip_to_limits(angles: np.ndarray) -> np.ndarray:
    """Clip (..., 15, 3) degrees into the generator's limits."""
    lower, upper = joint_limits_degrees()
    return np.clip(angles, lower, upper)


def finish(angles: np.ndarray, rng: np.random.Generator, jitter_deg: float = 3.0) -> np.ndarray:
    """Per-pose individuality: small noise on every angle (less on abduction/twist), DIP coupling, limits.
    angles (N, 15, 3) degrees -> (N, 15, 3)."""
    noise = rng.normal(0, 1, angles.shape) * np.array([jitter_deg, jitter_deg / 2, jitter_deg / 3])
    return clip_to_limits(couple_dips(angles + noise, rng))


def grasp_poses(kind: np.ndarray, closure: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grasps as RELAXED + closure * own synergy + a little of the others (PCA-like blend).

    kind (N,) int index into GRASP_NAMES; closure (N,) ~0.7-1.1 (object size) -> (N, 15, 3) degrees.
    """
    weights = rng.normal(0, 0.12, (len(kind), len(GRASP_NAMES)))
    weights[np.arange(len(kind)), kind] = closure
    return finish(RELAXED + np.einsum("nk,kjc->njc", weights, SYNERGIES), rng)


def preshape_poses(kind: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hand opening on the way to a grasp: between open and relaxed, thumb already turned. (N, 15, 3)."""
    mix = rng.uniform(0, 1, (len(kind), 1, 1))
    base = mix * OPEN + (1 - mix) * RELAXED
    return finish(base + rng.uniform(0.2, 0.45, (len(kind), 1, 1)) * SYNERGIES[kind], rng)


def free_poses(num: int, rng: np.random.Generator) -> np.ndarray:
    """Hands between grasps or gestures: random blend of open, relaxed and a little fist. (N, 15, 3)."""
    weights = rng.dirichlet((1.5, 3.0, 0.6), num)
    base = np.einsum("nk,kjc->njc", weights, np.stack([OPEN, RELAXED, FIST]))
    return finish(base, rng, jitter_deg=5.0)


def counting_poses(extended: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counting / pointing: extended (N, 5) bool per digit thumb..pinky; the rest curl into the palm. (N, 15, 3)."""
    num = len(extended)
    angles = np.repeat(FIST[None], num, 0).copy()
    straight = np.repeat(OPEN[None], num, 0)
    for digit, name in enumerate(DIGIT_ROWS):
        rows = list(DIGIT_ROWS[name])
        pick = np.flatnonzero(extended[:, digit])
        lift = rng.uniform(0, 12, (len(pick), 1, 1)) * np.array([1.0, 0.0, 0.0])  # extended, not rigidly straight
        angles[np.ix_(pick, rows)] = straight[np.ix_(pick, rows)] + lift
    return finish(angles, rng)


def to_hand_pose(angles_deg: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """MANO axis-angle from an articulation: (..., 15, 3) degrees, frames (15, 3, 3) -> (..., 15, 3) radians."""
    return np.einsum("jab,...ja->...jb", frames, np.deg2rad(angles_deg))


def to_articulation(hand_pose: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Inverse of `to_hand_pose`: (..., 15, 3) axis-angle -> (..., 15, 3) degrees in the anatomical frames."""
    return np.rad2deg(np.einsum("jab,...jb->...ja", frames, hand_pose))


def model_frames(hand_model) -> np.ndarray:
    """Anatomical frames (15, 3, 3) of a hand model's mean-shape rest pose, as the fitter uses them."""
    rest = hand_model.rest_joints21(torch.zeros(1, hand_model.num_betas))[0]
    return anatomical_frames(rest.double()).numpy()
