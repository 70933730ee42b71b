"""Synthetic clean hand motion: motion programs -> joint angles and wrist trajectories -> forward kinematics.

`sample_motion` runs `gestures.MotionProgram` per sample (interaction cycles with DIP motion-state labels, or
free gestures), evaluates its keyframes at the frame times, adds a little smooth physiological variability,
and poses the hand model's rest skeleton (per-sample shape) by forward kinematics over MANO21_PARENTS. The global
rotation acts about the rest wrist and `transl` is added last, exactly as `HandModel` does it; fingertips ride
rigidly on their distal joints (MANO21_PARENTS).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from handcli.datagen import poses
from handcli.datagen.gestures import MotionProgram
from handcli.handmodels.kinematics import MANO21_PARENTS, MANO21_TO_CANONICAL, kinematic_levels

# each sample's window starts this many seconds (uniform) into its program, so it can begin mid-event
WINDOW_START = (0.0, 1.5)
# smooth variability on top of the keyframed motion, per-sample std ranges and timescales (seconds):
# "sway" = slow wandering of the arm, "wobble" = small fast irregularity of wrist and fingers
SWAY_M = (0.003, 0.015)
SWAY_DEG = (1.0, 4.0)
SWAY_TIMESCALE_S = (0.3, 0.8)
WRIST_WOBBLE_M = (0.0005, 0.003)
WRIST_WOBBLE_DEG = (0.3, 1.5)
FINGER_WOBBLE_DEG = (0.3, 2.0)
WOBBLE_TIMESCALE_S = (0.1, 0.25)


@dataclass
class SyntheticMotion:
    """A batch of clean right-hand motion windows.

    keypoints3d (B, T, 21, 3) float32, camera frame (OpenCV axes), metres, canonical order;
    global_orient (B, T, 3) axis-angle; hand_pose (B, T, 15, 3) axis-angle, MANO joint order, flat hand = 0;
    transl (B, T, 3); betas (B, 10); motion_state (B, T) int64: 0 reaching, 1 stable grasp, 2 manipulation,
    3 releasing, -1 no label (free gestures).
    """

    keypoints3d: np.ndarray
    global_orient: np.ndarray
    hand_pose: np.ndarray
    transl: np.ndarray
    betas: np.ndarray
    motion_state: np.ndarray


@lru_cache(maxsize=1)
def default_hand_model():
    """The shipped open hand (`load_hand_model("open")`), loaded once."""
    from handcli.handmodels import load_hand_model

    return load_hand_model("open")


JOINT_PLACEMENT_RANGE = (-0.1, 1.1)


def sample_betas(batch_size: int, hand_model, rng: np.random.Generator,
                 joint_placement: tuple[float, float] = JOINT_PLACEMENT_RANGE) -> np.ndarray:
    """(B, nb) shapes: N(0, 1) per direction clipped to +-2.5; the open hand's `joint_placement` (0 = skin
    landmarks as MediaPipe/MANO place them, 1 = mocap joint centres) uniform over `joint_placement`."""
    betas = np.clip(rng.normal(0, 1, (batch_size, hand_model.num_betas)), -2.5, 2.5)
    names = list(getattr(hand_model, "shape_names", []))
    if "joint_placement" in names:
        betas[:, names.index("joint_placement")] = rng.uniform(*joint_placement, batch_size)
    return betas


def smooth_noise(shape: tuple[int, ...], std: np.ndarray, timescale_frames: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise along axis 1, stationary std scaled per sample.

    shape (B, T, ...); std (B,); timescale_frames (B,) Gaussian sigma -> (B, T, ...)."""
    out = np.empty(shape)
    white = rng.normal(0, 1, shape)
    rounded = np.round(timescale_frames * 2) / 2  # half-frame steps: few distinct filters, batched
    for sigma in np.unique(rounded):
        rows = np.flatnonzero(rounded == sigma)
        impulse = np.zeros(2 * int(4 * sigma) + 1)
        impulse[len(impulse) // 2] = 1.0
        gain = np.sqrt((gaussian_filter1d(impulse, sigma) ** 2).sum())  # std of smoothed unit white noise
        out[rows] = gaussian_filter1d(white[rows], sigma, axis=1, mode="reflect") / gain
    return out * std.reshape(-1, *([1] * (len(shape) - 1)))


def pose_keypoints(rest_joints21: np.ndarray, rotations: np.ndarray, transl: np.ndarray) -> np.ndarray:
    """Forward kinematics of the rest skeleton (numpy; `forward_kinematics` semantics), tips riding rigidly on
    their distal joints; one batched step per tree level.

    rest_joints21 (B, 1 or T, 21, 3) MANO21 order; rotations (B, T, 16, 3, 3) local (joint 0 = global, about
    the rest wrist); transl (B, T, 3) -> keypoints (B, T, 21, 3) canonical order.
    """
    batch, frames = rotations.shape[:2]
    local = np.concatenate([rotations, np.broadcast_to(np.eye(3), (batch, frames, 5, 3, 3))], 2)
    world_rot = np.empty((batch, frames, 21, 3, 3))
    world_pos = np.empty((batch, frames, 21, 3))
    world_rot[:, :, 0] = local[:, :, 0]
    world_pos[:, :, 0] = rest_joints21[:, :, 0]
    for level in kinematic_levels(MANO21_PARENTS)[1:]:
        ids = list(level)
        parents = [MANO21_PARENTS[j] for j in ids]
        offsets = rest_joints21[:, :, ids] - rest_joints21[:, :, parents]
        parent_rot = world_rot[:, :, parents]
        world_rot[:, :, ids] = parent_rot @ local[:, :, ids]
        world_pos[:, :, ids] = world_pos[:, :, parents] + (parent_rot @ offsets[..., None])[..., 0]
    return world_pos[:, :, list(MANO21_TO_CANONICAL)] + transl[:, :, None]


def sample_motion(batch_size: int, num_frames: int, rng: np.random.Generator, hand_model=None,
                  fps: float = 30.0, joint_placement: tuple[float, float] = JOINT_PLACEMENT_RANGE) -> SyntheticMotion:
    """Sample B windows of T frames of clean right-hand motion (see module docstring and docs/data.md).

    hand_model: anything with `rest_joints21(betas (B, nb)) -> (B, 21, 3)` (MANO21 order, MANO's rest frame)
    and `num_betas`; None = the open hand. joint_placement: the range of the open hand's keypoint convention
    (sample_betas); (0, 0) gives skin-convention keypoints only.
    """
    hand_model = default_hand_model() if hand_model is None else hand_model
    frames = poses.model_frames(hand_model)
    B, T = batch_size, num_frames

    start = rng.uniform(*WINDOW_START, B)
    times = start[:, None] + np.arange(T)[None] / fps  # (B, T) seconds
    program = MotionProgram(B, rng)
    program.run_until(times[:, -1])
    angles = program.pose_track.evaluate(times)  # (B, T, 15, 3) degrees
    position = program.position_track.evaluate(times)  # (B, T, 3)
    orientation = program.orientation_track.evaluate_rotation(times)  # (B, T, 3, 3)
    state = program.state_track.evaluate_step(times).astype(np.int64)  # (B, T)

    def per_sample(bounds):
        return rng.uniform(*bounds, B)

    sway = per_sample(SWAY_TIMESCALE_S) * fps
    timescale = per_sample(WOBBLE_TIMESCALE_S) * fps
    position = position + smooth_noise((B, T, 3), per_sample(SWAY_M), sway, rng) \
        + smooth_noise((B, T, 3), per_sample(WRIST_WOBBLE_M), timescale, rng)
    wobble = smooth_noise((B, T, 3), np.deg2rad(per_sample(SWAY_DEG)), sway, rng) \
        + smooth_noise((B, T, 3), np.deg2rad(per_sample(WRIST_WOBBLE_DEG)), timescale, rng)
    orientation = Rotation.from_rotvec(wobble.reshape(-1, 3)).as_matrix().reshape(B, T, 3, 3) @ orientation
    angles = angles + smooth_noise((B, T, 15, 3), per_sample(FINGER_WOBBLE_DEG), timescale, rng) * [1.0, 0.5, 0.3]
    angles = poses.clip_to_limits(angles)

    betas = sample_betas(B, hand_model, rng, joint_placement)
    with torch.no_grad():
        rest = hand_model.rest_joints21(torch.as_tensor(betas, dtype=torch.float32)).double()  # (B, 21, 3)
    hand_pose = poses.to_hand_pose(angles, frames)
    global_orient = Rotation.from_matrix(orientation.reshape(-1, 3, 3)).as_rotvec().reshape(B, T, 3)
    transl = position - rest[:, None, 0].numpy()  # the global rotation acts about the rest wrist
    rotations = Rotation.from_rotvec(np.concatenate([global_orient[:, :, None], hand_pose], 2).reshape(-1, 3))
    keypoints = pose_keypoints(rest[:, None].numpy(), rotations.as_matrix().reshape(B, T, 16, 3, 3), transl)
    return SyntheticMotion(
        keypoints3d=keypoints.astype(np.float32),
        global_orient=global_orient.astype(np.float32),
        hand_pose=hand_pose.astype(np.float32),
        transl=transl.astype(np.float32),
        betas=betas.astype(np.float32),
        motion_state=state,
    )
