"""estimate stage: fit the hand model per frame (pose, orientation, translation; one shape per track).

Takes any supported per-frame input through the importers (handcli.inputs). With `handcli detect` output
(2D keypoints, MediaPipe's world landmarks and the camera K) the hand model is fitted to the image
(handcli.fitting.image: reprojection, a hand-size prior, the world landmarks as articulation prior); inputs
that carry only 3D keypoints (motion capture, other tools) get the 3D keypoint fit (handcli.fitting.fit).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from handcli.artifacts import Artifact, file_digest, make_meta
from handcli.device import resolve_device
from handcli.errors import BadInput
from handcli.inputs import load_input


@dataclass
class EstimateConfig:
    hand_model: str = "open"
    mano_dir: Path | None = None
    device: str = "auto"
    # Levenberg-Marquardt iterations: on real detections 5 leave 3.73 mm mean fit error against 10's 3.63 mm
    # for half the time (the refiner follows anyway); the FPHA fit floor in docs/hand_models.md uses more
    iterations: int = 5
    # fit to the 2D keypoints when the input has them (False: the 3D fit to the lifted world landmarks, the
    # pre-#12 estimate, kept as the benchmark's baseline)
    image_fit: bool = True
    # the image fit's articulation prior: 0 MediaPipe's world landmarks, 1 the learned 2D -> 3D lifter
    # (handcli.fitting.lifter), between: a blend
    lifter_share: float = 1.0
    lifter_depth_weight: float = 1.0  # weight of the lifter's depth in the image fit (ImageFitConfig.depth_weight)
    lifter_depth_seconds: float = 0.1  # its smoothing over time (ImageFitConfig.depth_smooth_seconds)
    # the hand's length in metres (wrist to middle fingertip), when the user knows it: one image has no size
    # cue, so every hand is otherwise given the adult mean (181.5 mm) and one 10 % smaller is placed 10 % too far
    hand_length: float | None = None


def can_fit_image(artifact: Artifact) -> bool:
    """The artifact carries what the image fit needs: 2D keypoints, world landmarks and intrinsics."""
    return all(getattr(artifact, name) is not None for name in ("keypoints2d", "world_landmarks", "K"))


def estimate(artifact: Artifact, config: EstimateConfig) -> Artifact:
    """Fit `config.hand_model` to the artifact's keypoints3d; outputs are finite on every frame (invalid
    frames are interpolated from their neighbours and stay marked invalid)."""
    from handcli.fitting import fit_keypoints
    from handcli.handmodels import load_hand_model

    meta_config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    if artifact.num_tracks == 0:
        return artifact.replace(meta=make_meta("estimate", config=meta_config, previous=artifact.meta))
    for h in range(artifact.num_tracks):
        if not artifact.valid[h].any():
            raise BadInput(f"track {h} has no valid frame to fit")
    device = resolve_device(config.device)
    model = load_hand_model(config.hand_model, config.mano_dir)
    started = time.perf_counter()
    method = "image" if config.image_fit and can_fit_image(artifact) else "keypoints3d"
    if config.hand_length is not None and method != "image":
        # the 3D fit takes its size from the input's keypoints: a length given for it would be silently ignored
        raise BadInput("--hand-length needs the image fit: an input with 2D keypoints, world landmarks and "
                       "intrinsics (anything from handcli detect), without --no-image-fit")
    if method == "image":
        from handcli.fitting.image import ImageFitConfig, fit_to_image

        sizing = {} if config.hand_length is None else {"hand_length": float(config.hand_length)}
        fit = fit_to_image(model, artifact.world_landmarks, artifact.keypoints2d, artifact.valid, artifact.is_right,
                           artifact.K, artifact.fps, ImageFitConfig(
                               lifter_share=config.lifter_share, depth_weight=config.lifter_depth_weight,
                               depth_smooth_seconds=config.lifter_depth_seconds, **sizing),
                           device=str(device))
    else:
        fit = fit_keypoints(model, artifact.keypoints3d, artifact.valid, artifact.is_right,
                            iterations=config.iterations, device=str(device))
    meta = make_meta("estimate", hand_model=config.hand_model, config=meta_config,
                     timings={"fit_s": time.perf_counter() - started}, previous=artifact.meta)
    meta["fit"] = method
    if method == "image":
        meta["reprojection_px_median"] = float(np.nanmedian(fit.reprojection_px)) if np.isfinite(
            fit.reprojection_px).any() else None
    # maps of an upstream variance stage describe another motion
    return artifact.replace(keypoints3d=fit.keypoints3d_fit, global_orient=fit.global_orient,
                            hand_pose=fit.hand_pose, transl=fit.transl, betas=fit.betas, meta=meta,
                            var_joints=None, var_vertices=None, var_force=None, var_root=None,
                            beyond_calibration=None)


def estimate_file(path: Path, config: EstimateConfig) -> Artifact:
    artifact, fmt = load_input(path)
    result = estimate(artifact, config)
    result.meta["inputs"] = {"input": str(path), "format": fmt, "sha256": file_digest(path)}
    return result
