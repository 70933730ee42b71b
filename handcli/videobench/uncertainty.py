"""The video benchmark's clips as data for the variance: the estimate's errors with its per-frame features
(to fit the estimate's uncertainty, handcli.variance.estimate) and the refined motion's errors beside its
variance maps (to check the calibration, handcli.variance.calibration).

Each clip contributes the track the shared scorer picks most often (videoscore.pick_track, as every other
benchmark figure), on the frames where that track exists and the truth is complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handcli.artifacts import Artifact, load_artifact
from handcli.videobench.clips import load_truth
from handcli.videobench.scoring import picked_tracks, truth_arrays


@dataclass
class ClipErrors:
    """One clip's scored track: frames (N,) indices; errors (N, 21, 3) metres (prediction - truth);
    situation: its camera situation; track: the track's index in the artifact; fov_deg: the camera's field of
    view across the longer image side (degrees)."""

    clip: str
    situation: str
    track: int
    frames: np.ndarray
    errors: np.ndarray
    fov_deg: float


def main_track(vs, artifact: Artifact, truth: dict) -> tuple[int, np.ndarray] | None:
    """(track, frames (N,)): the most often picked track on the frames of its span with complete truth."""
    gt, gt_valid, K = truth_arrays(truth)
    _, _, track = picked_tracks(vs, artifact, gt, K)
    if not (track >= 0).any():
        return None
    h = int(np.bincount(track[track >= 0]).argmax())
    seen = np.flatnonzero(artifact.valid[h])
    span = np.zeros(artifact.num_frames, bool)
    span[seen[0]:seen[-1] + 1] = True
    return h, np.flatnonzero(span & gt_valid.all(1))


def clip_errors(vs, split_dir: Path, tag: str, stage: str) -> list[tuple[ClipErrors, Artifact]]:
    """Every clip of a benchmark split with a `stage` artifact of variant `tag` ("estimate" or "refine"):
    its scored track's errors and the artifact."""
    out = []
    for path in sorted((Path(split_dir) / tag).glob(f"clip*_{stage}.npz")):
        clip = path.name.split("_")[0]
        artifact = load_artifact(path)
        if artifact.num_tracks == 0:
            continue
        truth = load_truth(Path(split_dir) / f"{clip}_gt.npz")
        picked = main_track(vs, artifact, truth)
        if picked is None or not picked[1].size:
            continue
        h, frames = picked
        gt, _, _ = truth_arrays(truth)
        errors = artifact.keypoints3d[h, frames].astype(np.float64) - gt[frames]
        params = truth["params"]
        out.append((ClipErrors(clip, str(params["situation"]), h, frames, errors, float(params["fov_deg"])), artifact))
    return out
