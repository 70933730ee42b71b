"""Video out (H.264 through imageio-ffmpeg, one frame at a time). Reading and counting are handcli.video's, so
frame i here is frame i for the detector too."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from handcli.errors import StageFailed

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")


class VideoWriter:
    """H.264 (libx264, yuv420p) writer fed with (H, W, 3) uint8 RGB frames.

    The path's suffix picks the container, so write to a temporary name that keeps it (atomic_path does).
    yuv420p needs even sizes: an odd width or height is stretched by one pixel by ffmpeg's scaler.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: float, crf: int = 20):
        import imageio_ffmpeg

        self.path, self.size = Path(path), (int(width), int(height))
        self.writer = imageio_ffmpeg.write_frames(
            str(path), self.size, fps=Fraction(fps).limit_denominator(100000), codec="libx264", quality=None,
            macro_block_size=2, ffmpeg_log_level="error",
            output_params=["-crf", str(crf), "-preset", "veryfast", "-movflags", "+faststart"])
        self.writer.send(None)  # start ffmpeg
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[:2] != (self.size[1], self.size[0]):
            raise StageFailed(f"internal error: frame {frame.shape} does not match the video size {self.size}")
        self.writer.send(np.ascontiguousarray(frame))
        self.frames += 1

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self.close()
        except Exception:
            if exc_type is None:
                raise
        return False
