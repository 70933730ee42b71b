"""Synthetic training data: the motion generator (handcli.datagen.motion) and the corruption model."""

from __future__ import annotations

import dataclasses
import glob
import warnings

import numpy as np
import pytest
import torch

from conftest import SHARED, needs_shared
from handcli.datagen import CorruptionConfig, corrupt_keypoints, measure, poses, sample_motion
from handcli.datagen.corruption import default_intrinsics, depth_mirror, project
from handcli.datagen.gestures import NO_STATE
from handcli.fitting.limits import limit_bounds, limit_violation
from handcli.handmodels.kinematics import (CANONICAL_FINGERS, MANO21_PARENTS, MANO21_TO_CANONICAL, axis_angle_to_matrix,
                                           forward_kinematics)


class StandInHand:
    """An anthropometric rest skeleton in MANO's frame (fingers -x, palm -y, thumb +z), scaled by betas[:, 0]."""

    num_betas = 10
    shape_names: list[str] = []

    def rest_joints21(self, betas: torch.Tensor) -> torch.Tensor:
        joints = torch.zeros(21, 3)
        fingers = {(1, 2, 3, 17): ((-0.095, 0.0, 0.025), (0.040, 0.025, 0.022)),
                   (4, 5, 6, 18): ((-0.097, 0.0, 0.002), (0.045, 0.028, 0.024)),
                   (10, 11, 12, 19): ((-0.092, 0.0, -0.018), (0.042, 0.027, 0.023)),
                   (7, 8, 9, 20): ((-0.084, 0.0, -0.036), (0.033, 0.020, 0.020))}
        for chain, (base, lengths) in fingers.items():
            joints[chain[0]] = torch.tensor(base)
            for k, length in enumerate(lengths):
                joints[chain[k + 1]] = joints[chain[k]] + torch.tensor([-length, 0.0, 0.0])
        thumb = torch.tensor([-0.6963, -0.1736, 0.6963])
        joints[13] = torch.tensor([-0.03, -0.005, 0.025])
        for k, (joint, length) in enumerate(zip((14, 15, 16), (0.045, 0.032, 0.028))):
            joints[joint] = joints[(13, 14, 15)[k]] + thumb * length
        return joints[None] * (1 + 0.05 * betas[:, :1, None])


@pytest.fixture(scope="module")
def motion():
    return sample_motion(48, 64, np.random.default_rng(0))


def test_shapes_dtypes_and_camera_placement(motion):
    B, T = 48, 64
    assert motion.keypoints3d.shape == (B, T, 21, 3) and motion.keypoints3d.dtype == np.float32
    assert motion.global_orient.shape == (B, T, 3) and motion.hand_pose.shape == (B, T, 15, 3)
    assert motion.transl.shape == (B, T, 3) and motion.betas.shape == (B, 10)
    assert motion.motion_state.shape == (B, T) and motion.motion_state.dtype == np.int64
    assert np.isfinite(motion.keypoints3d).all()
    wrist_depth = motion.keypoints3d[:, :, 0, 2]
    assert wrist_depth.min() > 0.2 and wrist_depth.max() < 0.85  # 0.25-0.8 m plus the slow sway
    assert (motion.keypoints3d[..., 2] > 0.05).all()


def test_keypoints_are_the_hand_models_keypoints(motion):
    """FK of (global_orient, hand_pose, transl, betas) through the open hand reproduces keypoints3d."""
    from handcli.datagen.motion import default_hand_model

    model = default_hand_model()
    b = slice(0, 4)
    with torch.no_grad():
        again = model.keypoints(torch.as_tensor(motion.global_orient[b].reshape(-1, 3)),
                                torch.as_tensor(motion.hand_pose[b].reshape(-1, 15, 3)),
                                torch.as_tensor(np.repeat(motion.betas[b], 64, 0)),
                                torch.as_tensor(motion.transl[b].reshape(-1, 3)))
    np.testing.assert_allclose(again.numpy().reshape(4, 64, 21, 3), motion.keypoints3d[b], atol=2e-5)


def test_custom_hand_model_and_torch_forward_kinematics():
    """Any object with rest_joints21/num_betas works; keypoints match kinematics.forward_kinematics."""
    hand = StandInHand()
    out = sample_motion(3, 20, np.random.default_rng(1), hand_model=hand)
    rest = hand.rest_joints21(torch.as_tensor(out.betas)).double()
    rot = axis_angle_to_matrix(torch.cat([torch.as_tensor(out.global_orient, dtype=torch.float64)[..., None, :],
                                          torch.as_tensor(out.hand_pose, dtype=torch.float64)], 2))  # (B,T,16,3,3)
    rot = torch.cat([rot, torch.eye(3, dtype=torch.float64).expand(3, 20, 5, 3, 3)], 2).reshape(60, 21, 3, 3)
    joints, _ = forward_kinematics(rot, rest.repeat_interleave(20, 0), MANO21_PARENTS)
    keypoints = joints[:, list(MANO21_TO_CANONICAL)] + torch.as_tensor(out.transl, dtype=torch.float64).reshape(60, 1, 3)
    np.testing.assert_allclose(keypoints.reshape(3, 20, 21, 3).numpy(), out.keypoints3d, atol=2e-5)


def test_deterministic_under_a_seed():
    a = sample_motion(4, 32, np.random.default_rng(7))
    b = sample_motion(4, 32, np.random.default_rng(7))
    c = sample_motion(4, 32, np.random.default_rng(8))
    for field in dataclasses.fields(a):
        np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name))
    assert not np.allclose(a.keypoints3d, c.keypoints3d)
    x = corrupt_keypoints(a.keypoints3d, np.random.default_rng(3))
    y = corrupt_keypoints(a.keypoints3d, np.random.default_rng(3))
    np.testing.assert_array_equal(x.keypoints3d, y.keypoints3d)
    np.testing.assert_array_equal(x.keypoints2d, y.keypoints2d)


def test_joint_angles_within_limits(motion):
    """Read back in the fitter's anatomical frames, every angle lies inside its limits; bends from keypoints agree."""
    from handcli.datagen.motion import default_hand_model

    frames = poses.model_frames(default_hand_model())
    angles = poses.to_articulation(motion.hand_pose.astype(np.float64), frames)
    lower, upper = poses.joint_limits_degrees()
    assert (angles >= lower - 1e-3).all() and (angles <= upper + 1e-3).all()
    low, high = limit_bounds(torch.float64, table="anatomical")
    violation = limit_violation(torch.as_tensor(motion.hand_pose, dtype=torch.float64),
                                torch.as_tensor(frames), low, high)
    assert float(violation.max()) < 1e-9
    bends = measure.bend_angles(motion.keypoints3d.astype(np.float64))
    for name in ("index_pip", "middle_pip", "ring_pip", "pinky_pip"):
        assert bends[name].max() < 115
    # the DIP follows the PIP at about 2/3
    pip = np.concatenate([bends[f"{f}_pip"].ravel() for f in ("index", "middle", "ring", "pinky")])
    dip = np.concatenate([bends[f"{f}_dip"].ravel() for f in ("index", "middle", "ring", "pinky")])
    bent = pip > 30
    assert 0.5 < np.median(dip[bent] / pip[bent]) < 0.85
    # the hand actually articulates: open hands and closed grasps both occur
    reach = np.linalg.norm(motion.keypoints3d[..., 8, :] - motion.keypoints3d[..., 0, :], axis=-1)
    assert reach.max() / reach.min() > 1.6


def test_bone_lengths_are_rigid(motion):
    bones = measure.bone_lengths(motion.keypoints3d.astype(np.float64))
    assert bones.std(axis=1).max() < 1e-5
    assert 0.06 < np.median(bones[..., 8]) < 0.12  # wrist to middle MCP: a human hand


def test_state_labels_present_and_ordered(motion):
    states = motion.motion_state
    assert set(np.unique(states)) == {NO_STATE, 0, 1, 2, 3}
    allowed = {(0, 1), (0, 2), (1, 2), (1, 3), (2, 1), (2, 3), (3, 0)}
    for row in states:
        labelled = row[row >= 0]
        assert len(labelled) in (0, len(row))  # a window is either an interaction or free gestures
        changes = np.flatnonzero(np.diff(row))
        assert {(int(row[i]), int(row[i + 1])) for i in changes} <= allowed
    # stable grasp: the fingers hardly move relative to the wrist
    local = motion.keypoints3d - motion.keypoints3d[:, :, :1]
    tip_speed = np.linalg.norm(np.diff(local[:, :, [4, 8, 12, 16, 20]], axis=1), axis=-1).mean(-1)
    grasp = (states[:, 1:] == 1) & (states[:, :-1] == 1)
    reach = (states[:, 1:] == 0) & (states[:, :-1] == 0)
    assert np.median(tip_speed[grasp]) < 0.5 * np.median(tip_speed[reach])


def test_tiny_windows():
    for frames in (1, 2):
        out = sample_motion(2, frames, np.random.default_rng(frames))
        assert out.keypoints3d.shape == (2, frames, 21, 3) and np.isfinite(out.keypoints3d).all()
        corrupted = corrupt_keypoints(out.keypoints3d, np.random.default_rng(0))
        assert np.isfinite(corrupted.keypoints3d[corrupted.valid]).all()


def test_speed_varies_between_sequences(motion):
    speed = np.linalg.norm(np.diff(motion.keypoints3d[:, :, 0], axis=1), axis=-1).mean(1)
    assert np.percentile(speed, 90) > 3 * np.percentile(speed, 10)


# ------------------------------------------------------------------------------------------ corruption
ONLY = dict(jitter=(0.0, 0.0), rotation_jitter_deg=(0.0, 0.0), bone_scale_fast=(0.0, 0.0), bone_scale_slow=(0.0, 0.0),
            bias=(0.0, 0.0), pose_bias=(0.0, 0.0), motion_noise=(0.0, 0.0), depth_drift=(0.0, 0.0),
            outlier_rate=(0.0, 0.0), swap_rate=(0.0, 0.0), drop_rate=(0.0, 0.0), pixel_noise=(0.0, 0.0))


def only(**fields) -> CorruptionConfig:
    return CorruptionConfig(**{**ONLY, **fields})


def test_corruption_shapes_and_scale_zero(motion):
    out = corrupt_keypoints(motion.keypoints3d, np.random.default_rng(0))
    B, T = motion.keypoints3d.shape[:2]
    assert out.keypoints3d.shape == (B, T, 21, 3) and out.keypoints3d.dtype == np.float32
    assert out.keypoints2d.shape == (B, T, 21, 3) and out.valid.shape == out.outlier.shape == (B, T)
    assert out.valid.dtype == bool and out.outlier.dtype == bool
    assert np.isnan(out.keypoints3d[~out.valid]).all() and np.isfinite(out.keypoints3d[out.valid]).all()
    assert np.isnan(out.keypoints2d[~out.valid]).all()
    confidence = out.keypoints2d[out.valid][..., 2]
    assert (confidence >= 0).all() and (confidence <= 1).all()
    clean = corrupt_keypoints(motion.keypoints3d, np.random.default_rng(0), CorruptionConfig(scale=0.0))
    assert clean.valid.all() and not clean.outlier.any()
    np.testing.assert_allclose(clean.keypoints3d, motion.keypoints3d)


def test_jitter_std_matches_config(motion):
    out = corrupt_keypoints(motion.keypoints3d, np.random.default_rng(1), only(jitter=(0.003, 0.003),
                                                                               jitter_depth_ratio=(1.0, 1.0)))
    error = out.keypoints3d.astype(np.float64) - motion.keypoints3d
    assert abs(error.std() - 0.003) < 0.0001
    # along the camera ray it is stretched by jitter_depth_ratio
    out = corrupt_keypoints(motion.keypoints3d, np.random.default_rng(1), only(jitter=(0.002, 0.002),
                                                                               jitter_depth_ratio=(3.0, 3.0)))
    error = out.keypoints3d.astype(np.float64) - motion.keypoints3d
    ray = motion.keypoints3d.mean((1, 2)) / np.linalg.norm(motion.keypoints3d.mean((1, 2)), axis=-1, keepdims=True)
    along = np.einsum("btjc,bc->btj", error, ray)
    assert abs(along.std() - 0.006) < 0.0003


def test_bone_scale_and_depth_drift_match_config(motion):
    clean = motion.keypoints3d.astype(np.float64)
    out = corrupt_keypoints(clean, np.random.default_rng(2), only(bone_scale_fast=(0.02, 0.02)))
    scale = measure.bone_lengths(out.keypoints3d.astype(np.float64))[..., 8] / measure.bone_lengths(clean)[..., 8]
    assert abs(scale.std() - 0.02) < 0.002
    config = only(depth_drift=(0.04, 0.04), depth_drift_rho=(0.9, 0.9), depth_drift_direction_noise=0.0)
    out = corrupt_keypoints(clean, np.random.default_rng(3), config)
    offset = (out.keypoints3d.astype(np.float64) - clean)[:, :, 0]  # (B, T, 3), rigid: same for every joint
    np.testing.assert_allclose(out.keypoints3d - out.keypoints3d[:, :, :1], clean - clean[:, :, :1], atol=1e-6)
    ray = clean.mean((1, 2)) / np.linalg.norm(clean.mean((1, 2)), axis=-1, keepdims=True)
    along = np.einsum("btc,bc->bt", offset, ray)
    np.testing.assert_allclose(np.linalg.norm(offset, axis=-1), np.abs(along), atol=1e-6)  # along the ray only
    relative = along / clean[..., 2].mean((1, 2))[:, None]
    assert 0.03 < relative.std() < 0.05
    lag1 = np.mean([np.corrcoef(r[:-1], r[1:])[0, 1] for r in relative])
    assert 0.8 < lag1 < 0.95


def test_dropped_segments_are_runs_of_nan(motion):
    config = only(drop_rate=(0.03, 0.03), drop_length=(2, 6))
    out = corrupt_keypoints(motion.keypoints3d, np.random.default_rng(4), config)
    assert 0.03 < (~out.valid).mean() < 0.25
    np.testing.assert_allclose(out.keypoints3d[out.valid], motion.keypoints3d[out.valid])
    lengths = []
    for row in out.valid:
        edges = np.flatnonzero(np.diff(np.concatenate([[1], row.astype(int), [1]])))  # run starts, ends
        for start, end in zip(edges[::2], edges[1::2]):
            if end < len(row):  # runs cut by the window's end may be shorter
                lengths.append(end - start)
    assert min(lengths) >= 2 and np.median(lengths) <= 8  # runs of 2-6 frames; neighbours may merge


def test_finger_outliers_move_one_finger(motion):
    config = only(outlier_rate=(0.05, 0.05), outlier_magnitude=(0.03, 0.03))
    out = corrupt_keypoints(motion.keypoints3d, np.random.default_rng(5), config)
    moved = np.linalg.norm(out.keypoints3d - motion.keypoints3d, axis=-1) > 1e-6  # (B, T, 21)
    assert out.outlier.any()
    assert not moved[~out.outlier].any()
    fingers = np.stack([moved[..., list(chain)].any(-1) for chain in CANONICAL_FINGERS], -1)
    assert (fingers[out.outlier].sum(-1) <= 1).all() and (fingers[out.outlier].sum(-1) == 1).mean() > 0.9
    assert not moved[..., 0].any()
    tip_error = np.linalg.norm(out.keypoints3d - motion.keypoints3d, axis=-1).max(-1)[out.outlier]
    assert 0.01 < np.median(tip_error) < 0.05


def test_swapped_frames_keep_2d_and_flip_chirality(motion):
    clean = motion.keypoints3d.astype(np.float64)
    mirrored = depth_mirror(clean)
    K = default_intrinsics()
    np.testing.assert_allclose(project(mirrored, K), project(clean, K), atol=1e-6)

    def fit_residual(source, target, reflect):  # best similarity fit, proper rotation or reflection
        x, y = source - source.mean(-2, keepdims=True), target - target.mean(-2, keepdims=True)
        u, sv, vt = np.linalg.svd(np.einsum("...ji,...jk->...ik", x, y))
        sign = np.sign(np.linalg.det(u @ vt)) * (-1 if reflect else 1)
        return (x**2).sum((-1, -2)) * (y**2).sum((-1, -2)) - (sv[..., 0] + sv[..., 1] + sign * sv[..., 2]) ** 2

    # the mirror image is a reflected hand: on clearly non-planar poses a reflection fits it, a rotation does not
    spread = np.linalg.svd(clean - clean.mean(-2, keepdims=True), compute_uv=False)
    solid = spread[..., 2] / spread[..., 0] > 0.25
    better = fit_residual(mirrored, clean, True) < fit_residual(mirrored, clean, False)
    assert solid.sum() > 100 and better[solid].mean() > 0.99
    out = corrupt_keypoints(clean, np.random.default_rng(6), only(swap_rate=(0.02, 0.02)))
    assert out.swapped.any()
    np.testing.assert_allclose(out.keypoints3d[out.swapped], mirrored[out.swapped], atol=1e-6)


def test_pixel_noise_and_confidence(motion):
    K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    out = corrupt_keypoints(motion.keypoints3d, np.random.default_rng(7), only(pixel_noise=(0.01, 0.01)), K=K)
    uv = project(motion.keypoints3d.astype(np.float64), K)
    diagonal = np.linalg.norm(uv.max(-2) - uv.min(-2), axis=-1)
    relative = (out.keypoints2d[..., :2] - uv) / diagonal[..., None, None]
    assert abs(relative.std() - 0.01) < 0.001
    # a displaced finger shows up in 2D and lowers its confidence
    out = corrupt_keypoints(motion.keypoints3d, np.random.default_rng(8),
                            only(outlier_rate=(0.05, 0.05), outlier_magnitude=(0.04, 0.04)), K=K)
    moved = np.linalg.norm(out.keypoints3d - motion.keypoints3d, axis=-1) > 1e-6
    assert out.keypoints2d[..., 2][moved].mean() < out.keypoints2d[..., 2][~moved].mean() - 0.05


def test_default_ranges_cover_the_dev_protocol():
    """The evaluation's dev magnitudes (shared/bench/handeval_dev.py) lie inside our per-sequence ranges."""
    ranges = CorruptionConfig().ranges()
    dev = {"jitter": 0.004, "bias": 0.004, "bone_scale_fast": 0.03, "depth_drift": 0.015 / 0.37,
           "outlier_rate": 0.03, "outlier_magnitude": 0.025, "drop_rate": 1 / 60}
    for name, value in dev.items():
        low, high = ranges[name]
        assert low < value < high, name
    config = CorruptionConfig()
    assert config.depth_drift_rho[0] <= 0.7 <= config.depth_drift_rho[1]
    assert config.drop_length[0] <= 3 and config.drop_length[1] >= 14
    narrow = CorruptionConfig(spread=0.0).sample(5, np.random.default_rng(0))
    assert np.allclose(narrow["jitter"], np.sqrt(np.prod(CorruptionConfig.jitter)))


@needs_shared
def test_motion_statistics_comparable_to_fpha(motion):
    """Smoothed joint accelerations and fingertip reach of the clean synthetic data sit near FPHA's (subject 1)."""
    sequences = []
    for path in sorted(glob.glob(str(SHARED / "data/mocap/fpha/Subject_1/*/*/skeleton.txt")))[::4]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = np.loadtxt(path, ndmin=2)
        if rows.shape[0] >= 32 and rows.shape[1] == 64:
            order = [0, 1, 6, 7, 8, 2, 9, 10, 11, 3, 12, 13, 14, 4, 15, 16, 17, 5, 18, 19, 20]
            sequences.append(rows[:, 1:].reshape(-1, 21, 3)[:, order] / 1000)
    assert len(sequences) > 20
    from scipy.ndimage import gaussian_filter1d

    def smooth_accel(tracks):
        smoothed = [gaussian_filter1d(track, 2.0, axis=0) for track in tracks]
        return np.median(np.concatenate([measure.accelerations(track).ravel() for track in smoothed]))

    real, ours = smooth_accel(sequences), smooth_accel(list(motion.keypoints3d.astype(np.float64)))
    assert 0.5 < ours / real < 2.0, (ours, real)
