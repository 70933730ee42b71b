"""Video reading: metadata, streamed frames, rotation, variable frame rate, and one-line errors for bad files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from handcli.errors import BadInput
from handcli.video import iter_frames, probe_video

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30, **options) -> Path:
    """Encode `frames` ((H, W, 3) uint8, or (H, W) with pix_fmt_in='gray') with imageio-ffmpeg, no resizing."""
    writer = imageio_ffmpeg.write_frames(str(path), frames[0].shape[1::-1], fps=fps, macro_block_size=1,
                                         **options)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


def gray_ramp(num_frames: int, height: int = 48, width: int = 64, step: int = 8) -> list[np.ndarray]:
    """Flat frames whose brightness encodes the frame number (step levels apart, survives compression)."""
    return [np.full((height, width, 3), 16 + step * i, np.uint8) for i in range(num_frames)]


def decoded_numbers(frames, step: int = 8) -> list[int]:
    return [int(round((float(frame.mean()) - 16) / step)) for frame in frames]


def test_probe_and_stream(tmp_path):
    path = write_video(tmp_path / "ramp.mp4", gray_ramp(20), fps=25)
    info = probe_video(path)
    assert (info.width, info.height, info.fps, info.codec) == (64, 48, 25.0, "h264")
    assert info.num_frames_estimate == 20 and not info.rotated
    frames = list(iter_frames(info))
    assert len(frames) == 20
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert decoded_numbers(frames) == list(range(20))


def test_frames_are_streamed_not_buffered(tmp_path):
    info = probe_video(write_video(tmp_path / "ramp.mp4", gray_ramp(20)))
    frames = iter_frames(info)
    first = next(frames)
    assert decoded_numbers([first]) == [0]
    frames.close()  # stopping early ends ffmpeg without reading (or checking) the rest


def test_grayscale_video_gives_rgb(tmp_path):
    levels = [np.full((32, 40), 30 * i, np.uint8) for i in range(1, 6)]
    path = write_video(tmp_path / "gray.mp4", levels, pix_fmt_in="gray")
    frames = list(iter_frames(probe_video(path)))
    assert len(frames) == 5 and frames[0].shape == (32, 40, 3)
    assert np.abs(frames[2].astype(int) - 90).max() <= 3
    assert np.abs(np.diff(frames[2].astype(int), axis=-1)).max() <= 2  # R = G = B


def test_odd_frame_size(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (17, 33, 3), dtype=np.uint8) for _ in range(3)]
    path = write_video(tmp_path / "odd.mp4", frames, pix_fmt_out="yuv444p")
    info = probe_video(path)
    assert (info.width, info.height) == (33, 17)
    assert [f.shape for f in iter_frames(info)] == [(17, 33, 3)] * 3


def test_one_frame_video(tmp_path):
    info = probe_video(write_video(tmp_path / "one.mp4", gray_ramp(1)))
    assert len(list(iter_frames(info))) == 1


def test_rotation_metadata_is_applied(tmp_path):
    frame = np.zeros((40, 64, 3), np.uint8)
    frame[:, :8] = 255  # a bright stripe on the left edge
    plain = write_video(tmp_path / "plain.mp4", [frame] * 3)
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", plain, "-c", "copy", rotated)
    info = probe_video(rotated)
    assert (info.width, info.height, info.rotated) == (40, 64, True)
    decoded = next(iter_frames(info))
    assert decoded.shape == (64, 40, 3)
    # counter-clockwise display rotation moves the left edge to the bottom
    assert decoded[-8:].mean() > 200 and decoded[:-8].mean() < 50


def test_variable_frame_rate_is_resampled_to_constant_rate(tmp_path):
    # 30 source frames 1/30 s apart, then 10 frames 1/10 s apart; brightness encodes the source frame number
    source = write_video(tmp_path / "cfr.mp4", gray_ramp(40, step=6))
    vfr = tmp_path / "vfr.mp4"
    ffmpeg("-i", source, "-vf", "setpts='if(lt(N,30),N/30,1+(N-30)/10)/TB'", "-fps_mode", "vfr", vfr)
    source_times = np.array([n / 30 if n < 30 else 1 + (n - 30) / 10 for n in range(40)])
    info = probe_video(vfr)
    numbers = decoded_numbers(iter_frames(info), step=6)
    assert len(numbers) >= 38
    for index, number in enumerate(numbers):
        # frame i shows the source frame shown around time i / fps (within one source frame)
        shown = np.searchsorted(source_times, index / info.fps + 1e-6, side="right") - 1
        assert abs(number - shown) <= 1, (index, number, shown)


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_text("hello, I am not a video"), "not a readable video"),
    (lambda p: p.write_bytes(np.random.default_rng(0).bytes(50_000)), "not a readable video"),
])
def test_bad_files(tmp_path, make, message):
    path = tmp_path / "clip.mp4"
    make(path)
    with pytest.raises(BadInput, match=message):
        list(iter_frames(probe_video(path)))


def test_a_directory_is_read_as_a_frame_folder(tmp_path):
    """Folders of frames are input too (tests/test_frames.py); one without frames is bad input."""
    with pytest.raises(BadInput, match="folder holds no frames"):
        probe_video(tmp_path)


def noisy_video(path: Path, num_frames: int = 60) -> Path:
    """Incompressible frames, so a byte cut lands in the middle of the stream."""
    rng = np.random.default_rng(1)
    return write_video(path, [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(num_frames)])


def test_truncated_file_without_index(tmp_path):
    data = noisy_video(tmp_path / "full.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the mp4 index ('moov') is written last, so it is lost
    with pytest.raises(BadInput, match="truncated"):
        probe_video(cut)


def test_truncated_file_with_index_first(tmp_path):
    fast = tmp_path / "fast.mp4"
    ffmpeg("-i", noisy_video(tmp_path / "full.mp4"), "-c", "copy", "-movflags", "+faststart", fast)
    data = fast.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # header intact, half the frames missing
    info = probe_video(cut)
    assert info.num_frames_estimate == 60
    with pytest.raises(BadInput, match="truncated"):
        list(iter_frames(info))


def test_zero_frames_and_no_video_stream(tmp_path):
    zero = tmp_path / "zero.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=30", "-frames:v", "0", zero)
    audio = tmp_path / "audio.wav"
    ffmpeg("-f", "lavfi", "-i", "sine", "-t", "0.2", audio)
    for path in (zero, audio):
        with pytest.raises(BadInput, match="no video stream"):
            probe_video(path)
