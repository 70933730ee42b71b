"""Importers: other tools' outputs -> handcli Artifacts, chosen by content (docs/importers.md).

Each importer has a `name`, a one-line `description`, `sniff(source) -> bool` (cheap, content-based: npz/npy
headers or the safely unpickled object, cached on the `Source`) and `load(source) -> Artifact`. The first
importer in `IMPORTERS` whose sniff accepts the file wins; the order puts specific formats before generic
ones (a Dyn-HaMR npz also holds arrays a keypoint sniffer could misread).
"""

from __future__ import annotations

from pathlib import Path

from handcli.artifacts import Artifact, read_npz_headers
from handcli.errors import BadInput
from handcli.importers.keypoints import KeypointArrayNpy, KeypointArrayNpz, KeypointPickle
from handcli.importers.mano_outputs import ManoOutputsNpz, ManoOutputsPickle
from handcli.importers.native import HandcliNpz, KeypointsNpz
from handcli.importers.safe_pickle import compression
from handcli.importers.source import Source
from handcli.importers.world_space import DynHamrWorldResults, HaworWorldSpace

IMPORTERS = (
    HandcliNpz(),
    KeypointsNpz(),
    DynHamrWorldResults(),
    HaworWorldSpace(),
    ManoOutputsNpz(),
    KeypointArrayNpz(),
    KeypointArrayNpy(),
    ManoOutputsPickle(),
    KeypointPickle(),
)


def supported_formats() -> str:
    return ", ".join(importer.name for importer in IMPORTERS)


def find_importer(source: Source):
    """The importer for `source`, or a one-line BadInput saying what was found and what is supported."""
    for importer in IMPORTERS:
        if importer.sniff(source):
            return importer
    if source.kind == "compressed":
        raise BadInput(f"{source.path}: {compression(source.head)}-compressed file (joblib compress=...); "
                       "re-save it uncompressed")
    if source.kind == "unknown" and source.path.suffix.lower() == ".npz":
        read_npz_headers(source.path)  # a named-npz that is not one: say why, in the contract's words
    raise BadInput(f"{source.path}: {_what_it_is(source)}, not a format handcli knows "
                   f"(supported: {supported_formats()}; see docs/importers.md)")


def _what_it_is(source: Source) -> str:
    if source.kind == "npz":
        keys = sorted(source.npz_headers)
        return f"npz with keys {', '.join(keys[:8]) + (' ...' if len(keys) > 8 else '') or 'none'}"
    if source.kind == "npy":
        return f"npy array of shape {source.npy_header[0]}"
    if source.kind in ("pickle", "torch-zip"):
        obj = source.pickled
        return f"pickle holding {_describe(obj)}"
    return "unrecognised content"


def _describe(obj) -> str:
    import numpy as np

    if isinstance(obj, np.ndarray):
        return f"an array of shape {obj.shape}"
    if isinstance(obj, dict):
        return f"a dict with keys {', '.join(map(str, list(obj)[:8]))}"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} {type(obj[0]).__name__ if obj else 'items'}"
    return f"a {type(obj).__name__}"


def import_file(path: str | Path) -> tuple[Artifact, str]:
    """(artifact, format name) for any supported file."""
    source = Source(path)
    importer = find_importer(source)
    return importer.load(source), importer.name
