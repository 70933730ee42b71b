"""The three camera situations and where a clip's motion is put in front of its camera.

A clip keeps its sequence's own motion exactly: every frame is moved by one rigid transform
(P' = Q (P - c) + t), which is the same motion seen from a new virtual camera. Q turns the sequence's mean
hand orientation onto a situation-specific base orientation with a random perturbation; t puts the mean
hand centre c at the sampled distance, shifted sideways so every keypoint of every frame stays inside the
frame with a margin. A draw that cannot be placed (hand too large for the frame at that distance and field of
view) is rejected and redrawn.

Camera frame: OpenCV (x right, y down, z forward), metres; pixel centres at integers, principal point at
((W - 1) / 2, (H - 1) / 2) (handcli.detect.intrinsics).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from handcli.detect.intrinsics import camera_matrix, focal_from_fov
from handcli.handmodels.size import hand_length

RESOLUTIONS = ((640, 480), (1280, 720), (1920, 1080))
FOV_DEGREES = (45.0, 90.0)  # horizontal field of view across the longer side
DISTANCES = {"egocentric": (0.25, 0.6), "frontal": (0.4, 1.2), "topdown": (0.5, 0.9)}  # metres, hand centre depth
PERTURB_DEGREES = 25.0  # random rotation on top of the base orientation (angle uniform up to this)
# keypoints stay this share of the shorter side (at least MARGIN_MIN_PX) inside the frame: the mesh reaches
# beyond the keypoints, and a hand cut by the border is a different benchmark
MARGIN_FRACTION = 0.05
MARGIN_MIN_PX = 16.0
MIN_HAND_PX = 70.0  # smaller hands are redrawn: ~80 px is the small end the benchmark is meant to cover
MIN_DEPTH = 0.08  # metres: no keypoint nearer the camera than this
MAX_ATTEMPTS = 500


@dataclass
class Camera:
    """One clip's camera and placement. rotation (3, 3) and offset (3,) map the motion's points P (source
    frame) to the camera frame: rotation @ (P - source_centre) + offset."""

    situation: str
    width: int
    height: int
    fov_deg: float
    focal: float
    distance: float  # depth of the clip's mean hand centre, metres
    rotation: np.ndarray
    source_centre: np.ndarray
    offset: np.ndarray
    facing: str  # which side of the hand the base orientation shows the camera: "palm" or "back"
    perturb_deg: float
    hand_px: float  # median over frames of focal x hand length / hand-centre depth (apparent hand length)
    attempts: int

    @property
    def K(self) -> np.ndarray:
        return camera_matrix(self.width, self.height, focal=self.focal)

    def place(self, points: np.ndarray) -> np.ndarray:
        """points (..., 3) in the source frame -> camera frame."""
        return (points - self.source_centre) @ self.rotation.T + self.offset

    def summary(self) -> dict:
        """JSON-able parameters (what the GT file and the per-clip rows record)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("rotation", "source_centre", "offset")}
        out.update(rotation=self.rotation.tolist(), source_centre=self.source_centre.tolist(),
                   offset=self.offset.tolist())
        return out


def hand_axes(keypoints: np.ndarray) -> np.ndarray:
    """Orientation of right hands from keypoints (..., 21, 3) -> (..., 3, 3) whose columns are, in the
    keypoints' frame: across the palm (pinky MCP -> index MCP, thumb side), along the fingers (wrist ->
    middle MCP), and the palm normal (out of the palm). A proper rotation (determinant +1)."""
    fingers = keypoints[..., 9, :] - keypoints[..., 0, :]
    fingers = fingers / np.linalg.norm(fingers, axis=-1, keepdims=True)
    across = keypoints[..., 5, :] - keypoints[..., 17, :]
    across = across - (across * fingers).sum(-1, keepdims=True) * fingers
    across = across / np.linalg.norm(across, axis=-1, keepdims=True)
    # (across, fingers, across x fingers) is right-handed; for a right hand across x fingers leaves the palm
    return np.stack([across, fingers, np.cross(across, fingers)], -1)


def mean_rotation(rotations: np.ndarray) -> np.ndarray:
    """Chordal mean of rotations (N, 3, 3): the nearest rotation to their average."""
    U, _, Vt = np.linalg.svd(rotations.mean(0))
    return U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt


def base_orientation(situation: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Hand axes (columns: across, fingers, palm normal; camera frame) a situation starts from, and which
    side faces the camera."""
    if situation == "egocentric":
        # seen from the wearer's head: fingers point away and up the image, the back of the hand towards the
        # camera (palm normal down and away), turned about the fingers by up to 60 degrees palm-inwards (the
        # grasping posture; FPHA's own head-camera views average ~55 degrees of elevation, palm inwards)
        elevation = math.radians(rng.uniform(35, 70))
        fingers = np.array([0.0, -math.sin(elevation), math.cos(elevation)])
        normal = np.array([0.0, math.cos(elevation), math.sin(elevation)])
        axes = np.stack([np.cross(fingers, normal), fingers, normal], -1)
        return Rotation.from_rotvec(math.radians(rng.uniform(0, 60)) * fingers).as_matrix() @ axes, "back"
    if situation == "frontal":
        # third person: the hand raised facing the camera, fingers up (rolled up to 30 degrees either way),
        # palm or back towards the camera
        palm = rng.random() < 0.5
        across = np.array([1.0, 0.0, 0.0]) if palm else np.array([-1.0, 0.0, 0.0])
        fingers = np.array([0.0, -1.0, 0.0])
        axes = np.stack([across, fingers, np.cross(across, fingers)], -1)
        roll = Rotation.from_rotvec([0.0, 0.0, math.radians(rng.uniform(-30, 30))]).as_matrix()
        return roll @ axes, "palm" if palm else "back"
    if situation == "topdown":
        # over a table looking down: the hand flat, palm down (back up, towards the camera), fingers pointing
        # up the image within 45 degrees
        heading = math.radians(rng.uniform(-45, 45))
        fingers = np.array([math.sin(heading), -math.cos(heading), 0.0])
        normal = np.array([0.0, 0.0, 1.0])
        return np.stack([np.cross(fingers, normal), fingers, normal], -1), "back"
    raise ValueError(f"unknown situation {situation!r}")


def random_rotation(max_degrees: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A rotation about a uniformly random axis by an angle uniform in [0, max_degrees]: (3, 3), degrees."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(0, max_degrees)
    return Rotation.from_rotvec(math.radians(angle) * axis).as_matrix(), float(angle)


def margin_px(width: int, height: int) -> float:
    return max(MARGIN_MIN_PX, MARGIN_FRACTION * min(width, height))


def shift_range(coord: np.ndarray, depth: np.ndarray, focal: float, centre: float, size: int, margin: float
                ) -> tuple[float, float]:
    """Range of a sideways shift s (metres, one image axis) for which every point projects inside
    [margin, size - 1 - margin]: focal (coord + s) / depth + centre within bounds for all points (N,)."""
    low = ((margin - centre) * depth / focal - coord).max()
    high = ((size - 1 - margin - centre) * depth / focal - coord).min()
    return float(low), float(high)


def sample_camera(keypoints: np.ndarray, situation: str, rng: np.random.Generator,
                  resolutions: tuple[tuple[int, int], ...] = RESOLUTIONS) -> Camera:
    """Draw a camera for a hand motion keypoints (T, 21, 3) (any frame, metres) in `situation`.

    Redraws (resolution, field of view, distance, orientation) until the hand fits the frame with the margin
    and is at least MIN_HAND_PX long on screen; raises RuntimeError after MAX_ATTEMPTS."""
    source_centre = keypoints.reshape(-1, 3).mean(0)
    reference = mean_rotation(hand_axes(keypoints))
    length = float(hand_length(keypoints).mean())
    for attempt in range(1, MAX_ATTEMPTS + 1):
        width, height = resolutions[int(rng.integers(len(resolutions)))]
        fov = float(rng.uniform(*FOV_DEGREES))
        focal = focal_from_fov(fov, width, height)
        distance = float(rng.uniform(*DISTANCES[situation]))
        base, facing = base_orientation(situation, rng)
        perturb, angle = random_rotation(PERTURB_DEGREES, rng)
        rotation = perturb @ base @ reference.T  # mean hand orientation -> perturbed base orientation
        points = (keypoints - source_centre) @ rotation.T + np.array([0.0, 0.0, distance])
        if points[..., 2].min() < MIN_DEPTH:
            continue
        flat = points.reshape(-1, 3)
        margin = margin_px(width, height)
        K = camera_matrix(width, height, focal=focal)
        x_low, x_high = shift_range(flat[:, 0], flat[:, 2], focal, K[0, 2], width, margin)
        y_low, y_high = shift_range(flat[:, 1], flat[:, 2], focal, K[1, 2], height, margin)
        if x_low > x_high or y_low > y_high:
            continue
        # a mild preference for the middle of the feasible range (Beta(1.5, 1.5)): hands reach the edges
        # but do not pile up there
        shift = np.array([x_low + (x_high - x_low) * rng.beta(1.5, 1.5),
                          y_low + (y_high - y_low) * rng.beta(1.5, 1.5), 0.0])
        centre_depth = (points + shift).mean(-2)[:, 2]  # (T,)
        hand_px = float(np.median(focal * length / centre_depth))
        if hand_px < MIN_HAND_PX:
            continue
        return Camera(situation, width, height, fov, float(focal), distance, rotation, source_centre,
                      np.array([0.0, 0.0, distance]) + shift, facing, angle, hand_px, attempt)
    raise RuntimeError(f"no camera placement for a {situation} clip after {MAX_ATTEMPTS} draws")


def in_frame(pixels: np.ndarray, width: int, height: int, margin: float = 0.0) -> bool:
    """Every pixel (..., 2) inside [margin, size - 1 - margin] on both axes."""
    return bool((pixels[..., 0] >= margin).all() and (pixels[..., 0] <= width - 1 - margin).all()
                and (pixels[..., 1] >= margin).all() and (pixels[..., 1] <= height - 1 - margin).all())
