"""Analytic IK and keypoint fitting: round trips, recovery of known poses and shapes, gaps, the FPHA floor."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from tests.conftest import REPO, needs_shared
from handcli.fitting import CANONICAL_TO_MANO21, analytic_ik, fit_keypoints
from handcli.fitting.interpolate import fill_linear, fill_rotations
from handcli.fitting.limits import anatomical_frames, limit_bounds, limit_violation
from handcli.handmodels.kinematics import (
    MANO21_TO_CANONICAL,
    MANO21_PARENTS,
    axis_angle_to_matrix,
    forward_kinematics,
    mirror_axis_angle,
    mirror_points,
)
from handcli.handmodels.open_hand import OPEN_HAND_PATH

needs_open_hand = pytest.mark.skipif(not OPEN_HAND_PATH.is_file(), reason="weights/open_hand.npz not built")


def stick_hand(scale: float = 1.0) -> torch.Tensor:
    """A flat right hand skeleton in MANO's rest frame (fingers -x, palm -y, thumb +z): (21, 3) MANO21 order."""
    bases = {1: (-0.095, 0.0, 0.025), 4: (-0.095, 0.0, 0.002), 10: (-0.088, 0.0, -0.018), 7: (-0.080, 0.0, -0.036),
             13: (-0.035, -0.005, 0.025)}
    lengths = {1: (0.040, 0.025, 0.020), 4: (0.045, 0.028, 0.021), 10: (0.042, 0.027, 0.021), 7: (0.033, 0.020, 0.019),
               13: (0.040, 0.033, 0.028)}
    directions = {1: (-1.0, 0.0, 0.08), 4: (-1.0, 0.0, 0.0), 10: (-1.0, 0.0, -0.05), 7: (-1.0, 0.0, -0.1),
                  13: (-1.0, -0.1, 1.0)}
    tips = {13: 16, 1: 17, 4: 18, 10: 19, 7: 20}
    joints = torch.zeros(21, 3, dtype=torch.float64)
    for base, start in bases.items():
        direction = torch.tensor(directions[base], dtype=torch.float64)
        direction = direction / direction.norm()
        point = torch.tensor(start, dtype=torch.float64)
        chain = [base, base + 1, base + 2, tips[base]]
        joints[chain[0]] = point
        for joint, length in zip(chain[1:], lengths[base]):
            point = point + length * direction
            joints[joint] = point
    return joints * scale


def stick_keypoints(rest21: torch.Tensor, global_orient, hand_pose, transl) -> torch.Tensor:
    """FK of the stick hand, tips rigid on their distal joint: -> (B, 21, 3) canonical order."""
    rotations = axis_angle_to_matrix(torch.cat([global_orient[:, None], hand_pose, torch.zeros_like(hand_pose[:, :5])], 1))
    joints, _ = forward_kinematics(rotations, rest21, MANO21_PARENTS)
    return (joints + transl[:, None])[:, list(MANO21_TO_CANONICAL)]


def limited_poses(rest21: torch.Tensor, batch: int, seed: int = 0, scale: float = 1.0, hinge: bool = False) -> torch.Tensor:
    """Random hand poses inside the anatomical limits: (batch, 15, 3) axis-angle. hinge: finger joints without
    twist, PIP/DIP/IP flexing only (how real fingers move)."""
    generator = torch.Generator().manual_seed(seed)
    lower, upper = limit_bounds(torch.float64, table="anatomical")
    unit = torch.rand(batch, 15, 3, generator=generator, dtype=torch.float64)
    angles = (lower + (upper - lower) * unit) * scale  # (flexion, abduction, twist) per joint
    if hinge:
        angles[..., 2] = 0
        distal = [j - 1 for j in (2, 3, 5, 6, 8, 9, 11, 12, 14, 15)]
        angles[:, distal, 1] = 0
    frames = anatomical_frames(rest21)
    return (frames.transpose(-1, -2) @ angles[..., None])[..., 0]


def test_canonical_mano_orders_are_inverse():
    assert [MANO21_TO_CANONICAL[c] for c in CANONICAL_TO_MANO21] == list(range(21))


def test_ik_round_trip_reproduces_keypoints():
    rest = stick_hand()
    pose = limited_poses(rest, 256, seed=1)
    generator = torch.Generator().manual_seed(2)
    orient = torch.randn(256, 3, generator=generator, dtype=torch.float64)
    transl = torch.randn(256, 3, generator=generator, dtype=torch.float64) * 0.2
    keypoints = stick_keypoints(rest, orient, pose, transl)
    orient_ik, pose_ik, transl_ik = analytic_ik(keypoints, rest)
    again = stick_keypoints(rest, orient_ik, pose_ik, transl_ik)
    assert (again - keypoints).norm(dim=-1).max() < 1e-9
    # hinge-like fingers (no twist): the pose itself comes back, twist included
    hinge = limited_poses(rest, 256, seed=3, hinge=True)
    orient_ik, pose_ik, transl_ik = analytic_ik(stick_keypoints(rest, orient, hinge, transl), rest)
    assert (pose_ik - hinge).abs().max() < 1e-6
    torch.testing.assert_close(axis_angle_to_matrix(orient_ik), axis_angle_to_matrix(orient))
    assert limit_violation(pose_ik, anatomical_frames(rest), *limit_bounds(torch.float64, table="anatomical")).max() < 1e-9


def test_ik_batched_shapes_and_gradients():
    rest = stick_hand()
    keypoints = stick_keypoints(rest, torch.zeros(6, 3, dtype=torch.float64), torch.zeros(6, 15, 3, dtype=torch.float64),
                                torch.zeros(6, 3, dtype=torch.float64)).reshape(2, 3, 21, 3)
    keypoints = keypoints + 1e-4 * torch.randn_like(keypoints)
    keypoints.requires_grad_(True)
    orient, pose, transl = analytic_ik(keypoints, rest)
    assert orient.shape == (2, 3, 3) and pose.shape == (2, 3, 15, 3) and transl.shape == (2, 3, 3)
    (orient.sum() + pose.sum() + transl.sum()).backward()
    assert torch.isfinite(keypoints.grad).all()
    # a flat hand gives the zero pose
    flat = stick_keypoints(rest, torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, 15, 3, dtype=torch.float64),
                           torch.zeros(1, 3, dtype=torch.float64))
    orient, pose, transl = analytic_ik(flat, rest)
    assert pose.abs().max() < 1e-7 and orient.abs().max() < 1e-7 and transl.abs().max() < 1e-9


@needs_open_hand
def test_ik_round_trip_on_open_hand_model():
    from handcli.handmodels import load_hand_model

    model = load_hand_model("open").double()
    betas = torch.randn(64, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    rest = model.rest_joints21(betas)
    pose = limited_poses(rest[0], 64, seed=4)
    orient = torch.randn(64, 3, dtype=torch.float64)
    transl = 0.3 * torch.randn(64, 3, dtype=torch.float64)
    keypoints = model.keypoints(orient, pose, betas, transl)
    again = model.keypoints(*_swap(analytic_ik(keypoints, rest), betas))
    assert (again - keypoints).norm(dim=-1).max() < 1e-9


def _swap(ik, betas):
    orient, pose, transl = ik
    return orient, pose, betas, transl


def test_fill_interpolates_between_valid_frames():
    valid = torch.tensor([[False, True, False, False, True, False], [False] * 6])
    values = torch.arange(6, dtype=torch.float64).reshape(1, 6, 1).expand(2, 6, 1).clone()
    values[:, [0, 2, 3, 5]] = 99.0
    filled = fill_linear(values, valid)
    torch.testing.assert_close(filled[0, :, 0], torch.tensor([1, 1, 2, 3, 4, 4], dtype=torch.float64))
    assert filled[1].abs().max() == 0
    angles = torch.zeros(1, 3, 3, dtype=torch.float64)
    angles[0, 0, 2], angles[0, 2, 2] = 0.2, 1.0
    rotations = fill_rotations(angles, torch.tensor([[True, False, True]]))
    torch.testing.assert_close(rotations[0, 1], torch.tensor([0.0, 0.0, 0.6], dtype=torch.float64))


# --------------------------------------------------------------------------------------------- fitting
def synthetic_tracks(model, frames: int = 80, seed: int = 0):
    """Two tracks (right, left) of smooth in-limit motion with known betas: keypoints (2, T, 21, 3) and truth."""
    generator = torch.Generator().manual_seed(seed)
    betas = 0.8 * torch.randn(2, model.num_betas, generator=generator)
    rest = model.rest_joints21(torch.zeros(1, model.num_betas))[0]
    phase = torch.linspace(0, 1, frames)[:, None, None]
    start, end = limited_poses(rest.double(), 2, seed=seed, scale=0.8).float(), limited_poses(rest.double(), 2, seed=seed + 1, scale=0.8).float()
    pose = torch.stack([start[h] + phase * (end[h] - start[h]) for h in range(2)])  # (2, T, 15, 3)
    orient = torch.stack([torch.tensor([0.3, -1.2, 0.4]) + phase[:, 0] * torch.tensor([0.5, 0.2, 0.0])] * 2)
    transl = torch.stack([torch.tensor([0.05, 0.02, 0.5]) + phase[:, 0] * torch.tensor([0.1, 0.0, 0.05])] * 2)
    is_right = torch.tensor([True, False])
    # the left hand makes the mirror image of the motion: mirrored parameters (same parameters would hyperextend)
    orient, pose, transl = (torch.stack([x[0], mirror(x[1])]) for x, mirror in
                            ((orient, mirror_axis_angle), (pose, mirror_axis_angle), (transl, mirror_points)))
    keypoints = model.keypoints(orient.flatten(0, 1), pose.flatten(0, 1), betas.repeat_interleave(frames, 0),
                                transl.flatten(0, 1), is_right.repeat_interleave(frames)).reshape(2, frames, 21, 3)
    return keypoints, is_right, betas


@needs_open_hand
def test_fit_recovers_synthetic_pose_and_shape():
    from handcli.handmodels import load_hand_model

    model = load_hand_model("open")
    keypoints, is_right, betas = synthetic_tracks(model)
    valid = np.ones(keypoints.shape[:2], bool)
    valid[0, 10:14] = False
    valid[1, -3:] = False
    observed = keypoints.numpy().copy()
    observed[~valid] = np.nan
    result = fit_keypoints(model, observed, valid, is_right.numpy(), iterations=60)
    for name in ("global_orient", "hand_pose", "transl", "betas", "keypoints3d_fit"):
        assert np.isfinite(getattr(result, name)).all(), name
    assert result.hand_pose.shape == (2, 80, 15, 3) and result.betas.shape == (2, 10)
    error = np.linalg.norm(result.keypoints3d_fit - keypoints.numpy(), axis=-1)
    assert error[valid].mean() < 0.001, error[valid].mean()  # < 1 mm where observed
    assert error[~valid].mean() < 0.003  # interpolated gaps stay close to the smooth truth
    assert np.isnan(result.per_frame_error[~valid]).all() and np.nanmax(result.per_frame_error) < 0.002
    # the model reproduces its own fit: keypoints3d_fit is the forward pass of the returned parameters
    again = model.keypoints(*(torch.as_tensor(x).flatten(0, 1) for x in (result.global_orient, result.hand_pose)),
                            torch.as_tensor(result.betas).repeat_interleave(80, 0),
                            torch.as_tensor(result.transl).flatten(0, 1), is_right.repeat_interleave(80))
    np.testing.assert_allclose(again.reshape(2, 80, 21, 3).numpy(), result.keypoints3d_fit, atol=1e-5)


@needs_open_hand
def test_fit_left_track_is_mirror_of_right_fit():
    from handcli.handmodels import load_hand_model

    model = load_hand_model("open")
    keypoints, _, _ = synthetic_tracks(model, frames=20, seed=5)
    right = keypoints[:1].numpy()
    left = mirror_points(keypoints[:1]).numpy()
    both = fit_keypoints(model, np.concatenate([right, left]), np.ones((2, 20), bool), np.array([True, False]), iterations=30)
    np.testing.assert_allclose(both.keypoints3d_fit[1], mirror_points(torch.as_tensor(both.keypoints3d_fit[0])).numpy(), atol=2e-4)
    np.testing.assert_allclose(both.betas[0], both.betas[1], atol=0.05)


@needs_open_hand
def test_fit_handles_tracks_without_valid_frames():
    from handcli.handmodels import load_hand_model

    model = load_hand_model("open")
    keypoints = np.full((2, 5, 21, 3), np.nan, np.float32)
    keypoints[0] = synthetic_tracks(model, frames=5)[0][0].numpy()
    valid = np.array([[True] * 5, [False] * 5])
    result = fit_keypoints(model, keypoints, valid, np.array([True, True]), iterations=10)
    assert np.isfinite(result.hand_pose).all() and np.isfinite(result.keypoints3d_fit).all()
    assert np.isnan(result.per_frame_error[1]).all() and np.isfinite(result.per_frame_error[0]).all()


# ------------------------------------------------------------------------------------------- FPHA floor
def _fpha_script():
    spec = importlib.util.spec_from_file_location("fit_floor_fpha", REPO / "scripts" / "fit_floor_fpha.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_shared
@needs_open_hand
def test_fit_floor_on_fpha_sequences():
    """A few FPHA sequences of every subject (ground truth, 1 in 2 frames): mean joint error within 2 mm."""
    from handcli.handmodels import load_hand_model

    script = _fpha_script()
    sequences = []
    for subject in (1, 2, 3, 4):
        found = script.load_fpha_subject(subject)
        sequences += [keypoints[::2] for _, keypoints in found[:: max(1, len(found) // 3)][:3]]
    errors = script.fit_floor(load_hand_model("open"), sequences)
    assert math.isfinite(errors["per_frame"].mean()) and errors["per_frame"].mean() < 0.002, errors["per_frame"].mean()


# ------------------------------------------------------------------------------------ kinematic projection
def test_blend_toward_fit_smooths_the_correction_and_holds_outside_the_span():
    from handcli.fitting import blend_toward_fit

    rng = np.random.default_rng(0)
    keypoints = rng.normal(0, 0.05, (2, 40, 21, 3)).astype(np.float32)
    offset = np.float32(0.003)
    fitted = keypoints + offset + rng.normal(0, 0.002, keypoints.shape).astype(np.float32)
    span = np.zeros((2, 40), bool)
    span[0] = True
    span[1, 5:30] = True
    exact = blend_toward_fit(keypoints, fitted, span, sigma=0)
    np.testing.assert_allclose(exact[0], fitted[0], atol=1e-6)  # sigma 0: the fit itself
    np.testing.assert_allclose(exact[1, 5:30], fitted[1, 5:30], atol=1e-6)
    assert (exact[1, :5] == exact[1, 5]).all() and (exact[1, 30:] == exact[1, 29]).all()
    blended = blend_toward_fit(keypoints, fitted, span, sigma=2)
    correction = blended[0] - keypoints[0]
    assert abs(correction.mean() - offset) < 3e-4  # the systematic part of the correction is kept ...
    assert correction.std() < 0.4 * (fitted[0] - keypoints[0]).std()  # ... its frame-to-frame noise is not
    assert keypoints.shape == blended.shape and blended.dtype == np.float32


@needs_open_hand
def test_projection_onto_the_hand_model_removes_impossible_articulation():
    """Slow per-joint bias bends fingers in ways no hand can; fitting the model and blending removes part of it."""
    from scipy.ndimage import gaussian_filter1d

    from handcli.fitting import blend_toward_fit
    from handcli.handmodels import load_hand_model

    model = load_hand_model("open")
    keypoints, is_right, _ = synthetic_tracks(model, frames=60, seed=3)
    truth = keypoints.numpy()
    rng = np.random.default_rng(1)
    bias = gaussian_filter1d(rng.normal(0, 1, truth.shape), 6, axis=1)
    noisy = (truth + 0.004 * bias / bias.std()).astype(np.float32)
    valid = np.ones(truth.shape[:2], bool)
    fit = fit_keypoints(model, noisy, valid, is_right.numpy(), iterations=8)
    projected = blend_toward_fit(noisy, fit.keypoints3d_fit, valid, sigma=2)
    before = np.linalg.norm(noisy - truth, axis=-1).mean()
    after = np.linalg.norm(projected - truth, axis=-1).mean()
    assert after < 0.85 * before, (before, after)
