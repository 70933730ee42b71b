"""Hostile videos through the command line: each either ends in exit code 2 with one line and nothing written,
or in a valid result. Every fixture is made here, most from a synthetic clip of the open hand that MediaPipe
detects on every frame, so "valid" can mean "the hand was found where it is".

Already covered elsewhere, not repeated: the video loader on truncated files, zero frames, one frame, variable
frame rate, rotation metadata and grayscale (test_video.py); `handcli detect` on a text file or an empty
file named .mp4, on a video without hands, and the detect stage on one-frame and grayscale clips without
hands (test_detect.py). Commands run in-process (typer's CliRunner): the same code path as the `handcli`
executable minus interpreter start-up.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

import imageio_ffmpeg
import numpy as np
import pytest
from typer.testing import CliRunner

from handcli.artifacts import Artifact, load_artifact
from handcli.cli import app
from handcli.render.synthetic import render_synthetic_video
from tests.test_detect import blank_frames
from tests.test_video import write_video

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
NUM_FRAMES, WIDTH, HEIGHT = 20, 320, 240


def ffmpeg(*args) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


def handcli(*args) -> tuple[int, list[str]]:
    """(exit code, non-empty stderr lines) of `handcli ARGS`; a traceback anywhere fails the test."""
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, [line for line in result.stderr.splitlines() if line.strip()]


def assert_rejected(directory: Path, command: str, video: Path, message: str) -> None:
    """Exit 2, one line naming the problem, and nothing written (for `run`: no cache artifact either)."""
    out, work = directory / "hands.npz", directory / "cache"
    extra = ["--work-dir", work] if command == "run" else []
    code, lines = handcli(command, video, "--out", out, *extra)
    assert code == 2 and len(lines) == 1 and message in lines[0], (code, lines)
    assert not out.exists()
    assert not list(work.glob("*.npz")) if work.exists() else True
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]


def detected(directory: Path, video: Path, *options: str) -> Artifact:
    """`handcli detect VIDEO` must succeed; returns what it wrote."""
    out = directory / f"{video.stem}.npz"
    code, lines = handcli("detect", video, "--out", out, *options)
    assert code == 0, lines
    return load_artifact(out)


@pytest.fixture(scope="module")
def hand_clip(tmp_path_factory) -> tuple[Path, Artifact]:
    """The open hand, 20 frames at 320x240 and 30 fps, and its ground truth."""
    path = tmp_path_factory.mktemp("hostile") / "hand.mp4"
    return path, render_synthetic_video(path, NUM_FRAMES, WIDTH, HEIGHT)


@pytest.fixture(scope="module")
def hand_detections(hand_clip, tmp_path_factory) -> Artifact:
    return detected(tmp_path_factory.mktemp("plain"), hand_clip[0])


def assert_hand_found(artifact: Artifact, num_frames: int, size: tuple[int, int]) -> None:
    assert artifact.num_tracks == 1 and artifact.num_frames == num_frames, (artifact.num_tracks, artifact.num_frames)
    assert artifact.valid[0].all() and artifact.is_right[0]
    assert artifact.image_size.tolist() == list(size)
    uv = artifact.keypoints2d[0, :, :, :2]
    assert (uv >= -1).all() and (uv[..., 0] <= size[0]).all() and (uv[..., 1] <= size[1]).all()


# ------------------------------------------------------------------------------------------ the fixtures
# Each makes one hostile video in `directory` from the hand clip (scripts/reliability_report.py runs them too).
def truncated_without_index(clip: Path, directory: Path) -> Path:
    """A recording cut short: ffmpeg's default mp4 muxer writes the index ('moov') last, so it is lost."""
    plain = directory / "plain.mp4"
    ffmpeg("-i", clip, "-c", "copy", plain)  # the clip itself has its index first (faststart)
    cut = directory / "cut.mp4"
    cut.write_bytes(plain.read_bytes()[: plain.stat().st_size * 2 // 3])
    return cut


def truncated_with_index_first(clip: Path, directory: Path) -> Path:
    fast = directory / "fast.mp4"
    ffmpeg("-i", clip, "-c", "copy", "-movflags", "+faststart", fast)
    cut = directory / "cut_fast.mp4"
    cut.write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])  # header intact, later frames gone
    return cut


def zero_frames(clip: Path, directory: Path) -> Path:
    path = directory / "zero.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=30", "-frames:v", "0", path)
    return path


def one_frame(clip: Path, directory: Path) -> Path:
    path = directory / "one.mp4"
    ffmpeg("-i", clip, "-frames:v", "1", "-c:v", "libx264", path)
    return path


def still_image_named_mp4(clip: Path, directory: Path) -> Path:
    png = directory / "frame.png"
    ffmpeg("-i", clip, "-frames:v", "1", "-f", "image2", "-c:v", "png", png)
    return png.rename(directory / "image.mp4")


def repackaged(container: str, name: str) -> Callable[[Path, Path], Path]:
    """The clip in another container under a name whose extension says something else."""
    def make(clip: Path, directory: Path) -> Path:
        codec = ["-c:v", "mjpeg", "-q:v", "2"] if container == "avi" else ["-c", "copy"]
        ffmpeg("-i", clip, *codec, "-f", container, directory / name)
        return directory / name
    return make


def variable_frame_rate(clip: Path, directory: Path) -> Path:
    """10 frames 1/30 s apart, then 10 frames 1/10 s apart."""
    path = directory / "vfr.mp4"
    ffmpeg("-i", clip, "-vf", "setpts='if(lt(N,10),N/30,1/3+(N-10)/10)/TB'", "-fps_mode", "vfr", path)
    return path


def rotated(clip: Path, directory: Path) -> Path:
    """A portrait phone clip: display rotation 90 degrees in the metadata."""
    path = directory / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", clip, "-c", "copy", path)
    return path


def grayscale(clip: Path, directory: Path) -> Path:
    path = directory / "gray.mp4"
    ffmpeg("-i", clip, "-c:v", "libx264", "-pix_fmt", "gray", path)
    return path


def uhd(clip: Path, directory: Path) -> Path:
    """3 frames of 3840x2160: the clip's scene at 12x the resolution (same motion, K scaled)."""
    path = directory / "uhd.mp4"
    render_synthetic_video(path, 3, 12 * WIDTH, 12 * HEIGHT)
    return path


def no_hands(clip: Path, directory: Path) -> Path:
    return write_video(directory / "blank.mp4", blank_frames(8))


# name -> (maker, what `handcli detect` must do, what `handcli run` must do): "accept" or the rejection text
HOSTILE_VIDEOS: dict[str, tuple[Callable[[Path, Path], Path], str, str]] = {
    "truncated, mp4 index lost": (truncated_without_index, "no mp4 index", "no mp4 index"),
    "truncated, mp4 index first": (truncated_with_index_first, "truncated", "truncated"),
    "zero frames": (zero_frames, "no video stream", "no video stream"),
    "one frame": (one_frame, "accept", "at least 2 needed"),
    "PNG image named .mp4": (still_image_named_mp4, "accept", "at least 2 needed"),
    "mp4 named .avi": (repackaged("mp4", "clip.avi"), "accept", "accept"),
    "AVI (MJPEG) named .mp4": (repackaged("avi", "clip.mp4"), "accept", "accept"),
    "Matroska named .mov": (repackaged("matroska", "clip.mov"), "accept", "accept"),
    "variable frame rate": (variable_frame_rate, "accept", "accept"),
    "rotated phone video (90 degrees)": (rotated, "accept", "accept"),
    "grayscale": (grayscale, "accept", "accept"),
    "4K frames (3 frames)": (uhd, "accept", "accept"),
    "no hands": (no_hands, "accept", "accept"),
}


# --------------------------------------------------------------------------------------------- rejected
@pytest.mark.parametrize("name", [name for name, (_, on_detect, on_run) in HOSTILE_VIDEOS.items()
                                  if "accept" not in (on_detect, on_run)])
def test_rejected_by_detect_and_run(tmp_path, hand_clip, name):
    make, on_detect, on_run = HOSTILE_VIDEOS[name]
    video = make(hand_clip[0], tmp_path)
    assert_rejected(tmp_path, "detect", video, on_detect)
    assert_rejected(tmp_path, "run", video, on_run)


@pytest.mark.parametrize("make", [one_frame, still_image_named_mp4], ids=["one frame", "PNG named .mp4"])
def test_single_frame_cannot_be_run_but_can_be_detected(tmp_path, hand_clip, make):
    """`run` needs motion (2+ frames); `detect` on one frame is a valid single-frame result. A PNG named .mp4
    is read by content, as a one-frame video."""
    video = make(hand_clip[0], tmp_path)
    assert_rejected(tmp_path, "run", video, "at least 2 needed")
    assert_hand_found(detected(tmp_path, video), 1, (WIDTH, HEIGHT))


# ------------------------------------------------------------------------------------------------ valid
@pytest.mark.parametrize("name", ["mp4 named .avi", "AVI (MJPEG) named .mp4", "Matroska named .mov"])
def test_wrong_extension_is_read_by_content(tmp_path, hand_clip, hand_detections, name):
    artifact = detected(tmp_path, HOSTILE_VIDEOS[name][0](hand_clip[0], tmp_path))
    assert_hand_found(artifact, NUM_FRAMES, (WIDTH, HEIGHT))
    if "MJPEG" not in name:  # same stream, repackaged: the same detections
        np.testing.assert_allclose(artifact.keypoints2d, hand_detections.keypoints2d, atol=1e-3)


def test_variable_frame_rate(tmp_path, hand_clip, hand_detections):
    """Resampled to the header's average rate: every output frame shows the source frame on screen at its
    time, and the hand is found on all of them."""
    artifact = detected(tmp_path, variable_frame_rate(hand_clip[0], tmp_path))
    times = np.array([n / 30 if n < 10 else 1 / 3 + (n - 10) / 10 for n in range(NUM_FRAMES)])
    assert artifact.num_frames >= NUM_FRAMES and artifact.fps < 30
    assert_hand_found(artifact, artifact.num_frames, (WIDTH, HEIGHT))
    shown = np.searchsorted(times, np.arange(artifact.num_frames) / artifact.fps + 1e-6, side="right") - 1
    wrists = artifact.keypoints2d[0, :, 0, :2]
    expected = hand_detections.keypoints2d[0, shown, 0, :2]
    assert np.median(np.linalg.norm(wrists - expected, axis=-1)) < 2.0


def test_variable_frame_rate_renders_over_its_video(tmp_path, hand_clip):
    """render counts the video's frames the way detect decoded them (resampled), so the detections of a
    variable-rate clip draw over it: one output frame per resampled frame."""
    video = variable_frame_rate(hand_clip[0], tmp_path)
    artifact = detected(tmp_path, video)
    out = tmp_path / "overlay.mp4"
    code, lines = handcli("render", "--input", tmp_path / f"{video.stem}.npz", "--video", video, "--out", out,
                          "--backend", "painter")
    assert code == 0, lines
    from handcli.video import count_frames, probe_video
    assert count_frames(probe_video(out)) == artifact.num_frames > NUM_FRAMES


def test_rotated_phone_video(tmp_path, hand_clip, hand_detections):
    """Frames, image size, K and keypoints in display orientation."""
    artifact = detected(tmp_path, rotated(hand_clip[0], tmp_path))
    assert artifact.meta["video"]["rotated"]
    assert_hand_found(artifact, NUM_FRAMES, (HEIGHT, WIDTH))
    assert artifact.K[0, 2] < artifact.K[1, 2]  # principal point of a portrait frame
    # counter-clockwise display rotation: stored pixel (u, v) is shown at (v, W - 1 - u)
    u, v = hand_detections.keypoints2d[0, :, :, 0], hand_detections.keypoints2d[0, :, :, 1]
    expected = np.stack([v, WIDTH - 1 - u], -1)
    error = np.linalg.norm(artifact.keypoints2d[0, :, :, :2] - expected, axis=-1)
    assert np.median(error) < 3.0, np.median(error)


def test_grayscale_video_with_a_hand(tmp_path, hand_clip):
    assert_hand_found(detected(tmp_path, grayscale(hand_clip[0], tmp_path)), NUM_FRAMES, (WIDTH, HEIGHT))


def test_4k_frames(tmp_path, hand_clip, hand_detections):
    """The same scene as the small clip at 12x the resolution, so the keypoints are the small clip's x 12."""
    artifact = detected(tmp_path, uhd(hand_clip[0], tmp_path))
    assert_hand_found(artifact, 3, (12 * WIDTH, 12 * HEIGHT))
    error = np.linalg.norm(artifact.keypoints2d[0, :, :, :2] / 12 - hand_detections.keypoints2d[0, :3, :, :2], axis=-1)
    assert np.median(error) < 2.0, np.median(error)


def test_run_on_a_video_without_hands(tmp_path, hand_clip):
    """`run` stops after detect: exit 0, a warning, an artifact with no tracks (nothing to refine)."""
    video = no_hands(hand_clip[0], tmp_path)
    out = tmp_path / "hands.npz"
    code, lines = handcli("run", video, "--out", out, "--work-dir", tmp_path / "cache")
    assert code == 0, lines
    assert any("no hands found" in line for line in lines)
    artifact = load_artifact(out)
    assert (artifact.num_tracks, artifact.num_frames) == (0, 8)
