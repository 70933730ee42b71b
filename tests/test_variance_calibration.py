"""The estimate's uncertainty (handcli.variance.estimate), its propagation through the refiner, the
calibration metrics (handcli.variance.calibration) and the maps they add (var_root)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from handcli.errors import BadInput
from handcli.variance.calibration import (ause, calibrated_error_draw, calibration_summary, coverage, nominal_radius,
                                          reliability_bins)
from handcli.variance.estimate import (FEATURES, EstimateUncertainty, FrameFeatures, VarianceCalibration, error_targets,
                                       estimate_uncertainty, fit_error_model, frame_features,
                                       sample_estimate_errors)
from tests.test_variance import tiny_weights  # noqa: F401  (the fixture)


def gaussian_errors(rng, eigenvalues: np.ndarray, count: int) -> np.ndarray:
    """(count, 3) draws from N(0, R diag(eigenvalues) Rᵀ) with a random rotation R."""
    rotation, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    return (rng.standard_normal((count, 3)) * np.sqrt(eigenvalues)) @ rotation.T, \
        rotation @ np.diag(eigenvalues) @ rotation.T


@pytest.mark.parametrize("eigenvalues", [(1.0, 1.0, 1.0), (9.0, 0.0, 0.0), (9.0, 1.0, 0.25), (4.0, 4.0, 0.1)])
def test_nominal_radius_holds_its_probability(eigenvalues):
    rng = np.random.default_rng(0)
    eigenvalues = np.array(eigenvalues) * 1e-4
    errors, covariance = gaussian_errors(rng, eigenvalues, 200_000)
    total = eigenvalues.sum()
    # the joint's variance is the root's alone: its covariance is exactly var_root
    var_joints = np.full((1, 21), total)
    for probability in (0.5, 0.9):
        radius = nominal_radius(var_joints, covariance[None], probability)[0, 0]
        held = np.mean(np.linalg.norm(errors, axis=-1) <= radius)
        assert abs(held - probability) < 0.02, (eigenvalues, probability, held)
    # without var_root the radius is the isotropic one
    iso = nominal_radius(np.array([[3e-4]]), None, 0.5)[0, 0]
    iso_errors = rng.standard_normal((100_000, 3)) * 1e-2
    assert abs(np.mean(np.linalg.norm(iso_errors, axis=-1) <= iso) - 0.5) < 0.01


def test_calibration_holds_on_data_with_known_noise_and_fails_when_wrong():
    rng = np.random.default_rng(1)
    frames = 3000
    sigma = np.exp(rng.uniform(np.log(2e-3), np.log(2e-2), (frames, 1)))  # per-frame noise, metres per axis
    errors = np.linalg.norm(rng.standard_normal((frames, 21, 3)) * sigma[..., None], axis=-1)
    var_joints = np.repeat(3 * sigma ** 2, 21, 1)
    right = calibration_summary(errors, var_joints)
    assert abs(right["coverage50"] - 0.5) < 0.02 and abs(right["coverage90"] - 0.9) < 0.02
    assert 0.95 < right["rms_ratio"] < 1.05
    assert 0.85 < right["decile_ratio_min"] and right["decile_ratio_max"] < 1.15
    assert right["relative"] < 0.5  # the variance ranks frames far better than chance
    wide = calibration_summary(errors, 4 * var_joints)
    assert wide["coverage50"] > 0.85 and abs(wide["rms_ratio"] - 0.5) < 0.03
    shuffled = calibration_summary(errors, rng.permutation(var_joints))
    assert shuffled["relative"] > 0.7
    assert coverage(np.array([1.0, 2.0]), np.array([1.5, 1.5])) == 0.5
    bins = reliability_bins(np.arange(100.0), np.arange(100.0), 10)
    assert len(bins) == 10 and all(abs(b["ratio"] - 1) < 1e-9 for b in bins)
    assert ause(np.arange(50.0), np.arange(50.0))["ause"] == pytest.approx(0.0)


def test_calibrated_draws_meet_the_targets_and_their_clip_constant_part_widens_the_spread():
    """Errors drawn from the maps themselves are calibrated by construction; with a track-constant share each
    track holds fewer independent draws, so the measures over a few tracks scatter more."""
    rng = np.random.default_rng(3)
    frames, tracks = 120, 40
    ray = np.array([0.0, 0.0, 1.0])
    var_root = np.broadcast_to(4e-4 * np.outer(ray, ray) + 1e-5 * np.eye(3), (frames, 3, 3))
    var_joints = np.trace(var_root, axis1=1, axis2=2)[:, None] + 3 * np.exp(rng.uniform(-12, -9, (frames, 21)))
    pooled = np.concatenate([calibrated_error_draw(var_joints, var_root, 30.0, rng, 3.0, 0.0, 0.0)
                             for _ in range(tracks)])
    summary = calibration_summary(pooled, np.tile(var_joints, (tracks, 1)), np.tile(var_root, (tracks, 1, 1)))
    assert abs(summary["coverage50"] - 0.5) < 0.04 and abs(summary["coverage90"] - 0.9) < 0.03
    assert 0.9 < summary["rms_ratio"] < 1.1

    def spread(constant: float) -> float:
        ratios = [calibration_summary(calibrated_error_draw(var_joints, var_root, 30.0, rng, 3.0, constant, 0.0),
                                      var_joints, var_root)["rms_ratio"] for _ in range(60)]
        return float(np.std(ratios))

    assert spread(0.9) > 2 * spread(0.0)
    # without var_root every joint is isotropic around its own variance
    isotropic = calibrated_error_draw(np.full((2000, 21), 3e-4), None, 30.0, rng)
    assert abs(np.sqrt(np.mean(isotropic ** 2)) - np.sqrt(3e-4)) < 1e-3


def synthetic_estimates(rng, tracks: int = 1, frames: int = 60):
    """A hand in front of a camera, slowly moving; (keypoints3d, keypoints2d, valid, K)."""
    from tests.test_diffusion import hand_track

    K = np.array([[800.0, 0, 320], [0, 800.0, 240], [0, 0, 1]])
    keypoints3d = np.stack([hand_track(frames, h) for h in range(tracks)]).astype(np.float64)
    keypoints3d += np.array([0.0, 0.0, 0.5]) - keypoints3d.mean((1, 2), keepdims=True)
    keypoints3d[..., 0] += np.linspace(-0.05, 0.05, frames)[None, :, None]
    projected = keypoints3d[..., :2] / keypoints3d[..., 2:] * 800 + np.array([320, 240])
    keypoints2d = np.concatenate([projected + rng.normal(0, 2, projected.shape), np.full(projected.shape[:-1] + (1,), 0.9)],
                                 -1)
    return keypoints3d, keypoints2d, np.ones((tracks, frames), bool), K


def test_features_are_finite_and_track_the_image():
    rng = np.random.default_rng(2)
    keypoints3d, keypoints2d, valid, K = synthetic_estimates(rng)
    valid[0, 20:30] = False
    keypoints3d[0, 20:30] = np.nan  # raw inputs hold NaN where nothing was seen
    features = frame_features(keypoints3d, keypoints2d, valid, K, np.array([640, 480]), 30.0)
    assert features.design.shape == (1, 60, len(FEATURES)) and np.isfinite(features.design).all()
    column = {name: i for i, name in enumerate(FEATURES)}
    assert (features.design[..., column["constant"]] == 1).all()
    unobserved = features.design[0, :, column["unobserved"]]
    assert unobserved[25] > unobserved[21] > 0 and unobserved[10] == 0
    assert np.allclose(np.linalg.norm(features.ray, axis=-1), 1.0)
    # a hand twice as far is half as big in the image
    far = frame_features(keypoints3d + features.centre[..., None, :], keypoints2d, valid, K, None, 30.0)
    assert np.allclose(far.design[0, :20, column["log_hand_px"]] - features.design[0, :20, column["log_hand_px"]],
                       np.log(0.5), atol=0.05)
    assert np.allclose(far.distance, 2 * features.distance)


def test_wobble_features_rise_where_the_estimated_depth_jumps_about():
    """Frames 30-59 of the hand jump 1 cm (2 %) back and forth in depth (every frame): their depth and size
    wobble is well above the steady first frames', which stay as they were a second away from the jumps."""
    rng = np.random.default_rng(4)
    keypoints3d, keypoints2d, valid, K = synthetic_estimates(rng)
    jumpy = keypoints3d.copy()
    jumpy[0, 30:, :, 2] += 0.01 * (-1.0) ** np.arange(30)[:, None]
    column = {name: i for i, name in enumerate(FEATURES)}
    design = frame_features(jumpy, keypoints2d, valid, K, None, 30.0).design[0]
    steady = frame_features(keypoints3d, keypoints2d, valid, K, None, 30.0).design[0]
    for name in ("depth_wobble", "size_wobble"):
        assert design[45:, column[name]].min() > steady[:, column[name]].max() + 1.0
        assert np.allclose(design[:10, column[name]], steady[:10, column[name]], atol=0.05)  # a second away


def test_error_model_fit_recovers_known_noise():
    rng = np.random.default_rng(3)
    frames = 8000
    design = np.concatenate([rng.normal(0, 0.5, (frames, len(FEATURES) - 1)), np.ones((frames, 1))], 1)
    truth = np.zeros(len(FEATURES))
    truth[0], truth[2], truth[-1] = 0.8, -0.6, np.log(0.05 ** 2)
    scale = np.sqrt(np.exp(design @ truth))
    ray_sq = (rng.standard_normal((frames, 1)) * scale[:, None]) ** 2
    side_sq = (rng.standard_normal((frames, 2)) * scale[:, None] * 0.3) ** 2
    articulation_sq = (rng.standard_normal((frames, 21, 3)) * 0.01) ** 2
    model = fit_error_model(design, ray_sq, side_sq, articulation_sq, 3.0, 0.5, 0.5, {}, ridge=1e-4)
    assert np.allclose(model.ray, truth, atol=0.1)
    assert model.side[-1] == pytest.approx(truth[-1] + np.log(0.09), abs=0.1)
    assert np.allclose(np.array(model.articulation)[:, -1], np.log(1e-4), atol=0.1)


def test_ray_floor_fit_recovers_a_floor_that_depends_on_the_size_being_given():
    """Squared errors exp(z·c) + floor(size_given), the floor 3× larger when the size is unknown (as on the
    video benchmark, where the unknown hand size sets a relative depth error no feature predicts): the fit
    finds both floors and the slope, and the model built from it predicts the right variance along the ray."""
    from handcli.variance.estimate import RAY_FLOOR_FEATURES, FrameFeatures, fit_log_linear_mean_above_floor

    rng = np.random.default_rng(6)
    frames = 40000
    column = {name: i for i, name in enumerate(FEATURES)}
    design = np.zeros((frames, len(FEATURES)))
    design[:, 0] = rng.normal(0.0, 1.0, frames)
    design[:, column["size_given"]] = rng.random(frames) < 0.5
    design[:, -1] = 1.0
    floor = np.where(design[:, column["size_given"]] > 0, 0.02 ** 2, 0.06 ** 2)
    expected = np.exp(np.log(0.03 ** 2) + 1.2 * design[:, 0]) + floor
    squared = (rng.standard_normal((frames, 1)) * np.sqrt(expected)[:, None]) ** 2
    above, fitted_floor = fit_log_linear_mean_above_floor(
        design, squared, [column[name] for name in RAY_FLOOR_FEATURES], 1e-4)
    assert np.sqrt(np.exp(fitted_floor[-1])) == pytest.approx(0.06, rel=0.1)
    assert np.sqrt(np.exp(fitted_floor[-1] + fitted_floor[column["size_given"]])) == pytest.approx(0.02, rel=0.2)
    assert above[0] == pytest.approx(1.2, abs=0.1) and np.exp(above[-1] / 2) == pytest.approx(0.03, rel=0.1)
    assert np.count_nonzero(fitted_floor) == len(RAY_FLOOR_FEATURES)
    model = fit_error_model(design, squared, np.full((frames, 2), 1e-4), np.full((frames, 21, 3), 1e-5), 3.0,
                            0.5, 0.5, {}, ridge=1e-4)
    ray = np.array([0.0, 0.0, 1.0])
    low = design[:, 0] < -1.5  # where the floor dominates
    uncertainty = estimate_uncertainty(FrameFeatures(design[None, low], 0.5 * ray * np.ones((1, low.sum(), 3)),
                                                     np.full((1, low.sum()), 0.5), ray * np.ones((1, low.sum(), 3))),
                                       model)
    predicted = uncertainty.var_root[0, :, 2, 2] / 0.25
    assert np.mean(predicted) == pytest.approx(np.mean(squared[low]), rel=0.1)


def test_error_model_matches_the_mean_squared_error_of_heavy_tailed_errors_and_caps_its_extrapolation():
    """A few gross errors (a mixture, as clips whose depth is far off) must raise the predicted mean squared
    error to the observed one overall and on each side of a feature, which the Gaussian likelihood would not."""
    from handcli.variance.estimate import MAX_RELATIVE_ROOT_STD, FrameFeatures, fit_log_linear_mean

    rng = np.random.default_rng(5)
    frames = 20000
    flag = rng.random(frames) < 0.5
    design = np.stack([flag.astype(float), np.ones(frames)], 1)
    sigma = np.where(flag, 0.02, 0.05) * np.where(rng.random(frames) < 0.05, 8.0, 1.0)  # 5 % gross errors
    squared = (rng.standard_normal((frames, 1)) * sigma[:, None]) ** 2
    predicted = np.exp(design @ fit_log_linear_mean(design, squared, 0.0))
    for part in (flag, ~flag, np.ones(frames, bool)):
        assert np.mean(predicted[part]) == pytest.approx(np.mean(squared[part]), rel=1e-3)
    # a frame far outside the fitted range keeps a variance that means something
    model = fit_error_model(np.ones((50, len(FEATURES))), np.full((50, 1), 1e-3), np.full((50, 2), 1e-3),
                            np.full((50, 21, 3), 1e-4), 3.0, 0.5, 0.5, {})
    far = np.full((1, 1, len(FEATURES)), 100.0)
    ray = np.array([[[0.0, 0.0, 1.0]]])
    uncertainty = estimate_uncertainty(FrameFeatures(far, ray * 0.5, np.array([[0.5]]), ray), model)
    assert np.all(np.isfinite(uncertainty.var_root)) and np.all(np.isfinite(uncertainty.var_articulation))
    assert np.trace(uncertainty.var_root[0, 0]) <= 3 * (MAX_RELATIVE_ROOT_STD * 0.5) ** 2 + 1e-12


def test_error_targets_split_the_whole_hand_from_the_articulation():
    rng = np.random.default_rng(4)
    keypoints3d, keypoints2d, valid, K = synthetic_estimates(rng)
    features = frame_features(keypoints3d, keypoints2d, valid, K, None, 30.0)
    truth = keypoints3d[0]
    shifted = truth + 0.1 * features.ray[0][:, None, :]  # 10 cm further along the ray
    ray_sq, side_sq, articulation_sq = error_targets(shifted, truth, type(features)(
        features.design[0], features.centre[0], features.distance[0], features.ray[0]))
    assert np.allclose(ray_sq[:, 0], (0.1 / features.distance[0]) ** 2)
    assert np.allclose(side_sq, 0, atol=1e-12) and np.allclose(articulation_sq, 0, atol=1e-12)


def test_sampled_errors_have_the_uncertainty_and_its_time_correlation():
    rng = np.random.default_rng(5)
    tracks, frames = 20, 2000
    root = np.diag([4e-4, 1e-4, 9e-4])
    uncertainty = EstimateUncertainty(np.broadcast_to(root, (tracks, frames, 3, 3)).copy(),
                                      np.full((tracks, frames, 21), 1e-5))
    draws = sample_estimate_errors(uncertainty, 3.0, 30.0, rng)
    whole = draws.mean(2)  # (H, T, 3)
    assert np.allclose(np.cov(whole.reshape(-1, 3).T), root + 1e-5 / 21 * np.eye(3), rtol=0.15, atol=2e-5)
    for lag in (1, 5, 15):  # Gaussian autocorrelation exp(-lag² / (4 w²))
        measured = np.mean([np.corrcoef(track[:-lag, 0], track[lag:, 0])[0, 1] for track in whole])
        assert measured == pytest.approx(np.exp(-lag ** 2 / 36), abs=0.05)
    assert np.var(draws - whole[..., None, :]) == pytest.approx(1e-5 * 20 / 21, rel=0.1)
    assert uncertainty.var_joints.shape == (tracks, frames, 21)
    assert np.allclose(uncertainty.var_joints, np.trace(root) + 3e-5)


class AveragingRefiner:
    """Stands in for the refiner: a 5-frame moving average of its input (linear, so the variance it passes on
    is known in closed form)."""

    def refine(self, keypoints3d, valid, is_right, fps, keypoints2d=None, K=None, anchor=None, **_):
        from handcli.diffusion.refiner import RefineResult

        padded = np.pad(np.asarray(keypoints3d, np.float64), ((0, 0), (2, 2), (0, 0), (0, 0)), mode="wrap")
        averaged = sum(padded[:, k:k + keypoints3d.shape[1]] for k in range(5)) / 5
        return RefineResult(averaged.astype(np.float32), np.zeros(valid.shape, np.int64), None)


def test_input_gain_matches_the_closed_form_for_a_linear_refiner():
    """Monte Carlo against the exact answer: a 5-frame average passes 1/5 of white noise's variance and all of
    an error that is constant in time. Width 100 frames is constant over the 5 averaged (autocorrelation
    exp(-25 / 40000) > 0.999 at lag 5); wider only costs time (1e4 took 10 minutes of CI: an 80,001-tap
    filter per draw)."""
    from handcli.variance.sequence import input_gain

    rng = np.random.default_rng(6)
    keypoints3d, keypoints2d, valid, K = synthetic_estimates(rng, frames=200)
    uncertainty = EstimateUncertainty(np.broadcast_to(np.eye(3) * 4e-4, (1, 200, 3, 3)).copy(),
                                      np.full((1, 200, 21), 1e-5))
    for width, expected in ((0.0, 0.2), (100.0, 1.0)):
        gain = input_gain(AveragingRefiner(), keypoints3d, valid, np.array([True]), 30.0,
                          lambda: sample_estimate_errors(uncertainty, width, 30.0, rng), 200, keypoints2d, K)
        assert gain.root[0] == pytest.approx(expected, rel=0.05)
        assert np.allclose(gain.articulation[0], expected, rtol=0.1)


def test_input_gain_of_the_bundled_refiner_keeps_slow_whole_hand_errors():
    """The shipped refiner cannot tell a slow whole-hand offset from motion: it passes it through (what the
    stage relies on), while it removes most of a fast, independent per-joint jitter."""
    from handcli.diffusion import load_refiner
    from handcli.variance.sequence import input_gain

    rng = np.random.default_rng(7)
    refiner = load_refiner(None, device="cpu")
    keypoints3d, keypoints2d, valid, K = synthetic_estimates(rng, frames=90)
    slow = EstimateUncertainty(np.broadcast_to(np.eye(3) * 4e-4, (1, 90, 3, 3)).copy(), np.full((1, 90, 21), 1e-12))
    fast = EstimateUncertainty(np.zeros((1, 90, 3, 3)), np.full((1, 90, 21), 4e-5))
    slow_gain = input_gain(refiner, keypoints3d, valid, np.array([True]), 30.0,
                           lambda: sample_estimate_errors(slow, 30.0, 30.0, rng), 12, keypoints2d, K)
    fast_gain = input_gain(refiner, keypoints3d, valid, np.array([True]), 30.0,
                           lambda: sample_estimate_errors(fast, 0.0, 30.0, rng), 12, keypoints2d, K)
    assert 0.6 < slow_gain.root[0] < 1.4
    assert np.median(fast_gain.articulation[0]) < 0.6


def test_calibration_file_round_trip_and_refusal(tmp_path):
    calibration = VarianceCalibration(0.6, [0.0] * len(FEATURES), [0.0] * len(FEATURES),
                                      [[0.0] * len(FEATURES)] * 21, 3.0, 0.5, 0.4, {"test": True},
                                      [0.0] * (len(FEATURES) - 1) + [-6.0])
    calibration.save(tmp_path / "c.json")
    assert VarianceCalibration.load(tmp_path / "c.json") == calibration
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(BadInput, match="not a readable"):
        VarianceCalibration.load(tmp_path / "bad.json")
    bundled = VarianceCalibration.load()
    assert 0 < bundled.laplace_scale < 2 and 0 < bundled.correlation_frames < 15
    features = frame_features(*synthetic_estimates(np.random.default_rng(8))[:1], *synthetic_estimates(
        np.random.default_rng(8))[1:], None, 30.0)
    uncertainty = estimate_uncertainty(features, bundled)
    assert np.isfinite(uncertainty.var_root).all() and (np.linalg.eigvalsh(uncertainty.var_root) > 0).all()


def test_beyond_calibration_flags_the_features_outside_the_fitted_range(tmp_path):
    """The fit records each feature's range over its frames; a frame inside all of them is not flagged, the
    same hand placed twice as far (the same image, so only its distance changes) is flagged on its distance
    alone; a format /2 file has no ranges and flags nothing."""
    from handcli.variance.estimate import RANGED_FEATURES, beyond_calibration

    keypoints3d, keypoints2d, valid, K = synthetic_estimates(np.random.default_rng(5))
    features = frame_features(keypoints3d, keypoints2d, valid, K, None, 30.0)
    design = features.design.reshape(-1, len(FEATURES))
    rng = np.random.default_rng(6)
    calibration = fit_error_model(design, rng.exponential(1e-3, (len(design), 1)),
                                  rng.exponential(1e-3, (len(design), 2)), rng.exponential(1e-5, (len(design), 21, 3)),
                                  3.0, 0.5, 0.5, {})
    assert sorted(calibration.feature_ranges) == sorted(RANGED_FEATURES)
    assert not beyond_calibration(features, calibration).any()
    far = frame_features(2.0 * keypoints3d, keypoints2d, valid, K, None, 30.0)
    flagged = beyond_calibration(far, calibration)  # (H, T, R)
    assert flagged[..., RANGED_FEATURES.index("log_distance")].all()
    assert not np.delete(flagged, RANGED_FEATURES.index("log_distance"), axis=-1).any()
    calibration.save(tmp_path / "c.json")
    assert VarianceCalibration.load(tmp_path / "c.json") == calibration
    # a calibration without ranges is written, and read, as format /2: no flags
    older = VarianceCalibration(**{**calibration.__dict__, "feature_ranges": None})
    older.save(tmp_path / "old.json")
    assert json.loads((tmp_path / "old.json").read_text())["format"] == "handcli-variance-calibration/2"
    assert beyond_calibration(far, VarianceCalibration.load(tmp_path / "old.json")) is None
    # a /3 file must hold a finite [low <= high] for every feature
    payload = json.loads((tmp_path / "c.json").read_text())
    for broken in (None, {**payload["feature_ranges"], "log_distance": [1.0, 0.0]},
                   {k: v for k, v in payload["feature_ranges"].items() if k != "truncation"}):
        (tmp_path / "bad.json").write_text(json.dumps({**payload, "feature_ranges": broken}))
        with pytest.raises(BadInput, match="not a readable"):
            VarianceCalibration.load(tmp_path / "bad.json")
    # a hair past a range's end is rounding, not extrapolation (RANGE_MARGIN)
    edge = FrameFeatures(features.design.copy(), features.centre, features.distance, features.ray)
    low, high = calibration.feature_ranges["palm_facing"]
    edge.design[..., FEATURES.index("palm_facing")] = high + 1e-4 * (high - low)
    assert not beyond_calibration(edge, calibration).any()


def test_the_variance_stage_marks_and_counts_the_frames_beyond_the_calibration(tiny_weights, tmp_path):
    from handcli.artifacts import Artifact
    from handcli.stages.info import describe_uncertainty
    from handcli.stages.variance import VarianceConfig, variance

    weights, posterior = tiny_weights
    keypoints3d, keypoints2d, valid, K = synthetic_estimates(np.random.default_rng(9), frames=40)
    artifact = Artifact(keypoints3d.astype(np.float32), valid, np.array([True]), fps=30.0,
                        keypoints2d=keypoints2d.astype(np.float32), K=K.astype(np.float32),
                        image_size=np.array([640, 480]))
    calibration = VarianceCalibration.load()
    calibration.feature_ranges = {name: [-1e3, 1e3] for name in calibration.feature_ranges}
    calibration.save(tmp_path / "wide.json")
    calibration.feature_ranges["log_distance"] = [5.0, 6.0]  # 74-200 m: every frame is nearer
    calibration.save(tmp_path / "far.json")
    results = [variance(artifact, VarianceConfig(weights=weights, laplace=posterior, samples=3, device="cpu",
                                                 input_draws=2, calibration=tmp_path / name))
               for name in ("wide.json", "far.json")]
    inside, beyond = results
    assert inside.beyond_calibration.shape == (1, 40) and not inside.beyond_calibration.any()
    assert inside.meta["beyond_calibration"] == {"frames": 0, "of": int(valid.sum()), "features": {}}
    assert beyond.beyond_calibration[valid].all()
    assert beyond.meta["beyond_calibration"] == {"frames": int(valid.sum()), "of": int(valid.sum()),
                                                 "features": {"log_distance": int(valid.sum())}}
    assert np.array_equal(inside.var_joints, beyond.var_joints)  # a flag, not a change of the error bars
    assert not any("extrapolates" in line for line in describe_uncertainty(inside))
    lines = describe_uncertainty(beyond)
    assert any(f"on {int(valid.sum())} of {int(valid.sum())} frames the ± extrapolates" in line for line in lines)
    assert any(f"distance (log_distance) on {int(valid.sum())} frames" in line for line in lines)


def test_variance_stage_writes_var_root_for_inputs_from_video(tiny_weights):
    from handcli.artifacts import Artifact
    from handcli.stages.info import describe_uncertainty
    from handcli.stages.variance import VarianceConfig, variance

    weights, posterior = tiny_weights
    rng = np.random.default_rng(9)
    keypoints3d, keypoints2d, valid, K = synthetic_estimates(rng, frames=40)
    artifact = Artifact(keypoints3d.astype(np.float32), valid, np.array([True]), fps=30.0,
                        keypoints2d=keypoints2d.astype(np.float32), K=K.astype(np.float32),
                        image_size=np.array([640, 480]))
    config = VarianceConfig(weights=weights, laplace=posterior, samples=3, device="cpu", input_draws=4)
    result = variance(artifact, config)
    assert result.var_root.shape == (1, 40, 3, 3)
    assert (np.linalg.eigvalsh(result.var_root.astype(np.float64)) > -1e-12).all()
    # the spread of the mean keypoint is at most the mean spread of the keypoints (Jensen), whatever the draws
    assert (result.var_joints.mean(-1) >= 0.999 * np.trace(result.var_root, axis1=-2, axis2=-1)).all()
    without = variance(artifact, VarianceConfig(weights=weights, laplace=posterior, samples=3, device="cpu",
                                                input_draws=0))
    assert without.var_root is None and (without.var_joints < result.var_joints).all()
    lines = describe_uncertainty(result)
    assert "along the camera ray" in lines[1] and "articulation" in lines[1]
    assert "no whole-hand covariance" in describe_uncertainty(without)[1]


def test_a_given_hand_length_is_read_through_the_stages_and_narrows_the_depth():
    """`size_given` comes from the estimate stage's config wherever the artifact is in the chain, and the
    shipped calibration gives a hand of known size a narrower spread along the ray (what --hand-length buys)."""
    from handcli.artifacts import make_meta
    from handcli.variance.estimate import hand_length_given

    sized = make_meta("estimate", config={"hand_length": 0.17})
    unsized = make_meta("estimate", config={"hand_length": None})
    assert hand_length_given(sized) and not hand_length_given(unsized)
    assert hand_length_given(make_meta("variance", previous=make_meta("refine", previous=sized)))
    assert not hand_length_given(make_meta("refine", previous=unsized)) and not hand_length_given({})
    keypoints3d, keypoints2d, valid, K = synthetic_estimates(np.random.default_rng(9))
    calibration = VarianceCalibration.load()
    spreads = []
    for given in (False, True):
        features = frame_features(keypoints3d, keypoints2d, valid, K, None, 30.0, size_given=given)
        assert np.all(features.design[..., FEATURES.index("size_given")] == float(given))
        uncertainty = estimate_uncertainty(features, calibration)
        spreads.append(np.einsum("hti,htij,htj->ht", features.ray, uncertainty.var_root, features.ray))
    assert np.all(spreads[1] < 0.8 * spreads[0])


def test_an_assumed_focal_length_adds_its_depth_error_along_the_ray_only():
    """Without --focal or --fov the hand's distance carries the assumed field of view's error: exactly
    s² d² along the ray, nothing across it or in the articulation; read from detect's config anywhere in the
    chain."""
    from handcli.artifacts import make_meta
    from handcli.variance.estimate import assumed_focal_spread, focal_given

    assert focal_given(make_meta("detect", config={"focal": 900.0, "fov": None}))
    assert focal_given(make_meta("variance", previous=make_meta("refine", previous=make_meta(
        "estimate", previous=make_meta("detect", config={"focal": None, "fov": 70.0})))))
    assert not focal_given(make_meta("estimate", previous=make_meta("detect", config={"focal": None, "fov": None})))
    assert not focal_given({}) and not focal_given(make_meta("import"))
    # the camera's field of view is the assumed one: no error; 90 degrees against an assumed 60: depth
    # tan 45° / tan 30° times too far
    assert assumed_focal_spread((60.0, 60.0), 60.0) < 1e-12
    assert abs(assumed_focal_spread((90.0, 90.0), 60.0) - (1.0 / np.tan(np.radians(30.0)) - 1.0)) < 1e-9
    assert 0.0 < assumed_focal_spread((70.0, 70.0), 60.0) < assumed_focal_spread((60.0, 90.0), 60.0)
    keypoints3d, keypoints2d, valid, K = synthetic_estimates(np.random.default_rng(3))
    features = frame_features(keypoints3d, keypoints2d, valid, K, None, 30.0)
    calibration = VarianceCalibration.load()
    given, assumed = (estimate_uncertainty(features, calibration, spread) for spread in (0.0, 0.3))
    added = assumed.var_root - given.var_root
    expected = (0.3 * features.distance) ** 2
    assert np.allclose(np.einsum("hti,htij,htj->ht", features.ray, added, features.ray), expected, rtol=1e-9)
    assert np.allclose(np.trace(added, axis1=-2, axis2=-1), expected, rtol=1e-9)  # nothing across the ray
    assert np.array_equal(assumed.var_articulation, given.var_articulation)


def test_the_variance_stage_widens_the_depth_when_the_focal_length_was_assumed(tiny_weights):
    from handcli.artifacts import Artifact, make_meta
    from handcli.stages.info import describe_uncertainty
    from handcli.stages.variance import VarianceConfig, variance

    weights, posterior = tiny_weights
    keypoints3d, keypoints2d, valid, K = synthetic_estimates(np.random.default_rng(9), frames=40)
    results = []
    for focal in (800.0, None):
        meta = make_meta("estimate", previous=make_meta("detect", config={"focal": focal, "fov": None}))
        artifact = Artifact(keypoints3d.astype(np.float32), valid, np.array([True]), fps=30.0,
                            keypoints2d=keypoints2d.astype(np.float32), K=K.astype(np.float32),
                            image_size=np.array([640, 480]), meta=meta)
        results.append(variance(artifact, VarianceConfig(weights=weights, laplace=posterior, samples=3, device="cpu",
                                                         input_draws=4)))
    known, assumed = results
    assert known.meta["focal_spread"] == 0.0 and assumed.meta["focal_spread"] > 0.1
    ray = keypoints3d.mean(2) / np.linalg.norm(keypoints3d.mean(2), axis=-1, keepdims=True)
    along = [np.einsum("hti,htij,htj->ht", ray, r.var_root.astype(np.float64), ray) for r in results]
    assert np.all(along[1] > along[0] + 0.5 * (assumed.meta["focal_spread"] * 0.5) ** 2)
    assert not any("focal length" in line for line in describe_uncertainty(known))
    assert any("focal length was assumed" in line for line in describe_uncertainty(assumed))
    imported = assumed.replace(meta=make_meta("variance", previous=make_meta("import")))
    assert any("did not come from handcli detect" in line for line in describe_uncertainty(imported))


def test_maps_do_not_outlive_the_motion_they_describe_and_odd_meta_does_not_break_info():
    """Estimate (like refine) drops an upstream variance stage's maps and flags: they describe the motion it
    replaces. `handcli info` reads the flag's meta defensively (another tool may have written it)."""
    from handcli.artifacts import Artifact
    from handcli.stages.estimate import EstimateConfig, estimate
    from handcli.stages.info import describe_uncertainty
    from tests.conftest import random_keypoints

    frames = 8
    artifact = Artifact(random_keypoints(1, frames), np.ones((1, frames), bool), np.array([True]), fps=30.0,
                        var_joints=np.full((1, frames, 21), 1e-4, np.float32),
                        var_root=np.tile(np.eye(3, dtype=np.float32) * 1e-4, (1, frames, 1, 1)),
                        beyond_calibration=np.ones((1, frames), bool))
    fitted = estimate(artifact, EstimateConfig(device="cpu", iterations=1))
    assert fitted.var_joints is None and fitted.var_root is None and fitted.beyond_calibration is None
    for meta in ({"beyond_calibration": 5}, {"beyond_calibration": {"features": ["a"]}}, {"variance": "x"}):
        lines = describe_uncertainty(artifact.replace(meta=meta))
        assert any("extrapolates" in line for line in lines)
