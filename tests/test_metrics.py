"""Metric formulas on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from handcli.metrics import auroc, evaluate_tracks, procrustes_align
from tests.conftest import random_keypoints


def test_exact_prediction_scores_zero():
    gt = random_keypoints(2, 30).astype(np.float64)
    result = evaluate_tracks(gt, gt, np.ones((2, 30), bool))
    assert result["mpjpe_mm"] == pytest.approx(0, abs=1e-9)
    assert result["accel_mm_per_frame2"] == pytest.approx(0, abs=1e-9)
    assert result["frames"] == 60


def test_constant_offset_is_mpjpe_but_not_pa_or_accel():
    gt = random_keypoints(1, 30).astype(np.float64)
    result = evaluate_tracks(gt + [0.01, 0, 0], gt, np.ones((1, 30), bool))
    assert result["mpjpe_mm"] == pytest.approx(10.0)
    assert result["pa_mpjpe_mm"] == pytest.approx(0, abs=1e-6)
    assert result["accel_mm_per_frame2"] == pytest.approx(0, abs=1e-9)


def test_procrustes_removes_similarity_transform():
    gt = random_keypoints(1, 5)[0].astype(np.float64)
    rotation = Rotation.from_rotvec([0.3, -1.0, 0.5]).as_matrix()
    moved = 1.7 * gt @ rotation.T + [0.2, -0.1, 0.4]
    np.testing.assert_allclose(procrustes_align(moved, gt), gt, atol=1e-9)


def test_acceleration_error_of_a_single_spike():
    gt = np.zeros((1, 10, 21, 3))
    pred = gt.copy()
    pred[0, 5, :, 0] = 0.001  # 1 mm on one frame: second differences -2, +1, +1 mm around it... |+1|,|-2|,|+1|
    result = evaluate_tracks(pred, gt, np.ones((1, 10), bool))
    assert result["accel_mm_per_frame2"] == pytest.approx((1 + 2 + 1) / 8)


def test_missing_ground_truth_frames_are_not_scored():
    gt = random_keypoints(1, 10).astype(np.float64)
    pred = gt.copy()
    pred[0, 4] += 1.0
    valid = np.ones((1, 10), bool)
    valid[0, 4] = False
    result = evaluate_tracks(pred, gt, valid)
    assert result["mpjpe_mm"] == pytest.approx(0, abs=1e-9) and result["frames"] == 9


def test_auroc():
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1], bool)) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1], bool)) == 0.0
    assert auroc(np.ones(4), np.array([0, 0, 1, 1], bool)) == 0.5


def test_variance_ranking_reported():
    gt = random_keypoints(1, 40).astype(np.float64)
    noise = np.linspace(0, 0.05, 40)[:, None, None] * np.ones((40, 21, 3))
    pred = gt + noise[None]
    var_joints = (noise[..., 0] ** 2)[None]
    result = evaluate_tracks(pred, gt, np.ones((1, 40), bool), var_joints=var_joints, bad_frame_mm=40)
    assert result["variance_spearman"] > 0.99 and result["variance_auroc_bad_frames"] == 1.0


def test_eval_cli_scores_and_reports_physics(tmp_path):
    import json

    from tests.conftest import run_cli

    gt = random_keypoints(1, 30)
    np.savez(tmp_path / "gt.npz", keypoints3d=gt)
    np.savez(tmp_path / "pred.npz", keypoints3d=gt + np.float32(0.002))
    result = run_cli("eval", "--pred", tmp_path / "pred.npz", "--gt", tmp_path / "gt.npz", "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["mpjpe_mm"] == pytest.approx(2 * np.sqrt(3), rel=1e-4)
    assert scores["R_q"] >= 0 and np.isfinite(scores["R_q"])
    mismatch = run_cli("eval", "--pred", tmp_path / "pred.npz", "--gt", tmp_path / "gt.npz")
    assert mismatch.returncode == 0
    np.savez(tmp_path / "short.npz", keypoints3d=gt[:, :10])
    from tests.conftest import assert_one_line_error
    assert_one_line_error(run_cli("eval", "--pred", tmp_path / "short.npz", "--gt", tmp_path / "gt.npz"), 2, "must match")
