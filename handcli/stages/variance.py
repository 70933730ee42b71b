"""variance stage: per-joint, per-vertex and generalized-force variance of the refined motion (PAD-Hand §3.4).

The refiner's backbone with its last-layer Laplace posterior is run through Algorithm 1 on the observations
that condition the refinement: for `handcli refine --variance` the input of refine itself; for a refined
artifact given to `handcli variance`, its keypoints on the frames the input observed (`observed`), so infilled
frames are treated as missing again (the original outliers are no longer visible then, so run
`refine --variance` for the full picture); for any other artifact, its keypoints and `valid` as they are.

When those observations come from video (2D keypoints and intrinsics), the per-frame estimate's own
uncertainty (handcli.variance.estimate) is carried through the refiner too and added, and the whole hand's
covariance is written as `var_root`; the refiner's own variance is scaled by the calibration's
`laplace_scale` (docs/variance.md).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from handcli.artifacts import Artifact, file_digest, make_meta
from handcli.diffusion.anchoring import AnchorConfig
from handcli.device import resolve_device
from handcli.errors import BadInput
from handcli.inputs import load_input
from handcli.stages.tracks import check_refinable, observed_span
from handcli.variance.estimate import along_ray_variance, can_describe

# var_vertices is skipped above this many values (render then spreads var_joints onto the mesh itself)
MAX_VERTEX_VALUES = 100_000_000


@dataclass
class VarianceConfig:
    samples: int = 20  # S, Monte Carlo samples per diffusion step
    seed: int = 0
    device: str = "auto"
    weights: Path | None = None  # refiner weights (default: bundled)
    laplace: Path | None = None  # the posterior fitted for them (default: weights/refiner_laplace.pt)
    hand_model: str | None = None  # for vertices and forces; default: the artifact's, else "open"
    mano_dir: Path | None = None
    force_stride: int = 4  # force Jacobians on every n-th frame, interpolated in between
    threads: int = 1  # torch intra-op threads while the stage runs
    chain: bool = False  # Algorithm 1 through all N reverse steps even when the refiner returns its first estimate
    # the per-frame estimate's uncertainty (handcli.variance.estimate), carried through the refiner with this
    # many Monte Carlo draws when the input has 2D keypoints and intrinsics; 0: the refiner's own variance only
    input_draws: int = 8
    anchor: bool = True  # the draws are refined as refine does (with its depth-aware anchoring)
    image_seconds: float = AnchorConfig.image_seconds  # refine's `image_seconds`, for the draws
    calibration: Path | None = None  # default: weights/variance_calibration.json
    laplace_scale: float | None = None  # factor on the refiner's own variance; None: the calibration's


@dataclass
class VarianceMaps:
    var_joints: np.ndarray  # (H, T, 21) m²
    var_vertices: np.ndarray | None  # (H, T, V) m²
    var_force: np.ndarray  # (H, T, 51)
    var_root: np.ndarray | None  # (H, T, 3, 3) m², when the estimate's uncertainty was described
    timings: dict
    hand_model: str  # the model the vertex and force maps were computed with
    # relative depth error added along the ray for an assumed focal length (0: the camera's was given; None:
    # the estimate's uncertainty was not described)
    focal_spread: float | None = None
    # (H, T, R) bool over handcli.variance.estimate.RANGED_FEATURES: the frame's feature lies beyond the
    # calibration's range (None: not described, or a calibration without ranges)
    beyond: np.ndarray | None = None

    @property
    def beyond_calibration(self) -> np.ndarray | None:
        """(H, T) bool: frames whose error bars extrapolate beyond the calibration's range."""
        return None if self.beyond is None else self.beyond.any(-1)

    def beyond_summary(self, valid: np.ndarray) -> dict | None:
        """For the meta: on how many valid track-frames the error bars extrapolate, in all and per feature
        (those with any)."""
        if self.beyond is None:
            return None
        from handcli.variance.estimate import RANGED_FEATURES

        beyond = self.beyond & valid[..., None]
        return {"frames": int(beyond.any(-1).sum()), "of": int(valid.sum()),
                "features": {name: int(count) for name, count in zip(RANGED_FEATURES, beyond.sum((0, 1))) if count}}


def observations_of(artifact: Artifact) -> Artifact:
    """What conditions the refiner for this artifact (see the module docstring)."""
    if artifact.observed is None:
        return artifact
    return artifact.replace(valid=artifact.observed & artifact.valid)


def compute_variance(observations: Artifact, target: Artifact, config: VarianceConfig, refiner=None,
                     notify: Callable[[str], None] | None = None, posterior=None) -> VarianceMaps:
    """Variance maps for `target` (same tracks and frames as `observations`); refiner, posterior: a loaded
    Refiner and VariancePosterior to reuse (else loaded from config.weights and config.laplace)."""
    from handcli.diffusion import load_refiner
    from handcli.variance.estimate import VarianceCalibration
    from handcli.variance.maps import joint_variance
    from handcli.variance.posterior import load_laplace
    from handcli.variance.sequence import sequence_variance

    if config.samples < 2:
        raise BadInput(f"--samples must be at least 2 for a variance, got {config.samples}")
    check_refinable(observations)
    name, model, betas = _hand_model(target, config)  # before the expensive part: fail early on a bad choice
    describe_input = config.input_draws >= 1 and can_describe(observations.keypoints2d, observations.K)
    calibration = (VarianceCalibration.load(config.calibration)
                   if describe_input or config.laplace_scale is None else None)
    laplace_scale = config.laplace_scale if config.laplace_scale is not None else calibration.laplace_scale
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if posterior is None:
        posterior, _ = load_laplace(config.laplace, config.weights)
    if refiner is None:
        refiner = load_refiner(config.weights, device=resolve_device(config.device))
    timings["load_s"] = time.perf_counter() - started
    # one intra-op thread, as the refiner: on a busy 2-core machine two threads oversubscribe the cores (the
    # force Jacobians of a 1,000-frame track measured 1.7 s with one thread, 5.8 s with two)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        started = time.perf_counter()
        result = sequence_variance(refiner, posterior, observations.keypoints3d, observations.valid,
                                   observations.is_right, observations.fps, observations.keypoints2d,
                                   observations.K, samples=config.samples, seed=config.seed,
                                   direct=not config.chain)
        timings["propagate_s"] = time.perf_counter() - started
        coordinate_variance = laplace_scale * result.variance
        var_root, focal_spread, beyond = None, None, None
        if describe_input:
            started = time.perf_counter()
            var_root, estimate_variance, focal_spread, beyond = _estimate_part(refiner, observations, calibration,
                                                                               config)
            coordinate_variance = coordinate_variance + estimate_variance
            timings["estimate_part_s"] = time.perf_counter() - started
        var_joints = joint_variance(coordinate_variance).astype(np.float32)
        started = time.perf_counter()
        var_vertices = _vertex_maps(model, betas, var_joints, notify)
        timings["vertices_s"] = time.perf_counter() - started
        started = time.perf_counter()
        var_force = _force_maps(model, betas, result.mean, coordinate_variance, observations, config.force_stride)
        timings["forces_s"] = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous_threads)
    return VarianceMaps(var_joints, var_vertices, var_force, var_root, timings, name, focal_spread, beyond)


def _estimate_part(refiner, observations: Artifact, calibration, config: VarianceConfig):
    """The per-frame estimate's uncertainty (handcli.variance.estimate) as it reaches the refined motion:
    (var_root (H, T, 3, 3) m², per-coordinate variance (H, T, 21, 3) m², the relative depth error of an
    assumed focal length in it, where the features lie beyond the calibration's range (H, T, R) or None), the
    model's covariances scaled by the refiner's measured gains (handcli.variance.sequence.input_gain)."""
    from handcli.variance.estimate import (assumed_focal_spread, beyond_calibration, estimate_uncertainty,
                                           focal_given, frame_features, hand_length_given, sample_estimate_errors)
    from handcli.variance.sequence import input_gain

    features = frame_features(observations.keypoints3d, observations.keypoints2d, observations.valid,
                              observations.K, observations.image_size, observations.fps,
                              hand_length_given(observations.meta))
    # an assumed focal length moves the whole hand along its ray by one unknown factor (estimate module docstring)
    focal_spread = 0.0 if focal_given(observations.meta) else assumed_focal_spread()
    uncertainty = estimate_uncertainty(features, calibration, focal_spread)
    rng = np.random.default_rng(config.seed)
    gain = input_gain(refiner, observations.keypoints3d, observations.valid, observations.is_right,
                      observations.fps,
                      lambda: sample_estimate_errors(uncertainty, calibration.correlation_frames, observations.fps, rng,
                                                     calibration.constant_root, calibration.constant_articulation),
                      config.input_draws, observations.keypoints2d, observations.K,
                      AnchorConfig(image_seconds=config.image_seconds) if config.anchor else None)
    var_root = uncertainty.var_root * gain.root[:, None, None, None]
    articulation = uncertainty.var_articulation * gain.articulation[:, None, :]  # (H, T, 21) per coordinate
    per_coordinate = np.diagonal(var_root, axis1=-2, axis2=-1)[:, :, None, :] + articulation[..., None]
    return var_root.astype(np.float32), per_coordinate, focal_spread, beyond_calibration(features, calibration)


def _hand_model(target: Artifact, config: VarianceConfig):
    """(name, model, per-track shapes (H, nb)) used for vertices and forces (template shape without betas)."""
    from handcli.handmodels import load_hand_model

    name = config.hand_model or target.meta.get("hand_model") or "open"
    model = load_hand_model(name, config.mano_dir)
    betas = np.zeros((target.num_tracks, model.num_betas), np.float32)
    if target.betas is not None:
        if target.betas.shape[1] != model.num_betas:
            raise BadInput(f"betas: the input has {target.betas.shape[1]} shape values per track but hand model "
                           f"'{name}' takes {model.num_betas} (give the --hand-model it was made with)")
        betas = np.asarray(target.betas, np.float32)
    return name, model, betas


def _vertex_maps(model, betas: np.ndarray, var_joints: np.ndarray, notify) -> np.ndarray | None:
    from handcli.variance.maps import hand_vertex_weights, vertex_variance

    tracks, frames = var_joints.shape[:2]
    if tracks * frames * model.num_vertices > MAX_VERTEX_VALUES:
        if notify is not None:
            notify(f"var_vertices skipped: {tracks} x {frames} x {model.num_vertices} values would be too large; "
                   "var_joints is written (render spreads it onto the mesh)")
        return None
    out = np.empty((tracks, frames, model.num_vertices), np.float32)
    for h in range(tracks):
        weights = hand_vertex_weights(model, betas[h])
        for begin in range(0, frames, 4096):
            out[h, begin:begin + 4096] = vertex_variance(var_joints[h, begin:begin + 4096], weights)
    return out


def _force_maps(model, betas: np.ndarray, mean: np.ndarray, variance: np.ndarray, observations: Artifact,
                stride: int) -> np.ndarray:
    """(H, T, 51) Var(F) along E[x^0] of each track's span (frames outside hold the span's edge values)."""
    from handcli.physics import hand_physics
    from handcli.variance.maps import force_variance

    tracks, frames = mean.shape[:2]
    out = np.zeros((tracks, frames, 51), np.float32)
    span = observed_span(observations.valid)
    with torch.no_grad():
        shapes = torch.as_tensor(betas)
        rest = model.rest_joints21(shapes)  # (H, 21, 3) right-hand, MANO21 order
        _, inertia = hand_physics(model, shapes)
    for h in range(tracks):
        seen = np.flatnonzero(span[h])
        first, last = seen[0], seen[-1] + 1
        track_inertia = type(inertia)(*(field[h] for field in inertia))
        values = force_variance(mean[h, first:last], variance[h, first:last], observations.fps,
                                bool(observations.is_right[h]), rest[h], track_inertia, stride)
        out[h, first:last] = values
        out[h, :first] = values[0]
        out[h, last:] = values[-1]
    return out


def _with_maps(artifact: Artifact, maps: VarianceMaps) -> Artifact:
    beyond = None if maps.beyond_calibration is None else maps.beyond_calibration & artifact.valid
    return artifact.replace(var_joints=maps.var_joints, var_vertices=maps.var_vertices, var_force=maps.var_force,
                            var_root=maps.var_root, beyond_calibration=beyond)


def variance(artifact: Artifact, config: VarianceConfig, notify: Callable[[str], None] | None = None) -> Artifact:
    """The `handcli variance` stage: the artifact with var_joints, var_vertices, var_force added."""
    if artifact.num_tracks == 0:
        raise BadInput("the input has no hand tracks")
    maps = compute_variance(observations_of(artifact), artifact, config, notify=notify)
    if artifact.observed is None and notify is not None:
        notify("the input is not a refined artifact: the maps describe what `handcli refine` makes of it "
               "(use `handcli refine --variance` to get the refined motion with them)")
    meta = make_meta("variance", hand_model=maps.hand_model, config=_config_dict(config),
                     timings=maps.timings, previous=artifact.meta)
    meta["focal_spread"] = maps.focal_spread
    meta["beyond_calibration"] = maps.beyond_summary(artifact.valid)
    return _with_maps(artifact, maps).replace(meta=meta)


def attach_variance(refined: Artifact, observations: Artifact, config: VarianceConfig, refiner=None,
                    notify: Callable[[str], None] | None = None, posterior=None) -> Artifact:
    """For `refine --variance`: the refined artifact with the maps of the refinement of `observations`."""
    maps = compute_variance(observations, refined, config, refiner, notify, posterior)
    meta = dict(refined.meta)
    meta["variance"] = {"config": _config_dict(config), "timings": maps.timings, "focal_spread": maps.focal_spread,
                        "beyond_calibration": maps.beyond_summary(refined.valid)}
    return _with_maps(refined, maps).replace(meta=meta)


def variance_file(path: Path, config: VarianceConfig, notify: Callable[[str], None] | None = None) -> Artifact:
    artifact, fmt = load_input(path)
    result = variance(artifact, config, notify)
    result.meta["inputs"] = {"input": str(path), "format": fmt, "sha256": file_digest(path)}
    return result


def check_heatmap_path(path: Path) -> None:
    """Fail before the work, not after it."""
    path = Path(path)
    if path.suffix.lower() != ".png" or not (path.parent if str(path.parent) else Path(".")).is_dir():
        raise BadInput(f"{path}: the heat map must be a .png file in an existing directory")


def write_heatmap(artifact: Artifact, path: Path) -> Path:
    """The joints x time heat map of an artifact with var_joints."""
    from handcli.variance.heatmap import save_heatmap

    if artifact.var_joints is None:
        raise BadInput("no var_joints to draw")
    check_heatmap_path(path)
    if artifact.var_root is None:
        return save_heatmap(path, artifact.var_joints, artifact.valid, artifact.fps, artifact.observed,
                            artifact.is_right)
    from handcli.variance.calibration import articulation_variance

    # with the whole hand's part drawn as the depth curve, the joints show what is left, their articulation:
    # the whole hand's part is the same for every joint and would flatten them all to one colour
    ray_sd = np.sqrt(along_ray_variance(artifact.keypoints3d, artifact.var_root)) * 1000
    articulation = articulation_variance(artifact.var_joints, artifact.var_root)  # (H, T, 21) m²
    return save_heatmap(path, articulation, artifact.valid, artifact.fps, artifact.observed, artifact.is_right,
                        ray_sd, "articulation variance (beyond the whole hand)")


def _config_dict(config: VarianceConfig) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
