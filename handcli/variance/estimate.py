"""Uncertainty of the per-frame estimate: how far the estimate stage's hand may be from the truth, from what
the estimate knows about each frame (issue #8 of docs; PAD-Hand's γ² of the refiner's input).

On real video most of the error is the per-frame estimate's, not the refiner's (docs/results.md): the whole
hand sits at the wrong depth along its camera ray, turned, with the fingers' articulation off. The model
splits a frame's joint errors e_j (camera frame, metres) into the whole-hand part s = mean_j e_j and the
articulation l_j = e_j - s, and gives each a log-linear variance in per-frame features z (`FEATURES`):

    σ²_ray / d²       = exp(a_rayᵀ z) + exp(f_rayᵀ z)   the whole-hand error along the ray to the hand
                                                        (d: its distance), above a floor
    log σ²_side / d²  = a_sideᵀ z    each of the two directions across the ray
    log σ²_l,j        = b_jᵀ z       joint j's articulation, per coordinate (m²)

The floor f_ray depends only on whether the hand's size was given (RAY_FLOOR_FEATURES): a relative depth
error that no per-frame feature predicts, the hand's unknown size (the estimate assumes one length for
everybody; the clip's relative depth error follows the true length's departure from it, docs/results.md). A
log-linear variance alone put the easiest frames far below it.

When the camera's focal length was not given (`handcli detect` without --focal or --fov), the estimate assumed
detect's default field of view, and the hand's depth scales with the focal length (docs/hand_models.md): the
whole hand sits on the right rays at the wrong distance, by the same factor in every frame. σ²_ray / d² then
gains s_f², the mean squared relative depth error of that assumption over the fields of view of common
cameras (`assumed_focal_spread`). The benchmark always gives the focal length, so this part is not fitted.

so var_root = d² (σ²_ray r̂r̂ᵀ + σ²_side (I - r̂r̂ᵀ)) and the joint's expected squared error is
tr var_root + 3 σ²_l,j. The coefficients are fitted (Poisson pseudo-likelihood, `fit_log_linear_mean` and
`fit_log_linear_mean_above_floor`, so
that the predicted mean squared error matches the observed one) on the video benchmark's tuning split, FPHA
subjects 1-3 rendered with MediaPipe in the loop (`scripts/variance_calibrate.py`, card:
weights/variance_calibration.md). Far out of the fitted range a log-linear model explodes; the variances are
capped where they stop meaning anything (MAX_RELATIVE_ROOT_STD, MAX_ARTICULATION_STD).
The errors are slow (lag-1 autocorrelation ~0.9, docs/results.md), which `sample_estimate_errors` keeps when
the uncertainty is carried through the refiner (handcli.variance.sequence.input_gain).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from handcli.errors import BadInput

DEFAULT_CALIBRATION_PATH = Path(__file__).resolve().parents[2] / "weights" / "variance_calibration.json"
CALIBRATION_FORMAT = "handcli-variance-calibration/3"
# /2 files (before the feature ranges) still load; their maps then cannot say where they extrapolate
FORMAT_WITHOUT_RANGES = "handcli-variance-calibration/2"
READABLE_FORMATS = (FORMAT_WITHOUT_RANGES, CALIBRATION_FORMAT)
FEATURES = ("log_hand_px", "log_distance", "foreshortening", "fingers_away", "palm_facing", "reprojection",
            "low_confidence", "truncation", "unobserved", "depth_wobble", "size_wobble", "size_given", "constant")
# the features whose range over the fitted frames the calibration records: the others (size_given, the
# constant) only ever take values the fit saw
RANGED_FEATURES = tuple(name for name in FEATURES if name not in ("size_given", "constant"))
RANGED_COLUMNS = [FEATURES.index(name) for name in RANGED_FEATURES]  # their columns in the design
# a frame is beyond a range only when it is outside by more than this fraction of the range's width: where
# the fitted frames reach a feature's bounds (the palm's direction covers 0.0003-0.99999 of its 0-1), a
# value past them by a hair is rounding, not extrapolation
RANGE_MARGIN = 0.01
# what each of them is, in words a user reads (`handcli info`)
FEATURE_WORDS = {"log_hand_px": "hand size in pixels", "log_distance": "distance", "foreshortening": "foreshortening",
                 "fingers_away": "finger direction", "palm_facing": "palm direction",
                 "reprojection": "fit to the 2D keypoints", "low_confidence": "detector confidence",
                 "truncation": "cut at the image border", "unobserved": "gap to an observed frame",
                 "depth_wobble": "depth wobble", "size_wobble": "size wobble"}
# the features the floor of the whole hand's variance along the ray depends on (module docstring)
RAY_FLOOR_FEATURES = ("size_given", "constant")
UNOBSERVED_SECONDS = 0.5  # an interpolated frame this far from an observed one counts as fully unobserved
TRUNCATION_MARGIN = 0.01  # keypoints within this fraction of the image's width of its border count as cut off
# the wobble features: a signal's fluctuation around its Gaussian-smoothed self (this width) as an RMS over a
# window of this length, both at any frame rate (8 and 31 frames at 30 fps)
WOBBLE_SMOOTH_SECONDS = 0.27
WOBBLE_WINDOW_SECONDS = 1.0
# caps on the model's standard deviations: a whole-hand error as large as the distance itself (the hand
# anywhere between the camera and twice as far), an articulation error of half a hand's length per coordinate
MAX_RELATIVE_ROOT_STD = 1.0
MAX_ARTICULATION_STD = 0.1  # metres
# the field of view across the longer image side of the cameras users film with when they do not say which:
# phones' main cameras 65-75 degrees, webcams 60-80 (docs/detect.md)
COMMON_FOV_DEGREES = (60.0, 80.0)


@dataclass
class FrameFeatures:
    """design: (H, T, F) the features z of FEATURES; centre: (H, T, 3) the hand's mean keypoint (m);
    distance: (H, T) |centre| (m); ray: (H, T, 3) centre / distance."""

    design: np.ndarray
    centre: np.ndarray
    distance: np.ndarray
    ray: np.ndarray


@dataclass
class EstimateUncertainty:
    """var_root: (H, T, 3, 3) m², the whole-hand covariance in the camera frame; var_articulation: (H, T, 21)
    m² per coordinate, around the whole hand. var_joints = tr var_root + 3 var_articulation."""

    var_root: np.ndarray
    var_articulation: np.ndarray

    @property
    def var_joints(self) -> np.ndarray:
        """(H, T, 21) m²: each joint's expected squared error."""
        return np.trace(self.var_root, axis1=-2, axis2=-1)[..., None] + 3.0 * self.var_articulation


@dataclass
class VarianceCalibration:
    """The calibration file (weights/variance_calibration.json, card weights/variance_calibration.md).

    laplace_scale: factor on the refiner's own variance γ² (its posterior was fitted on synthetic corruption
    and runs wide on real motion); ray, side (F,), articulation (21, F): coefficients of the estimate's
    log-linear variances over FEATURES (module docstring); ray_floor (F,): those of the floor under the
    variance along the ray, zero outside RAY_FLOOR_FEATURES; correlation_frames: how long the estimate's
    errors last, the width (standard deviation, frames at 30 fps) of the Gaussian their autocorrelation
    follows, exp(-lag² / (4 w²)); constant_root, constant_articulation: the share of the whole-hand and of the
    articulation error variance that stays constant over a track (a per-clip bias: a wrong hand size, a
    consistently misread finger), the rest fluctuating with that autocorrelation (both for sampling);
    fitted_on: provenance; feature_ranges: {name: [lowest, highest]} of each of RANGED_FEATURES over the
    frames fitted on (None in format /2 files), where the model stops being fitted and starts extrapolating
    (`beyond_calibration`)."""

    laplace_scale: float
    ray: list[float]
    side: list[float]
    articulation: list[list[float]]
    correlation_frames: float
    constant_root: float
    constant_articulation: float
    fitted_on: dict
    ray_floor: list[float]
    feature_ranges: dict[str, list[float]] | None = None

    def save(self, path: Path) -> None:
        from handcli.artifacts import atomic_path

        payload = asdict(self)
        if self.feature_ranges is None:  # what a /2 file holds: say so rather than write /3 without its ranges
            del payload["feature_ranges"]
        with atomic_path(Path(path)) as temporary:
            Path(temporary).write_text(json.dumps({"format": CALIBRATION_FORMAT if self.feature_ranges is not None
                                                   else FORMAT_WITHOUT_RANGES, "features": list(FEATURES), **payload},
                                                  indent=1))

    @classmethod
    def load(cls, path: Path | None = None) -> "VarianceCalibration":
        path = Path(path) if path is not None else DEFAULT_CALIBRATION_PATH
        try:
            payload = json.loads(path.read_text())
            if payload.get("format") not in READABLE_FORMATS or payload.get("features") != list(FEATURES):
                raise ValueError
            ranges = None
            if payload["format"] == CALIBRATION_FORMAT:  # /3: a finite [low, high] for every ranged feature
                ranges = {name: [float(low), float(high)] for name, (low, high) in payload["feature_ranges"].items()}
                if sorted(ranges) != sorted(RANGED_FEATURES) or not all(
                        np.isfinite([low, high]).all() and low <= high for low, high in ranges.values()):
                    raise ValueError
            calibration = cls(float(payload["laplace_scale"]), payload["ray"], payload["side"],
                              payload["articulation"], float(payload["correlation_frames"]),
                              float(payload["constant_root"]), float(payload["constant_articulation"]),
                              payload.get("fitted_on", {}), payload["ray_floor"], ranges)
            if (np.asarray(calibration.articulation).shape != (21, len(FEATURES))
                    or np.asarray(calibration.ray_floor).shape != (len(FEATURES),)):
                raise ValueError
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise BadInput(f"{path} is not a readable {' or '.join(READABLE_FORMATS)} file over {', '.join(FEATURES)} "
                           f"({type(error).__name__})") from None
        return calibration


def can_describe(keypoints2d, K) -> bool:
    """The features need the image: 2D keypoints and intrinsics (artifacts from video have both)."""
    return keypoints2d is not None and K is not None


def _stage_config(meta: dict | None, stage: str) -> dict:
    """The config of the latest `stage` in an artifact's meta or its history ({} when none is on record)."""
    from handcli.artifacts import stage_meta

    return (stage_meta(meta or {}, stage) or {}).get("config") or {}


def hand_length_given(meta: dict | None) -> bool:
    """Whether the estimate behind an artifact was given the hand's length (`handcli estimate --hand-length`):
    read from the estimate stage's config in the artifact's meta or its history."""
    return _stage_config(meta, "estimate").get("hand_length") is not None


def focal_given(meta: dict | None) -> bool:
    """Whether the intrinsics behind an artifact are the camera's own: its detect stage ran with --focal or
    --fov (read from the stage's config in the artifact's meta or its history). Imported artifacts carry the
    other tool's fictitious focal length, so for them it is False too."""
    config = _stage_config(meta, "detect")
    return config.get("focal") is not None or config.get("fov") is not None


def assumed_focal_spread(fov_range: tuple[float, float] = COMMON_FOV_DEGREES, assumed_fov: float | None = None
                         ) -> float:
    """The RMS relative depth error of a hand placed with detect's default field of view (`assumed_fov`
    degrees, default DEFAULT_FOV_DEGREES) when the camera's is anywhere in `fov_range` (uniform): the depth
    scales with the focal length, which goes as 1 / tan(fov / 2). Bias included: the default is at the
    narrow end of common cameras, so it places hands too far on most of them (docs/detect.md)."""
    from handcli.detect.intrinsics import DEFAULT_FOV_DEGREES

    assumed = np.radians(DEFAULT_FOV_DEGREES if assumed_fov is None else assumed_fov)
    fov = np.radians(np.linspace(fov_range[0], fov_range[1], 1001))
    ratio = np.tan(fov / 2) / np.tan(assumed / 2)  # estimated depth / true depth
    return float(np.sqrt(np.mean((ratio - 1.0) ** 2)))


def frame_features(keypoints3d: np.ndarray, keypoints2d: np.ndarray, valid: np.ndarray, K: np.ndarray,
                   image_size: np.ndarray | None, fps: float, size_given: bool = False) -> FrameFeatures:
    """Per-frame features of an estimate.

    keypoints3d: (H, T, 21, 3) metres, camera frame, finite (the estimate interpolates unobserved frames);
    keypoints2d: (H, T, 21, 3) pixels + confidence (NaN where unseen); valid: (H, T); K: (3, 3);
    image_size: (2,) [W, H] or None (then the principal point's double). Features:
    log_hand_px: log of the hand's size in pixels (RMS spread of its projected keypoints / 100 px);
    log_distance: log of the distance to the hand's centre / 0.5 m;
    foreshortening: 1 - (the hand's spread across the ray / its spread in 3D): large when the hand is seen
    along its fingers; fingers_away: cosine between the wrist -> middle knuckle direction and the ray (1:
    pointing straight away from the camera); palm_facing: |cosine| between the palm's normal and the ray;
    reprojection: mean distance of the projected keypoints to the 2D keypoints / the
    spread in pixels; low_confidence: 1 - the detector's confidence; truncation: fraction of projected
    keypoints at or beyond the image border; unobserved: 0 on observed frames, rising to 1 at
    UNOBSERVED_SECONDS from the nearest observed one; depth_wobble, size_wobble: how much the estimate's
    log distance and the log of its size in pixels fluctuate over about a second (`_wobble`); size_given: 1
    when the estimate was given the hand's true length (`size_given`, `hand_length_given`), which takes the
    hand-size share out of the depth's error."""
    keypoints3d = _held(np.asarray(keypoints3d, np.float64))
    K = np.asarray(K, np.float64)
    valid = np.asarray(valid, bool)
    centre = keypoints3d.mean(-2)
    distance = np.maximum(np.linalg.norm(centre, axis=-1), 1e-3)
    ray = centre / distance[..., None]
    offsets = keypoints3d - centre[..., None, :]
    spread3d = np.sqrt(np.mean(np.sum(offsets ** 2, -1), -1))
    along = np.sum(offsets * ray[..., None, :], -1)
    across = np.sqrt(np.maximum(np.mean(np.sum(offsets ** 2, -1) - along ** 2, -1), 0.0))
    foreshortening = 1.0 - np.clip(across / np.maximum(spread3d, 1e-6), 0.0, 1.0)
    depth = np.maximum(keypoints3d[..., 2], 1e-3)
    projected = np.stack([K[0, 0] * keypoints3d[..., 0] / depth + K[0, 2],
                          K[1, 1] * keypoints3d[..., 1] / depth + K[1, 2]], -1)  # (H, T, 21, 2)
    spread_px = np.sqrt(np.mean(np.sum((projected - projected.mean(-2, keepdims=True)) ** 2, -1), -1))
    spread_px = np.maximum(spread_px, 1.0)
    points2d = np.asarray(keypoints2d, np.float64)
    offsets2d = np.linalg.norm(projected - points2d[..., :2], axis=-1).mean(-1)
    reprojection = np.where(np.isfinite(offsets2d) & valid, offsets2d / spread_px, 0.0)
    scores = points2d[..., 2]
    seen = np.isfinite(scores)
    confidence = np.where(seen, scores, 0.0).sum(-1) / np.maximum(seen.sum(-1), 1)
    confidence = np.where(seen.any(-1), confidence, 1.0)
    low_confidence = np.where(valid & np.isfinite(confidence), 1.0 - np.clip(confidence, 0.0, 1.0), 0.0)
    width, height = (np.asarray(image_size, np.float64) if image_size is not None
                     else 2.0 * np.array([K[0, 2], K[1, 2]]))
    margin = TRUNCATION_MARGIN * width
    outside = ((projected[..., 0] < margin) | (projected[..., 0] > width - margin)
               | (projected[..., 1] < margin) | (projected[..., 1] > height - margin))
    truncation = outside.mean(-1)
    unobserved = _unobserved(valid, fps)
    # the hand's own axes against the ray: fingers pointing away from the camera (egocentric views, where
    # depth is hardest) and the palm (or its back) facing it
    forward = keypoints3d[..., 9, :] - keypoints3d[..., 0, :]
    forward /= np.maximum(np.linalg.norm(forward, axis=-1, keepdims=True), 1e-9)
    normal = np.cross(keypoints3d[..., 5, :] - keypoints3d[..., 0, :], keypoints3d[..., 17, :] - keypoints3d[..., 0, :])
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-9)
    fingers_away = np.sum(forward * ray, -1)
    palm_facing = np.abs(np.sum(normal * ray, -1))
    design = np.stack([np.log(spread_px / 100.0), np.log(distance / 0.5), foreshortening, fingers_away, palm_facing,
                       reprojection, low_confidence, truncation, unobserved, _wobble(np.log(distance), fps),
                       _wobble(np.log(spread_px), fps), np.full_like(distance, float(size_given)),
                       np.ones_like(distance)], -1)
    return FrameFeatures(design, centre, distance, ray)


def _wobble(signal: np.ndarray, fps: float) -> np.ndarray:
    """(H, T) -> (H, T): log(100 x r + 0.1), per track, where r is the RMS over a window of
    WOBBLE_WINDOW_SECONDS of the signal's deviation from its Gaussian-smoothed self.

    Why: where the estimate's depth (or its size in the image) jumps about from frame to frame, the image did
    not pin it down, and its error is large and heavy-tailed (egocentric views: docs/results.md). On the
    video benchmark's tuning split the two lower the leave-one-clip-out Poisson deviance of the whole hand's
    error along the ray and across it (docs/variance.md, "The per-frame estimate's uncertainty")."""
    from scipy.ndimage import gaussian_filter1d, uniform_filter1d

    smooth = max(WOBBLE_SMOOTH_SECONDS * fps, 0.5)
    window = max(int(round(WOBBLE_WINDOW_SECONDS * fps)) | 1, 3)
    squared = (signal - gaussian_filter1d(signal, smooth, axis=-1, mode="nearest")) ** 2
    return np.log(100.0 * np.sqrt(uniform_filter1d(squared, window, axis=-1, mode="nearest")) + 0.1)


def _held(keypoints3d: np.ndarray) -> np.ndarray:
    """(H, T, 21, 3) with frames that are not finite (raw inputs hold NaN where nothing was seen) replaced by
    the nearest finite frame of their track; a track with none becomes a hand 0.5 m ahead (never scored)."""
    finite = np.isfinite(keypoints3d).all((-1, -2))
    if finite.all():
        return keypoints3d
    out = keypoints3d.copy()
    frames = np.arange(keypoints3d.shape[1])
    for h, row in enumerate(finite):
        seen = np.flatnonzero(row)
        if not seen.size:
            out[h] = np.array([0.0, 0.0, 0.5])
            continue
        out[h] = keypoints3d[h, _nearest(frames, seen)]
    return out


def _unobserved(valid: np.ndarray, fps: float) -> np.ndarray:
    """(H, T) 0 on observed frames, frames to the nearest observed one / (UNOBSERVED_SECONDS fps), at most 1."""
    out = np.ones(valid.shape)
    reach = max(1.0, UNOBSERVED_SECONDS * fps)
    frames = np.arange(valid.shape[1])
    for h, row in enumerate(valid):
        seen = np.flatnonzero(row)
        if seen.size:
            out[h] = np.minimum(np.abs(frames - _nearest(frames, seen)) / reach, 1.0)
    return out


def _nearest(frames: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """For each of `frames` (T,), the nearest of the sorted frames `seen` (S,), S >= 1 (the earlier on a tie)."""
    after = np.clip(np.searchsorted(seen, frames), 0, len(seen) - 1)
    before = np.clip(after - 1, 0, len(seen) - 1)
    return np.where(np.abs(frames - seen[before]) <= np.abs(seen[after] - frames), seen[before], seen[after])


def estimate_uncertainty(features: FrameFeatures, model: VarianceCalibration, focal_spread: float = 0.0
                         ) -> EstimateUncertainty:
    """The model's covariances for every frame of the features; focal_spread: the relative depth error of an
    assumed focal length (`assumed_focal_spread`, 0 when the camera's was given), added along the ray."""
    design = features.design
    squared_distance = features.distance ** 2
    cap = 2.0 * np.log(MAX_RELATIVE_ROOT_STD)
    ray_relative = (np.exp(np.minimum(design @ np.asarray(model.ray), cap))
                    + np.exp(np.minimum(design @ np.asarray(model.ray_floor), cap)) + float(focal_spread) ** 2)
    ray_var = np.minimum(ray_relative, MAX_RELATIVE_ROOT_STD ** 2) * squared_distance  # (H, T) m²
    side_var = np.exp(np.minimum(design @ np.asarray(model.side), cap)) * squared_distance
    outer = features.ray[..., :, None] * features.ray[..., None, :]
    var_root = ray_var[..., None, None] * outer + side_var[..., None, None] * (np.eye(3) - outer)
    var_articulation = np.exp(np.minimum(np.einsum("htf,jf->htj", design, np.asarray(model.articulation)),
                                         2.0 * np.log(MAX_ARTICULATION_STD)))
    return EstimateUncertainty(var_root, var_articulation)


def beyond_calibration(features: FrameFeatures, model: VarianceCalibration) -> np.ndarray | None:
    """(H, T, R) bool over RANGED_FEATURES: where a frame's feature lies outside the range of the frames the
    calibration was fitted on (by more than RANGE_MARGIN of its width), so its variance is the log-linear
    model's extrapolation; None when the calibration records no ranges (format /2).

    Why say so: inside the range the model is fitted, outside it a straight line in log-variance is a guess.
    And an estimate that places a hand nearer or further than any the calibration saw is itself suspect: on
    the video benchmark's test split the frames beyond the distance range were those of its two gross
    failures, a hand placed at less than half its distance and a tiny far hand taken for the other side
    (docs/results.md)."""
    if model.feature_ranges is None:
        return None
    ranges = np.array([model.feature_ranges[name] for name in RANGED_FEATURES])  # (R, 2)
    margin = RANGE_MARGIN * (ranges[:, 1] - ranges[:, 0])
    values = features.design[..., RANGED_COLUMNS]
    return (values < ranges[:, 0] - margin) | (values > ranges[:, 1] + margin)


def sample_estimate_errors(uncertainty: EstimateUncertainty, correlation_frames: float, fps: float,
                           rng: np.random.Generator, constant_root: float = 0.0,
                           constant_articulation: float = 0.0) -> np.ndarray:
    """One draw of joint errors (H, T, 21, 3) metres with the uncertainty's covariances, independent across
    joints. In time each is a track-constant part (variance share `constant_root` for the whole hand,
    `constant_articulation` for each joint around it) plus a smooth fluctuation: white noise filtered with a
    Gaussian of width `correlation_frames` (at 30 fps, converted to `fps`) and scaled back to unit variance,
    so its autocorrelation is exp(-lag² / (4 w²)). The estimate's errors are like that (a per-clip bias
    plus a fluctuation whose autocorrelation falls from 0.93 at one frame to 0.5 at five, docs/results.md);
    an AR(1) process with the same half-life has more fast content, which the refiner removes, and would
    understate what reaches its output."""
    from scipy.ndimage import gaussian_filter1d

    var_root, var_articulation = uncertainty.var_root, uncertainty.var_articulation
    tracks, frames = var_articulation.shape[:2]
    width = max(float(correlation_frames), 0.0) * max(fps, 1e-3) / 30.0
    white = rng.standard_normal((tracks, frames, 22, 3))
    if width > 0:
        impulse = np.zeros(int(8 * width) + 1)
        impulse[len(impulse) // 2] = 1.0
        norm = np.sqrt(np.sum(gaussian_filter1d(impulse, width, mode="constant") ** 2))
        smooth = gaussian_filter1d(white, width, axis=1, mode="reflect") / norm
    else:
        smooth = white
    share = np.array([constant_root] + [constant_articulation] * 21)[None, None, :, None]  # (1, 1, 22, 1)
    share = np.clip(share, 0.0, 1.0)
    constant = rng.standard_normal((tracks, 1, 22, 3))
    smooth = np.sqrt(share) * constant + np.sqrt(1.0 - share) * smooth
    root = np.einsum("htij,htj->hti", _sqrtm_psd(var_root), smooth[:, :, 0])
    articulation = np.sqrt(var_articulation)[..., None] * smooth[:, :, 1:]
    return root[:, :, None, :] + articulation


def _sqrtm_psd(matrices: np.ndarray) -> np.ndarray:
    """(..., 3, 3) symmetric PSD -> a matrix L with L Lᵀ = M (symmetric square root)."""
    values, vectors = np.linalg.eigh(matrices)
    return (vectors * np.sqrt(np.maximum(values, 0.0))[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def error_targets(keypoints3d: np.ndarray, truth: np.ndarray, features: FrameFeatures
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the model is fitted to, for frames (N,) with all joints scored: (ray² / d² (N, 1), side² / d² (N, 2),
    articulation² (N, 21, 3)). keypoints3d, truth: (N, 21, 3); features: of the same N frames."""
    error = np.asarray(keypoints3d, np.float64) - np.asarray(truth, np.float64)
    root = error.mean(-2)
    ray = features.ray
    along = np.sum(root * ray, -1)
    # two unit vectors across the ray
    helper = np.where(np.abs(ray[..., :1]) < 0.9, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    first = np.cross(ray, helper)
    first /= np.linalg.norm(first, axis=-1, keepdims=True)
    second = np.cross(ray, first)
    side = np.stack([np.sum(root * first, -1), np.sum(root * second, -1)], -1)
    d2 = features.distance[..., None] ** 2
    return along[..., None] ** 2 / d2, side ** 2 / d2, (error - root[..., None, :]) ** 2


def fit_error_model(design: np.ndarray, ray_sq: np.ndarray, side_sq: np.ndarray, articulation_sq: np.ndarray,
                    correlation_frames: float, constant_root: float, constant_articulation: float,
                    fitted_on: dict, ridge: float = 1e-2, laplace_scale: float = 1.0) -> VarianceCalibration:
    """Coefficients from frames (N,): design (N, F) over FEATURES, targets as `error_targets` returns; the
    ray's expected squared error log-linear above a floor (`fit_log_linear_mean_above_floor`), the others
    log-linear (`fit_log_linear_mean`); and the range of each of RANGED_FEATURES over the frames.

    Why the floor only along the ray: there it lowers the leave-one-clip-out Poisson deviance on the video
    benchmark's tuning split (2.07 to 1.88); across the ray it raises it (8.47 to 11.64), and for the
    articulation it changes nothing (docs/variance.md)."""

    def fit(squared: np.ndarray) -> list[float]:
        return fit_log_linear_mean(design, squared, ridge).tolist()

    floor_columns = [FEATURES.index(name) for name in RAY_FLOOR_FEATURES]
    ray, ray_floor = fit_log_linear_mean_above_floor(design, ray_sq, floor_columns, ridge)
    articulation = [fit(articulation_sq[:, j]) for j in range(articulation_sq.shape[1])]
    ranged = design[:, RANGED_COLUMNS]
    ranges = {name: [float(low), float(high)] for name, low, high in zip(RANGED_FEATURES, ranged.min(0), ranged.max(0))}
    return VarianceCalibration(float(laplace_scale), ray.tolist(), fit(side_sq), articulation,
                               float(correlation_frames), float(constant_root), float(constant_articulation),
                               fitted_on, ray_floor.tolist(), ranges)


def fit_log_linear_mean_above_floor(design: np.ndarray, squared: np.ndarray, floor_columns: list[int], ridge: float
                                    ) -> tuple[np.ndarray, np.ndarray]:
    """(F,) coefficients c and (F,) floor coefficients f (zero outside floor_columns) with
    exp(design @ c) + exp(design @ f) the expected squared error; squared (N, C), design (N, F), its last
    column the constant 1 (which must be among floor_columns).

    The same Poisson pseudo-likelihood as `fit_log_linear_mean` (ridge on c's slopes and on f's non-constant
    coefficients), minimised by L-BFGS from the log-linear fit with a floor of a fifth of the mean: not convex,
    so it starts where the log-linear model is already good. Its estimating equation for the floor's constant
    makes the predicted mean squared error equal the observed one, weighted towards the frames the floor
    dominates."""
    from scipy.optimize import minimize

    design = np.asarray(design, np.float64)
    target = np.asarray(squared, np.float64).reshape(len(design), -1).mean(-1)
    level = max(float(np.mean(target)), 1e-300)
    target = target / level
    rows, dims = design.shape
    floor_design = design[:, floor_columns]
    shrink = np.full(dims, float(ridge))
    shrink[-1] = 0.0
    floor_shrink = np.where(np.asarray(floor_columns) == dims - 1, 0.0, float(ridge))

    def objective(parameters: np.ndarray) -> tuple[float, np.ndarray]:
        c, f = parameters[:dims], parameters[dims:]
        above, floor = np.exp(design @ c), np.exp(floor_design @ f)
        mean = above + floor
        residual = (1.0 - target / mean) / rows
        value = (np.mean(mean - target * np.log(mean)) + 0.5 * np.sum(shrink * c * c)
                 + 0.5 * np.sum(floor_shrink * f * f))
        gradient = np.concatenate([(residual * above) @ design + shrink * c,
                                   (residual * floor) @ floor_design + floor_shrink * f])
        return float(value), gradient

    start_floor = np.zeros(len(floor_columns))
    start_floor[list(floor_columns).index(dims - 1)] = np.log(0.2)
    start = np.concatenate([fit_log_linear_mean(design, target, ridge), start_floor])
    result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 5000, "gtol": 1e-10})
    if not result.success:  # a calibration built on it should say so, not pass for a fit
        import warnings

        warnings.warn(f"the floor's fit did not converge: {result.message}", RuntimeWarning, stacklevel=2)
    coefficients = result.x[:dims].copy()
    floor = np.zeros(dims)
    floor[floor_columns] = result.x[dims:]
    coefficients[-1] += np.log(level)  # back to the targets' scale
    floor[-1] += np.log(level)
    return coefficients, floor


def fit_log_linear_mean(design: np.ndarray, squared: np.ndarray, ridge: float, iterations: int = 100) -> np.ndarray:
    """(F,) coefficients c with exp(design @ c) the expected squared error, from squared errors (N, C) whose C
    columns share one variance; design (N, F), its last column the constant 1.

    Poisson pseudo-likelihood (Newton's method on Σ_n exp(η_n) - ȳ_n η_n / N + ½ ridge |c|², η = design c, ȳ the
    row's mean, convex; the constant is not shrunk): its estimating equations Σ_n (ȳ_n - exp(η_n)) z_n = 0 make
    the predicted mean squared error equal the observed one overall and along every feature, whatever the errors'
    distribution. Why not the Gaussian likelihood (as the refiner's noise, handcli.variance.noise): the
    estimate's errors are heavy-tailed (a few clips place the hand 20-100 % off in depth), and a Gaussian fit
    weighs each frame by 1 / σ², so it sets the variance by the typical frames and the observed / predicted
    RMS came out 1.4 on the test split's 58 clips, 1.6 in-sample on the egocentric ones (docs/results.md)."""
    design = np.asarray(design, np.float64)
    target = np.asarray(squared, np.float64).reshape(len(design), -1).mean(-1)
    # the targets divided by their mean, so the ridge shrinks the slopes towards "no effect" and nothing else
    level = float(np.mean(target))
    target = target / max(level, 1e-300)
    rows, dims = design.shape
    shrink = np.full(dims, float(ridge))
    shrink[-1] = 0.0

    def objective(c: np.ndarray) -> float:
        eta = design @ c
        return float(np.mean(np.exp(eta) - target * eta) + 0.5 * np.sum(shrink * c * c))

    coefficients = np.zeros(dims)
    current = objective(coefficients)
    for _ in range(iterations):
        mean = np.exp(design @ coefficients)
        gradient = (mean - target) @ design / rows + shrink * coefficients
        hessian = (design * mean[:, None]).T @ design / rows + np.diag(shrink)
        step = np.linalg.solve(hessian + 1e-12 * np.eye(dims), gradient)
        size = 1.0
        while size > 1e-6 and objective(coefficients - size * step) > current:
            size /= 2  # a full Newton step can overshoot the exponential
        coefficients = coefficients - size * step
        previous, current = current, objective(coefficients)
        if previous - current < 1e-12:
            break
    coefficients[-1] += np.log(max(level, 1e-300))
    return coefficients


def along_ray_variance(keypoints3d: np.ndarray, var_root: np.ndarray) -> np.ndarray:
    """(...,) m²: the whole-hand variance along the camera ray through the hand's centre.

    keypoints3d: (..., 21, 3) metres, camera frame; var_root: (..., 3, 3) m²."""
    centre = np.asarray(keypoints3d, np.float64).mean(-2)
    ray = centre / np.maximum(np.linalg.norm(centre, axis=-1, keepdims=True), 1e-9)
    return np.maximum(np.einsum("...i,...ij,...j->...", ray, np.asarray(var_root, np.float64), ray), 0.0)
