"""Tests of the depth-aware anchoring of the refined whole-hand position (handcli.diffusion.anchoring)."""

from __future__ import annotations

import numpy as np
import pytest

from handcli.diffusion.anchoring import (AnchorConfig, anchor_track, depth_axis, follow_image, interior_gaps,
                                         interpolate_gaps, remove_scale_flicker, smooth, track_depth_axis)

FPS = 30.0


def moving_hand(frames: int = 240, seed: int = 0, fps: float = FPS) -> np.ndarray:
    """(frames, 21, 3) metres: a fixed hand-sized point set (wrist first) moving smoothly."""
    rng = np.random.default_rng(seed)
    shape = rng.normal(0, 0.04, (21, 3))
    shape[0] = 0
    t = np.arange(frames) / fps
    path = np.stack([0.08 * np.sin(1.3 * t), 0.05 * np.cos(0.9 * t), 0.4 + 0.03 * np.sin(0.7 * t)], -1)
    return shape[None] + path[:, None]


def ar1(frames: int, std: float, rho: float, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(frames)
    out[0] = rng.normal(0, std)
    for t in range(1, frames):
        out[t] = rho * out[t - 1] + rng.normal(0, std * np.sqrt(1 - rho**2))
    return out


def drifting_case(seed: int = 0, fps: float = FPS):
    """truth, observations with a depth drift along `axis` + jitter, and a 'refined' estimate that removed part
    of the drift but lags the motion across the axis (the failure anchoring corrects). The drift's correlation
    time and the lag are fixed in seconds, so the case is the same motion at any frame rate."""
    rng = np.random.default_rng(seed)
    frames = int(8 * fps)
    truth = moving_hand(frames, seed=seed, fps=fps)
    axis = np.array([0.3, -0.2, 0.93])
    axis /= np.linalg.norm(axis)
    drift = ar1(len(truth), 0.015, 0.7 ** (FPS / fps), rng)
    observed = truth + drift[:, None, None] * axis + rng.normal(0, 0.002, truth.shape)
    lag = int(round(4 * fps / FPS))
    lagged = np.concatenate([np.repeat(truth[:1], lag, 0), truth[:-lag]])  # 0.13 s late
    refined = lagged + 0.4 * drift[:, None, None] * axis
    return truth, observed, refined, axis


def across_error(estimate: np.ndarray, truth: np.ndarray, axis: np.ndarray) -> float:
    offset = (estimate - truth).mean(1)
    return float(np.linalg.norm(offset - np.outer(offset @ axis, axis), axis=1).mean())


def test_depth_axis_finds_the_drift_direction():
    truth, observed, refined, axis = drifting_case()
    disagreement = (observed - refined).mean(1)
    found, anisotropy, jitter = depth_axis(disagreement, np.ones(len(truth), bool))
    assert abs(found @ axis) > 0.99
    assert anisotropy > 10 and jitter > 0.003


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
    # a refined motion without drift: every step of the error is then the anchoring's own doing
    smooth_refined = refined - np.outer((refined - truth).mean(1) @ axis, axis)[:, None]
    error = anchor_track(smooth_refined, observed, valid, FPS).mean(1) - truth.mean(1)
    steps = np.linalg.norm(np.diff(error, axis=0), axis=1)
    assert steps.max() < 0.0015  # no jump at any gap edge
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
    assert after < 0.3 * before  # what remains is the flicker the 3-frame trend absorbs
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


def test_same_motion_at_another_frame_rate_is_anchored_alike():
    gains = []
    for fps in (30.0, 60.0, 120.0):
        truth, observed, refined, axis = drifting_case(seed=5, fps=fps)
        anchored = anchor_track(refined, observed, np.ones(len(truth), bool), fps)
        gains.append(across_error(anchored, truth, axis) / across_error(refined, truth, axis))
    assert max(gains) < 0.3, gains


def test_a_smooth_disagreement_without_depth_jitter_is_left_alone():
    truth = moving_hand()
    ramp = np.linspace(0, 0.03, len(truth))[:, None, None] * np.array([1.0, 0, 0])  # a slow slide, no jitter
    observed = truth + ramp
    assert track_depth_axis(truth, observed, np.ones(len(truth), bool), FPS) is None
    np.testing.assert_array_equal(anchor_track(truth, observed, np.ones(len(truth), bool), FPS), truth)


def test_a_flipped_outlier_frame_stays_bounded():
    truth, observed, refined, axis = drifting_case(seed=6)
    valid = np.ones(len(truth), bool)
    clean = anchor_track(refined, observed, valid, FPS)
    flipped = observed.copy()
    flipped[120] = observed[120, :1] - 1.3 * (observed[120] - observed[120, :1])  # hand mirrored through its wrist
    anchored = anchor_track(refined, flipped, valid, FPS)
    assert np.abs(anchored - refined).max() < 0.05
    others = np.ones(len(truth), bool)
    others[110:131] = False  # away from the outlier the result is as without it
    # (without the bounds: 2x here and a 0.38 m jump; the flipped frame tilts the axis and the scale correction explodes)
    assert across_error(anchored[others], truth[others], axis) < 1.5 * across_error(clean[others], truth[others], axis)


def test_gap_path_with_noisy_neighbours_beats_leaving_the_gap_alone():
    rng = np.random.default_rng(7)
    frames = np.arange(120)
    axis = np.array([0.0, 0.0, 1.0])
    path = np.stack([0.05 * np.sin(frames / 15), 0.03 * np.cos(frames / 11), 0.4 + 0 * frames], -1)
    truth = np.repeat(path[:, None], 21, 1)
    noisy = truth + rng.normal(0, 0.002, (120, 1, 3))  # whole-hand jitter on every observed frame
    valid = np.ones(120, bool)
    valid[50:65] = False
    model = noisy.copy()
    model[50:65] = truth[50:65] + np.array([0.01, -0.01, 0.0])  # a model infill 14 mm off the path
    filled = interpolate_gaps(model, valid, axis, max_frames=15)
    gap_error = lambda x: np.linalg.norm((x - truth)[50:65, 0, :2], axis=-1).mean()
    assert gap_error(filled) < 0.5 * gap_error(model)
    assert gap_error(filled) < 0.004


def test_samples_of_one_track_share_the_axis_and_the_decision():
    import torch

    from handcli.diffusion import Refiner
    from handcli.diffusion.model import BackboneConfig, RefinerBackbone
    from handcli.diffusion.schedule import ShiftSchedule

    torch.manual_seed(1)
    refiner = Refiner(RefinerBackbone(BackboneConfig(window=16, width=32, layers=1, heads=2, ff_width=32)),
                      ShiftSchedule(kappa=0.5))
    truth, observed, _, _ = drifting_case(seed=8)
    keypoints, valid, right = observed[None], np.ones((1, len(truth)), bool), np.array([True])
    plain = refiner.refine(keypoints, valid, right, FPS, samples=4, seed=3, anchor=None).samples
    anchored = refiner.refine(keypoints, valid, right, FPS, samples=4, seed=3).samples
    moved = np.abs(anchored - plain).max(axis=(1, 2, 3, 4))
    assert (moved > 1e-4).all()  # every sample anchored, not some
    # across the shared axis, every sample's whole-hand path is put on the same observations
    axis = track_depth_axis(plain[:, 0].mean(0), observed, valid[0], FPS)
    centres = anchored[:, 0].mean(2)
    across = centres - (centres @ axis)[..., None] * axis
    assert np.abs(across - across.mean(0)).max() < 1e-3


def test_smooth_keeps_a_linear_trend_at_the_ends():
    line = np.linspace(0, 1, 50)[:, None] * np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(smooth(line, 3.0), line, atol=1e-12)


def test_with_a_known_camera_the_depth_axis_is_each_frames_ray():
    """A hand sweeping across the image with depth noise along its own camera ray: the ray-based anchoring keeps
    the hand where the image puts it, better than one axis for the whole track."""
    rng = np.random.default_rng(9)
    frames = 240
    t = np.arange(frames) / FPS
    shape = rng.normal(0, 0.03, (21, 3))
    shape[0] = 0
    centre = np.stack([0.25 * np.sin(0.8 * t), 0.12 * np.cos(0.6 * t), 0.5 + 0 * t], -1)  # ±27° across the view
    truth = shape[None] + centre[:, None]
    ray = truth.mean(1) / np.linalg.norm(truth.mean(1), axis=1, keepdims=True)
    depth_noise = ar1(frames, 0.03, 0.7, rng)
    observed = truth + (depth_noise[:, None] * ray)[:, None] + rng.normal(0, 0.002, truth.shape)
    lagged = np.concatenate([np.repeat(truth[:1], 4, 0), truth[:-4]])
    refined = lagged + (0.5 * depth_noise[:, None] * ray)[:, None]  # lags, and kept half the depth noise
    valid = np.ones(frames, bool)
    rays = track_depth_axis(refined, observed, valid, FPS, camera=True)
    assert rays.shape == (frames, 3)
    one_axis = track_depth_axis(refined, observed, valid, FPS)
    image = lambda x: x.mean(1)[:, :2] / x.mean(1)[:, 2:]  # normalised image position of the hand's centre
    image_error = lambda x: np.linalg.norm(image(x) - image(truth), axis=1).mean()
    with_rays = anchor_track(refined, observed, valid, FPS, axis=rays)
    with_one_axis = anchor_track(refined, observed, valid, FPS, axis=one_axis)
    assert image_error(with_rays) < 0.5 * image_error(with_one_axis)
    assert image_error(with_rays) < 0.5 * image_error(refined)


def _project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    return points[..., :2] / points[..., 2:] * np.array([K[0, 0], K[1, 1]]) + K[:2, 2]


def test_following_the_image_takes_the_slow_2d_offset_keeps_the_depth_and_drops_the_jitter():
    """Each joint moves within its depth plane: a steady 2D offset of the observation is taken over
    whole, its frame-to-frame jitter hardly at all; in a long unobserved stretch the correction fades out."""
    K = np.array([[900.0, 0, 640], [0, 900.0, 360], [0, 0, 1]])
    rng = np.random.default_rng(3)
    refined = moving_hand(120)
    offset = rng.normal(0, 4.0, (21, 2))  # pixels, per joint, constant over time
    jitter = rng.normal(0, 4.0, (120, 21, 2))
    target = _project(refined, K) + offset + jitter
    observed = refined.copy()
    observed[..., :2] = (target - K[:2, 2]) / np.array([K[0, 0], K[1, 1]]) * observed[..., 2:]
    valid = np.ones(120, bool)
    valid[50:80] = False  # a second-long gap
    moved = follow_image(refined, observed, valid, K, FPS, 0.067)
    np.testing.assert_allclose(moved[..., 2], refined[..., 2])
    shift = _project(moved, K) - _project(refined, K)  # (T, 21, 2) pixels
    seen = np.flatnonzero(valid)
    seen = seen[(seen > 5) & (seen < 115) & ((seen < 45) | (seen > 85))]
    # the steady offset comes through, up to the jitter's own mean over these frames (±0.5 px) ...
    assert np.abs(shift[seen].mean(0) - offset - jitter[seen].mean(0)).max() < 0.5
    # ... the jitter does not: what moves from frame to frame is a fraction of it
    wobble = shift[seen] - shift[seen].mean(0)
    assert np.sqrt(np.mean(wobble ** 2)) < 0.45 * 4.0
    # the gap's middle gets no correction, its edges some
    assert np.abs(shift[62:68]).max() < 0.05 * np.abs(offset).max()
    assert np.abs(shift[50]).mean() > 0.2 * np.abs(offset).mean()
    # an observation behind the camera (as a variance draw can make) pulls nothing and stays finite
    behind = observed.copy()
    behind[30:34, 4, 2] = -0.1
    pulled = follow_image(refined, behind, valid, K, FPS, 0.067)
    assert np.isfinite(pulled).all() and np.abs(_project(pulled, K) - _project(refined, K)).max() < 40.0
    # off, or nothing observed: unchanged
    np.testing.assert_array_equal(follow_image(refined, observed, valid, K, FPS, 0.0), refined)
    np.testing.assert_array_equal(follow_image(refined, observed, np.zeros(120, bool), K, FPS, 0.067), refined)
