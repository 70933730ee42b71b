"""The image fit (handcli.fitting.image): depth, rotation and articulation from 2D keypoints through the camera."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from handcli.fitting.image import ImageFitConfig, fit_to_image, sized_betas
from handcli.fitting.landmarks import FORMAT, load_offsets, solve_offsets
from handcli.handmodels import load_hand_model
from handcli.handmodels.kinematics import mirror_points
from handcli.handmodels.size import HAND_LENGTH_MEAN_M, hand_length
from tests.conftest import REPO

NUM_FRAMES = 24
FOCAL = 900.0
K = np.array([[FOCAL, 0, 639.5], [0, FOCAL, 359.5], [0, 0, 1.0]])


@pytest.fixture(scope="module")
def model():
    return load_hand_model("open")


@pytest.fixture()
def zero_offsets(tmp_path):
    """A landmark calibration of zeros: the exact projections below are of the model's own keypoints."""
    path = tmp_path / "zero_offsets.npz"
    np.savez(path, format=FORMAT, offsets=np.zeros((21, 3)))
    return str(path)


def true_hand(model, depth: float, seed: int = 0, length: float = HAND_LENGTH_MEAN_M):
    """A moving right hand of `length` metres at `depth` metres: camera-frame keypoints (T, 21, 3) and the
    global orientations (T, 3, 3)."""
    rng = np.random.default_rng(seed)
    t = np.arange(NUM_FRAMES) / 30.0
    base = Rotation.from_rotvec(rng.normal(0, 0.6, 3)) * Rotation.from_matrix(
        [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # palm towards the camera, fingers up
    orient = (Rotation.from_rotvec(np.stack([0.3 * np.sin(3 * t), 0.2 * np.cos(2 * t), 0.1 * t], -1)) * base)
    pose = np.zeros((NUM_FRAMES, 15, 3))
    pose[:, :12, 2] = 0.4 + 0.3 * np.sin(4 * t)[:, None]  # fingers flex and extend
    betas = sized_betas(model, torch.zeros(1, model.num_betas), length)
    transl = np.stack([0.05 * np.sin(2 * t), 0.02 * t, depth + 0.03 * np.cos(t)], -1)
    with torch.no_grad():
        keypoints = model.keypoints(torch.as_tensor(orient.as_rotvec(), dtype=torch.float32),
                                    torch.as_tensor(pose, dtype=torch.float32), betas.expand(NUM_FRAMES, -1),
                                    torch.as_tensor(transl, dtype=torch.float32), True).numpy().astype(np.float64)
    return keypoints, orient.as_matrix()


def detector_view(keypoints, rng, rotation_error_deg: float = 20.0, K=K):
    """What MediaPipe would report: exact 2D keypoints (T, 21, 3) and world landmarks (T, 21, 3) centred on
    the middle MCP, turned by `rotation_error_deg` and a little noisy."""
    projected = keypoints @ K.T
    keypoints2d = np.concatenate([projected[..., :2] / projected[..., 2:], np.ones((*keypoints.shape[:2], 1))], -1)
    wrong = Rotation.from_rotvec(np.radians(rotation_error_deg) * np.array([0.0, 0.6, 0.8])).as_matrix()
    centred = keypoints - keypoints[:, 9:10]
    world = centred @ wrong.T + rng.normal(0, 0.002, keypoints.shape)
    return keypoints2d, world


def rotation_error_deg(fitted, truth) -> np.ndarray:
    """Per-frame angle (degrees) of the best rotation between root-relative keypoint sets (T, 21, 3)."""
    angles = []
    for a, b in zip(fitted - fitted[:, :1], truth - truth[:, :1]):
        u, _, vt = np.linalg.svd(a.T @ b)
        d = np.sign(np.linalg.det(u @ vt))
        r = u @ np.diag([1, 1, d]) @ vt
        angles.append(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))
    return np.array(angles)


def fit(model, keypoints2d, world, offsets, is_right=True, K=K, lifter_share=0.0):
    """The image fit with the world landmarks as the articulation prior (lifter_share 0: what these tests
    control exactly) or with the learned lifter (1, the default of the estimate stage)."""
    return fit_to_image(model, world[None], keypoints2d[None], np.ones((1, NUM_FRAMES), bool),
                        np.array([is_right]), K, 30.0, ImageFitConfig(landmark_offsets=offsets,
                                                                      lifter_share=lifter_share))


@pytest.mark.parametrize("depth", [0.35, 0.9])
def test_recovers_depth_and_rotation_from_exact_keypoints(model, zero_offsets, depth):
    truth, _ = true_hand(model, depth)
    keypoints2d, world = detector_view(truth, np.random.default_rng(1))
    result = fit(model, keypoints2d, world, zero_offsets)
    fitted = result.keypoints3d_fit[0].astype(np.float64)
    depth_error = np.abs(fitted[..., 2].mean(-1) / truth[..., 2].mean(-1) - 1)
    # the size prior matches this hand, so depth follows from the image; what is left comes from the noisy
    # world landmarks (2 mm), which set the articulation prior and the proportions
    assert np.median(depth_error) < 0.015
    assert np.median(rotation_error_deg(fitted, truth)) < 4.0  # the world landmarks were 20 degrees off
    hand_px = FOCAL * HAND_LENGTH_MEAN_M / depth
    assert np.nanmedian(result.reprojection_px) < 0.01 * hand_px  # within 1 % of the hand's size in the image
    assert np.isclose(hand_length(fitted[0]), HAND_LENGTH_MEAN_M, rtol=1e-3)


@pytest.mark.parametrize("depth", [0.35, 0.9])
def test_the_lifter_prior_recovers_depth_and_rotation(model, depth):
    """The default articulation prior: the lifter reads the 2D keypoints in MediaPipe's landmark convention
    (the shipped offsets put the wrist and thumb base where MediaPipe marks them) and world landmarks turned
    20 degrees; depth and rotation come out near the truth. This hand faces the camera with its palm.
    Measured with the shipped lifter (errors drawn by view, 2026-12-07): depth 7.2-7.5 % too near, rotation
    9.6-9.9 degrees (10.3-10.6 % and 5.0-5.1 degrees with the landmarks unturned). The lifter before it read
    this case at 0.4 % and 8.3-9.5 degrees, and the depth bound here was 3 %; it is 12 % now, said loudly:
    the lifter learned MediaPipe's errors on palms, which make a palm look further than it is, and takes them
    out of exact keypoints too. On MediaPipe's real output, the case it is made for, palm-facing depth got
    better (tuning clips that lent it no error: 6.9 -> 4.3 % median; frontal test clips, palm and back:
    7.5 -> 5.8 %; weights/lifter.md, "Limits"). A broken lifter still fails here."""
    truth, rotations = true_hand(model, depth, seed=7)
    landmarks = truth + np.einsum("tij,kj->tki", rotations, load_offsets() * HAND_LENGTH_MEAN_M)
    keypoints2d, world = detector_view(landmarks, np.random.default_rng(1), rotation_error_deg=20.0)
    result = fit(model, keypoints2d, world, None, lifter_share=1.0)
    fitted = result.keypoints3d_fit[0].astype(np.float64)
    depth_error = np.abs(fitted[..., 2].mean(-1) / truth[..., 2].mean(-1) - 1)
    assert np.median(depth_error) < 0.12
    assert np.median(rotation_error_deg(fitted, truth)) < 10.5
    hand_px = FOCAL * HAND_LENGTH_MEAN_M / depth
    assert np.nanmedian(result.reprojection_px) < 0.03 * hand_px


@pytest.mark.parametrize("lifter_share", [0.0, 1.0])
def test_left_hands_are_mirrored_and_back(model, zero_offsets, lifter_share):
    """A left hand's fit is the mirror image of the right hand's (the lifter sees the mirrored image too)."""
    truth, _ = true_hand(model, 0.5, seed=3)
    left = mirror_points(torch.as_tensor(truth)).numpy()
    keypoints2d, world = detector_view(left, np.random.default_rng(2))
    result = fit(model, keypoints2d, world, zero_offsets, is_right=False, lifter_share=lifter_share)
    fitted = result.keypoints3d_fit[0].astype(np.float64)
    if lifter_share > 0:  # the right hand whose image and landmarks are this one's mirror: the mirror fit
        keypoints2d_right, _ = detector_view(truth, np.random.default_rng(2))
        world_right = mirror_points(torch.as_tensor(world)).numpy()
        mirrored = fit(model, keypoints2d_right, world_right, zero_offsets, lifter_share=lifter_share)
        twin = mirror_points(torch.as_tensor(mirrored.keypoints3d_fit[0].astype(np.float64))).numpy()
        assert np.median(np.linalg.norm(fitted - twin, axis=-1)) < 0.002
    else:  # the world landmarks pin the articulation: the fit is the truth (the lifter's accuracy: above)
        assert np.median(np.linalg.norm(fitted - left, axis=-1)) < 0.008
        assert np.nanmedian(result.reprojection_px) < 3.0


@pytest.mark.parametrize("lifter_share", [0.0, 1.0])
def test_a_longer_focal_places_the_hand_proportionally_further(model, zero_offsets, lifter_share):
    """docs/hand_models.md: with the hand's size fixed by the prior, depth is focal x size / pixels, so a
    focal length k times too long puts the hand k times too far, on the same rays (the image is unchanged).
    The lifter prior (which reads the keypoints' spread through K) keeps that, on MediaPipe-convention
    keypoints as it sees them in use."""
    truth, rotations = true_hand(model, 0.6, seed=5)
    offsets = zero_offsets
    if lifter_share > 0:
        truth = truth + np.einsum("tij,kj->tki", rotations, load_offsets() * HAND_LENGTH_MEAN_M)
        offsets = None
    keypoints2d, world = detector_view(truth, np.random.default_rng(4))
    right = fit(model, keypoints2d, world, offsets, lifter_share=lifter_share).keypoints3d_fit[0]
    long = K.copy()
    long[0, 0] = long[1, 1] = 1.5 * FOCAL
    far = fit(model, keypoints2d, world, offsets, K=long, lifter_share=lifter_share).keypoints3d_fit[0]
    ratio = np.median(far[..., 2].mean(-1) / right[..., 2].mean(-1))
    assert abs(ratio - 1.5) < 0.03
    assert np.median(np.abs(far[..., :2] / far[..., 2:] * 1.5 * FOCAL - right[..., :2] / right[..., 2:] * FOCAL)) < 1.5


def test_a_smaller_hand_than_the_prior_is_placed_proportionally_nearer(model, zero_offsets):
    """The size cannot be seen in one view: a 10 % smaller hand is placed ~10 % too far (what the video
    benchmark's hand-size spread measures)."""
    truth, _ = true_hand(model, 0.5, seed=6, length=0.9 * HAND_LENGTH_MEAN_M)
    keypoints2d, world = detector_view(truth, np.random.default_rng(5))
    fitted = fit(model, keypoints2d, world, zero_offsets).keypoints3d_fit[0]
    ratio = np.median(fitted[..., 2].mean(-1) / truth[..., 2].mean(-1))
    assert abs(ratio - 1 / 0.9) < 0.02


def test_a_given_hand_length_places_a_smaller_hand_at_its_depth(model, zero_offsets):
    """What --hand-length is for: the same 10 % smaller hand, its length given, lands at its true depth."""
    truth, _ = true_hand(model, 0.5, seed=6, length=0.9 * HAND_LENGTH_MEAN_M)
    keypoints2d, world = detector_view(truth, np.random.default_rng(5))
    fitted = fit_to_image(model, world[None], keypoints2d[None], np.ones((1, NUM_FRAMES), bool), np.array([True]),
                          K, 30.0, ImageFitConfig(landmark_offsets=zero_offsets, lifter_share=0.0,
                                                  hand_length=0.9 * HAND_LENGTH_MEAN_M)).keypoints3d_fit[0]
    ratio = np.median(fitted[..., 2].mean(-1) / truth[..., 2].mean(-1))
    assert abs(ratio - 1.0) < 0.02


def test_solve_offsets_recovers_a_known_landmark_convention():
    rng = np.random.default_rng(0)
    n = 400
    keypoints = rng.normal(0, 0.05, (n, 21, 3)) + np.array([0, 0, 0.6])
    rotations = Rotation.random(n * 21, random_state=1).as_matrix().reshape(n, 21, 3, 3)
    lengths = rng.uniform(0.16, 0.2, n)
    offsets = rng.normal(0, 0.05, (21, 3))
    moved = keypoints + lengths[:, None, None] * (rotations @ offsets[None, :, :, None])[..., 0]
    normalised = moved[..., :2] / moved[..., 2:]
    solved = solve_offsets(keypoints, rotations, lengths, normalised, np.ones((n, 21)), ridge=0.0)
    assert np.abs(solved - offsets).max() < 0.003  # linearised projection: close, not exact


def test_estimate_stage_fits_the_image_of_the_bundled_sample(tmp_path):
    """End to end on samples/synthetic_hand.mp4 (exact ground truth, MediaPipe in the loop): the image fit
    turns the hand and places its articulation better than lifting the world landmarks by a translation, and
    places it in depth. Measured 2026-12-07 with the shipped lifter (errors drawn by view): depth 12.9 % too
    near, rotation 9.4 degrees, root-relative 17.8 mm; with the world landmarks as the articulation prior
    (--prior landmarks) 4.7 %, 12.6, 17.6; lifted 5.1 %, 14.8, 26.1. The lifter before it (an ensemble whose
    training drew MediaPipe's errors from any view): 4.9 %, 12.1 degrees, 17.8 mm, and the depth bound was
    6 % for both priors. It is 15 % for the lifter now, said loudly (weights/lifter.md, "Limits"): this
    flat, default-shaped hand shows the camera its palm (facing cosine 0.99), and the lifter learned from six
    palm-facing benchmark clips that MediaPipe's palms look further than they are. On the benchmark's
    palm-facing clips, with the true hand length given, it is unbiased (median -0.8 % on the test split,
    -0.6 % on the tuning split) where the lifter before it read +6.8 % (tuning clips that lent it no error);
    on this older render it over-corrects. Which of the two real palms follow is not known."""
    from handcli.artifacts import load_artifact
    from handcli.stages.detect import DetectConfig, detect_file
    from handcli.stages.estimate import EstimateConfig, estimate

    truth = load_artifact(REPO / "samples" / "synthetic_hand_gt.npz")
    detected = detect_file(REPO / "samples" / "synthetic_hand.mp4", DetectConfig(focal=float(truth.K[0, 0])))
    fits = {"landmarks": estimate(detected, EstimateConfig(lifter_share=0.0)),
            "lifter": estimate(detected, EstimateConfig()),
            "lifted": estimate(detected, EstimateConfig(image_fit=False))}
    assert fits["lifter"].meta["fit"] == "image" and fits["lifted"].meta["fit"] == "keypoints3d"
    gt = truth.keypoints3d[0].astype(np.float64)
    seen = detected.valid[0]
    errors = {}
    for name, result in fits.items():
        kp = result.keypoints3d[0].astype(np.float64)
        root_relative = (kp[seen] - kp[seen, :1]) - (gt[seen] - gt[seen, :1])
        errors[name] = (np.median(np.abs(kp[seen, :, 2].mean(-1) / gt[seen, :, 2].mean(-1) - 1)),
                        np.median(rotation_error_deg(kp[seen], gt[seen])),
                        np.linalg.norm(root_relative, axis=-1).mean())
    for prior, depth_bound in (("lifter", 0.15), ("landmarks", 0.06)):
        assert errors[prior][0] < depth_bound, errors
        assert errors[prior][1] < 0.9 * errors["lifted"][1], errors
        assert errors[prior][2] < 0.8 * errors["lifted"][2], errors


def test_cli_estimate_fits_the_image_or_the_keypoints_as_asked(model, tmp_path):
    """`handcli estimate` on detect-like input: the image fit by default (the lifter prior, or the world
    landmarks with --prior landmarks), the 3D fit with --no-image-fit and for inputs without 2D; bad input
    stays exit 2 with one line."""
    from typer.testing import CliRunner

    from handcli.artifacts import Artifact, load_artifact, save_artifact
    from handcli.cli import app

    truth, _ = true_hand(model, 0.5, seed=7)
    keypoints2d, world = detector_view(truth, np.random.default_rng(6))
    detected = Artifact(keypoints3d=(world + truth[:, 9:10])[None].astype(np.float32),
                        valid=np.ones((1, NUM_FRAMES), bool), is_right=np.array([True]), fps=30.0,
                        keypoints2d=keypoints2d[None].astype(np.float32),
                        world_landmarks=world[None].astype(np.float32), K=K, image_size=np.array([1280, 720]))
    source = save_artifact(detected, tmp_path / "detect.npz")
    bare = save_artifact(detected.replace(keypoints2d=None, world_landmarks=None), tmp_path / "bare.npz")
    runner = CliRunner()
    for name, options, fit, share in (("image", [], "image", 1.0),
                                      ("landmarks", ["--prior", "landmarks"], "image", 0.0),
                                      ("lifted", ["--no-image-fit"], "keypoints3d", 1.0),
                                      ("bare", [], "keypoints3d", 1.0)):
        out = tmp_path / f"{name}_out.npz"
        result = runner.invoke(app, ["estimate", "--input", str(bare if name == "bare" else source), "--out",
                                     str(out), *options])
        assert result.exit_code == 0, result.output
        meta = load_artifact(out).meta
        assert meta["fit"] == fit and meta["config"]["lifter_share"] == share
    fits = [load_artifact(tmp_path / f"{name}_out.npz").keypoints3d for name in ("image", "landmarks")]
    assert not np.allclose(fits[0], fits[1])  # the two priors are two different fits
    # --hand-length sizes the image fit's hand (and is part of the recorded config)
    sized = tmp_path / "sized_out.npz"
    result = runner.invoke(app, ["estimate", "--input", str(source), "--out", str(sized), "--hand-length", "0.17"])
    assert result.exit_code == 0, result.output
    assert load_artifact(sized).meta["config"]["hand_length"] == 0.17
    assert np.isclose(np.median(hand_length(load_artifact(sized).keypoints3d[0].astype(np.float64))), 0.17, rtol=0.01)
    for options in (["--input", str(tmp_path / "missing.npz")], ["--input", str(source), "--prior", "mediapipe"],
                    ["--input", str(source), "--hand-length", "0.17", "--no-image-fit"],  # it would be ignored
                    ["--input", str(bare), "--hand-length", "0.17"]):
        result = runner.invoke(app, ["estimate", *options, "--out", str(tmp_path / "x.npz")])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "x.npz").exists()
