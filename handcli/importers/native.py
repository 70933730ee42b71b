"""handcli's own npz (with `meta`) and the plain keypoints-only npz that follows the same contract."""

from __future__ import annotations

from handcli.artifacts import artifact_from_arrays
from handcli.importers.source import Source


class HandcliNpz:
    name = "handcli"
    description = "a handcli artifact (.npz with keypoints3d and meta)"

    def sniff(self, source: Source) -> bool:
        return "keypoints3d" in source.npz_headers and "meta" in source.npz_headers

    def load(self, source: Source):
        return artifact_from_arrays(source.npz_arrays, source=str(source.path))


class KeypointsNpz(HandcliNpz):
    name = "keypoints-npz"
    description = "a keypoints-only .npz: keypoints3d (H,T,21,3) metres, optional valid, is_right, fps"

    def sniff(self, source: Source) -> bool:
        return "keypoints3d" in source.npz_headers and "meta" not in source.npz_headers
