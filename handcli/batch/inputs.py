"""What `handcli batch INPUTS...` means by its inputs: files, folders and glob patterns, expanded to videos.

* a video file is one video;
* a folder holding video files is each of them (not recursive); a folder holding only images is one video
  (a frame folder, handcli.frames);
* anything else is expanded as a glob pattern (`**` recursive) and each match is taken as above.
Each video's artifact is DIR/<name>.npz, `name` being the file's stem or the frame folder's name; two videos
with one name would overwrite each other, so that is bad input.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from handcli.errors import BadInput

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".h264", ".mjpeg")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class BatchVideo:
    """source: the video file or frame folder; name: what its outputs are called."""

    source: Path
    name: str


def expand_inputs(inputs: list[str]) -> list[BatchVideo]:
    """The videos INPUTS name, in the order given (duplicates once). BadInput (one line) for an input that
    names nothing usable, or for two videos with the same name."""
    sources: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            sources.append(path)
        elif path.is_dir():
            sources.extend(_folder(path))
        else:
            matches = sorted(glob.glob(item, recursive=True))
            found = [m for match in matches for m in (_folder(Path(match)) if Path(match).is_dir() else
                                                       [Path(match)] if _is_video(Path(match)) else [])]
            if not found:
                raise BadInput(f"{item}: no such file or folder, and no video matches it as a pattern")
            sources.extend(found)
    videos, names = [], {}
    for source in dict.fromkeys(path.resolve() for path in sources):
        name = source.stem if source.is_file() else source.name
        if name in names:
            raise BadInput(f"{names[name]} and {source} would both be written as {name}.npz; rename one or run "
                           "them in separate batches")
        names[name] = source
        videos.append(BatchVideo(source, name))
    if not videos:
        raise BadInput("no videos to run")
    return videos


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def _folder(folder: Path) -> list[Path]:
    videos = sorted(p for p in folder.iterdir() if _is_video(p))
    if videos:
        return videos
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file()):
        return [folder]  # a folder of frames
    raise BadInput(f"{folder}: holds neither videos ({', '.join(VIDEO_SUFFIXES)}) nor frames "
                   f"({', '.join(IMAGE_SUFFIXES)})")
