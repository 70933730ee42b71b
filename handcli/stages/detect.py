"""detect stage: video -> tracked 2D keypoints, metric landmarks and a first camera-frame 3D estimate per hand.

Frames are streamed from the file into MediaPipe Hands one at a time; detections are associated into tracks
online (handcli.detect.tracking), so memory grows only with the (small) per-frame detections.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from handcli.artifacts import Artifact, make_meta
from handcli.detect.intrinsics import DEFAULT_FOV_DEGREES, camera_matrix
from handcli.detect.lifting import project, solve_translation
from handcli.detect.linking import link_fragments, resolve_sides
from handcli.detect.mediapipe_hands import MediaPipeHands
from handcli.detect.parallel import detect_segments, plan_segments, usable_cores
from handcli.detect.tracking import HandTracker, Track, TrackerConfig, fill_unseen, stack_tracks
from handcli.errors import BadInput
from handcli.video import VideoInfo, iter_frames, probe_video, video_digest

# progress(frames done, frames the header announces or None)
# keypoints closer than this to the camera plane (or behind it) mean the translation solve failed
MIN_DEPTH = 0.02
Progress = Callable[[int, "int | None"], None]


@dataclass
class DetectConfig:
    focal: float | None = None  # pixels; default from DEFAULT_FOV_DEGREES
    fov: float | None = None  # degrees across the longer image side
    max_hands: int = 2  # hands MediaPipe looks for per frame (tracks over the video may be more)
    model_complexity: int = 1  # MediaPipe landmark model: 0 lite, 1 full
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    mirrored: bool = False  # the video is selfie-mirrored (MediaPipe's handedness is then used as is)
    max_gap_seconds: float = 0.5  # a track unseen for longer than this ends; shorter gaps keep its identity
    min_track_seconds: float = 0.2  # tracks observed on fewer frames than this are dropped as spurious
    min_frames: int = 1  # fewer decoded frames is bad input (a caller that needs motion asks for 2+)
    fps: float | None = None  # frame rate of a frame folder (a video states its own); default 30 with a warning
    link: bool = True  # link track fragments of one hand across gaps (handcli.detect.linking)
    # processes running MediaPipe on time segments of a video file (handcli.detect.parallel); None: one per
    # usable core. Clips too short to be worth splitting, and frame folders, run in one process.
    workers: int | None = None
    overlap_seconds: float = 0.5  # each segment's MediaPipe starts this early, to lock on before its frames


def check_config(config: DetectConfig) -> None:
    """One-line BadInput for option values MediaPipe or the tracker cannot use."""
    if not 1 <= config.max_hands <= 10:
        raise BadInput(f"--max-hands must be between 1 and 10, got {config.max_hands}")
    if config.model_complexity not in (0, 1):
        raise BadInput(f"model complexity must be 0 or 1, got {config.model_complexity}")
    for name in ("min_detection_confidence", "min_tracking_confidence"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise BadInput(f"{name} must be between 0 and 1, got {getattr(config, name)}")
    if config.fps is not None and not (math.isfinite(config.fps) and 0 < config.fps <= 1000):
        raise BadInput(f"--fps must be between 0 and 1000 frames per second, got {config.fps}")
    if config.max_gap_seconds < 0 or config.min_track_seconds < 0:
        raise BadInput("max_gap_seconds and min_track_seconds must not be negative")
    if config.workers is not None and not 1 <= config.workers <= 256:
        raise BadInput(f"--workers must be between 1 and 256, got {config.workers}")
    if not 0 <= config.overlap_seconds <= 10:
        raise BadInput(f"overlap_seconds must be between 0 and 10, got {config.overlap_seconds}")


def min_track_observations(config: DetectConfig, fps: float, num_frames: int) -> int:
    """Frames a track must be seen on to be kept: `min_track_seconds` worth, but never more than half the
    video (so a hand in a very short clip survives), and at least 1."""
    return max(1, min(round(config.min_track_seconds * fps), math.ceil(num_frames / 2)))


def detect(frames: Iterable[np.ndarray], video: VideoInfo, config: DetectConfig,
           progress: Progress | None = None) -> Artifact:
    """Detect and track hands in `frames` ((height, width, 3) uint8 RGB, video order, `video.fps`), in this
    process.

    Returns an artifact with H tracks x T frames: keypoints2d (H, T, 21, 3), world_landmarks (H, T, 21, 3),
    boxes (H, T, 4), scores (H, T), valid (H, T), is_right (H,), track_id (H,), frame_index (T,), K, image_size
    and keypoints3d (H, T, 21, 3): the world landmarks translated to where they reproject onto keypoints2d.
    Frames a track was not seen on are `valid = False` and hold values interpolated from its neighbours."""
    check_config(config)
    timings = {"mediapipe_s": 0.0}
    started = time.perf_counter()

    def per_frame():
        with MediaPipeHands(**mediapipe_options(config)) as hands:
            for count, frame in enumerate(frames, 1):
                before = time.perf_counter()
                detections = hands.process(frame)
                timings["mediapipe_s"] += time.perf_counter() - before
                yield detections
                if progress is not None:
                    progress(count, video.num_frames_estimate)

    return track_detections(per_frame(), video, config, timings, started)


def mediapipe_options(config: DetectConfig) -> dict:
    return dict(max_hands=config.max_hands, model_complexity=config.model_complexity,
                min_detection_confidence=config.min_detection_confidence,
                min_tracking_confidence=config.min_tracking_confidence, mirrored=config.mirrored)


def track_detections(per_frame: Iterable[list], video: VideoInfo, config: DetectConfig, timings: dict,
                     started: float, parallel: dict | None = None) -> Artifact:
    """Track, link, lift and assemble per-frame detections (lists of HandDetection, frame order) into the
    detect artifact; `parallel`: how segment-parallel detection ran (recorded in meta), None if it did not."""
    K = camera_matrix(video.width, video.height, config.focal, config.fov)
    tracker = HandTracker(TrackerConfig(max_gap_frames=max(1, round(config.max_gap_seconds * video.fps))))
    num_frames = 0
    for detections in per_frame:
        tracker.update(num_frames, detections)
        num_frames += 1
    timings["frames_s"] = time.perf_counter() - started
    if num_frames < config.min_frames:
        raise BadInput(f"{video.path}: video has {num_frames} frame(s); at least {config.min_frames} needed")

    started = time.perf_counter()
    min_observations = min_track_observations(config, video.fps, num_frames)
    tracks, links, side_flips = tracker.finished_tracks(min_observations), [], []
    if config.link:
        tracks, links = link_fragments(tracks, video.fps)
        side_flips = resolve_sides(tracks)
    per_track, lift_failures, reprojection_px, kept = _assemble(tracks, num_frames, K)
    # ids in the artifact count the kept tracks only
    side_flips = [int(np.cumsum(kept)[i] - 1) for i in side_flips if kept[i]]
    num_tracks = len(per_track["is_right"])
    timings["assemble_s"] = time.perf_counter() - started

    warnings = []
    if num_tracks == 0:
        warnings.append(f"no hands found in {num_frames} frame(s) of {video.path.name}")
    if config.focal is None and config.fov is None:
        # the hands' distance scales with the focal length, so a guess here moves every hand (docs/detect.md)
        warnings.append(f"no --focal or --fov: assuming a {DEFAULT_FOV_DEGREES:g}° field of view, so the hands' "
                        "distance is a guess (the variance maps widen for it)")
    if not video.fps_known:
        warnings.append(f"a folder of frames states no frame rate; assuming {video.fps:g} fps (pass --fps)"
                        if video.codec == "frames" else
                        f"the video does not state its frame rate; assuming {video.fps:g} fps (pass --fps)")
    meta = make_meta("detect", config=asdict(config), timings=timings)
    meta["video"] = {"width": video.width, "height": video.height, "fps": video.fps, "codec": video.codec,
                     "rotated": video.rotated, "duration_s": video.duration, "frames": num_frames}
    meta["tracking"] = {"max_gap_frames": tracker.config.max_gap_frames, "min_observations": min_observations,
                        "tracks_found": len(tracker.tracks), "tracks_dropped": len(tracker.tracks) - len(links) - num_tracks,
                        "lift_failures": lift_failures, "reprojection_px_median": reprojection_px,
                        "links": [link.as_dict() for link in links], "side_flips": side_flips}
    meta["warnings"] = warnings
    meta["parallel"] = parallel
    return Artifact(**per_track, fps=video.fps, meta=meta, image_size=np.array([video.width, video.height]), K=K,
                    frame_index=np.arange(num_frames), track_id=np.arange(num_tracks))


def _assemble(tracks: list[Track], num_frames: int, K: np.ndarray) -> tuple[dict, int, float | None, np.ndarray]:
    """Per-track artifact arrays over `num_frames` frames (unseen frames filled, confidences 0 there), the
    number of detections that could not be lifted in front of the camera, the median reprojection error, and
    which of `tracks` were kept ((len(tracks),) bool): tracks left without a single valid frame are dropped."""
    arrays = stack_tracks(tracks, num_frames)
    keypoints3d, valid, reprojection_px = _lift(arrays["world_landmarks"], arrays["keypoints2d"], arrays["valid"], K)
    lift_failures = int(arrays["valid"].sum() - valid.sum())
    keypoints2d = arrays["keypoints2d"]
    keypoints2d[..., :2] = fill_unseen(keypoints2d[..., :2], valid)
    keypoints2d[..., 2] = np.where(valid[..., None], keypoints2d[..., 2], 0.0)
    per_track = dict(keypoints3d=keypoints3d, valid=valid, is_right=arrays["is_right"], keypoints2d=keypoints2d,
                     world_landmarks=fill_unseen(arrays["world_landmarks"], valid),
                     boxes=fill_unseen(arrays["boxes"], valid), scores=np.where(valid, arrays["scores"], 0.0))
    kept = valid.any(axis=1)
    return {key: value[kept] for key, value in per_track.items()}, lift_failures, reprojection_px, kept


def _lift(world_landmarks: np.ndarray, keypoints2d: np.ndarray, valid: np.ndarray,
          K: np.ndarray) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Camera-frame keypoints (H, T, 21, 3) (filled where not valid), the (H, T) mask of frames whose hand was
    placed in front of the camera (every keypoint at least MIN_DEPTH deep), and the median reprojection error
    in pixels over those frames (None if there are none)."""
    world = world_landmarks[valid].astype(np.float64)
    uv = keypoints2d[valid][..., :2].astype(np.float64)
    placed = world + solve_translation(world, uv, K)[:, None, :]
    in_front = placed[..., 2].min(-1) >= MIN_DEPTH if len(placed) else np.zeros(0, bool)
    lifted = valid.copy()
    lifted[valid] = in_front
    keypoints3d = np.full(world_landmarks.shape, np.nan, np.float32)
    keypoints3d[lifted] = placed[in_front]
    error = (float(np.median(np.linalg.norm(project(placed[in_front], K) - uv[in_front], axis=-1)))
             if in_front.any() else None)
    return fill_unseen(keypoints3d, lifted), lifted, error


def detect_file(path: str | Path, config: DetectConfig, progress: Progress | None = None) -> Artifact:
    """Probe and stream the video at `path`, detect, and record the input's digest."""
    check_config(config)
    video = probe_video(path, config.fps)
    if config.fps is not None and not (video.path.is_dir() or video.raw):
        raise BadInput("--fps is for a folder of frames or a raw stream (.h264, .mjpeg); this video states its "
                       "own frame rate")
    camera_matrix(video.width, video.height, config.focal, config.fov)  # bad options fail before decoding
    workers = config.workers if config.workers is not None else usable_cores()
    estimate = video.num_frames_estimate
    segments = plan_segments(estimate, workers, 0) if estimate and not video.path.is_dir() else []
    if len(segments) > 1:
        timings = {}
        started = time.perf_counter()
        overlap = round(config.overlap_seconds * video.fps)
        detections, timings["mediapipe_s"], used = detect_segments(
            video.path, config.fps, estimate, workers, overlap, mediapipe_options(config), progress)
        result = track_detections(detections, video, config, timings, started,
                                  parallel={"workers": used, "overlap_frames": overlap})
    else:
        result = detect(iter_frames(video), video, config, progress)
    result.meta["inputs"] = {"video": str(path), "sha256": video_digest(path)}
    return result
