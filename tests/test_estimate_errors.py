"""The estimate-error decomposition of the video benchmark (handcli.videobench.errors) and the corruption that
reproduces it (handcli.datagen, orientation drift)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from handcli.datagen.corruption import CorruptionConfig, corrupt_keypoints
from handcli.videobench.errors import align, autocorrelation, clip_summary, frame_errors


def hand(rng, frames=40):
    base = rng.normal(0, 0.04, (21, 3))
    return base[None] + np.array([0.0, 0.0, 0.6]) + 0.001 * np.arange(frames)[:, None, None]


def test_align_recovers_rotation_scale_and_residual():
    rng = np.random.default_rng(0)
    truth = hand(rng, 1)[0]
    turn = Rotation.from_rotvec([0.0, 0.2, 0.1])
    centre = truth.mean(0)
    pred = centre + 1.1 * (truth - centre) @ turn.as_matrix().T  # turned and 10 % too big
    rotvec, residual, scale = align(pred, truth)
    assert np.allclose(Rotation.from_rotvec(rotvec).as_matrix(), turn.inv().as_matrix(), atol=1e-9)
    assert abs(scale - 1 / 1.1) < 1e-9 and np.abs(residual).max() < 1e-9


def test_frame_errors_read_depth_and_rotation_per_frame():
    rng = np.random.default_rng(1)
    truth = hand(rng)
    pred = truth * 1.05  # every point 5 % further along its ray: same image, 5 % too far
    covered = np.ones(len(truth), bool)
    covered[5] = False
    errors = frame_errors(pred, covered, truth)
    assert np.isnan(errors["depth"][5])
    assert np.allclose(np.delete(errors["depth"], 5), 0.05)
    summary = clip_summary(errors)
    assert abs(summary["depth_mean"] - 0.05) < 1e-9 and summary["rot_median_deg"] < 1e-6


def test_autocorrelation_tells_slow_from_white():
    rng = np.random.default_rng(2)
    white = rng.normal(size=(400, 3))
    slow = np.cumsum(rng.normal(size=(400, 3)), 0)
    assert abs(autocorrelation(white, 1)) < 0.15
    assert autocorrelation(slow, 1) > 0.9


def test_orientation_drift_is_slow_and_off_by_default():
    rng = np.random.default_rng(3)
    clean = np.repeat(hand(rng, 1), 120, 0)[None]
    quiet = dict(jitter=(0.0, 0.0), rotation_jitter_deg=(0.0, 0.0), bone_scale_fast=(0.0, 0.0),
                 bone_scale_slow=(0.0, 0.0), bias=(0.0, 0.0), pose_bias=(0.0, 0.0), motion_noise=(0.0, 0.0),
                 depth_drift=(0.0, 0.0), outlier_rate=(0.0, 0.0), swap_rate=(0.0, 0.0), drop_rate=(0.0, 0.0))
    off = corrupt_keypoints(clean, np.random.default_rng(4), CorruptionConfig(**quiet)).keypoints3d
    assert np.allclose(off, clean, atol=1e-6)
    on = corrupt_keypoints(clean, np.random.default_rng(4), CorruptionConfig(
        **quiet, rotation_drift_deg=(8.0, 8.0), rotation_drift_rho=(0.95, 0.95))).keypoints3d[0].astype(np.float64)
    rotvecs = np.array([align(on[t], clean[0, t])[0] for t in range(120)])
    angles = np.degrees(np.linalg.norm(rotvecs, axis=-1))
    assert 4 < np.median(angles) < 25  # ~8 degrees per axis
    assert autocorrelation(rotvecs, 1) > 0.8
    # a rigid turn about the hand's centre: shape and centre unchanged
    assert np.allclose(on.mean(1), clean[0].mean(1), atol=1e-6)
