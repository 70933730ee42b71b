"""Reading videos: probe the metadata, then stream RGB frames one at a time (never the whole video in memory).
A folder of frames (handcli.frames) is read through the same three calls.

Decoding is ffmpeg through imageio-ffmpeg. Two behaviours worth knowing (docs/detect.md):
* Rotation: ffmpeg applies a phone's display-rotation metadata while decoding, so frames, `width` and
  `height` are in display orientation; `rotated` says the stored frames were turned by 90 or 270 degrees.
* Frame rate: frames are always resampled to a constant rate equal to the stream's average rate as the header
  states it (ffmpeg's `fps` filter). For constant-rate video that is a no-op; for variable-rate video ffmpeg
  repeats or drops frames so frame i is the one on screen nearest time i / fps, which is what every later
  stage assumes.
"""

from __future__ import annotations

import logging
import re
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from handcli.artifacts import check_input_file
from handcli.errors import BadInput, warn_input

DEFAULT_FPS = 30.0
# decoding fewer frames than this share of what the header announces means the file was cut short: exit 2
TRUNCATION_TOLERANCE = 0.10
# a smaller missing tail (more than this many frames, up to the tolerance) is a warning naming the frames lost;
# a frame or two of difference is the header's rounding (or an audio track outlasting the picture)
TAIL_SLACK_FRAMES = 2
# elementary streams without a container: no time stamps, so ffmpeg's 25 fps is a guess
RAW_STREAM_FORMATS = {"h264", "hevc", "vvc", "mjpeg", "jpeg_pipe", "mpjpeg", "m4v", "mpegvideo", "rawvideo",
                      "vc1", "cavsvideo", "obu", "dirac", "avs2", "avs3"}


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says, in display orientation."""

    path: Path
    width: int
    height: int
    fps: float  # frames per second the frames are delivered at (DEFAULT_FPS if the header has none)
    fps_known: bool  # False when the header has no frame rate and `fps` is DEFAULT_FPS
    duration: float  # seconds, 0 when unknown
    codec: str
    rotated: bool  # display-rotation metadata turned the stored frames by 90 or 270 degrees
    stream: int = 0  # which of the file's video streams is read (the one with the most pixels)
    raw: bool = False  # an elementary stream (.h264, .mjpeg): no container, no frame rate

    @property
    def stream_params(self) -> list[str]:
        """ffmpeg output options that select `stream` (so every read decodes the same stream)."""
        return ["-map", f"0:v:{self.stream}"]

    @property
    def num_frames_estimate(self) -> int | None:
        """Frames the header announces (duration x fps), or None when it does not say."""
        if self.duration > 0 and self.fps_known:
            return max(1, round(self.duration * self.fps))
        return None


def probe_video(path: str | Path, fps: float | None = None) -> VideoInfo:
    """Read a video's header without decoding frames, or a frame folder's first frame (`fps`: the folder's
    rate; a video states its own). Raises BadInput (one line) for unusable input."""
    if Path(path).is_dir():
        return _probe_folder(Path(path), fps)
    path = check_input_file(path)
    import imageio_ffmpeg

    container, streams = _video_streams(path)
    chosen = max(streams, key=lambda item: (not item.attached, item.width * item.height, item.fps),
                 default=None)
    stream = chosen.ordinal if chosen is not None else 0
    generator = imageio_ffmpeg.read_frames(str(path), output_params=["-map", f"0:v:{stream}"] if chosen else [])
    try:
        meta = _first(generator, path)
    finally:
        generator.close()
    width, height = (int(v) for v in meta["size"])
    if width < 1 or height < 1:
        raise BadInput(f"{path}: video has no picture (size {width}x{height})")
    # imageio-ffmpeg reads the rate, codec and stored size from the first video stream: take the chosen one's
    rate = chosen.fps if chosen is not None else float(meta.get("fps") or 0.0)
    stored_size = (chosen.width, chosen.height) if chosen is not None else tuple(meta.get("source_size", meta["size"]))
    codec = chosen.codec if chosen is not None else str(meta.get("codec", "")).rstrip(",")
    raw = container in RAW_STREAM_FORMATS
    if raw:  # the rate ffmpeg prints is its guess; the caller's (--fps) or the default, flagged as unknown
        rate = 0.0
    fps_known = rate > 0 or (raw and fps is not None)
    rate = rate if rate > 0 else (fps if raw and fps is not None else DEFAULT_FPS)
    return VideoInfo(path=path, width=width, height=height, fps=rate, fps_known=fps_known,
                     duration=0.0 if raw else float(meta.get("duration") or 0.0), codec=codec,
                     rotated=stored_size != (width, height) and stored_size == (height, width), stream=stream, raw=raw)


@dataclass(frozen=True)
class _Stream:
    ordinal: int  # among the file's video streams (ffmpeg's 0:v:N)
    width: int
    height: int
    fps: float  # 0 when the stream line states none
    codec: str
    attached: bool  # cover art, not a video


_STREAM_LINE = re.compile(r"^\s*Stream #\d+:\d+\S*: Video: (?P<rest>.*)$")


def _video_streams(path: Path) -> tuple[str, list[_Stream]]:
    """(container format, video streams) from ffmpeg's description of its input (nothing decoded)."""
    import imageio_ffmpeg

    try:
        text = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                              capture_output=True, text=True, errors="replace", timeout=60).stderr
    except (OSError, subprocess.TimeoutExpired):
        return "", []
    container = re.search(r"^Input #0, ([^,\s]+)", text, re.M)
    streams = []
    for line in text.splitlines():
        match = _STREAM_LINE.match(line)
        size = re.search(r" (\d+)x(\d+)[ ,\[]", line + " ")
        if not match or not size:
            continue
        rate = re.search(r" ([0-9]+\.?[0-9]*)k? fps", line)
        streams.append(_Stream(ordinal=len(streams), width=int(size[1]), height=int(size[2]),
                               fps=float(rate[1]) if rate else 0.0, codec=match["rest"].split(" ", 1)[0].rstrip(","),
                               attached="(attached pic)" in line))
    return (container[1] if container else ""), streams


def _probe_folder(folder: Path, fps: float | None) -> VideoInfo:
    from handcli.frames import frame_files, read_frame

    files = frame_files(folder)
    height, width = read_frame(files[0]).shape[:2]
    rate = fps if fps is not None else DEFAULT_FPS
    return VideoInfo(path=folder, width=width, height=height, fps=rate, fps_known=fps is not None,
                     duration=len(files) / rate, codec="frames", rotated=False)


def video_digest(path: str | Path) -> str:
    """sha256 of a video file, or of a frame folder's frames (names and contents): what cache keys cover."""
    from handcli.artifacts import file_digest
    from handcli.frames import folder_digest

    return folder_digest(Path(path)) if Path(path).is_dir() else file_digest(path)


def iter_frames(info: VideoInfo) -> Iterator[np.ndarray]:
    """Yield every frame of `info.path` as a (height, width, 3) uint8 RGB array (a read-only view of ffmpeg's
    buffer), at the constant rate `info.fps`. Raises BadInput if the video has no frames or ends well before
    its header says it should (truncated file)."""
    if info.path.is_dir():
        from handcli.frames import frame_files, iter_folder

        yield from iter_folder(frame_files(info.path), info.width, info.height)
        return
    import imageio_ffmpeg

    generator = imageio_ffmpeg.read_frames(str(info.path), output_params=[*info.stream_params, *_rate_filter(info)])
    count = 0
    try:
        meta = _first(generator, info.path)
        if tuple(meta["size"]) != (info.width, info.height):
            raise BadInput(f"{info.path}: frame size changed between probe and read")
        shape = (info.height, info.width, 3)
        while True:
            try:
                buffer = next(generator)
            except StopIteration:
                break
            except RuntimeError as error:
                raise BadInput(f"{info.path}: decoding failed at frame {count} "
                               f"({_ffmpeg_reason(str(error))}); the file may be truncated") from None
            yield np.frombuffer(buffer, np.uint8).reshape(shape)
            count += 1
    finally:
        generator.close()
    if count == 0:
        raise BadInput(f"{info.path}: video has no frames")
    expected = info.num_frames_estimate
    if expected is not None and count < expected * (1 - TRUNCATION_TOLERANCE) - 1:
        raise BadInput(f"{info.path}: video ends after {count} of the {expected} frames its header announces "
                       "(truncated or damaged file)")
    if expected is not None and count < expected - TAIL_SLACK_FRAMES:
        warn_input(f"{info.path}: video ends after {count} of the {expected} frames its header announces: the last "
                   f"{expected - count} frame(s) ({(expected - count) / info.fps:.2f} s) are missing (truncated "
                   "file?); the result covers the frames that decoded")


def _rate_filter(info: VideoInfo) -> list[str]:
    """ffmpeg output options that make the frames constant-rate: the fps filter picks, for output frame i, the
    source frame nearest to time i / fps (a no-op for constant-rate video). An elementary stream has no time
    stamps to resample by: every frame is passed through, in order, none dropped or repeated."""
    if info.raw:
        return ["-fps_mode", "passthrough"]
    return ["-vf", f"fps={info.fps!r}"] if info.fps_known else []


def count_frames(info: VideoInfo) -> int:
    """How many frames iter_frames(info) yields, counted by decoding to nowhere with the same rate filter
    (no pixel transfer: ~0.4 s for 621 frames of 1280x720 here). A remux-only count would be instant but counts
    stored frames, which differ from the resampled ones on variable-rate video. 0 if ffmpeg cannot tell."""
    if info.path.is_dir():
        from handcli.frames import frame_files

        return len(frame_files(info.path))
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-i", str(info.path), *info.stream_params,
               *_rate_filter(info), "-f", "null", "-"]
    log = subprocess.run(command, capture_output=True, text=True, errors="replace").stderr
    counts = re.findall(r"frame=\s*(\d+)", log)
    return int(counts[-1]) if counts else 0


def _first(generator, path: Path) -> dict:
    """The metadata dict imageio-ffmpeg yields first; ffmpeg's complaint as one line if it cannot open it."""
    try:
        with _quiet_imageio_logger():
            return next(generator)
    except (OSError, RuntimeError, StopIteration, IndexError, ValueError, AttributeError) as error:
        raise BadInput(f"{path}: not a readable video ({_ffmpeg_reason(str(error))})") from None


@contextmanager
def _quiet_imageio_logger():
    """imageio-ffmpeg logs a warning when rotation changes the frame size; we report rotation ourselves."""
    logger = logging.getLogger("imageio_ffmpeg")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


_REASONS = (
    ("does not contain any stream", "no video stream"),
    ("moov atom not found", "no mp4 index: truncated, or not a video"),
    ("Invalid data found when processing input", "ffmpeg does not recognise it as a video"),
    ("End of file reached before full frame", "data ends in the middle of a frame"),
)


def _ffmpeg_reason(text: str) -> str:
    """One short phrase from ffmpeg's stderr dump (imageio-ffmpeg puts it in the exception message)."""
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    lines = [re.sub(r"^\[[^\]]*\]\s*", "", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("===", "..."))]
    return (lines[-1] if lines else "ffmpeg gave no reason")[:160]
