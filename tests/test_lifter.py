"""The learned 2D -> 3D articulation prior (handcli.fitting.lifter) and its training data (handcli.training.lifter)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handcli.datagen.motion import sample_motion
from handcli.fitting.lifter import Lifter, LifterEnsemble, lifter_features, load_lifter, save_lifter, unit_shape
from handcli.handmodels.size import hand_length
from handcli.training.lifter import (
    ErrorBank,
    LifterTrainConfig,
    apply_world_error,
    facing_cosine,
    make_batch,
    random_cameras,
    residual_bank,
    train_lifter,
    view_bin,
    world_error_bank,
)


def no_error(count: int = 1) -> ErrorBank:
    return ErrorBank(np.zeros((count, 21, 2)), np.repeat(np.eye(3)[None], count, 0), np.zeros((count, 21, 3)))


def synthetic_frames(count: int, seed: int) -> np.ndarray:
    """(count, 21, 3) right-hand frames of the motion generator (metres)."""
    motion = sample_motion(max(1, count // 16), 64, np.random.default_rng(seed))
    return motion.keypoints3d[:, ::4].reshape(-1, 21, 3)[:count].astype(np.float64)


def test_features_separate_shape_from_position_and_size():
    rng = np.random.default_rng(0)
    points = torch.as_tensor(rng.normal(0, 0.05, (4, 21, 2)))
    world = torch.as_tensor(rng.normal(0, 0.05, (4, 21, 3)))
    base = lifter_features(points, world)
    moved = lifter_features(points + torch.tensor([0.1, -0.2], dtype=points.dtype), world + 0.3)
    scaled = lifter_features(points * 2.0, world * 3.0)
    assert base.shape == (4, 105)
    for other in (moved, scaled):  # the 2D shape and the landmarks' shape do not see position or size
        assert torch.allclose(base[:, :42], other[:, :42]) and torch.allclose(base[:, 45:], other[:, 45:])
    assert torch.allclose(moved[:, 42:44] - base[:, 42:44], torch.tensor([0.1, -0.2], dtype=points.dtype))
    assert torch.allclose(scaled[:, 44] - base[:, 44], torch.full((4,), np.log(2.0), dtype=points.dtype))


def test_world_errors_are_measured_and_put_back_in_the_hands_own_frame():
    """A known whole-hand rotation and a known bend (in the hand's frame) are read back exactly, and
    apply_world_error rebuilds MediaPipe's landmarks from the truth and the two, whichever way the hand
    faces."""
    from scipy.spatial.transform import Rotation

    frames = random_cameras(synthetic_frames(6, 21), np.random.default_rng(22), 0.5)
    shape = unit_shape(frames)
    rotation = Rotation.from_rotvec([0.2, -0.1, 0.3]).as_matrix()
    bend = np.zeros((21, 3))
    bend[8] = [0.0, 0.05, 0.0]  # the index tip moved along each hand's own finger axis
    reported = apply_world_error(shape, np.repeat(rotation[None], len(shape), 0), np.repeat(bend[None], len(shape), 0))
    measured_rotation, measured_bend = world_error_bank(reported * 0.17, frames)
    # the bend moves the centroid a little, so the rotation is read about a shifted point: close, not exact
    assert np.allclose(measured_rotation, rotation, atol=0.02)
    assert np.abs(measured_bend[:, 8, 1] - 0.05).max() < 0.01
    rebuilt = apply_world_error(shape, measured_rotation, measured_bend)
    assert np.allclose(unit_shape(rebuilt), unit_shape(reported), atol=1e-6)


def test_residual_bank_reads_errors_in_the_hands_own_image_frame():
    """A detector error along the projected wrist -> middle knuckle is the local +x residual, in units of the
    hand's apparent length, whichever way the hand points in the image."""
    frames = synthetic_frames(8, 1)
    cam = random_cameras(frames, np.random.default_rng(2), 0.5)
    K = np.repeat(np.array([[800.0, 0, 320], [0, 800.0, 240], [0, 0, 1]])[None], len(cam), 0)
    projected = cam[..., :2] / cam[..., 2:] * 800.0 + np.array([320.0, 240.0])
    along = projected[:, 9] - projected[:, 0]
    along /= np.linalg.norm(along, axis=-1, keepdims=True)
    apparent = 800.0 * hand_length(cam) / cam.mean(1)[:, 2]
    observed = projected + 0.1 * apparent[:, None, None] * along[:, None]
    bank = residual_bank(observed, cam, K)
    assert np.allclose(bank[..., 0], 0.1) and np.allclose(bank[..., 1], 0.0, atol=1e-9)


def test_view_matched_draws_take_errors_from_hands_showing_the_same_side():
    """facing_cosine is +1 for a palm turned to the camera and -1 for the back; with view_matched_errors a
    sample draws MediaPipe's errors only from bank frames of its own view (palm, edge on, back), and where the
    bank has none of a view, from any frame."""
    from handcli.videobench.cameras import hand_axes

    hand = synthetic_frames(1, 6)[0]
    axes = hand_axes(hand)  # columns across, fingers, palm normal
    # the palm normal onto -z (towards a camera at the origin looking down +z), fingers up the image
    palm_on = np.stack([np.array([1.0, 0, 0]), np.array([0, -1.0, 0]), np.array([0, 0, -1.0])], -1) @ axes.T
    placed = (hand - hand.mean(0)) @ palm_on.T + np.array([0.0, 0.0, 0.5])
    back_on = np.diag([-1.0, 1.0, -1.0])  # half a turn about the fingers (the image's y axis)
    assert facing_cosine(placed) == pytest.approx(1.0, abs=1e-6)
    assert facing_cosine((placed - placed.mean(0)) @ back_on.T + placed.mean(0)) == pytest.approx(-1.0, abs=1e-6)
    views = np.array([-0.9, -0.8, 0.1, 0.95])  # back, back, edge on, palm
    bank = ErrorBank(np.zeros((4, 21, 2)), np.repeat(np.eye(3)[None], 4, 0), np.zeros((4, 21, 3)), views)
    rng = np.random.default_rng(7)
    samples = rng.uniform(-1, 1, 3000)
    drawn = bank.draw(rng, len(samples), samples)
    assert np.array_equal(view_bin(views[drawn]), view_bin(samples))
    assert set(drawn[samples < -0.3]) == {0, 1}  # both back frames are used
    palm_only = ErrorBank(bank.image[3:], bank.rotation[3:], bank.articulation[3:], views[3:])
    assert np.all(palm_only.draw(rng, 2, np.array([-0.9, 0.0])) == 0)  # no back or edge-on frame: any frame
    assert len(bank.draw(rng, 5)) == 5 and set(bank.draw(rng, 400)) == {0, 1, 2, 3}  # without views: any frame
    with pytest.raises(ValueError, match="bank's views"):
        no_error(2).draw(rng, 3, np.zeros(3))
    config = LifterTrainConfig(batch=64, view_matched_errors=True)
    features, targets, _ = make_batch(synthetic_frames(64, 3), bank, rng, config)
    assert torch.isfinite(features).all() and len(features) == len(targets)


def test_batches_hold_unit_length_hands_and_their_depth():
    frames = synthetic_frames(64, 3)
    config = LifterTrainConfig(batch=32, extra_noise=0.0)
    features, targets, log_ratio = make_batch(frames, no_error(), np.random.default_rng(4), config)
    assert features.shape[1] == 105 and targets.shape[1:] == (21, 3) and log_ratio.shape == (len(features),)
    assert torch.allclose(hand_length(targets), torch.ones(len(targets)), atol=1e-5)
    assert torch.allclose(targets[:, 0], torch.zeros(len(targets), 3))
    # without noise the depth ratio's target is exactly the geometry: mean depth / length x spread
    assert torch.isfinite(log_ratio).all() and log_ratio.std() > 0.01


def test_a_short_training_learns_to_lift():
    frames = synthetic_frames(2000, 5)
    config = LifterTrainConfig(steps=150, batch=256, width=64, blocks=1, dropout=0.0, extra_noise=0.0)
    untrained = Lifter(64, 1, 0.0)
    batch = make_batch(frames[1600:], no_error(), np.random.default_rng(9), config)
    with torch.no_grad():
        before = (untrained(batch[0])[0] - batch[1]).norm(dim=-1).mean().item()
    model, metrics = train_lifter(frames[:1600], frames[1600:], no_error(), config, log=lambda _: None)
    after = metrics["val_mean_joint_error_hand_lengths"]
    assert after < 0.35 * before


def test_an_ensemble_averages_its_members_and_saves_like_one_lifter(tmp_path):
    """Joints are the members' mean, depth their geometric mean times the ensemble's own scale; a saved
    ensemble loads back with the same output, and a single saved lifter still loads as a Lifter."""
    torch.manual_seed(3)
    members = [Lifter(32, 1, 0.0), Lifter(32, 1, 0.0)]
    members[1].depth_scale = 1.5
    ensemble = LifterEnsemble(members)
    ensemble.depth_scale = 0.9
    frames = random_cameras(synthetic_frames(20, 4), np.random.default_rng(5), 0.5)
    normalised, world = torch.as_tensor(frames[..., :2] / frames[..., 2:]), torch.as_tensor(frames)
    (j0, d0), (j1, d1) = members[0].lift(normalised, world), members[1].lift(normalised, world)
    joints, depth = ensemble.lift(normalised, world)
    assert torch.allclose(joints, (j0 + j1) / 2, atol=1e-6)
    assert torch.allclose(depth, 0.9 * (d0 * d1).sqrt(), rtol=1e-5)
    assert not torch.allclose(j0, j1)  # the members differ, so the mean is a real average
    save_lifter(ensemble, tmp_path / "ensemble.pt", {"what": "test"})
    loaded = load_lifter(tmp_path / "ensemble.pt")
    assert isinstance(loaded, LifterEnsemble) and len(loaded.members) == 2
    joints_again, depth_again = loaded.lift(normalised, world)
    assert torch.allclose(joints_again, joints) and torch.allclose(depth_again, depth)
    save_lifter(members[1], tmp_path / "one.pt", {"what": "test"})
    single = load_lifter(tmp_path / "one.pt")
    assert isinstance(single, Lifter) and torch.allclose(single.lift(normalised, world)[1], d1)


def test_missing_weights_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_lifter"):
        load_lifter(tmp_path / "absent.pt")


def test_shipped_lifter_recovers_generated_hands_from_their_projections():
    """The bundled weights on hands it was not trained on (the generator's gestures with a new seed), from
    exact projections and landmarks: joints within a fifth of the hand length on average, depth within 12 %
    (the network expects MediaPipe's contracted keypoints, so exact ones read a few per cent off)."""
    lifter = load_lifter()
    frames = random_cameras(synthetic_frames(400, 11), np.random.default_rng(12), 0.5)
    normalised = torch.as_tensor(frames[..., :2] / frames[..., 2:])
    joints, depth = lifter.lift(normalised, torch.as_tensor(frames))
    truth = (frames - frames[:, :1]) / hand_length(frames)[:, None, None]
    error = np.linalg.norm(joints.numpy() - truth, axis=-1).mean()
    depth_error = np.median(np.abs(depth.numpy() * hand_length(frames) / frames[..., 2].mean(1) - 1))
    assert error < 0.2
    assert depth_error < 0.12
