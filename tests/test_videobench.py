"""Video benchmark (handcli.videobench): camera placement, hand size, ground truth on the rendered pixels,
pooling math, overrides, the docs section. Made-up motion only; what needs ../shared skips without it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from handcli.errors import BadInput
from handcli.handmodels import load_hand_model
from handcli.handmodels.size import hand_length
from handcli.render.camera import project
from handcli.render.synthetic import UPRIGHT, open_close_motion
from handcli.videobench import SITUATIONS, appearance, cameras, fpha, hand, pipeline, report
from handcli.videobench.aggregate import aggregate, pool_stage
from handcli.videobench.backgrounds import Background
from handcli.videobench.render import composite, render_clip
from tests.conftest import SHARED, needs_shared

FRAMES = 8


@pytest.fixture(scope="module")
def model():
    return load_hand_model("open")


@pytest.fixture(scope="module")
def posed(model) -> hand.PosedHand:
    """8 frames of the open hand opening and closing (render/synthetic.py's motion), right hand."""
    motion = open_close_motion(FRAMES, 30.0, seed=3)
    params = {**motion, "betas": np.zeros(model.num_betas)}
    return hand.pose_hand(model, params)


def test_hand_axes_match_the_known_upright_pose(model):
    """render/synthetic.py's UPRIGHT shows the palm to the camera with the fingers up: the axes must say so."""
    out = model(torch.tensor(Rotation.from_matrix(UPRIGHT).as_rotvec()[None], dtype=torch.float32),
                torch.zeros(1, 15, 3), torch.zeros(1, model.num_betas), torch.tensor([[0.0, 0.0, 0.4]]), True)
    axes = cameras.hand_axes(out.joints.numpy()[0])
    assert np.allclose(axes @ axes.T, np.eye(3), atol=1e-6) and np.linalg.det(axes) > 0.99
    assert axes[1, 1] < -0.95  # fingers up the image (y down)
    assert axes[2, 2] < -0.95  # palm normal towards the camera


def test_scale_hits_the_sampled_hand_length(posed):
    rng = np.random.default_rng(0)
    for _ in range(3):
        target = float(np.clip(rng.normal(0.18, 0.012), 0.15, 0.21))
        scaled, factor = hand.scale_to_length(posed, target)
        assert np.abs(hand_length(scaled.keypoints) - target).max() < 2e-4  # every frame within 0.2 mm
        assert np.allclose(scaled.keypoints[:, 0], posed.keypoints[:, 0])  # about the wrist
        # mesh and keypoints scaled together: a fingertip vertex stays on its keypoint
        ratio = (np.linalg.norm(scaled.vertices - scaled.keypoints[:, :1], axis=-1)
                 / np.linalg.norm(posed.vertices - posed.keypoints[:, :1], axis=-1))
        assert np.allclose(ratio, factor)


def test_realistic_shape_takes_the_skin_convention_and_keeps_the_motion(model):
    """A fit to mocap joints lands near joint_placement 1 with, on noisy mocap, shapes far past any real hand:
    the rendered hand gets joint_placement 0 and shapes within SHAPE_LIMIT, the joint angles untouched."""
    names = list(model.shape_names)
    placement = names.index("joint_placement")
    betas = np.zeros(model.num_betas, np.float32)
    betas[placement], betas[names.index("pinky_length")], betas[names.index("size")] = 0.98, 6.3, -4.0
    motion = open_close_motion(FRAMES, 30.0, seed=3)
    fitted = {**motion, "betas": betas}
    real = hand.realistic_shape(model, fitted)
    assert real["betas"][placement] == 0.0
    assert real["betas"][names.index("pinky_length")] == hand.SHAPE_LIMIT
    assert real["betas"][names.index("size")] == -hand.SHAPE_LIMIT
    assert fitted["betas"][placement] == np.float32(0.98)  # the input is not modified
    for key in ("global_orient", "hand_pose", "transl"):
        assert np.array_equal(real[key], fitted[key])
    # the skin convention puts the thumb base further from the wrist than the mocap convention (44 vs 33 mm
    # at rest, docs/hand_models.md)
    thumb_base = lambda params: np.linalg.norm(
        hand.pose_hand(model, params).keypoints[:, 1] - hand.pose_hand(model, params).keypoints[:, 0], axis=-1)
    mocap = {**fitted, "betas": np.where(np.arange(model.num_betas) == placement, 1.0, 0.0)}
    skin = hand.realistic_shape(model, mocap)
    assert (thumb_base(skin) > thumb_base(mocap) + 0.005).all()


@pytest.mark.parametrize("situation", SITUATIONS)
def test_camera_keeps_the_hand_in_frame_and_in_range(posed, situation):
    rng = np.random.default_rng(1)
    keypoints = hand.scale_to_length(posed, 0.18)[0].keypoints
    for _ in range(10):
        camera = cameras.sample_camera(keypoints, situation, rng)
        placed = camera.place(keypoints)
        pixels, depth = project(placed, camera.K)
        assert cameras.in_frame(pixels, camera.width, camera.height,
                                cameras.margin_px(camera.width, camera.height) - 1e-6)
        low, high = cameras.DISTANCES[situation]
        assert low <= placed.reshape(-1, 3).mean(0)[2] <= high  # the clip's mean hand centre
        assert np.isclose(placed.reshape(-1, 3).mean(0)[2], camera.distance)
        assert depth.min() > cameras.MIN_DEPTH
        assert camera.hand_px >= cameras.MIN_HAND_PX
        assert np.allclose(camera.K[:2, 2], [(camera.width - 1) / 2, (camera.height - 1) / 2])
        # the motion is kept: one rigid transform for all frames (pairwise distances unchanged)
        assert np.allclose(np.linalg.norm(placed[0, :, None] - placed[-1, None], axis=-1),
                           np.linalg.norm(keypoints[0, :, None] - keypoints[-1, None], axis=-1))


def test_orientations_follow_the_situation(posed):
    rng = np.random.default_rng(2)
    for situation, check in (("egocentric", lambda a: a[2, 2] > 0),  # back of the hand towards the camera
                             ("frontal", lambda a: a[1, 1] < 0),  # fingers up
                             ("topdown", lambda a: a[2, 2] > 0)):
        hits = 0
        for _ in range(20):
            camera = cameras.sample_camera(posed.keypoints, situation, rng)
            axes = cameras.mean_rotation(cameras.hand_axes(camera.place(posed.keypoints)))
            hits += check(axes)
        assert hits >= 18, situation


def test_ground_truth_lies_on_the_rendered_hand(tmp_path, posed, model):
    """Through the whole path (placement, K, GL or painter, H.264, decoding): pixels under the projected wrist
    and middle MCP are hand-coloured, not the green background."""
    from handcli.video import iter_frames, probe_video

    rng = np.random.default_rng(4)
    scaled = hand.scale_to_length(posed, 0.18)[0]
    camera = cameras.sample_camera(scaled.keypoints, "frontal", rng, resolutions=((320, 240),))
    keypoints, vertices = camera.place(scaled.keypoints), camera.place(scaled.vertices)
    canvas = np.zeros((240, 320, 3), np.uint8)
    canvas[..., 1] = 200
    background = Background(canvas, np.zeros((FRAMES, 2), int), 320, 240, "green")
    look = appearance.sample_appearance(np.random.default_rng(5))
    look.noise_sigma, look.shutter, look.subframes, look.gain = 0.0, 0.0, 1, 1.0
    look.white_balance = (1.0, 1.0, 1.0)
    skin = np.array([0.9, 0.7, 0.6], np.float32)
    video = tmp_path / "clip.mp4"
    # with its forearm, as the benchmark renders it: the wrist keypoint sits where the hand mesh ends
    arm_vertices, arm_faces, _ = hand.forearm_mesh(keypoints, 0.18, rng, skin, towards_direction=np.array([0, 1.0, 0]))
    render_clip(video, [(vertices, scaled.faces, skin), (arm_vertices, arm_faces, skin)], camera.K, 320, 240,
                background, look, rng)
    frames = [frame.copy() for frame in iter_frames(probe_video(video))]
    assert len(frames) == FRAMES
    pixels, _ = project(keypoints, camera.K)
    for t, frame in enumerate(frames):
        for joint in (0, 9):
            u, v = np.round(pixels[t, joint]).astype(int)
            r, g, b = frame[v, u].astype(int)
            assert r > g + 20 and g < 190, (t, joint, (r, g, b))  # skin (red-dominant), not the green wall


def test_motion_blur_averages_subframes():
    """Two sub-frames, one with the hand and one without: half-way between hand and background."""
    from handcli.render.scene import EMPTY_LAYER, Layer

    frame = np.full((10, 10, 3), 100, np.uint8)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 200, 255
    composite(frame, [Layer(rgba, 3, 3), EMPTY_LAYER])
    assert frame[4, 4, 0] == 150 and frame[0, 0, 0] == 100


class _MarkerHands:
    """Stand-in for MediaPipeHands in the background check: "finds a hand" where a frame has a pure red pixel."""

    calls: list = []

    def __init__(self, **options):
        self.options = options

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def process(self, frame):
        _MarkerHands.calls.append(self.options)
        return [object()] if ((frame == (255, 0, 0)).all(-1)).any() else []


def test_background_check_covers_every_window_and_falls_back(monkeypatch):
    """A hand that only the late windows of a panning plate show is caught (the first and middle frames do
    not show it); a still plate is checked once; all-hand footage ends in a procedural texture, recorded."""
    from handcli.detect import mediapipe_hands
    from handcli.videobench import backgrounds

    monkeypatch.setattr(mediapipe_hands, "MediaPipeHands", _MarkerHands)
    _MarkerHands.calls = []
    canvas = np.zeros((20, 30, 3), np.uint8)
    canvas[0, 29] = (255, 0, 0)  # top-right corner: inside the window only when x offset is 10
    offsets = np.array([[x, 0] for x in (0, 0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10)])
    assert backgrounds.plate_has_hand(Background(canvas, offsets, 20, 20, "test"), len(offsets))
    assert len(_MarkerHands.calls) == 11  # repeated windows skipped
    assert _MarkerHands.calls[0]["min_detection_confidence"] < 0.5 and _MarkerHands.calls[0]["model_complexity"] == 1
    _MarkerHands.calls = []
    assert not backgrounds.plate_has_hand(Background(canvas, np.zeros((9, 2), int), 20, 20, "test"), 9)
    assert len(_MarkerHands.calls) == 1

    class RedPool:
        def frames(self):
            return [("red.mp4#0", np.full((40, 60, 3), (255, 0, 0), np.uint8))]

    background = backgrounds.sample_background(RedPool(), 32, 24, 5, 0.1, np.random.default_rng(0))
    assert background.source == "procedural" and background.attempts == backgrounds.CROP_TRIES


def test_pooling_weights_means_by_frames_and_takes_medians_over_frames():
    clip_a = {"coverage": 1.0, "mpjpe": 10.0, "rootrel": 1.0, "pa": 1.0, "px": 2.0, "accel": 1.0,
              "counts": {"truth_frames": 100, "scored_frames": 100, "triplets": 98},
              "frames": {"depth_pct": np.full(100, 5.0), "rot_deg": np.full(100, 1.0),
                         "depth_signed_pct": np.full(100, -5.0)}}
    clip_b = {"coverage": 0.5, "mpjpe": 40.0, "rootrel": 4.0, "pa": 4.0, "px": 8.0, "accel": 4.0,
              "counts": {"truth_frames": 100, "scored_frames": 50, "triplets": 2},
              "frames": {"depth_pct": np.full(50, 50.0), "rot_deg": np.full(50, 30.0),
                         "depth_signed_pct": np.full(50, 50.0)}}
    clip_c = {"coverage": 0.0, "mpjpe": float("nan"), "rootrel": float("nan"), "pa": float("nan"),
              "px": float("nan"), "accel": float("nan"),
              "counts": {"truth_frames": 50, "scored_frames": 0, "triplets": 0},
              "frames": {"depth_pct": np.zeros(0), "rot_deg": np.zeros(0), "depth_signed_pct": np.zeros(0)}}
    pooled = pool_stage([clip_a, clip_b, clip_c])
    assert pooled["coverage"] == pytest.approx((100 + 50 + 0) / 250)
    assert pooled["mpjpe"] == pytest.approx((10 * 100 + 40 * 50) / 150)
    assert pooled["accel"] == pytest.approx((1 * 98 + 4 * 2) / 100)
    assert pooled["depth_pct"] == 5.0 and pooled["rot_deg"] == 1.0  # 100 of 150 frames: the median is clip a's
    assert pooled["frames"] == 250 and pooled["clips"] == 3
    table = aggregate([{"situation": "frontal", "scores": {"refine": clip_a}},
                       {"situation": "topdown", "scores": {"refine": clip_b}}], ("refine",))
    assert list(table) == ["frontal", "topdown", "all"]
    assert table["frontal"]["refine"]["mpjpe"] == 10.0
    assert table["all"]["refine"]["mpjpe"] == pytest.approx(20.0)
    assert "| all | refine | 2 | 200 |" in report.table(table)


def test_overrides_are_typed_and_checked():
    from handcli.stages.refine import RefineConfig

    parsed = pipeline.parse_overrides(["seed=3", "projection_sigma=0.5", "anchor=false", "device=cpu"],
                                      RefineConfig, "--refine-set")
    assert parsed == {"seed": 3, "projection_sigma": 0.5, "anchor": False, "device": "cpu"}
    with pytest.raises(BadInput, match="no such field"):
        pipeline.parse_overrides(["nonsense=1"], RefineConfig, "--refine-set")
    with pytest.raises(BadInput, match="KEY=VALUE"):
        pipeline.parse_overrides(["seed"], RefineConfig, "--refine-set")


def test_docs_section_is_replaced_in_place(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nintro\n")
    report.write_docs_section(doc, "test", "legacy", "first")
    report.write_docs_section(doc, "test", "other", "second")
    report.write_docs_section(doc, "test", "legacy", "third")
    text = doc.read_text()
    assert "first" not in text and text.count("third") == 1 and text.count("second") == 1
    assert text.index("third") < text.index("second")  # replaced where it was
    assert text.startswith("# Results\n\nintro\n")


def test_skeleton_reader(tmp_path):
    rows = np.arange(2 * 64, dtype=float).reshape(2, 64)
    rows[:, 0] = [0, 1]
    rows[1, 1:] = 0  # a lost frame
    path = tmp_path / "skeleton.txt"
    path.write_text("\n".join(" ".join(f"{v:.1f}" for v in row) for row in rows) + "\n")
    points, valid = fpha.read_skeleton(path)
    assert points.shape == (2, 21, 3) and valid.tolist() == [True, False]
    raw = rows[0, 1:].reshape(21, 3) / 1000
    assert np.allclose(points[0, 5], raw[2])  # canonical 5 (index MCP) is FPHA's 2
    assert np.allclose(points[0, 4], raw[8])  # canonical 4 (thumb tip) is FPHA's 8
    (tmp_path / "empty.txt").write_text("")
    assert fpha.read_skeleton(tmp_path / "empty.txt")[0].shape == (0, 21, 3)


@needs_shared
def test_clip_choice_is_stable_across_run_sizes():
    from handcli.videobench.clips import clip_specs

    root = SHARED / "data" / "mocap" / "fpha"
    if not root.is_dir():
        pytest.skip("no FPHA mocap in ../shared")
    small, large = clip_specs("test", root, 1), clip_specs("test", root, 2)
    assert large[:3] == small and [s.situation for s in large] == list(SITUATIONS) * 2
    assert clip_specs("test", root, 2, ("frontal",)) == [large[1], large[4]]
    assert all(s.sequence_name.startswith("Subject_4/") for s in large)
    assert len({s.sequence for s in large}) == len(large)
    from handcli.errors import BadInput

    with pytest.raises(BadInput, match="clips per situation"):
        clip_specs("test", root, 1000)


@needs_shared
def test_per_frame_values_reproduce_videoscore(posed):
    from handcli.videobench import scoring

    try:
        vs = scoring.load_videoscore()
    except FileNotFoundError:
        pytest.skip("no shared video scorer")
    rng = np.random.default_rng(6)
    gt = posed.keypoints + np.array([0.0, 0.0, 0.5])
    pred = gt * rng.uniform(0.7, 1.2, (FRAMES, 1, 1)) + rng.normal(0, 0.005, gt.shape)
    cov = np.array([True] * 6 + [False] * 2)
    valid = np.ones((FRAMES, 21), bool)
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    reference = vs.score(pred, cov, gt, valid, K, True)
    frames = scoring.per_frame(vs, pred, cov, gt, valid)
    assert np.median(frames["depth_pct"]) == pytest.approx(reference["depth_pct"])
    assert np.median(frames["rot_deg"]) == pytest.approx(reference["rot_deg"])
    assert np.allclose(np.abs(frames["depth_signed_pct"]), frames["depth_pct"])
    counted = scoring.counts(cov, valid)
    assert counted == {"truth_frames": 8, "scored_frames": 6, "triplets": 4}
    json.dumps(report.json_rows([{"params": {"clip": "x", "situation": "frontal"},
                                  "scores": {"refine": {**reference, "counts": counted}}}]))
