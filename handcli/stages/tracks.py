"""Track spans and the refinability check, shared by the refine and variance stages (both describe the same
refinement, so both need them; living here keeps `variance` free of imports from `refine`)."""

from __future__ import annotations

import numpy as np

from handcli.artifacts import Artifact
from handcli.errors import BadInput


def observed_span(valid: np.ndarray, max_gap_frames: int | None = None) -> np.ndarray:
    """(H, T) bool: frames between each track's first and last observation (what refine infills); with
    `max_gap_frames`, the frames of longer unobserved stretches inside it stay False (not trusted)."""
    span = np.zeros_like(valid)
    for h, row in enumerate(valid):
        seen = np.flatnonzero(row)
        if seen.size:
            span[h, seen[0]: seen[-1] + 1] = True
            if max_gap_frames is not None:
                for before, after in zip(seen[:-1], seen[1:]):
                    if after - before - 1 > max_gap_frames:
                        span[h, before + 1: after] = False
    return span


def check_refinable(artifact: Artifact) -> None:
    """One-line BadInput for inputs the refiner cannot work on."""
    if artifact.num_frames < 2:
        raise BadInput(f"refine needs at least 2 frames, got {artifact.num_frames}")
    for h in range(artifact.num_tracks):
        if not artifact.valid[h].any():
            raise BadInput(f"track {h} has no valid frame; drop it or mark its observed frames valid")
