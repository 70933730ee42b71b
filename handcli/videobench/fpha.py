"""Motion source: FPHA (F-PHAB) hand mocap, read from ../shared at run time (research-use data, never copied
into the project), and the seeded choice of sequences and windows a split renders.

Files: `<root>/Subject_N/<action>/<seq>/skeleton.txt`, one row per frame: frame index then 21 x (x, y, z)
millimetres, camera frame, right hand, 30 fps. Some files are empty.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FPS = 30.0
# FPHA order (wrist, five MCPs, then PIP/DIP/TIP per finger) -> canonical OpenPose/MediaPipe order
FPHA_TO_CANONICAL = (0, 1, 6, 7, 8, 2, 9, 10, 11, 3, 12, 13, 14, 4, 15, 16, 17, 5, 18, 19, 20)
# subjects 1-3 are for tuning, subject 4 is held out (the same split as the FPHA refiner benchmark)
SPLIT_SUBJECTS = {"tune": (1, 2, 3), "test": (4,)}
WINDOW_FRAMES = (90, 120)  # inclusive range of a clip's length in frames


def read_skeleton(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One skeleton.txt -> keypoints (T, 21, 3) float64 metres in canonical order, valid (T,) bool.

    A frame is invalid when any value is non-finite or the whole row is zeros (how mocap marks a lost frame).
    An empty file gives T = 0.
    """
    text = Path(path).read_text().strip()
    if not text:
        return np.zeros((0, 21, 3)), np.zeros(0, bool)
    rows = np.array([line.split() for line in text.splitlines()], dtype=np.float64)  # (T, 1 + 63)
    points = rows[:, 1:64].reshape(-1, 21, 3)[:, list(FPHA_TO_CANONICAL)] / 1000.0
    valid = np.isfinite(points).all((1, 2)) & (np.abs(points).sum((1, 2)) > 0)
    return points, valid


def count_frames(path: Path) -> int:
    """Rows in a skeleton file without parsing them (choosing sequences reads hundreds of files)."""
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def list_sequences(root: str | Path, subjects: tuple[int, ...]) -> list[Path]:
    """Every skeleton.txt of the given subjects, sorted (a stable base for the seeded choice)."""
    root = Path(root)
    return sorted(p for s in subjects for p in (root / f"Subject_{s}").glob("*/*/skeleton.txt"))


def action_of(path: Path) -> str:
    return path.parent.parent.name


def order_sequences(paths: list[Path], seed: int, min_frames: int = WINDOW_FRAMES[0]) -> list[Path]:
    """Sequences with at least `min_frames` frames in a seeded order that visits every action once before
    any action a second time (so a handful of clips shows different motions, not four of one action).

    The order of a given list and seed never changes, so clip i is the same sequence however many clips a
    run asks for."""
    usable = [p for p in paths if count_frames(p) >= min_frames]
    rng = np.random.default_rng(seed)
    shuffled = [usable[i] for i in rng.permutation(len(usable))]
    seen: dict[str, int] = {}
    rank = []
    for p in shuffled:
        rank.append(seen.get(action_of(p), 0))
        seen[action_of(p)] = rank[-1] + 1
    order = sorted(range(len(shuffled)), key=lambda i: (rank[i], i))
    return [shuffled[i] for i in order]


def pick_window(num_frames: int, rng: np.random.Generator,
                length_range: tuple[int, int] = WINDOW_FRAMES) -> tuple[int, int]:
    """(start, length) of a window: length uniform in `length_range` (capped by the sequence), start uniform."""
    length = min(int(rng.integers(length_range[0], length_range[1] + 1)), num_frames)
    start = int(rng.integers(0, num_frames - length + 1))
    return start, length


def load_window(path: Path, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """keypoints (length, 21, 3) metres canonical, valid (length,) of one window of a sequence."""
    points, valid = read_skeleton(path)
    return points[start: start + length], valid[start: start + length]
