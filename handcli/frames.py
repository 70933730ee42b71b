"""Frame folders: a directory of .jpg/.png frames read like a video (datasets and capture tools write these).

Frames are the folder's image files in natural sort order (frame2 before frame10), at the rate the caller
gives (`--fps`), else DEFAULT_FPS with `fps_known` False (detect then warns, as for a video without a rate).
Every frame must decode and have the first frame's size; an empty folder, an unreadable frame or a size change
is one line of BadInput. Every frame becomes 8-bit RGB (read_frame).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from handcli.errors import BadInput

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def natural_key(name: str) -> list:
    """Sort key that orders the digit runs of a name by value: frame2.png < frame10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def frame_files(folder: Path) -> list[Path]:
    """The folder's frame files in natural order. BadInput if there are none."""
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise BadInput(f"{folder}: folder holds no frames ({', '.join(FRAME_SUFFIXES)})")
    return files


def read_frame(path: Path) -> np.ndarray:
    """(height, width, 3) uint8 RGB, turned upright by its EXIF orientation (as ffmpeg turns a phone video).
    8-bit images of any mode (grey, grey+alpha, palette, 1-bit, CMYK, RGBA) are converted to RGB by Pillow;
    16-bit ones keep their top byte. BadInput (one line) if the file does not decode as an image."""
    import imageio.v3 as iio

    try:
        mode = str(iio.immeta(path).get("mode", ""))
        if mode.startswith("I;16") or mode in ("I", "F"):  # Pillow's RGB conversion would clip these
            image = np.asarray(iio.imread(path, rotate=True))
        else:
            image = np.asarray(iio.imread(path, mode="RGB", rotate=True))
    except Exception as error:  # imageio raises many kinds for a damaged or foreign file
        raise BadInput(f"{path}: not a readable image ({type(error).__name__})") from None
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise BadInput(f"{path}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise BadInput(f"{path}: not an RGB image (shape {image.shape})")
    return np.ascontiguousarray(image[..., :3])


def iter_folder(files: list[Path], width: int, height: int) -> Iterator[np.ndarray]:
    """Yield the frames in order; BadInput on the first one whose size differs from width x height."""
    for path in files:
        frame = read_frame(path)
        if frame.shape[:2] != (height, width):
            raise BadInput(f"{path}: frame size {frame.shape[1]}x{frame.shape[0]} differs from the first "
                           f"frame's {width}x{height}; a frame folder must hold one size")
        yield frame


def folder_digest(folder: Path) -> str:
    """sha256 over the frames' names and contents, in order (what a cache key of the folder must cover)."""
    from handcli.artifacts import file_digest

    digest = hashlib.sha256()
    for path in frame_files(folder):
        digest.update(f"{path.name}\0{file_digest(path)}\0".encode())
    return digest.hexdigest()
