"""Refiner: the inference API over whole tracks (windows, resampling to the model rate, sampling, blending)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from handcli.diffusion.anchoring import AnchorConfig, anchor_track, follow_image, track_depth_axis
from handcli.diffusion.conditions import build_conditions, project_bones, track_bone_lengths
from handcli.diffusion.model import RefinerBackbone
from handcli.diffusion.sampling import sample
from handcli.diffusion.schedule import ShiftSchedule
from handcli.diffusion.weights import load_weights
from handcli.diffusion.windows import blend, cut, plan_windows
from handcli.errors import BadInput

MODEL_FPS = 30.0  # the synthetic training motion's frame rate; other rates are resampled to it


@dataclass
class RefineResult:
    keypoints3d: np.ndarray  # (H, T, 21, 3) float32, finite everywhere (edge-held outside each observed span)
    motion_state: np.ndarray  # (H, T) int64 in 0..3 (reaching, stable grasp, manipulation, releasing)
    samples: np.ndarray | None  # (S, H, T, 21, 3) float32 stochastic samples when samples > 1, else None


@dataclass
class _Track:
    """One track's observed span, on the model's time grid."""

    index: int
    first: int
    last: int
    times: np.ndarray  # (L,) seconds of the model-grid frames, relative to the span start
    keypoints3d: np.ndarray  # (L, 21, 3) NaN where not observed
    valid: np.ndarray  # (L,)
    keypoints2d: np.ndarray | None  # (L, 21, 3)


def _resample(values: np.ndarray, valid: np.ndarray, source_times: np.ndarray, target_times: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation in time. values (L, ...) NaN where invalid; a target frame is valid when both
    source frames around it are valid. Returns (values (M, ...), valid (M,))."""
    position = np.interp(target_times, source_times, np.arange(len(source_times)))
    lower = np.floor(position).astype(int)
    upper = np.minimum(lower + 1, len(source_times) - 1)
    weight = (position - lower).reshape((-1,) + (1,) * (values.ndim - 1))
    out = values[lower] * (1 - weight) + values[upper] * weight
    exact = weight.reshape(-1) < 1e-6
    ok = valid[lower] & (valid[upper] | exact)
    out[~ok] = np.nan
    return out, ok


def to_frames(values: np.ndarray, model_times: np.ndarray, frame_times: np.ndarray) -> np.ndarray:
    """Linear interpolation from the model's time grid to the input's frames. (L, 21, 3) -> (M, 21, 3)."""
    if len(model_times) == len(frame_times) and np.allclose(model_times, frame_times):
        return values
    flat = values.reshape(len(values), -1)
    out = np.stack([np.interp(frame_times, model_times, flat[:, k]) for k in range(flat.shape[1])], 1)
    return out.reshape(len(frame_times), *values.shape[1:])


class Refiner:
    """Physics-aware conditional shift-diffusion refiner over keypoint tracks."""

    def __init__(self, backbone: RefinerBackbone, schedule: ShiftSchedule, device: str | torch.device = "cpu",
                 stride: int | None = None, batch_windows: int = 256, info: dict | None = None, threads: int = 1,
                 direct: bool | None = None, project_output: bool | None = None):
        self.backbone = backbone.eval()
        self.schedule = schedule
        self.device = torch.device(device)
        self.window = backbone.config.window
        self.stride = stride or self.window // 2
        self.batch_windows = batch_windows
        self.info = info or {}
        # one intra-op thread: the batched windows are small, and on a busy 2-core machine more threads
        # oversubscribe the cores (measured 0.7 s vs 12 s for 1,000 frames under load)
        self.threads = threads
        # samples = 1: the mean path through all N steps, or (direct) the first clean estimate f(y, y, N);
        # the weights file records which one measured better on the tuning split
        self.direct = bool(self.info.get("direct", True)) if direct is None else direct
        # re-impose the track's bone lengths on the refined keypoints (constant bones along a track)
        self.project_output = bool(self.info.get("project_output", True)) if project_output is None \
            else project_output

    def refine(self, keypoints3d: np.ndarray, valid: np.ndarray, is_right: np.ndarray, fps: float,
               keypoints2d: np.ndarray | None = None, K: np.ndarray | None = None, *, seed: int = 0,
               samples: int = 1, anchor: AnchorConfig | None = AnchorConfig()) -> RefineResult:
        """Refine H tracks of T frames.

        keypoints3d: (H, T, 21, 3) metres (NaN allowed where not valid); valid: (H, T) bool; is_right: (H,);
        keypoints2d: (H, T, 21, 3) [u, v, confidence] pixels or None; K: (3, 3) or None (2D unused then).
        samples = 1 follows the mean path of the reverse chain (PAD-Hand eq. 16; deterministic); samples > 1
        draws that many stochastic reverse chains (deterministic for a given seed on CPU) and returns their mean.
        anchor: depth-aware anchoring of each sample's whole-hand position (handcli.diffusion.anchoring; with K
        the depth axis is the camera ray, and then each joint also follows the input's image position,
        `follow_image`); None keeps the diffusion model's positions.
        """
        keypoints3d = np.asarray(keypoints3d, np.float64)
        valid = np.asarray(valid, bool)
        is_right = np.asarray(is_right, bool).reshape(-1)
        num_tracks, num_frames = valid.shape
        if keypoints3d.shape != (num_tracks, num_frames, 21, 3) or is_right.shape != (num_tracks,):
            raise BadInput(f"refine: expected keypoints3d (H,T,21,3), valid (H,T), is_right (H,); got "
                           f"{keypoints3d.shape}, {valid.shape}, {is_right.shape}")
        if samples < 1:
            raise BadInput(f"--samples must be >= 1, got {samples}")
        if not fps or not np.isfinite(fps) or fps <= 0:
            raise BadInput(f"fps must be positive, got {fps}")
        use2d = keypoints2d is not None and K is not None
        tracks = [self.prepare_track(h, keypoints3d[h], valid[h], keypoints2d[h] if use2d else None, fps)
                  for h in range(num_tracks)]
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            refined, probabilities = self._run(tracks, is_right, np.asarray(K, np.float64) if use2d else None,
                                               seed, samples)
        finally:
            torch.set_num_threads(previous_threads)
        output = np.empty((samples, num_tracks, num_frames, 21, 3), np.float32)
        states = np.empty((num_tracks, num_frames), np.int64)
        frame_times = np.arange(num_frames) / fps
        for track, track_samples, track_probs in zip(tracks, refined, probabilities):
            span_times = frame_times[track.first:track.last + 1] - frame_times[track.first]
            on_span = np.stack([to_frames(values, track.times, span_times) for values in track_samples]
                               ).astype(np.float64)
            if anchor is not None:  # one depth axis per track (from the samples' mean), each sample anchored
                span = slice(track.first, track.last + 1)
                observed, seen = keypoints3d[track.index, span], valid[track.index, span]
                axis = track_depth_axis(on_span.mean(0), observed, seen, fps, anchor, camera=K is not None)
                if axis is not None:
                    on_span = np.stack([anchor_track(values, observed, seen, fps, anchor, axis) for values in on_span])
                if K is not None and anchor.image_seconds > 0:
                    on_span = np.stack([follow_image(values, observed, seen, np.asarray(K, np.float64), fps,
                                                     anchor.image_seconds)
                                        for values in on_span])
            for s, values in enumerate(on_span):
                output[s, track.index, track.first:track.last + 1] = values
                output[s, track.index, :track.first] = values[0]
                output[s, track.index, track.last + 1:] = values[-1]
            nearest = np.clip(np.rint(span_times * MODEL_FPS).astype(int), 0, len(track.times) - 1)
            span_states = track_probs.argmax(-1)[nearest]
            states[track.index, track.first:track.last + 1] = span_states
            states[track.index, :track.first] = span_states[0]
            states[track.index, track.last + 1:] = span_states[-1]
        mean = output.mean(0) if samples > 1 else output[0]
        return RefineResult(mean.astype(np.float32), states, output if samples > 1 else None)

    def prepare_track(self, index: int, keypoints3d: np.ndarray, valid: np.ndarray,
                      keypoints2d: np.ndarray | None, fps: float) -> _Track:
        """Crop to the observed span (invalid or non-finite frames are unobserved) and resample to MODEL_FPS."""
        valid = valid & np.isfinite(keypoints3d).all((1, 2))
        seen = np.flatnonzero(valid)
        if seen.size == 0:
            raise BadInput(f"track {index} has no valid frame")
        first, last = int(seen[0]), int(seen[-1])
        span3d = np.where(valid[first:last + 1, None, None], keypoints3d[first:last + 1], np.nan)
        span_valid = valid[first:last + 1]
        span2d = None if keypoints2d is None else np.asarray(keypoints2d[first:last + 1], np.float64)
        source_times = np.arange(last - first + 1) / fps
        if abs(fps - MODEL_FPS) < 1e-3:
            return _Track(index, first, last, source_times, span3d, span_valid, span2d)
        duration = source_times[-1]
        target_times = np.arange(int(np.floor(duration * MODEL_FPS + 1e-6)) + 1) / MODEL_FPS
        resampled3d, resampled_valid = _resample(span3d, span_valid, source_times, target_times)
        if not resampled_valid.any():  # a single observation between frames: keep the nearest one
            nearest = int(np.argmin(np.abs(target_times[:, None] - source_times[span_valid][None]).min(1)))
            resampled_valid[nearest] = True
            resampled3d[nearest] = span3d[span_valid][0]
        resampled2d = None
        if span2d is not None:
            finite2d = np.isfinite(span2d).all((1, 2))
            resampled2d, _ = _resample(span2d, finite2d, source_times, target_times)
        return _Track(index, first, last, target_times, resampled3d, resampled_valid, resampled2d)

    @staticmethod
    def track_bones(tracks: list[_Track]) -> np.ndarray:
        """(n, 20) metres: each track's bone lengths over all its observations (the track-level condition)."""
        return np.stack([track_bone_lengths(torch.as_tensor(t.keypoints3d[None], dtype=torch.float32),
                                            torch.as_tensor(t.valid[None]))[0].numpy() for t in tracks])

    @torch.inference_mode()
    def _run(self, tracks: list[_Track], is_right: np.ndarray, K: np.ndarray | None, seed: int, samples: int
             ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Refine every window of every track. Returns per track (S, L, 21, 3) metres and (L, states) probs."""
        window = self.window
        plans = [plan_windows(len(track.times), window, self.stride) for track in tracks]
        owners = np.concatenate([np.full(len(p), i) for i, p in enumerate(plans)])
        windows3d = np.concatenate([cut(t.keypoints3d, p, window) for t, p in zip(tracks, plans)])
        windows_valid = np.concatenate([cut(t.valid, p, window, fill=False) for t, p in zip(tracks, plans)])
        windows2d = None
        if K is not None:
            windows2d = np.concatenate([cut(t.keypoints2d, p, window) for t, p in zip(tracks, plans)])
        windows_right = is_right[[tracks[i].index for i in owners]]
        windows_bones = self.track_bones(tracks)[owners]
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        results = np.empty((samples,) + windows3d.shape, np.float32)
        logits_all = None
        for begin in range(0, len(owners), self.batch_windows):
            chunk = slice(begin, begin + self.batch_windows)
            tensor = lambda a, dtype=torch.float32: torch.as_tensor(a, dtype=dtype, device=self.device)
            conditions = build_conditions(
                tensor(windows3d[chunk]), tensor(windows_valid[chunk], torch.bool),
                tensor(windows_right[chunk], torch.bool),
                None if windows2d is None else tensor(windows2d[chunk]), None,
                None if K is None else tensor(K).expand(len(windows_valid[chunk]), 3, 3),
                tensor(windows_bones[chunk]))
            for s in range(samples):
                clean, logits = sample(self.backbone, self.schedule, conditions, generator, stochastic=samples > 1,
                                       direct=self.direct and samples == 1)
                if self.project_output:
                    clean = project_bones(clean, conditions.track_bones)
                results[s, chunk] = conditions.to_metres(clean).cpu().numpy()
                probs = torch.softmax(logits, -1).cpu().numpy()
                if logits_all is None:
                    logits_all = np.zeros((len(owners),) + probs.shape[1:], np.float64)
                logits_all[chunk] += probs / samples
        refined, probabilities = [], []
        for i, (track, plan) in enumerate(zip(tracks, plans)):
            mine = owners == i
            length = len(track.times)
            refined.append(np.stack([blend(results[s, mine], plan, length) for s in range(samples)]))
            probabilities.append(blend(logits_all[mine], plan, length))
        return refined, probabilities


def load_refiner(weights_path: str | Path | None = None, device: str | torch.device = "cpu") -> Refiner:
    """Load the refiner; weights default to <repo>/weights/refiner.pt."""
    backbone, schedule, info = load_weights(weights_path, device)
    return Refiner(backbone, schedule, device=device, info=info)
