"""`handcli info`: what this installation can do, or what a file holds."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from handcli import __version__
from handcli.artifacts import stage_meta
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
    detected = stage_meta(artifact.meta, "detect")  # detect records its identities; later stages carry them
    tracking = detected.get("tracking") if detected is not None else None
    if tracking is not None:
        links = tracking.get("links", [])
        lines.append(f"  tracking: {tracking.get('tracks_found')} fragment(s) found, {len(links)} linked, "
                     f"{tracking.get('tracks_dropped')} dropped")
        if tracking.get("side_flips"):
            lines.append(f"    side taken from the vote for track(s) {', '.join(map(str, tracking['side_flips']))} "
                         "(two hands claimed one side)")
        for link in links:
            how = (f"across {link['gap_frames']} unseen frame(s)" if link["gap_frames"] >= 0 else
                   f"where the detector saw the hand twice on {-link['gap_frames']} frame(s)")
            lines.append(f"    linked fragment {link['later']} after {link['earlier']} {how} (moved "
                         f"{link['move_hand_sizes']:g} hand sizes, size ratio {link['size_ratio']:g})")
    for key, value in sorted(artifact.meta.get("import", {}).items()):
        lines.append(f"  import {key}: {value}")
    if artifact.var_joints is not None:
        lines += describe_uncertainty(artifact)
    return lines


def _beyond_features(meta: dict) -> list[str]:
    """The features beyond the calibration's range that the variance stage's meta counted, with their
    track-frames, as one line (none when none are on record)."""
    from handcli.variance.estimate import FEATURE_WORDS

    variance = meta.get("variance")
    summary = meta.get("beyond_calibration") or (variance.get("beyond_calibration") if isinstance(variance, dict)
                                                 else None)
    counts = summary.get("features") if isinstance(summary, dict) else None
    if not isinstance(counts, dict) or not counts:
        return []

    def described(name: str, frames: int) -> str:
        words = FEATURE_WORDS.get(name, name)
        return f"{words}{'' if words == name else f' ({name})'} on {frames} frame{'s' if frames != 1 else ''}"

    return ["    beyond the calibration's range: " + ", ".join(described(*item) for item in counts.items())]


def describe_uncertainty(artifact) -> list[str]:
    """Per track, over its valid frames: the median ± (one standard deviation) of the hand's position, along
    the camera ray and across it, when `var_root` is there, and of the articulation (what var_joints holds
    beyond the whole hand), in mm; and on how many frames those error bars extrapolate (`beyond_calibration`)."""
    lines = ["  uncertainty (median over valid frames, ± one standard deviation):"]
    for h in range(artifact.num_tracks):
        valid = artifact.valid[h]
        if not valid.any():
            continue
        joints = artifact.var_joints[h, valid].astype(np.float64)  # (N, 21) m²
        if artifact.var_root is not None:
            from handcli.variance.calibration import articulation_variance
            from handcli.variance.estimate import along_ray_variance

            root = artifact.var_root[h, valid].astype(np.float64)  # (N, 3, 3)
            centre = artifact.keypoints3d[h, valid].astype(np.float64).mean(1)
            along = along_ray_variance(artifact.keypoints3d[h, valid], root)
            across = np.maximum(np.trace(root, axis1=1, axis2=2) - along, 0.0) / 2
            rest = articulation_variance(joints, root)  # (N, 21) m², the articulation's three coordinates
            lines.append(f"    track {h}: hand position ±{1000 * np.median(np.sqrt(along)):.0f} mm along the camera "
                         f"ray, ±{1000 * np.median(np.sqrt(across)):.0f} mm across it "
                         f"({100 * np.median(np.sqrt(along) / np.linalg.norm(centre, axis=-1)):.0f} % of the "
                         f"distance); articulation ±{1000 * np.median(np.sqrt(rest.mean(1))):.0f} mm per joint")
        else:
            lines.append(f"    track {h}: ±{1000 * np.median(np.sqrt(joints.mean(1))):.0f} mm per joint (no "
                         "whole-hand covariance: the input had no 2D keypoints and intrinsics)")
        if artifact.beyond_calibration is not None and artifact.beyond_calibration[h, valid].any():
            lines.append(f"    track {h}: on {int(artifact.beyond_calibration[h, valid].sum())} of {int(valid.sum())} "
                         "frames the ± extrapolates beyond the calibration's range (the estimate may have failed "
                         "there too)")
    if artifact.beyond_calibration is not None and (artifact.beyond_calibration & artifact.valid).any():
        lines += _beyond_features(artifact.meta)
    if artifact.var_root is not None:
        from handcli.artifacts import stage_meta
        from handcli.variance.estimate import assumed_focal_spread, focal_given

        if stage_meta(artifact.meta, "detect") is None:
            lines.append(f"    the intrinsics did not come from handcli detect, so their focal length counts as "
                         f"assumed: ±{100 * assumed_focal_spread():.0f} % of the distance is included above (an "
                         "imported tool's own focal length can be further off than that)")
        elif not focal_given(artifact.meta):
            lines.append(f"    the camera's focal length was assumed, which alone makes the distance uncertain by "
                         f"±{100 * assumed_focal_spread():.0f} % (included above); give detect --focal or --fov "
                         "to narrow it")
    return lines
