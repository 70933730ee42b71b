"""Open any supported input file as an Artifact: handcli's own npz, or another tool's output via importers.

The format is decided by content (handcli/importers, docs/importers.md), never by the file name alone.
"""

from __future__ import annotations

from pathlib import Path

from handcli.artifacts import Artifact
from handcli.importers import find_importer, import_file
from handcli.importers.source import Source


def detect_format(path: Path) -> str:
    """A short name for what `path` holds ('handcli', 'keypoints-npz', 'hawor-world-space', ...) or raise BadInput."""
    return find_importer(Source(path)).name


def load_input(path: str | Path) -> tuple[Artifact, str]:
    """(artifact, format name) for any supported input file; one-line BadInput otherwise."""
    return import_file(path)
