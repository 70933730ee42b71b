"""Algorithm 1 over whole tracks: the refiner's windows, conditions and frame-rate handling, with
`propagate` in place of plain sampling; windows are blended back with the refiner's weights.

Overlapping windows blend their variances with the same weights as their means (a convex combination: the
variance of a mixture of the windows' predictions, ignoring the spread between their means).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from handcli.diffusion.conditions import POSITION_SCALE, build_conditions
from handcli.diffusion.refiner import Refiner, to_frames
from handcli.diffusion.windows import blend, cut, plan_windows
from handcli.variance.posterior import VariancePosterior
from handcli.variance.propagate import propagate


@dataclass
class SequenceVariance:
    """mean: (H, T, 21, 3) E[x^0] in metres (camera frame); variance: (H, T, 21, 3) Var(x^0) per coordinate, m².
    Frames outside a track's observed span hold the values of its first / last frame (as refine does)."""

    mean: np.ndarray
    variance: np.ndarray


def sequence_variance(refiner: Refiner, posterior: VariancePosterior, keypoints3d: np.ndarray, valid: np.ndarray,
                      is_right: np.ndarray, fps: float, keypoints2d: np.ndarray | None = None,
                      K: np.ndarray | None = None, *, samples: int = 20, seed: int = 0,
                      max_rows: int = 640, direct: bool = True) -> SequenceVariance:
    """E[x^0] and Var(x^0) of H tracks of T frames (inputs as `Refiner.refine`).

    keypoints3d: (H, T, 21, 3) metres, NaN allowed where not valid; valid: (H, T); is_right: (H,);
    keypoints2d: (H, T, 21, 3) pixels + confidence or None; K: (3, 3) or None. max_rows bounds the windows x
    samples per backbone batch. The variance describes what refine returns with samples = 1: the first clean
    estimate when the refiner is `direct`, else the whole reverse chain's x^0 (direct=False: always the chain).
    """
    keypoints3d = np.asarray(keypoints3d, np.float64)
    valid = np.asarray(valid, bool)
    num_tracks, num_frames = valid.shape
    use2d = keypoints2d is not None and K is not None
    # the refiner's own span cropping and resampling to its frame rate
    tracks = [refiner.prepare_track(h, keypoints3d[h], valid[h], keypoints2d[h] if use2d else None, fps)
              for h in range(num_tracks)]
    window = refiner.window
    plans = [plan_windows(len(track.times), window, refiner.stride) for track in tracks]
    owners = np.concatenate([np.full(len(plan), i) for i, plan in enumerate(plans)])
    windows3d = np.concatenate([cut(t.keypoints3d, p, window) for t, p in zip(tracks, plans)])
    windows_valid = np.concatenate([cut(t.valid, p, window, fill=False) for t, p in zip(tracks, plans)])
    windows2d = (np.concatenate([cut(t.keypoints2d, p, window) for t, p in zip(tracks, plans)])
                 if use2d else None)
    windows_right = np.asarray(is_right, bool)[[tracks[i].index for i in owners]]
    bones = refiner.track_bones(tracks)[owners]
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    means = np.empty(windows3d.shape, np.float32)
    variances = np.empty(windows3d.shape, np.float32)
    per_batch = max(1, max_rows // samples)
    tensor = lambda array, dtype=torch.float32: torch.as_tensor(array, dtype=dtype, device=refiner.device)
    for begin in range(0, len(owners), per_batch):
        rows = slice(begin, begin + per_batch)
        conditions = build_conditions(
            tensor(windows3d[rows]), tensor(windows_valid[rows], torch.bool), tensor(windows_right[rows], torch.bool),
            None if windows2d is None else tensor(windows2d[rows]), None,
            None if not use2d else tensor(K).expand(len(windows_valid[rows]), 3, 3), tensor(bones[rows]))
        result = propagate(refiner.backbone, refiner.schedule, posterior, conditions, samples, generator,
                           chunk=max_rows, direct=refiner.direct and direct)
        means[rows] = conditions.to_metres(result.mean).cpu().numpy()
        variances[rows] = (result.variance * POSITION_SCALE ** 2).cpu().numpy()  # mirroring keeps variances
    mean_out = np.empty((num_tracks, num_frames, 21, 3), np.float32)
    variance_out = np.empty((num_tracks, num_frames, 21, 3), np.float32)
    frame_times = np.arange(num_frames) / fps
    for i, (track, plan) in enumerate(zip(tracks, plans)):
        mine = owners == i
        length = len(track.times)
        span_times = frame_times[track.first:track.last + 1] - frame_times[track.first]
        for values, out in ((blend(means[mine], plan, length), mean_out),
                            (blend(variances[mine], plan, length), variance_out)):
            on_span = to_frames(values, track.times, span_times)
            out[track.index, track.first:track.last + 1] = on_span
            out[track.index, :track.first] = on_span[0]
            out[track.index, track.last + 1:] = on_span[-1]
    return SequenceVariance(mean_out, np.maximum(variance_out, 0.0))


@dataclass
class InputGain:
    """How much of the input's error the refiner passes on, per track: root: (H,) the whole hand's, articulation:
    (H, 21) each joint's around it; output variance / input variance over the track's observed frames."""

    root: np.ndarray
    articulation: np.ndarray


def input_gain(refiner: Refiner, keypoints3d: np.ndarray, valid: np.ndarray, is_right: np.ndarray, fps: float,
               draw_errors, draws: int, keypoints2d: np.ndarray | None = None, K: np.ndarray | None = None,
               anchor=None) -> InputGain:
    """The per-frame estimate's uncertainty carried through the refiner by Monte Carlo (the input's γ², which
    PAD-Hand's Algorithm 1 takes as given): `draws` inputs y + δ_s, δ_s = draw_errors() (H, T, 21, 3) metres,
    each refined along the mean path exactly as `handcli refine` does (anchor: its AnchorConfig or None).
    Slow whole-hand errors, which the refiner cannot tell from motion, pass through; fast ones it smooths
    away. Each output's deviation from the unperturbed refinement is split into the whole hand and the
    articulation, and its variance pooled over the draws and the observed frames is set against the draws'
    own. Pooling makes a few draws enough: a per-frame variance from 8 draws would scatter by ±50 %, and
    its radii would miss too often. Shapes as `sequence_variance`."""
    keypoints3d = np.asarray(keypoints3d, np.float64)
    valid = np.asarray(valid, bool)
    base = np.asarray(refiner.refine(keypoints3d, valid, is_right, fps, keypoints2d, K, anchor=anchor).keypoints3d,
                      np.float64)
    tracks = valid.shape[0]
    sums = {name: np.zeros(shape) for name, shape in (("root_in", tracks), ("root_out", tracks),
                                                       ("art_in", (tracks, 21)), ("art_out", (tracks, 21)))}
    for _ in range(draws):
        errors = draw_errors()
        output = np.asarray(refiner.refine(keypoints3d + errors, valid, is_right, fps, keypoints2d, K,
                                           anchor=anchor).keypoints3d, np.float64) - base
        for name, values in (("in", errors), ("out", output)):
            values = np.where(valid[..., None, None], values, 0.0)
            root = values.mean(-2)
            sums[f"root_{name}"] += np.square(root).sum((-1, -2))
            sums[f"art_{name}"] += np.square(values - root[..., None, :]).sum(-1).sum(1)
    ratio = lambda out, into: np.where(into > 0, out / np.maximum(into, 1e-300), 1.0)  # noqa: E731
    return InputGain(ratio(sums["root_out"], sums["root_in"]), ratio(sums["art_out"], sums["art_in"]))
