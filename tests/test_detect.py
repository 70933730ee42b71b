"""detect: intrinsics, lifting to the camera frame, track association, the stage, and the command line."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from handcli.artifacts import load_artifact, save_artifact
from handcli.detect import HandDetection, HandTracker, TrackerConfig, camera_matrix, project, solve_translation
from handcli.detect.tracking import fill_unseen
from handcli.errors import BadInput
from handcli.stages import detect as detect_stage
from handcli.video import VideoInfo, iter_frames, probe_video
from tests.conftest import SHARED, assert_one_line_error, needs_shared, run_cli
from tests.test_video import write_video

OPEN_CLOSE = SHARED / "data" / "video" / "dexretarget_open_close.mp4"


def hand_template(size: float = 100.0, right: bool = True) -> np.ndarray:
    """(21, 2) pixels: a flat open hand, wrist at the origin, fingers up; a left hand is its mirror image."""
    angles = np.radians([-60, -25, -5, 15, 35])
    lengths = np.array([[0.25, 0.45, 0.6, 0.72]] + [[0.45, 0.7, 0.85, 1.0]] * 4)
    points = [np.zeros(2)]
    for angle, finger in zip(angles, lengths):
        points += [length * np.array([np.sin(angle), -np.cos(angle)]) for length in finger]
    template = np.array(points) * size
    return template if right else template * (-1, 1)


def detection(keypoints2d: np.ndarray, right_probability: float, score: float = 0.9) -> HandDetection:
    return HandDetection(keypoints2d=keypoints2d, world_landmarks=np.zeros((21, 3)),
                         right_probability=right_probability, score=score)


def video_info(num_frames: int = 30, width: int = 640, height: int = 480, fps: float = 30.0) -> VideoInfo:
    return VideoInfo(path=Path("synthetic.mp4"), width=width, height=height, fps=fps, fps_known=True,
                     duration=num_frames / fps, codec="synthetic", rotated=False)


# --- intrinsics and lifting ---------------------------------------------------------------------------------

def test_default_intrinsics_are_60_degrees_across_the_longer_side():
    for width, height in ((1280, 720), (720, 1280)):
        K = camera_matrix(width, height)
        assert K[0, 0] == K[1, 1] == pytest.approx(1280 / (2 * np.tan(np.radians(30))))
        assert (K[0, 2], K[1, 2]) == ((width - 1) / 2, (height - 1) / 2)
    assert camera_matrix(640, 480, focal=500.0)[0, 0] == 500.0
    assert camera_matrix(640, 480, fov=90.0)[0, 0] == pytest.approx(320.0)


@pytest.mark.parametrize("options, message", [
    (dict(focal=500.0, fov=60.0), "not both"), (dict(focal=-1.0), "--focal"), (dict(fov=0.0), "--fov"),
    (dict(fov=float("nan")), "--fov")])
def test_bad_intrinsics_options(options, message):
    with pytest.raises(BadInput, match=message):
        camera_matrix(640, 480, **options)


def test_solve_translation_recovers_the_hand_position():
    rng = np.random.default_rng(0)
    world = rng.normal(0, 0.04, (50, 21, 3))
    translation = np.stack([rng.uniform(-0.2, 0.2, 50), rng.uniform(-0.1, 0.1, 50), rng.uniform(0.3, 1.5, 50)], 1)
    K = camera_matrix(1280, 720)
    keypoints2d = project(world + translation[:, None], K)
    np.testing.assert_allclose(solve_translation(world, keypoints2d, K), translation, atol=1e-9)
    noisy = solve_translation(world, keypoints2d + rng.normal(0, 2.0, keypoints2d.shape), K)
    assert np.abs(noisy - translation).max() < 0.05 * translation[:, 2].max()
    assert solve_translation(world[:0], keypoints2d[:0], K).shape == (0, 3)


# --- tracking -----------------------------------------------------------------------------------------------

def test_crossing_hands_with_flipping_handedness_keep_their_identities():
    rng = np.random.default_rng(1)
    tracker = HandTracker()
    for frame in range(40):
        # in 2D a left hand seen from the back looks like a right hand seen from the front: same template
        right_hand = hand_template() + (100 + 10 * frame, 300)  # moves right
        left_hand = hand_template() + (500 - 10 * frame, 330)  # moves left, crosses at frame 20
        flipped = 15 <= frame < 26  # MediaPipe swaps the labels of crossed hands
        detections = [detection(right_hand + rng.normal(0, 2, (21, 2)), 0.1 if flipped else 0.9)]
        if not 19 <= frame <= 21:  # the left hand is hidden behind the right one while they cross
            detections.append(detection(left_hand + rng.normal(0, 2, (21, 2)), 0.9 if flipped else 0.1))
        rng.shuffle(detections)
        tracker.update(frame, detections)
    tracks = tracker.finished_tracks(min_observations=6)
    assert len(tracks) == 2
    by_side = {track.is_right: track for track in tracks}
    assert set(by_side) == {True, False}
    for right, direction in ((True, 1), (False, -1)):
        track = by_side[right]
        wrist_x = np.array([d.keypoints2d[0, 0] for d in track.detections])
        assert np.all(direction * np.diff(wrist_x) > 0), "a track jumped to the other hand"
    assert by_side[False].frames == [f for f in range(40) if not 19 <= f <= 21]


@pytest.mark.parametrize("gap, expected_tracks", [(10, 1), (15, 1), (16, 2), (40, 2)])
def test_short_gaps_keep_the_identity(gap, expected_tracks):
    tracker = HandTracker(TrackerConfig(max_gap_frames=15))
    seen = [f for f in range(20)] + [f for f in range(20 + gap, 40 + gap)]
    for frame in seen:
        tracker.update(frame, [detection(hand_template() + (200 + 2 * frame, 300), 0.8)])
    assert len(tracker.finished_tracks(1)) == expected_tracks


def test_a_one_frame_false_detection_is_not_joined_to_a_hand_that_appears_later():
    """A flicker at frame 0 (bottom left), then nothing, then a real hand 3 hand sizes away from frame 11 on:
    a confirmed track would take it (the gate is 1 hand size x sqrt(11 frames)); a tentative one has ended."""
    tracker = HandTracker(TrackerConfig(max_gap_frames=15))
    tracker.update(0, [detection(hand_template() + (100, 600), 0.8)])
    for frame in range(11, 30):
        tracker.update(frame, [detection(hand_template() + (400, 300), 0.8)])
    first, second = tracker.tracks
    assert first.frames == [0] and second.frames == list(range(11, 30))
    assert [t.frames[0] for t in tracker.finished_tracks(6)] == [11]
    # once confirmed (3 frames seen), the same gap keeps the identity
    tracker = HandTracker(TrackerConfig(max_gap_frames=15))
    for frame in range(3):
        tracker.update(frame, [detection(hand_template() + (100 + 2 * frame, 600), 0.8)])
    for frame in range(11, 30):
        tracker.update(frame, [detection(hand_template() + (130, 590), 0.8)])
    assert len(tracker.tracks) == 1


def test_handedness_is_a_confidence_weighted_vote():
    tracker = HandTracker()
    probabilities = [0.95] * 4 + [0.45] * 6  # most frames lean left, but only weakly
    for frame, probability in enumerate(probabilities):
        tracker.update(frame, [detection(hand_template() + (300, 300), probability)])
    (track,) = tracker.finished_tracks(1)
    assert track.right_vote == pytest.approx(4 * 0.9 - 6 * 0.1)
    assert track.is_right


def test_duplicates_and_spurious_tracks_are_dropped():
    tracker = HandTracker()
    for frame in range(30):
        hand = hand_template() + (300, 300)
        # seen twice, slightly offset (as MediaPipe does on the shared clip: ~0.06 hand sizes apart)
        detections = [detection(hand, 0.9, score=0.9), detection(hand + (8.0, 10.0), 0.9, score=0.6)]
        if frame in (10, 11):
            detections.append(detection(hand_template() + (50, 50), 0.5, score=0.5))  # a 2-frame ghost
        ids = tracker.update(frame, detections)
        assert len(ids) == len(detections) - 1
    assert len(tracker.tracks) == 2
    (kept,) = tracker.finished_tracks(min_observations=6)
    assert len(kept.frames) == 30 and all(d.score == 0.9 for d in kept.detections)


def test_fill_unseen_interpolates_and_holds():
    values = np.array([[[np.nan], [1.0], [np.nan], [3.0], [np.nan]], [[np.nan]] * 5], np.float32)
    valid = np.isfinite(values[..., 0])
    filled = fill_unseen(values, valid)
    np.testing.assert_allclose(filled[0, :, 0], [1, 1, 2, 3, 3])
    np.testing.assert_allclose(filled[1], 0)


# --- the stage with a scripted detector ------------------------------------------------------------------------

class ScriptedHands:
    """Stands in for MediaPipeHands: returns pre-made detections frame by frame."""

    script: list[list[HandDetection]] = []

    def __init__(self, *args, **kwargs):
        self.frames = iter(self.script)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def process(self, frame):
        return next(self.frames)


def test_stage_assembles_lifts_and_fills(monkeypatch, tmp_path):
    rng = np.random.default_rng(2)
    K = camera_matrix(640, 480, focal=500.0)
    world = rng.normal(0, 0.03, (21, 3))
    positions = [np.array([0.05 + 0.002 * t, -0.02, 0.6]) for t in range(30)]
    def hand(position: np.ndarray, landmarks: np.ndarray = world) -> HandDetection:
        return HandDetection(keypoints2d=project(world + position, K), world_landmarks=landmarks,
                             right_probability=0.2, score=0.8)

    script = []
    for t, position in enumerate(positions):
        # a second "hand" whose 2D and 3D agree only behind the camera: it never lifts and is dropped
        frame = [hand(np.array([-0.1, 0.05, 0.5]), landmarks=-world)]
        if not 10 <= t <= 12:
            # on frame 20 the landmarks are point-reflected: the only fit puts the hand behind the camera
            frame.append(hand(position, landmarks=-world if t == 20 else world))
        script.append(frame)
    monkeypatch.setattr(ScriptedHands, "script", script)
    monkeypatch.setattr(detect_stage, "MediaPipeHands", ScriptedHands)
    frames = [np.zeros((480, 640, 3), np.uint8)] * 30
    result = detect_stage.detect(frames, video_info(30), detect_stage.DetectConfig(focal=500.0))
    assert (result.num_tracks, result.num_frames) == (1, 30)
    assert not result.is_right[0] and result.track_id.tolist() == [0]
    expected_valid = np.array([not 10 <= t <= 12 and t != 20 for t in range(30)])
    np.testing.assert_array_equal(result.valid[0], expected_valid)
    truth = world[None] + np.array(positions)[:, None]
    np.testing.assert_allclose(result.keypoints3d[0][expected_valid], truth[expected_valid], atol=1e-5)
    # unseen frames are finite (interpolated), carry zero confidence, and the artifact saves and loads
    np.testing.assert_allclose(result.keypoints3d[0, 11], truth[11], atol=1e-5)
    assert (result.keypoints2d[0, 10:13, :, 2] == 0).all() and (result.scores[0, 10:13] == 0).all()
    tracking = result.meta["tracking"]
    assert tracking["lift_failures"] == 31 and tracking["tracks_found"] == 2 and tracking["tracks_dropped"] == 1
    assert result.meta["stage"] == "detect" and tracking["reprojection_px_median"] < 1e-3
    loaded = load_artifact(save_artifact(result, tmp_path / "d.npz"))
    np.testing.assert_allclose(loaded.K, K)
    assert loaded.image_size.tolist() == [640, 480] and loaded.frame_index.tolist() == list(range(30))


def test_stage_refuses_too_few_frames(monkeypatch):
    monkeypatch.setattr(ScriptedHands, "script", [[]])
    monkeypatch.setattr(detect_stage, "MediaPipeHands", ScriptedHands)
    config = detect_stage.DetectConfig(min_frames=2)
    with pytest.raises(BadInput, match="1 frame"):
        detect_stage.detect([np.zeros((48, 64, 3), np.uint8)], video_info(1, 64, 48), config)


def test_min_track_observations_rule():
    config = detect_stage.DetectConfig(min_track_seconds=0.2)
    assert detect_stage.min_track_observations(config, 30.0, 1000) == 6
    assert detect_stage.min_track_observations(config, 30.0, 5) == 3
    assert detect_stage.min_track_observations(config, 30.0, 1) == 1


# --- real MediaPipe, through the command line ------------------------------------------------------------------

def blank_frames(num_frames: int, height: int = 96, width: int = 128) -> list[np.ndarray]:
    return [np.full((height, width, 3), 60 + 3 * i, np.uint8) for i in range(num_frames)]


def test_cli_video_without_hands_writes_an_empty_artifact(tmp_path):
    video = write_video(tmp_path / "blank.mp4", blank_frames(12))
    out = tmp_path / "hands.npz"
    result = run_cli("detect", video, "--out", out, "--focal", "400")
    assert result.returncode == 0, result.stderr
    assert "warning: no hands found" in result.stderr and "Traceback" not in result.stderr
    artifact = load_artifact(out)
    assert (artifact.num_tracks, artifact.num_frames) == (0, 12)
    assert artifact.K[0, 0] == 400 and artifact.image_size.tolist() == [128, 96]


@pytest.mark.parametrize("kind", ["one-frame", "grayscale", "odd-size"])
def test_unusual_but_valid_videos(tmp_path, kind):
    video = tmp_path / "clip.mp4"
    if kind == "one-frame":
        write_video(video, blank_frames(1))
    elif kind == "grayscale":
        write_video(video, [f[..., 0] for f in blank_frames(4)], pix_fmt_in="gray")
    else:
        write_video(video, blank_frames(4, 37, 51), pix_fmt_out="yuv444p")
    artifact = detect_stage.detect_file(video, detect_stage.DetectConfig())
    assert artifact.num_frames == (1 if kind == "one-frame" else 4) and artifact.num_tracks == 0
    assert artifact.image_size.tolist() == ([51, 37] if kind == "odd-size" else [128, 96])
    assert artifact.meta["inputs"]["video"] == str(video)
    save_artifact(artifact, tmp_path / "hands.npz")


@pytest.mark.parametrize("content, message", [
    (None, "no such file"), (b"", "empty file"), (b"not a video at all", "not a readable video")])
def test_cli_bad_video_is_one_line_and_writes_nothing(tmp_path, content, message):
    video = tmp_path / "clip.mp4"
    if content is not None:
        video.write_bytes(content)
    out = tmp_path / "hands.npz"
    assert_one_line_error(run_cli("detect", video, "--out", out), 2, message)
    assert not out.exists()


def test_cli_bad_options_fail_before_decoding(tmp_path):
    video = write_video(tmp_path / "blank.mp4", blank_frames(3))
    assert_one_line_error(run_cli("detect", video, "--out", tmp_path / "o.npz", "--focal", "500", "--fov", "60"),
                          2, "not both")
    assert_one_line_error(run_cli("detect", video, "--out", tmp_path / "missing" / "o.npz"), 2, "directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.mp4"]


@needs_shared
def test_open_close_clip_has_one_right_hand_track():
    if not OPEN_CLOSE.exists():
        pytest.skip(f"{OPEN_CLOSE} is absent")
    info = probe_video(OPEN_CLOSE)
    result = detect_stage.detect(itertools.islice(iter_frames(info), 60), info, detect_stage.DetectConfig())
    assert result.num_frames == 60 and result.num_tracks == 1
    assert result.is_right[0] and result.valid[0].mean() >= 0.95
    depth = result.keypoints3d[0][result.valid[0]][:, 0, 2]
    assert 0.2 < np.median(depth) < 2.0
    assert result.meta["tracking"]["reprojection_px_median"] < 20
