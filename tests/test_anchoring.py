"""Tests of the depth-aware anchoring of the refined whole-hand position (handcli.diffusion.anchoring)."""

from __future__ import annotations

import numpy as np
import pytest

from handcli.diffusion.anchoring import (AnchorConfig, anchor_track, depth_axis, interior_gaps, interpolate_gaps,
                                         remove_scale_flicker)

FPS = 30.0


def moving_hand(frames: int = 240, seed: int = 0) -> np.ndarray:
    """(frames, 21, 3) metres: a fixed hand-sized point set (wrist first) moving smoothly."""
    rng = np.random.default_rng(seed)
    shape = rng.normal(0, 0.04, (21, 3))
    shape[0] = 0
    t = np.arange(frames) / FPS
    path = np.stack([0.08 * np.sin(1.3 * t), 0.05 * np.cos(0.9 * t), 0.4 + 0.03 * np.sin(0.7 * t)], -1)
    return shape[None] + path[:, None]


def ar1(frames: int, std: float, rho: float, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(frames)
    out[0] = rng.normal(0, std)
    for t in range(1, frames):
        out[t] = rho * out[t - 1] + rng.normal(0, std * np.sqrt(1 - rho**2))
    return out


def drifting_case(seed: int = 0):
    """truth, observations with a depth drift along `axis` + jitter, and a 'refined' estimate that removed part
    of the drift but lags the motion across the axis (the failure anchoring corrects)."""
    rng = np.random.default_rng(seed)
    truth = moving_hand(seed=seed)
    axis = np.array([0.3, -0.2, 0.93])
    axis /= np.linalg.norm(axis)
    drift = ar1(len(truth), 0.015, 0.7, rng)
    observed = truth + drift[:, None, None] * axis + rng.normal(0, 0.002, truth.shape)
    lagged = np.concatenate([truth[:4], truth[:-4]])  # four frames late
    refined = lagged + 0.4 * drift[:, None, None] * axis
    return truth, observed, refined, axis


def across_error(estimate: np.ndarray, truth: np.ndarray, axis: np.ndarray) -> float:
    offset = (estimate - truth).mean(1)
    return float(np.linalg.norm(offset - np.outer(offset @ axis, axis), axis=1).mean())


def test_depth_axis_finds_the_drift_direction():
    truth, observed, refined, axis = drifting_case()
    disagreement = (observed - refined).mean(1)
    found, anisotropy = depth_axis(disagreement, np.ones(len(truth), bool))
    assert abs(found @ axis) > 0.99
    assert anisotropy > 10


def test_anchoring_puts_the_hand_back_on_the_observations_across_the_axis():
    truth, observed, refined, axis = drifting_case()
    valid = np.ones(len(truth), bool)
    anchored = anchor_track(refined, observed, valid, FPS)
    assert across_error(anchored, truth, axis) < 0.3 * across_error(refined, truth, axis)
    # one rigid offset per frame: the articulation and the bone lengths stay as refined
    moved = anchored - refined
    assert np.allclose(moved, moved[:, :1], atol=1e-12)
    assert not np.allclose(moved, 0)


def test_along_the_axis_only_smoothing_is_added():
    truth, observed, refined, axis = drifting_case()
    anchored = anchor_track(refined, observed, np.ones(len(truth), bool), FPS,
                            AnchorConfig(along_seconds=0.2))
    along = (anchored - refined).mean(1) @ axis
    depth = refined.mean(1) @ axis
    # the along-axis change is a low-pass of the refined depth minus itself: zero mean, no jump to the input
    assert abs(along.mean()) < 1e-3
    assert np.abs(np.diff(depth + along, 2)).mean() < np.abs(np.diff(depth, 2)).mean()


def test_isotropic_disagreement_leaves_the_track_alone():
    rng = np.random.default_rng(1)
    truth = moving_hand()
    observed = truth + rng.normal(0, 0.01, (len(truth), 1, 3))  # whole-hand noise in every direction alike
    refined = truth.copy()
    anchored = anchor_track(refined, observed, np.ones(len(truth), bool), FPS)
    np.testing.assert_array_equal(anchored, refined)


def test_too_few_observed_frames_leave_the_track_alone():
    truth, observed, refined, _ = drifting_case()
    valid = np.zeros(len(truth), bool)
    valid[:AnchorConfig().min_frames - 1] = True
    np.testing.assert_array_equal(anchor_track(refined, observed, valid, FPS), refined)


def test_unobserved_frames_may_hold_nan_and_stay_continuous():
    truth, observed, refined, axis = drifting_case()
    valid = np.ones(len(truth), bool)
    valid[50:60] = False  # short gap: interpolated
    valid[100:200] = False  # long gap (> gap_seconds): offsets interpolated linearly, model path kept
    observed = observed.copy()
    observed[~valid] = np.nan
    anchored = anchor_track(refined, observed, valid, FPS)
    assert np.isfinite(anchored).all()
    centre = anchored.mean(1)
    steps = np.linalg.norm(np.diff(centre, axis=0), axis=1)
    assert steps.max() < 0.02  # no jump at any gap edge
    # inside the long gap the whole-hand change is the linear blend of its edges' offsets, not a spline
    only_across = anchor_track(refined, observed, valid, FPS, AnchorConfig(along_seconds=1e-3))
    change = (only_across - refined).mean(1)
    line = np.linspace(change[99], change[200], 102)[1:-1]
    np.testing.assert_allclose(change[100:200], line, atol=1e-9)
    assert np.abs(change[100:200]).max() > 1e-3


def test_interior_gaps():
    valid = np.array([0, 1, 1, 0, 0, 1, 0, 1, 0], bool)
    assert interior_gaps(valid) == [(3, 5), (6, 7)]


def test_gap_interpolation_is_cubic_across_and_straight_along():
    frames = np.arange(60)
    axis = np.array([0.0, 0.0, 1.0])
    centre = np.stack([0.001 * frames**2, 0.01 * frames, 0.3 + 0.002 * frames], -1)  # quadratic across the axis
    keypoints = np.repeat(centre[:, None], 21, 1)
    valid = np.ones(60, bool)
    valid[20:26] = False
    wrong = keypoints.copy()
    wrong[20:26] += np.array([0.02, -0.01, 0.03])  # the model's infill, off the path
    filled = interpolate_gaps(wrong, valid, axis, max_frames=15)
    np.testing.assert_allclose(filled[20:26, :, :2], keypoints[20:26, :, :2], atol=1e-9)  # spline: exact
    np.testing.assert_allclose(filled[20:26, :, 2], keypoints[20:26, :, 2], atol=1e-9)  # line: exact on a line
    np.testing.assert_array_equal(filled[valid], wrong[valid])
    np.testing.assert_array_equal(interpolate_gaps(wrong, valid, axis, max_frames=5), wrong)  # gap too long


def test_scale_flicker_about_the_wrist_is_removed():
    rng = np.random.default_rng(2)
    truth = moving_hand()
    flicker = 1 + rng.normal(0, 0.03, len(truth))
    observed = truth[:, :1] + (truth - truth[:, :1]) * flicker[:, None, None]
    valid = np.ones(len(truth), bool)
    corrected = remove_scale_flicker(observed, truth, valid, sigma=3.0, shrink=1.0)
    before = np.linalg.norm(observed - truth, axis=-1).mean()
    after = np.linalg.norm(corrected - truth, axis=-1).mean()
    assert after < 0.2 * before
    np.testing.assert_array_equal(remove_scale_flicker(observed, truth, valid, 3.0, 0.0), observed)


@pytest.mark.parametrize("shift", [np.array([0.1, -0.2, 0.3])])
def test_anchoring_is_translation_and_rotation_equivariant(shift):
    truth, observed, refined, _ = drifting_case(seed=3)
    valid = np.ones(len(truth), bool)
    base = anchor_track(refined, observed, valid, FPS)
    np.testing.assert_allclose(anchor_track(refined + shift, observed + shift, valid, FPS), base + shift,
                               atol=1e-9)
    angle = 0.7
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    np.testing.assert_allclose(anchor_track(refined @ rotation.T, observed @ rotation.T, valid, FPS),
                               base @ rotation.T, atol=1e-9)


def test_refiner_anchoring_moves_whole_hands_only():
    import torch

    from handcli.diffusion import Refiner
    from handcli.diffusion.model import BackboneConfig, RefinerBackbone
    from handcli.diffusion.schedule import ShiftSchedule

    torch.manual_seed(0)
    refiner = Refiner(RefinerBackbone(BackboneConfig(window=16, width=32, layers=1, heads=2, ff_width=32)),
                      ShiftSchedule(kappa=0.1))
    truth, observed, _, _ = drifting_case(seed=4)
    keypoints = np.full((2,) + truth.shape, np.nan)
    keypoints[0] = observed
    keypoints[1, 10:] = observed[10:] + 0.1  # a second track, observed from frame 10
    valid = np.isfinite(keypoints).all((2, 3))
    plain = refiner.refine(keypoints, valid, np.array([True, False]), FPS, anchor=None).keypoints3d
    anchored = refiner.refine(keypoints, valid, np.array([True, False]), FPS).keypoints3d
    moved = anchored - plain
    np.testing.assert_allclose(moved, moved[:, :, :1].repeat(21, 2), atol=1e-6)
    assert np.abs(moved[0]).max() > 1e-4 and np.abs(moved[1, 10:]).max() > 1e-4
    np.testing.assert_allclose(anchored[1, :10], anchored[1, 10:11].repeat(10, 0))  # held before the span
