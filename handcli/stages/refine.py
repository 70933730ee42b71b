"""refine stage: per-frame estimates -> temporally coherent, physically plausible motion.

The physics-aware diffusion model (handcli.diffusion) refines the keypoints; the hand model is then fitted to
the refined keypoints so the output carries consistent MANO-convention parameters, and the keypoints are
moved onto that fit (kinematic projection: hinge joints, joint limits, one shape per track; docs/method.md).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from handcli.artifacts import Artifact, file_digest, make_meta
from handcli.diffusion.anchoring import AnchorConfig
from handcli.device import resolve_device
from handcli.errors import BadInput
from handcli.inputs import load_input
from handcli.stages.tracks import check_refinable, observed_span


@dataclass
class RefineConfig:
    device: str = "auto"
    seed: int = 0
    samples: int = 1
    weights: Path | None = None
    hand_model: str = "open"
    mano_dir: Path | None = None
    fit_params: bool = True  # fit hand-model parameters to the refined keypoints
    fit_iterations: int = 8
    # kinematic projection: move the output keypoints onto the fitted hand model (correction smoothed over
    # this many frames; 0 = keep the diffusion model's keypoints). Needs fit_params.
    projection_sigma: float = 2.0
    # depth-aware anchoring of the whole-hand position (handcli.diffusion.anchoring, default settings)
    anchor: bool = True
    # with a camera, each joint's image position follows the input's, smoothed over this many seconds
    # (handcli.diffusion.anchoring.follow_image; 0 = off, as without --anchor)
    image_seconds: float = AnchorConfig.image_seconds
    variance: bool = False  # also the variance maps (handcli.stages.variance), in the same pass
    # unobserved stretches up to this long are infilled and marked valid (not `observed`); longer ones stay
    # invalid. On video a hand moves further in a gap than FPHA's mocap does: on the video benchmark's tuning
    # split the infill's 2D error was 17-20 px over gaps of 1-5 frames, 29 px over 6-10 and 70 px over 11-15
    # (observed frames 17 px), so gaps past 0.2 s (6 frames at 30 fps) are left to the user to see as gaps.
    # On the FPHA keypoint benchmark (drops of 3-15 frames) the infill over 0.5 s was 17.4 mm against 10.3 mm
    # on observed frames (docs/results.md).
    max_infill_seconds: float = 0.2


def refine(artifact: Artifact, config: RefineConfig) -> Artifact:
    """Refine every track of `artifact`; returns a new artifact (input arrays are not modified)."""
    timings: dict[str, float] = {}
    if artifact.num_tracks == 0:
        return artifact.replace(meta=make_meta("refine", config=_config_dict(config), previous=artifact.meta))
    check_refinable(artifact)
    device = resolve_device(config.device)
    model = None
    if config.fit_params:  # loaded first: fail before refining when the hand model is missing
        from handcli.handmodels import load_hand_model

        model = load_hand_model(config.hand_model, config.mano_dir)
    posterior = None
    if config.variance:  # loaded first: fail before refining when the variance posterior is missing or stale
        from handcli.variance.posterior import load_laplace

        posterior, _ = load_laplace(None, config.weights)
    started = time.perf_counter()
    from handcli.diffusion import load_refiner

    refiner = load_refiner(config.weights, device=device)
    timings["load_s"] = time.perf_counter() - started
    started = time.perf_counter()
    result = refiner.refine(artifact.keypoints3d, artifact.valid, artifact.is_right, artifact.fps,
                            keypoints2d=artifact.keypoints2d, K=artifact.K, seed=config.seed,
                            samples=config.samples,
                            anchor=AnchorConfig(image_seconds=config.image_seconds) if config.anchor else None)
    timings["refine_s"] = time.perf_counter() - started
    # the refiner's infill is used over the whole span (also in long gaps, where it beats interpolating the
    # fit: FPHA subject 4 11.73 against 11.78 mm), but only short gaps are claimed as valid
    span = observed_span(artifact.valid)
    trusted = observed_span(artifact.valid, max(0, round(config.max_infill_seconds * artifact.fps)))
    keypoints3d = np.asarray(result.keypoints3d, np.float32)
    changes = dict(keypoints3d=keypoints3d, valid=trusted, observed=artifact.valid.copy(),
                   motion_state=np.asarray(result.motion_state, np.int64))
    if config.fit_params:
        started = time.perf_counter()
        fit, changes["keypoints3d"] = fit_and_project(keypoints3d, span, artifact.is_right, config, str(device),
                                                      model)
        changes.update(global_orient=fit.global_orient, hand_pose=fit.hand_pose, transl=fit.transl,
                       betas=fit.betas)
        timings["fit_s"] = time.perf_counter() - started
    else:  # the upstream parameters describe the unrefined motion: a renderer must not draw them
        changes.update(global_orient=None, hand_pose=None, transl=None, betas=None)
    # stale per-frame data from upstream no longer describes the refined motion
    changes.update(var_joints=None, var_vertices=None, var_force=None, var_root=None, beyond_calibration=None,
                   world_landmarks=None)
    changes["meta"] = make_meta("refine", hand_model=config.hand_model if config.fit_params else None,
                                config=_config_dict(config), timings=timings, previous=artifact.meta)
    refined = artifact.replace(**changes)
    if config.variance:
        from handcli.stages.variance import attach_variance

        refined = attach_variance(refined, artifact, variance_settings(config), refiner, posterior=posterior)
    return refined


def variance_settings(config: RefineConfig, base=None):
    """The VarianceConfig (`base`'s own knobs, default settings if None) that describes a refinement made
    with `config`: the same refiner weights, seed, device and hand model, Algorithm 1 through the whole chain
    when the refiner drew several samples."""
    from dataclasses import replace

    from handcli.stages.variance import VarianceConfig

    return replace(base or VarianceConfig(), seed=config.seed, device=config.device, weights=config.weights,
                   hand_model=config.hand_model, mano_dir=config.mano_dir, chain=config.samples > 1,
                   anchor=config.anchor, image_seconds=config.image_seconds)


def fit_and_project(keypoints3d: np.ndarray, span: np.ndarray, is_right: np.ndarray, config: RefineConfig,
                    device: str = "cpu", model=None):
    """Fit the hand model (`model`, default: config's) to refined keypoints (H, T, 21, 3) over `span` (H, T)
    and, if config.projection_sigma > 0, move the keypoints onto the fit. Returns (FitResult, keypoints3d)."""
    from handcli.fitting import blend_toward_fit, fit_keypoints
    from handcli.handmodels import load_hand_model

    if model is None:
        model = load_hand_model(config.hand_model, config.mano_dir)
    fit = fit_keypoints(model, keypoints3d, span, is_right, iterations=config.fit_iterations, device=device)
    if config.projection_sigma > 0:
        keypoints3d = blend_toward_fit(keypoints3d, fit.keypoints3d_fit, span, config.projection_sigma)
    return fit, keypoints3d


def _config_dict(config: RefineConfig) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}


def refine_file(path: Path, config: RefineConfig) -> Artifact:
    """Load any supported input file, refine it, record the input digest."""
    artifact, fmt = load_input(path)
    refined = refine(artifact, config)
    refined.meta["inputs"] = {"input": str(path), "format": fmt, "sha256": file_digest(path)}
    return refined
