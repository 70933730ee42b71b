"""Hand meshes for rendering: hand-model vertices for every track and frame of an artifact, computed in
chunks as frames are asked for (a long clip never holds all its vertices), and joint variance spread onto
the vertices when the artifact has no per-vertex variance."""

from __future__ import annotations

import numpy as np
import torch

from handcli.artifacts import Artifact
from handcli.errors import BadInput

CHUNK_FRAMES = 128
# joint -> vertex spreading: Gaussian falloff with distance to each keypoint in the rest pose
SPREAD_SIGMA = 0.015  # metres


class HandMeshes:
    """Posed vertices of every track. `frame(t)` -> {track: vertices (V, 3) float32} for tracks valid at t.

    model: a handcli.handmodels.HandModel; artifact must carry global_orient (H, T, 3), hand_pose
    (H, T, 15, 3), transl (H, T, 3), betas (H, nb).
    """

    def __init__(self, model, artifact: Artifact, chunk: int = CHUNK_FRAMES):
        if artifact.betas.shape[1] != model.num_betas:
            raise BadInput(f"betas: the input has {artifact.betas.shape[1]} shape values per track but hand model "
                           f"'{model.name}' takes {model.num_betas} (was it made with another --hand-model?)")
        self.model, self.artifact, self.chunk = model, artifact, chunk
        self.faces = [np.ascontiguousarray(model.faces_for(bool(right)).cpu().numpy().astype(np.int32))
                      for right in artifact.is_right]
        self._cached: tuple[int, dict[int, np.ndarray]] | None = None

    @property
    def num_vertices(self) -> int:
        return int(self.model.num_vertices)

    def frame(self, t: int) -> dict[int, np.ndarray]:
        start = (t // self.chunk) * self.chunk
        if self._cached is None or self._cached[0] != start:
            self._cached = (start, self._compute(start, min(start + self.chunk, self.artifact.num_frames)))
        return {h: vertices[t - start] for h, vertices in self._cached[1].items()
                if self.artifact.valid[h, t]}

    @torch.no_grad()
    def _compute(self, start: int, stop: int) -> dict[int, np.ndarray]:
        """{track: (stop - start, V, 3)} with NaN rows on invalid frames."""
        art = self.artifact
        out: dict[int, np.ndarray] = {}
        for h in range(art.num_tracks):
            frames = np.flatnonzero(art.valid[h, start:stop]) + start
            if frames.size == 0:
                continue

            def tensor(array):
                return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)

            betas = tensor(art.betas[h]).expand(len(frames), -1)
            posed = self.model(tensor(art.global_orient[h, frames]), tensor(art.hand_pose[h, frames]), betas,
                               tensor(art.transl[h, frames]), bool(art.is_right[h])).vertices
            vertices = np.full((stop - start, self.num_vertices, 3), np.nan, np.float32)
            vertices[frames - start] = posed.numpy()
            out[h] = vertices
        return out

    @torch.no_grad()
    def joint_spread(self, h: int) -> np.ndarray:
        """(V, 21) weights that carry per-joint values onto track h's vertices (rows sum to 1): Gaussian in the
        rest-pose distance from each vertex to each keypoint, so a fingertip vertex takes its tip's value."""
        betas = torch.as_tensor(self.artifact.betas[h : h + 1], dtype=torch.float32)
        zeros3 = torch.zeros(1, 3)
        rest = self.model(zeros3, torch.zeros(1, 15, 3), betas, zeros3, bool(self.artifact.is_right[h]))
        distance = torch.cdist(rest.vertices[0], rest.joints[0]).numpy()  # (V, 21)
        logits = -0.5 * (distance / SPREAD_SIGMA) ** 2
        weights = np.exp(logits - logits.max(1, keepdims=True))
        return (weights / weights.sum(1, keepdims=True)).astype(np.float32)
