"""Open any supported input file as an Artifact: handcli's own npz, or another tool's output via importers."""

from __future__ import annotations

from pathlib import Path

from handcli.artifacts import Artifact, artifact_from_arrays, load_npz_arrays
from handcli.errors import BadInput


def detect_format(path: Path) -> str:
    """A short name for what `path` holds ('handcli', 'keypoints-npz', ...) or raise BadInput."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    if path.suffix.lower() == ".npz":
        arrays = load_npz_arrays(path)
        if "keypoints3d" in arrays:
            return "handcli" if "meta" in arrays else "keypoints-npz"
        raise BadInput(f"{path}: npz without 'keypoints3d' is not a format handcli knows "
                       f"(keys: {', '.join(sorted(arrays)) or 'none'})")
    raise BadInput(f"{path}: unknown input format '{path.suffix or 'no extension'}' "
                   "(expected a handcli/keypoints .npz)")


def load_input(path: str | Path) -> tuple[Artifact, str]:
    """(artifact, format name) for any supported input file; one-line BadInput otherwise."""
    path = Path(path)
    fmt = detect_format(path)
    return artifact_from_arrays(load_npz_arrays(path), source=str(path)), fmt
