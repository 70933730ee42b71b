"""render stage: an artifact's hands drawn over the original video (or on a neutral background with a camera
that follows them), as an H.264 video or a single PNG still. docs/render.md describes options and rules.

Everything that can be wrong with the input is checked before the first frame is drawn, and the output is
written to a temporary file renamed into place at the end, so a failed or interrupted render leaves no file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from handcli.artifacts import Artifact, atomic_path, stage_meta
from handcli.errors import BadInput, StageFailed
from handcli.inputs import load_input
from handcli.render.backends import make_renderer
from handcli.render.camera import default_intrinsics, follow_offsets, project
from handcli.render.colours import colour_lut, draw_colour_bar, map_values, track_colours
from handcli.render.overlay import blend_layer, draw_skeleton, draw_text, highlight, side_by_side
from handcli.render.scene import Mesh
from handcli.render.video import VIDEO_SUFFIXES, VideoWriter

VIDEO_OPACITY = 0.75  # mesh over a video frame: the hand stays visible underneath
BACKGROUND_TOP, BACKGROUND_BOTTOM = (92, 96, 104), (44, 46, 52)
# --variance: a frame is flagged when its RMS joint standard deviation exceeds this multiple of the clip's
# median (unless --threshold gives millimetres)
THRESHOLD_OVER_MEDIAN = 2.0
MAX_SCALE_SAMPLES = 200_000  # values used to pick the colour scale's top (99th percentile)


@dataclass
class RenderConfig:
    out: Path
    video: Path | None = None
    variance: bool = False
    side_by_side: bool = False
    compare: Path | None = None  # the per-frame estimate for the left panel of --side-by-side
    skeleton: bool = False
    frame: int | None = None  # write this output frame as a PNG instead of a video
    backend: str = "auto"  # auto | gl | painter
    hand_model: str | None = None  # default: the artifact's meta.hand_model, else "open"
    mano_dir: Path | None = None
    threshold_mm: float | None = None
    size: tuple[int, int] = (640, 480)  # canvas without --video
    opacity: float | None = None  # default VIDEO_OPACITY over video, 1 on the neutral background


@dataclass
class RenderResult:
    out: Path
    frames: int
    width: int
    height: int
    fps: float
    backend: str
    seconds: float
    draw_ms: float  # mean time to draw one output frame (no decode, no encode)
    flagged: int | None = None  # --variance: frames above the threshold
    extrapolated: int | None = None  # --variance: frames whose error bars extrapolate (beyond_calibration)
    threshold_mm: float | None = None
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- variance
@dataclass
class VarianceView:
    """Variance shown as standard deviation in millimetres: colours, colour scale and flagged frames."""

    artifact: Artifact
    vmax: float  # top of the colour scale, mm
    threshold: float  # mm
    frame_scores: np.ndarray  # (T,) RMS standard deviation over the frame's joints (or vertices), mm; NaN if none
    lut: np.ndarray
    spreads: dict[int, np.ndarray] = field(default_factory=dict)  # track -> (V, 21) when only var_joints
    depth_scores: np.ndarray | None = None  # (T,) RMS sd of the hands' position along the camera ray, mm
    extrapolated: np.ndarray | None = None  # (T,) bool: a valid track's error bars extrapolate (beyond_calibration)

    def _shown(self, variance: np.ndarray, h: int, t: int) -> np.ndarray:
        """The coloured variance: with var_root, what is left beyond the whole hand (`_articulation`)."""
        var_root = self.artifact.var_root
        return variance if var_root is None else _articulation(variance, var_root[h, t])

    def vertex_colours(self, h: int, t: int) -> np.ndarray:
        if self.artifact.var_vertices is not None:
            variance = self.artifact.var_vertices[h, t]
        else:
            variance = self.spreads[h] @ self.artifact.var_joints[h, t]
        return map_values(_std_mm(self._shown(variance, h, t)), 0.0, self.vmax, self.lut)

    def joint_colours(self, h: int, t: int) -> np.ndarray | None:
        if self.artifact.var_joints is None:
            return None
        return map_values(_std_mm(self._shown(self.artifact.var_joints[h, t], h, t)), 0.0, self.vmax, self.lut) * 255


def _articulation(variance: np.ndarray, var_root: np.ndarray) -> np.ndarray:
    """(..., N) joint or vertex variances, (..., 3, 3) var_root -> (..., N) m²: each one's share beyond the
    whole hand, which is the same for all of them and, when the hand's distance is unsure, would paint the
    whole mesh one colour (the caption gives the whole hand's depth instead)."""
    from handcli.variance.calibration import articulation_variance

    return articulation_variance(variance, var_root)


def _std_mm(variance: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(np.asarray(variance, np.float64), 0.0)) * 1000.0


def variance_view(artifact: Artifact, threshold_mm: float | None) -> VarianceView:
    """Colour scale and per-frame scores from var_joints / var_vertices; BadInput if there is neither."""
    if artifact.var_joints is None and artifact.var_vertices is None:
        raise BadInput("--variance: the input has no variance maps (var_joints / var_vertices); "
                       "run `handcli variance` on it first")
    per_frame = artifact.var_joints if artifact.var_joints is not None else artifact.var_vertices  # (H, T, N)
    valid = artifact.valid
    seen = valid.any(0)
    scores = np.full(artifact.num_frames, np.nan)
    if seen.any():
        masked = np.where(valid[:, seen, None], per_frame[:, seen], np.nan)  # (H, T_seen, N)
        scores[seen] = np.sqrt(np.nanmean(masked, axis=(0, 2))) * 1000
    if threshold_mm is None:
        median = float(np.nanmedian(scores)) if seen.any() else 0.0
        threshold_mm = THRESHOLD_OVER_MEDIAN * median if median > 0 else float("inf")
    coloured = artifact.var_vertices if artifact.var_vertices is not None else artifact.var_joints
    step = max(1, int(np.ceil(valid.sum() * coloured.shape[-1] / MAX_SCALE_SAMPLES)))
    shown = coloured[valid][::step]
    if artifact.var_root is not None:
        shown = _articulation(shown, artifact.var_root[valid][::step])
    values = _std_mm(shown).ravel()
    values = values[np.isfinite(values)]
    vmax = float(np.percentile(values, 99)) if values.size else 1.0
    if np.isfinite(threshold_mm) and artifact.var_root is None:  # the threshold is on the bar only when it shows scores
        vmax = max(vmax, 1.1 * threshold_mm)
    beyond = artifact.beyond_calibration
    extrapolated = (beyond & valid).any(0) if beyond is not None else np.zeros(artifact.num_frames, bool)
    return VarianceView(artifact, max(vmax, 1e-3), float(threshold_mm), scores, colour_lut("viridis"),
                        depth_scores=ray_sd_mm(artifact), extrapolated=extrapolated)


def ray_sd_mm(artifact: Artifact) -> np.ndarray | None:
    """(T,) RMS over the valid tracks of the whole-hand standard deviation along the camera ray (var_root),
    mm; NaN where no track is valid; None without var_root."""
    if artifact.var_root is None:
        return None
    from handcli.variance.estimate import along_ray_variance

    along = np.where(artifact.valid, along_ray_variance(artifact.keypoints3d, artifact.var_root), np.nan)
    out = np.full(artifact.num_frames, np.nan)
    seen = artifact.valid.any(0)
    out[seen] = np.sqrt(np.nanmean(along[:, seen], 0)) * 1000
    return out


# ------------------------------------------------------------------------------------------------ panels
@dataclass
class PanelSource:
    """What one panel draws: an artifact's meshes (if it has hand-model parameters), its skeleton, or the
    detector's 2D keypoints."""

    artifact: Artifact
    meshes: object | None  # HandMeshes
    skeleton: bool
    colours: np.ndarray  # (H, 3) per-track RGB in [0, 1]
    variance: VarianceView | None = None
    keypoints2d_only: bool = False

    def draw(self, image: np.ndarray, t: int, renderer, K: np.ndarray, offset: np.ndarray,
             opacity: float) -> None:
        """Draw artifact frame t onto image (H, W, 3) in place. offset (3,) shifts the hands (follow camera)."""
        art = self.artifact
        if self.keypoints2d_only:
            shown = art.observed if art.observed is not None else art.valid
            for h in np.flatnonzero(shown[:, t]):
                draw_skeleton(image, art.keypoints2d[h, t, :, :2], _rgb255(self.colours[h]))
            return
        if self.meshes is not None:
            meshes = []
            for h, vertices in self.meshes.frame(t).items():
                colours = self.variance.vertex_colours(h, t) if self.variance else self.colours[h]
                meshes.append(Mesh(vertices + offset.astype(np.float32), self.meshes.faces[h], colours,
                                   outward=True))
            blend_layer(image, renderer.render(meshes, K), opacity)
        for h in np.flatnonzero(art.valid[:, t]):
            pixels, depth = project(art.keypoints3d[h, t] + offset, K)
            if self.skeleton:
                joint_colours = self.variance.joint_colours(h, t) if self.variance else None
                draw_skeleton(image, pixels, _rgb255(self.colours[h]), joint_colours)
            if depth[0] > 0 and np.isfinite(pixels[0]).all():
                label = ("R" if art.is_right[h] else "L") + (str(int(art.track_id[h])) if art.track_id is not None else "")
                if art.observed is not None and not art.observed[h, t]:
                    label += " infilled"  # refine filled this frame in; the detector did not see the hand
                x, y = (int(round(c)) for c in pixels[0])
                if -50 < x < image.shape[1] + 50 and -50 < y < image.shape[0] + 50:
                    draw_text(image, label, (x + 8, y + 24), _rgb255(self.colours[h]))


def _rgb255(colour: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(round(c * 255)) for c in colour)


def _load_meshes(artifact: Artifact, config: RenderConfig, notes: list[str], what: str):
    if not artifact.has_params:
        notes.append(f"{what} has no hand-model parameters (global_orient, hand_pose, transl, betas): "
                     "drawing its 21-keypoint skeleton only")
        return None
    from handcli.handmodels import load_hand_model
    from handcli.render.hands import HandMeshes

    name = config.hand_model or artifact.meta.get("hand_model") or "open"
    return HandMeshes(load_hand_model(name, config.mano_dir), artifact)


# -------------------------------------------------------------------------------------------- frame plan
def frame_map(artifact: Artifact, num_video_frames: int) -> np.ndarray:
    """(N,) artifact frame drawn on each video frame, -1 for none.

    Rule: with `frame_index` (written by detect), artifact frame t goes on video frame frame_index[t] (strictly
    increasing, inside the video); other video frames are written unchanged. Without it, the artifact must
    have exactly one frame per video frame.
    """
    T = artifact.num_frames
    if artifact.frame_index is None:
        if T != num_video_frames:
            raise BadInput(f"frame count mismatch: the input has {T} frames but the video has {num_video_frames} "
                           "(and no frame_index to say which video frames they are)")
        return np.arange(T)
    index = artifact.frame_index
    if (np.diff(index) <= 0).any() or index[0] < 0:
        raise BadInput("frame_index: must be non-negative and strictly increasing")
    if index[-1] >= num_video_frames:
        raise BadInput(f"frame_index: refers to video frame {int(index[-1])} but the video has "
                       f"{num_video_frames} frames (is it the video the input was made from?)")
    mapping = np.full(num_video_frames, -1, np.int64)
    mapping[index] = np.arange(T)
    return mapping


def _check_compare(artifact: Artifact, other: Artifact, path: Path) -> None:
    if other.num_frames != artifact.num_frames:
        raise BadInput(f"--compare {path}: has {other.num_frames} frames, the input has {artifact.num_frames}")
    if (other.frame_index is not None and artifact.frame_index is not None
            and not np.array_equal(other.frame_index, artifact.frame_index)):
        raise BadInput(f"--compare {path}: its frame_index differs from the input's")


def check_render_output(config: RenderConfig) -> None:
    """One-line BadInput for an output path or option the render cannot use (checked before any work)."""
    out = Path(config.out)
    if config.frame is not None:
        if out.suffix.lower() != ".png":
            raise BadInput(f"{out}: --frame writes a still image; the output must end in .png")
    elif out.suffix.lower() not in VIDEO_SUFFIXES:
        raise BadInput(f"{out}: the output must be a video ({', '.join(VIDEO_SUFFIXES)}) "
                       "or, with --frame N, a .png")
    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise BadInput(f"{out}: output directory {directory} does not exist")
    if config.video is not None and Path(config.video).exists() and out.resolve() == Path(config.video).resolve():
        raise BadInput(f"{out}: is the --video being drawn over; write the overlay to another file")
    if config.opacity is not None and not 0 < config.opacity <= 1:
        raise BadInput(f"--opacity must be in (0, 1], got {config.opacity}")
    if config.threshold_mm is not None and not config.threshold_mm > 0:
        raise BadInput(f"--threshold must be a positive number of millimetres, got {config.threshold_mm}")
    width, height = config.size
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise BadInput(f"--size {width}x{height}: each side must be 16 to 8192 pixels")


def _check_frame_option(frame: int | None, num_frames: int) -> None:
    if frame is not None and not 0 <= frame < num_frames:
        raise BadInput(f"--frame {frame} is out of range: the output has frames 0 to {num_frames - 1}")


# ----------------------------------------------------------------------------------------------- running
def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); BadInput otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise BadInput(f"--size must look like 640x480, got '{text}'")
    return int(parts[0]), int(parts[1])


def render_file(input: Path, config: RenderConfig, notify: Callable[[str], None] = lambda message: None
                ) -> RenderResult:
    """Render `input` as configured; returns what was written. Raises BadInput before writing anything."""
    started = time.perf_counter()
    check_render_output(config)
    artifact, _ = load_input(input)
    notes: list[str] = []

    if config.video is not None:
        from handcli.video import count_frames, probe_video

        # a frame folder states no rate: it plays at the rate its artifact was made at (`--fps` of detect/run)
        info = probe_video(config.video, artifact.fps if Path(config.video).is_dir() else None)
        if artifact.K is None:
            raise BadInput("K: the input has no camera intrinsics, needed to draw over --video "
                           "(artifacts from `handcli detect` carry them)")
        if artifact.image_size is not None and tuple(int(x) for x in artifact.image_size) != (info.width, info.height):
            raise BadInput(f"image_size: the input was made from a {int(artifact.image_size[0])}x"
                           f"{int(artifact.image_size[1])} video, {config.video} is {info.width}x{info.height}")
        # the video detect read, wherever detect is in the artifact's history (a later stage's own `inputs` is
        # the artifact file it read, not the video)
        detected = (stage_meta(artifact.meta, "detect") or {}).get("inputs")
        source = detected.get("sha256") if isinstance(detected, dict) and "video" in detected else None
        if source and not Path(config.video).is_dir():
            from handcli.video import video_digest

            if video_digest(config.video) != source:
                notes.append(f"--video {config.video} is not the video this artifact was made from (its sha256 "
                             f"differs from the recorded {source[:12]}…); drawing over it anyway")
        num_video_frames = count_frames(info)
        if num_video_frames == 0:
            raise BadInput(f"{config.video}: ffmpeg cannot count its frames (no video stream?)")
        mapping = frame_map(artifact, num_video_frames)
        width, height, fps, K = info.width, info.height, info.fps, np.asarray(artifact.K, np.float64)
        offsets = np.zeros((artifact.num_frames, 3))
    else:
        width, height = config.size
        fps, K = artifact.fps, default_intrinsics(width, height)
        mapping = np.arange(artifact.num_frames)
        offsets = follow_offsets(artifact.keypoints3d, artifact.valid, fps, K, width, height)
    _check_frame_option(config.frame, len(mapping))

    variance = variance_view(artifact, config.threshold_mm) if config.variance else None
    meshes = _load_meshes(artifact, config, notes, "the input")
    if variance is not None and meshes is not None:
        if artifact.var_vertices is None:
            variance.spreads = {h: meshes.joint_spread(h) for h in range(artifact.num_tracks)}
        elif artifact.var_vertices.shape[-1] != meshes.num_vertices:
            raise BadInput(f"var_vertices: {artifact.var_vertices.shape[-1]} vertices per hand, but hand model "
                           f"'{meshes.model.name}' has {meshes.num_vertices} (give the --hand-model it was made with)")
    colours = track_colours(artifact.is_right)
    main = PanelSource(artifact, meshes, config.skeleton or meshes is None, colours, variance)
    left = None
    if config.side_by_side:
        left = _compare_source(artifact, config, notes, colours)
    elif config.compare is not None:
        raise BadInput("--compare is only used with --side-by-side")
    for note in notes:
        notify(note)

    left_title = ("per-frame: " + (_stage_title(left.artifact) if not left.keypoints2d_only else "detector 2D keypoints")
                  if left is not None else "")
    renderer = make_renderer(width, height, config.backend, notify)
    opacity = config.opacity or (VIDEO_OPACITY if config.video is not None else 1.0)
    background = _background(width, height) if config.video is None else None
    draw_seconds = 0.0

    def compose(frame: np.ndarray | None, t: int) -> np.ndarray:
        nonlocal draw_seconds
        tic = time.perf_counter()
        image = frame.copy() if frame is not None else background.copy()
        panel_left = image.copy() if left is not None else None
        if t >= 0:
            main.draw(image, t, renderer, K, offsets[t], opacity)
            if variance is not None:
                _annotate_variance(image, variance, t)
            if left is not None:
                left.draw(panel_left, t, renderer, K, offsets[t], opacity)
        if left is not None:
            image = side_by_side(panel_left, image, left_title, _stage_title(artifact))
        draw_seconds += time.perf_counter() - tic
        return image

    frames = _source_frames(config.video, mapping, config.frame)
    written = 0
    try:
        with atomic_path(config.out) as tmp:
            if config.frame is not None:
                for index, frame in frames:
                    if index == config.frame:
                        still = compose(frame, int(mapping[index]))
                        if not cv2.imwrite(str(tmp), np.ascontiguousarray(still[..., ::-1]),
                                           [cv2.IMWRITE_PNG_COMPRESSION, 6]):
                            raise StageFailed(f"{config.out}: could not write the PNG")
                        written = 1
                        break
                if written == 0:
                    raise BadInput(f"--frame {config.frame}: the video ended before that frame")
            else:
                out_width = width * (2 if left is not None else 1)
                with VideoWriter(tmp, out_width, height, fps) as writer:
                    for index, frame in frames:
                        writer.write(compose(frame, int(mapping[index])))
                    written = writer.frames
                if written != len(mapping):
                    raise BadInput(f"frame count mismatch: {config.video} decoded to {written} frames, "
                                   f"expected {len(mapping)}; nothing was written")
    finally:
        frames.close()  # stops the decoder early after a still
        renderer.release()
    result = RenderResult(Path(config.out), written, width * (2 if left is not None else 1), height, fps,
                          renderer.name, time.perf_counter() - started, 1000 * draw_seconds / max(written, 1),
                          notes=notes)
    if variance is not None:
        result.threshold_mm = variance.threshold
        result.flagged = int(np.nansum(variance.frame_scores > variance.threshold))
        result.extrapolated = int(variance.extrapolated.sum())
    return result


def _compare_source(artifact: Artifact, config: RenderConfig, notes: list[str], colours: np.ndarray) -> PanelSource:
    """Left panel of --side-by-side: --compare FILE, else the detector's 2D keypoints in the input."""
    if config.compare is not None:
        other, _ = load_input(config.compare)
        _check_compare(artifact, other, config.compare)
        if config.video is not None and other.K is not None and not np.allclose(other.K, artifact.K, rtol=1e-4):
            notes.append(f"--compare {config.compare}: its K differs from the input's; drawing both with the input's")
        meshes = _load_meshes(other, config, notes, f"--compare {config.compare}")
        return PanelSource(other, meshes, config.skeleton or meshes is None, track_colours(other.is_right))
    if config.video is None or artifact.keypoints2d is None:
        raise BadInput("--side-by-side needs the per-frame estimate: give --compare ESTIMATE.npz "
                       "(or --video with an input that carries the detector's keypoints2d)")
    notes.append("--side-by-side: left panel shows the detector's 2D keypoints (give --compare ESTIMATE.npz "
                 "for the per-frame fit)")
    return PanelSource(artifact, None, True, colours, keypoints2d_only=True)


def _stage_title(artifact: Artifact) -> str:
    """Panel title from the stage that wrote the artifact ('refined', 'estimate', ...)."""
    stage = str(artifact.meta.get("stage") or "input")
    return {"refine": "refined", "variance": "refined"}.get(stage, stage)


def _annotate_variance(image: np.ndarray, variance: VarianceView, t: int) -> None:
    score = variance.frame_scores[t]
    if variance.artifact.var_root is None:
        draw_colour_bar(image, 0.0, variance.vmax, variance.lut, "sd mm",
                        variance.threshold if np.isfinite(variance.threshold) else None)
    else:  # the colours are the articulation's sd; the frame's score and depth sd are in the caption
        draw_colour_bar(image, 0.0, variance.vmax, variance.lut, "joint sd mm", None)
    if not np.isfinite(score):
        return
    scale = max(1.0, image.shape[0] / 720)
    depth = "" if variance.depth_scores is None or not np.isfinite(variance.depth_scores[t]) else \
        f", depth sd {variance.depth_scores[t]:.0f} mm"
    # beyond the calibration the sd is the model's extrapolation, and the estimate itself may have failed
    extrapolated = ", sd extrapolated" if variance.extrapolated is not None and variance.extrapolated[t] else ""
    if score > variance.threshold:
        highlight(image, f"uncertain: sd {score:.1f} mm > {variance.threshold:.1f} mm{depth}{extrapolated}")
    elif extrapolated:
        highlight(image, f"sd {score:.1f} mm{depth}{extrapolated}")
    else:
        draw_text(image, f"sd {score:.1f} mm{depth}", (12, image.shape[0] - int(16 * scale)))


def _background(width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 vertical grey gradient (neutral: neither track colour is close to it)."""
    ramp = np.linspace(0, 1, height)[:, None, None]
    colours = (1 - ramp) * np.array(BACKGROUND_TOP) + ramp * np.array(BACKGROUND_BOTTOM)
    return np.broadcast_to(colours, (height, width, 3)).astype(np.uint8).copy()


def _source_frames(video: Path | None, mapping: np.ndarray, still: int | None):
    """Yield (output frame index, RGB frame or None) streamed from the video, or None frames without one."""
    if video is None:
        indices = range(len(mapping)) if still is None else [still]
        for index in indices:
            yield index, None
        return
    from handcli.video import iter_frames, probe_video

    for index, frame in enumerate(iter_frames(probe_video(video))):
        if index >= len(mapping):
            raise BadInput(f"frame count mismatch: {video} decodes to more than the {len(mapping)} frames "
                           "it was counted at; nothing was written")
        yield index, frame
        if still is not None and index >= still:
            return
