"""Tests of the diffusion refiner: schedule maths, conditioning, windows, losses, inference API, training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from handcli.diffusion import Refiner, load_refiner
from handcli.diffusion.conditions import POSITION_SCALE, build_conditions, fill_missing
from handcli.diffusion.model import BackboneConfig, RefinerBackbone
from handcli.diffusion.schedule import ShiftSchedule
from handcli.diffusion.weights import default_weights_path, load_weights, save_weights
from handcli.diffusion.windows import blend, cut, plan_windows
from handcli.errors import BadInput, NotBuilt
from handcli.training import losses as L

TINY = BackboneConfig(window=16, width=32, layers=1, heads=2, ff_width=32)


def tiny_refiner(seed: int = 0, window: int = 16) -> Refiner:
    torch.manual_seed(seed)
    backbone = RefinerBackbone(BackboneConfig(window=window, width=32, layers=1, heads=2, ff_width=32))
    torch.nn.init.normal_(backbone.head.weight, std=0.02)  # not the identity, so equivariances are tested
    return Refiner(backbone, ShiftSchedule(kappa=0.1))


def hand_track(frames: int, seed: int = 0) -> np.ndarray:
    """(frames, 21, 3): a rigid hand-like point set drifting and rotating slowly, 40 cm in front of the camera."""
    rng = np.random.default_rng(seed)
    shape = rng.normal(0, 0.04, (21, 3))
    shape[0] = 0
    t = np.arange(frames) / 30.0
    angle = 0.5 * np.sin(t)
    rotation = np.stack([np.stack([np.cos(angle), -np.sin(angle), 0 * angle], -1),
                         np.stack([np.sin(angle), np.cos(angle), 0 * angle], -1),
                         np.stack([0 * angle, 0 * angle, 1 + 0 * angle], -1)], -2)
    return np.einsum("tij,kj->tki", rotation, shape) + np.stack([0.05 * np.sin(t), 0.02 * t, 0.4 + 0 * t], -1)[:, None]


# ------------------------------------------------------------------------------------------------ schedule
def test_schedule_end_points_and_reverse_kernel():
    schedule = ShiftSchedule(num_steps=4, kappa=0.1)
    etas = schedule.etas
    assert etas[0] == 0 and torch.all(etas[1:] > etas[:-1]) and abs(float(etas[-1]) - 0.999) < 1e-9
    a1, b1, s1 = schedule.coefficients(1)
    assert a1 == 0 and b1 == pytest.approx(1) and s1 == 0


def test_reverse_kernel_is_the_forward_posterior():
    """Sample (x^{n-1}, x^n) from the forward chain (eq. 2) and check eq. 5's mean and variance by regression."""
    schedule = ShiftSchedule(num_steps=4, kappa=0.3)
    gen = torch.Generator().manual_seed(0)
    x, y = 0.2, 1.0
    count = 200_000
    for n in (2, 3, 4):
        eta_prev = float(schedule.etas[n - 1])
        alpha = float(schedule.alphas[n])
        prev = x + eta_prev * (y - x) + schedule.kappa * eta_prev ** 0.5 * torch.randn(count, generator=gen, dtype=torch.float64)
        cur = prev + alpha * (y - x) + schedule.kappa * alpha ** 0.5 * torch.randn(count, generator=gen, dtype=torch.float64)
        a, b, sigma = schedule.coefficients(n)
        design = torch.stack([cur, torch.ones_like(cur)], 1)
        coef = torch.linalg.lstsq(design, prev[:, None]).solution[:, 0]
        residual = prev - design @ coef
        assert float(coef[0]) == pytest.approx(a, abs=0.01)
        assert float(coef[1]) == pytest.approx(b * x, abs=0.01)
        assert float(residual.var()) == pytest.approx(sigma, rel=0.03)


def test_q_sample_marginal():
    schedule = ShiftSchedule(num_steps=4, kappa=0.2)
    clean = torch.zeros(50_000, 1)
    condition = torch.ones(50_000, 1)
    step = torch.full((50_000,), 3)
    noisy = schedule.q_sample(clean, condition, step, torch.randn(50_000, 1, generator=torch.Generator().manual_seed(1)))
    eta = float(schedule.etas[3])
    assert float(noisy.mean()) == pytest.approx(eta, abs=0.01)
    assert float(noisy.var()) == pytest.approx(schedule.kappa ** 2 * eta, rel=0.05)


# ------------------------------------------------------------------------------------------------ conditions
def test_fill_missing_matches_linear_interpolation_with_edge_hold():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 20, 2))
    valid = rng.random((3, 20)) > 0.5
    valid[:, 5] = True
    filled = fill_missing(torch.tensor(np.where(valid[..., None], values, np.nan)), torch.tensor(valid)).numpy()
    for b in range(3):
        for c in range(2):
            expected = np.interp(np.arange(20), np.flatnonzero(valid[b]), values[b, valid[b], c])
            np.testing.assert_allclose(filled[b, :, c], expected, atol=1e-12)


def test_conditions_round_trip_and_mirroring():
    track = torch.tensor(hand_track(16), dtype=torch.float32)[None].repeat(2, 1, 1, 1)
    valid = torch.ones(2, 16, dtype=torch.bool)
    conditions = build_conditions(track, valid, torch.tensor([True, False]))
    torch.testing.assert_close(conditions.to_metres(conditions.keypoints3d), track, atol=1e-6, rtol=0)
    # the left hand is seen in right-hand space: x negated before normalising
    assert torch.allclose(conditions.keypoints3d[1, ..., 1:], conditions.keypoints3d[0, ..., 1:], atol=1e-6)
    assert float(conditions.anchor[0, 0]) == pytest.approx(-float(conditions.anchor[1, 0]), abs=1e-6)
    assert float(conditions.keypoints3d[0, :, 0].abs().mean()) < 2.0 / POSITION_SCALE * 0.1


# ------------------------------------------------------------------------------------------------ windows
@pytest.mark.parametrize("length", [1, 15, 16, 17, 40, 100])
def test_windows_cover_and_blend_back(length):
    starts = plan_windows(length, 16, 8)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + 16] = True
    assert covered.all() and starts[0] == 0
    signal = np.random.default_rng(0).normal(size=(length, 3))
    np.testing.assert_allclose(blend(cut(signal, starts, 16), starts, length), signal, atol=1e-12)


# ------------------------------------------------------------------------------------------------ losses
def test_losses_zero_on_truth_and_positive_on_violations():
    clean = torch.tensor(hand_track(12), dtype=torch.float32)[None] / POSITION_SCALE
    for loss in (L.data_loss, L.velocity_loss, L.acceleration_loss, L.bone_loss):
        assert float(loss(clean, clean)) == pytest.approx(0, abs=1e-5)
    stretched = clean.clone()
    stretched[:, 5:] = clean[:, 5:] * 1.1
    assert float(L.bone_loss(stretched, clean)) > 0.1
    # least-kinetic: moving straight costs nothing, a reversal does
    straight = torch.linspace(0, 1, 12)[None, :, None, None].expand(1, 12, 21, 3).clone()
    reaching = torch.zeros(1, 12, dtype=torch.long)
    assert float(L.kinetic_loss(straight, reaching)) == 0
    zigzag = straight.clone()
    zigzag[:, 6] -= 0.5
    assert float(L.kinetic_loss(zigzag, reaching)) > 0
    assert float(L.kinetic_loss(zigzag, torch.full((1, 12), 2))) == 0  # only in reaching / releasing
    # stability: a rigidly translating hand is stable, wiggling fingers are not
    grasp = torch.ones(1, 12, dtype=torch.long)
    assert float(L.stability_loss(clean[:, :1].expand(1, 12, 21, 3) + straight, grasp)) == pytest.approx(0, abs=1e-6)
    assert float(L.stability_loss(clean, grasp)) > 0
    logits = torch.zeros(1, 12, 4)
    assert float(L.state_loss(logits, torch.full((1, 12), -1))) == 0
    assert float(L.state_loss(logits, torch.zeros(1, 12, dtype=torch.long))) == pytest.approx(np.log(4), rel=1e-5)


# ------------------------------------------------------------------------------------------------ model
def test_backbone_exposes_features_and_linear_head():
    backbone = RefinerBackbone(TINY)
    assert isinstance(backbone.head, torch.nn.Linear)
    track = torch.tensor(hand_track(16), dtype=torch.float32)[None]
    conditions = build_conditions(track, torch.ones(1, 16, dtype=torch.bool), torch.tensor([True]))
    step = torch.tensor([2])
    torch.nn.init.normal_(backbone.head.weight, std=0.1)
    features = backbone.features(conditions.keypoints3d, conditions, step)
    assert features.shape == (1, 16, TINY.width)
    clean, logits = backbone(conditions.keypoints3d, conditions, step)
    torch.testing.assert_close(backbone.decode(features, conditions, conditions.keypoints3d, step), clean)
    assert logits.shape == (1, 16, 4)


# ------------------------------------------------------------------------------------------------ refiner API
def test_refine_shapes_determinism_and_gaps():
    refiner = tiny_refiner()
    track = hand_track(40)
    keypoints = np.stack([track, track + 0.01])
    valid = np.ones((2, 40), bool)
    valid[0, 10:18] = False
    valid[1, :5] = False
    valid[1, 35:] = False
    keypoints[~valid] = np.nan
    first = refiner.refine(keypoints, valid, np.array([True, False]), 30.0, seed=3)
    again = refiner.refine(keypoints, valid, np.array([True, False]), 30.0, seed=3)
    assert first.keypoints3d.shape == (2, 40, 21, 3) and np.isfinite(first.keypoints3d).all()
    np.testing.assert_array_equal(first.keypoints3d, again.keypoints3d)
    assert first.motion_state.shape == (2, 40) and first.samples is None
    # outside the observed span the first/last refined frame is held
    np.testing.assert_array_equal(first.keypoints3d[1, 0], first.keypoints3d[1, 5])
    np.testing.assert_array_equal(first.keypoints3d[1, 39], first.keypoints3d[1, 34])
    many = refiner.refine(keypoints, valid, np.array([True, False]), 30.0, seed=3, samples=3)
    assert many.samples.shape == (3, 2, 40, 21, 3)
    np.testing.assert_allclose(many.keypoints3d, many.samples.mean(0), atol=1e-6)
    assert not np.allclose(many.samples[0], many.samples[1])


def test_refine_is_translation_and_mirror_equivariant():
    refiner = tiny_refiner()
    track = hand_track(30)[None]
    valid = np.ones((1, 30), bool)
    base = refiner.refine(track, valid, np.array([True]), 30.0).keypoints3d
    shifted = refiner.refine(track + np.array([0.1, -0.05, 0.2]), valid, np.array([True]), 30.0).keypoints3d
    np.testing.assert_allclose(shifted - np.array([0.1, -0.05, 0.2]), base, atol=1e-5)
    mirrored = track * np.array([-1.0, 1.0, 1.0])
    left = refiner.refine(mirrored, valid, np.array([False]), 30.0).keypoints3d
    np.testing.assert_allclose(left * np.array([-1.0, 1.0, 1.0]), base, atol=1e-5)


def test_refine_short_tracks_other_rates_and_2d():
    refiner = tiny_refiner()
    short = hand_track(5)[None]
    out = refiner.refine(short, np.ones((1, 5), bool), np.array([True]), 30.0)
    assert out.keypoints3d.shape == (1, 5, 21, 3) and np.isfinite(out.keypoints3d).all()
    slow = hand_track(50)[None]
    out = refiner.refine(slow, np.ones((1, 50), bool), np.array([True]), 12.5)
    assert out.keypoints3d.shape == (1, 50, 21, 3) and np.isfinite(out.keypoints3d).all()
    K = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    uv = slow[..., :2] / slow[..., 2:] * 600 + np.array([320, 240])
    keypoints2d = np.concatenate([uv, np.ones_like(uv[..., :1])], -1)
    with2d = refiner.refine(slow, np.ones((1, 50), bool), np.array([True]), 30.0, keypoints2d=keypoints2d, K=K)
    without = refiner.refine(slow, np.ones((1, 50), bool), np.array([True]), 30.0)
    assert not np.allclose(with2d.keypoints3d, without.keypoints3d)  # the 2D condition is used


def test_refine_rejects_unusable_tracks():
    refiner = tiny_refiner()
    track = hand_track(20)[None]
    with pytest.raises(BadInput):
        refiner.refine(track, np.zeros((1, 20), bool), np.array([True]), 30.0)
    with pytest.raises(BadInput):
        refiner.refine(track, np.ones((1, 20), bool), np.array([True]), 30.0, samples=0)


def test_weights_round_trip(tmp_path):
    refiner = tiny_refiner()
    path = tmp_path / "r.pt"
    save_weights(path, refiner.backbone, refiner.schedule, {"note": "test", "path": Path("x")})
    loaded = load_refiner(path)
    track = hand_track(20)[None]
    valid = np.ones((1, 20), bool)
    np.testing.assert_array_equal(loaded.refine(track, valid, np.array([True]), 30.0).keypoints3d,
                                  refiner.refine(track, valid, np.array([True]), 30.0).keypoints3d)
    with pytest.raises(BadInput):
        load_weights(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BadInput):
        load_weights(tmp_path / "junk.pt")
    # weights from another code version (a renamed config field, a tensor of another shape): BadInput, one line
    payload = torch.load(path, weights_only=True)
    payload["backbone"]["no_such_field"] = 1
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(BadInput, match="do not match this handcli version"):
        load_weights(tmp_path / "future.pt")
    payload = torch.load(path, weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = torch.zeros(3, 3, 3)
    torch.save(payload, tmp_path / "reshaped.pt")
    with pytest.raises(BadInput, match="do not match this handcli version"):
        load_weights(tmp_path / "reshaped.pt")


# ------------------------------------------------------------------------------------------------ training
@dataclass
class _Motion:
    keypoints3d: np.ndarray
    motion_state: np.ndarray


@dataclass
class _Corrupted:
    keypoints3d: np.ndarray
    valid: np.ndarray
    outlier: np.ndarray
    keypoints2d: np.ndarray


class _TinyDatagen:
    """The handcli.datagen API over `hand_track`, with jitter and a dropped segment."""

    @staticmethod
    def sample_motion(batch_size, num_frames, rng, hand_model=None, fps=30.0):
        tracks = np.stack([hand_track(num_frames, int(rng.integers(1000))) for _ in range(batch_size)])
        return _Motion(tracks, rng.integers(-1, 4, (batch_size, num_frames)))

    @staticmethod
    def corrupt_keypoints(keypoints3d, rng, config=None, K=None):
        observed = keypoints3d + rng.normal(0, 0.005, keypoints3d.shape)
        valid = np.ones(keypoints3d.shape[:2], bool)
        valid[:, 3:6] = False
        observed[~valid] = np.nan
        keypoints2d = np.full(keypoints3d.shape, np.nan)
        if K is not None:
            uv = keypoints3d[..., :2] / keypoints3d[..., 2:] * K[0, 0] + K[:2, 2]
            keypoints2d = np.concatenate([uv, np.ones_like(uv[..., :1])], -1)
        return _Corrupted(observed, valid, np.zeros_like(valid), keypoints2d)


class _FakePhysics:
    """Stands in for handcli.physics: a 'force' = acceleration of the keypoints, so the plumbing is tested."""

    calls = 0

    def _force(self, keypoints):
        return keypoints.diff(n=2, dim=1).flatten(2)

    def nll(self, x0, clean, variance):
        _FakePhysics.calls += 1
        return ((self._force(x0) - self._force(clean)) ** 2).mean() / (2 * max(variance, 0.05))

    def l1(self, predicted, clean):
        _FakePhysics.calls += 1
        return (self._force(predicted) - self._force(clean)).abs().mean()


def test_train_writes_loadable_weights_and_resumes(tmp_path):
    from handcli.training import TrainConfig, train_refiner
    from handcli.training.train import checkpoint_path

    out = tmp_path / "w.pt"
    config = TrainConfig(steps=4, batch_size=4, window=16, width=32, layers=1, heads=2, ff_width=32, out=out,
                         progress=False, checkpoint_every=2, log_every=2, warmup=1, physics_windows=2,
                         physics_every=1, pool_size=4)
    train_refiner(config, datagen=_TinyDatagen, physics=_FakePhysics())
    assert _FakePhysics.calls >= 4
    refiner = load_refiner(out)
    assert refiner.window == 16 and refiner.info["train_config"]["steps"] == 4
    first = torch.load(checkpoint_path(out), weights_only=True)
    assert first["step"] == 4
    # a longer run with the same configuration resumes at step 4 instead of starting again
    config.steps = 6
    train_refiner(config, datagen=_TinyDatagen, physics=_FakePhysics())
    resumed = torch.load(checkpoint_path(out), weights_only=True)
    assert resumed["step"] == 6
    config.deterministic_physics = True
    config.no_dip = True
    config.no_masks = True
    config.out = tmp_path / "ablation.pt"
    train_refiner(config, datagen=_TinyDatagen, physics=_FakePhysics())
    assert load_refiner(config.out).window == 16


# ------------------------------------------------------------------------------------------------ shipped weights
def test_shipped_weights_refine_synthetic_noise_better_than_input():
    """The shipped model must clearly beat its input and a Gaussian filter on generated motion it never saw,
    under jitter + per-frame scale flicker + a dropped segment, and infill the gap."""
    from scipy.ndimage import gaussian_filter1d

    from handcli.datagen import sample_motion

    try:
        refiner = load_refiner()
    except NotBuilt:
        pytest.fail(f"shipped weights missing at {default_weights_path()} (run `make weights`)")
    rng = np.random.default_rng(2024)
    truth = sample_motion(4, 120, rng).keypoints3d.astype(np.float64)
    observed = truth + rng.normal(0, 0.004, truth.shape)
    wrist = observed[:, :, :1]
    observed = wrist + (observed - wrist) * (1 + rng.normal(0, 0.03, (4, 120, 1, 1)))
    valid = np.ones((4, 120), bool)
    valid[:, 50:60] = False
    observed[~valid] = np.nan
    refined = refiner.refine(observed, valid, np.ones(4, bool), 30.0).keypoints3d
    error_out = np.linalg.norm(refined - truth, axis=-1)
    error_in = np.linalg.norm(observed - truth, axis=-1)[valid].mean()
    filled = observed.copy()
    for t in range(50, 60):  # the gap linearly interpolated, then the classic filter
        filled[:, t] = observed[:, 49] + (observed[:, 60] - observed[:, 49]) * (t - 49) / 11
    gaussian = np.linalg.norm(gaussian_filter1d(filled, 2, axis=1, mode="nearest") - truth, axis=-1)
    interpolated = np.linalg.norm(filled - truth, axis=-1)
    print(f"refined {error_out[valid].mean():.4f} input {error_in:.4f} gaussian {gaussian.mean():.4f} "
          f"overall {error_out.mean():.4f} gap {error_out[~valid].mean():.4f} "
          f"interpolated gap {interpolated[~valid].mean():.4f}")
    assert error_out[valid].mean() < 0.75 * error_in
    assert error_out.mean() < 0.9 * gaussian.mean()
    # the gap is infilled at least as well as by linear interpolation between its ends
    assert error_out[~valid].mean() < interpolated[~valid].mean()


def test_refine_stage_projects_keypoints_onto_the_fitted_hand():
    """The stage's output keypoints sit on the hand model it fitted (kinematic projection), without losing
    accuracy on generated motion; projection_sigma=0 returns the diffusion output as is."""
    from handcli.artifacts import Artifact
    from handcli.datagen import sample_motion
    from handcli.handmodels import load_hand_model
    from handcli.stages.refine import RefineConfig, refine

    rng = np.random.default_rng(7)
    truth = sample_motion(2, 90, rng).keypoints3d.astype(np.float32)
    observed = (truth + rng.normal(0, 0.004, truth.shape)).astype(np.float32)
    artifact = Artifact(observed, np.ones((2, 90), bool), np.ones(2, bool), fps=30.0)
    plain = refine(artifact, RefineConfig(projection_sigma=0))
    projected = refine(artifact, RefineConfig())
    assert plain.keypoints3d.shape == projected.keypoints3d.shape == truth.shape
    model = load_hand_model("open")

    def distance_to_fit(result):
        params = [torch.as_tensor(x).flatten(0, 1) for x in (result.global_orient, result.hand_pose)]
        fk = model.keypoints(*params, torch.as_tensor(result.betas).repeat_interleave(90, 0),
                             torch.as_tensor(result.transl).flatten(0, 1), torch.ones(180, dtype=torch.bool))
        return np.linalg.norm(fk.reshape(2, 90, 21, 3).numpy() - result.keypoints3d, axis=-1).mean()

    assert distance_to_fit(projected) < 0.5 * distance_to_fit(plain)
    error = lambda result: np.linalg.norm(result.keypoints3d - truth, axis=-1).mean()  # noqa: E731
    assert error(projected) < 1.05 * error(plain), (error(projected), error(plain))
