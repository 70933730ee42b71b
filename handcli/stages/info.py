"""`handcli info`: what this installation can do, or what a file holds."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from handcli import __version__
from handcli.inputs import load_input

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe_environment(mano_dir: Path | None = None) -> list[str]:
    """Lines: versions, compute device, hand models and weights found."""
    import torch

    from handcli.handmodels import available_hand_models

    lines = [f"handcli {__version__} (Python {platform.python_version()}, {platform.machine()})"]
    lines += [f"  {name}: {_version(name)}" for name in ("torch", "numpy", "scipy", "mediapipe", "smplx",
                                                           "imageio-ffmpeg")]
    cuda = torch.cuda.is_available()
    lines.append(f"device: {'cuda (' + torch.cuda.get_device_name(0) + ')' if cuda else 'cpu'}"
                 f" ({torch.get_num_threads()} torch threads)")
    lines.append("hand models:")
    lines += [f"  {name}: {status}" for name, status in available_hand_models(mano_dir).items()]
    refiner = WEIGHTS_DIR / "refiner.pt"
    lines.append(f"refiner weights: {refiner if refiner.exists() else 'missing (run make weights)'}")
    return lines


def describe_file(path: Path) -> list[str]:
    """Lines: the detected format and a summary of the tracks, frames and keys found."""
    artifact, fmt = load_input(path)
    lines = [f"{path}: {fmt}",
             f"  tracks: {artifact.num_tracks}, frames: {artifact.num_frames}, fps: {artifact.fps:g}"]
    for h in range(artifact.num_tracks):
        valid = artifact.valid[h]
        lines.append(f"  track {h}: {'right' if artifact.is_right[h] else 'left'} hand, "
                     f"valid {int(valid.sum())}/{valid.size} frames ({100 * valid.mean():.1f}%)")
    present = sorted(k for k, v in artifact.arrays().items() if k != "meta")
    lines.append(f"  keys: {', '.join(present)}")
    if artifact.meta:
        lines.append(f"  stage: {artifact.meta.get('stage')}, hand model: {artifact.meta.get('hand_model')}, "
                     f"handcli {artifact.meta.get('handcli_version')}")
    tracking = next((entry["tracking"] for entry in [artifact.meta, *reversed(artifact.meta.get("history", []))]
                     if isinstance(entry, dict) and "tracking" in entry), None)
    if tracking is not None:
        links = tracking.get("links", [])
        lines.append(f"  tracking: {tracking.get('tracks_found')} fragment(s) found, {len(links)} linked, "
                     f"{tracking.get('tracks_dropped')} dropped")
        if tracking.get("side_flips"):
            lines.append(f"    side taken from the vote for track(s) {', '.join(map(str, tracking['side_flips']))} "
                         "(two hands claimed one side)")
        for link in links:
            lines.append(f"    linked fragment {link['later']} after {link['earlier']} across {link['gap_frames']} "
                         f"unseen frame(s) (moved {link['move_hand_sizes']:g} hand sizes, size ratio "
                         f"{link['size_ratio']:g})")
    for key, value in sorted(artifact.meta.get("import", {}).items()):
        lines.append(f"  import {key}: {value}")
    if artifact.var_joints is not None:
        lines.append(f"  mean joint variance: {float(np.mean(artifact.var_joints)):.3g} m^2")
    return lines
