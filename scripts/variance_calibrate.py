"""Fit weights/variance_calibration.json (card: weights/variance_calibration.md) on the two tuning splits.

    .venv/bin/python scripts/video_bench.py --split tune --clips 45                 # once: the estimates' cache
    .venv/bin/python scripts/video_bench.py --split tune --clips 45 --tag truelen --true-hand-length
    .venv/bin/python scripts/variance_calibrate.py [--every 2] [--out weights/variance_calibration.json]

1. The per-frame estimate's uncertainty (handcli.variance.estimate): its log-linear variances fitted by
   Poisson pseudo-likelihood (`fit_error_model`: along the ray above a floor) to the estimate stage's errors
   on the video benchmark's tuning split (FPHA subjects 1-3 rendered, MediaPipe in the loop;
   `.bench-video/tune/<tag>/clipNN_estimate.npz` for each of `--tags`: the default pipeline, and the same with
   each clip's true hand length given, so the `size_given` feature learns what a known size takes out), and
   the errors' time structure.
2. laplace_scale: the refiner's own variance γ² against the refined output's squared error on the keypoint
   protocol's tuning split (FPHA subjects 1-3 corrupted with ../shared/bench/handeval_dev.py's dev protocol,
   keypoints only), the ratio mean(e²) / mean(var) over all joints and frames.
Needs ../shared (the scorer, the FPHA motion) and the benchmark's cache.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def estimate_rows(split_dir: Path, tags: list[str]):
    """(design (N, F), ray² / d², side² / d², articulation² (N, 21, 3), time structure, clips, each frame's
    clip index (N,)) over the split's clips of every variant in `tags` (a clip's frames of every variant share
    its index, so leaving a clip out leaves it out of all). Time structure, from the first tag alone (the
    default pipeline): {correlation_frames: the width w whose Gaussian autocorrelation exp(-lag² / (4 w²))
    fits the clip-centred relative depth error's autocorrelation at lags 1-15 (least squares); constant_root,
    constant_articulation: the share of the squared relative depth error and of the squared articulation
    error that the clips' means carry}."""
    from handcli.variance.estimate import FrameFeatures, error_targets, frame_features, hand_length_given
    from handcli.videobench.scoring import load_videoscore
    from handcli.videobench.uncertainty import clip_errors

    vs = load_videoscore()
    designs, rays, sides, articulations, lags, clip_of = [], [], [], [], [], []
    shares = np.zeros(4)  # constant and total squared depth error, then the same for the articulation
    names: list[str] = []
    for tag in tags:
        for clip, artifact in clip_errors(vs, split_dir, tag, "estimate"):
            h, frames = clip.track, clip.frames
            features = frame_features(artifact.keypoints3d, artifact.keypoints2d, artifact.valid, artifact.K,
                                      artifact.image_size, artifact.fps, hand_length_given(artifact.meta))
            picked = FrameFeatures(features.design[h, frames], features.centre[h, frames],
                                   features.distance[h, frames], features.ray[h, frames])
            truth = artifact.keypoints3d[h, frames].astype(np.float64) - clip.errors
            ray, side, articulation = error_targets(artifact.keypoints3d[h, frames], truth, picked)
            designs.append(picked.design)
            rays.append(ray)
            sides.append(side)
            articulations.append(articulation)
            if clip.clip not in names:
                names.append(clip.clip)
            clip_of.append(np.full(len(frames), names.index(clip.clip)))
            if tag != tags[0]:
                continue
            signed = np.sum(clip.errors.mean(1) * picked.ray, -1) / picked.distance  # relative depth error
            if len(frames) > 30 and np.all(np.diff(frames) == 1):
                lags.append(signed - signed.mean())
            around = clip.errors - clip.errors.mean(1, keepdims=True)
            shares += [len(signed) * signed.mean() ** 2, np.sum(signed ** 2),
                       len(around) * np.sum(around.mean(0) ** 2), np.sum(around ** 2)]
    autocorrelation = np.array([sum(float(np.sum(c[:-k] * c[k:])) for c in lags) /
                                sum(float(np.sum(c ** 2)) for c in lags) for k in range(1, 16)])
    widths = np.linspace(0.5, 15.0, 291)
    model = np.exp(-np.arange(1, 16)[None, :] ** 2 / (4 * widths[:, None] ** 2))
    width = float(widths[np.argmin(np.sum((model - autocorrelation) ** 2, 1))])
    print("autocorrelation of the relative depth error, lags 1-15:", np.round(autocorrelation, 2))
    structure = {"correlation_frames": width, "constant_root": float(shares[0] / shares[1]),
                 "constant_articulation": float(shares[2] / shares[3])}
    return (np.concatenate(designs), np.concatenate(rays), np.concatenate(sides), np.concatenate(articulations),
            structure, names, np.concatenate(clip_of))


def leave_one_clip_out(design: np.ndarray, squared: np.ndarray, clip_of: np.ndarray, ridge: float,
                       floor_columns: list[int] | None = None) -> float:
    """Mean Poisson deviance per frame of the squared errors (N, C; their row means, scaled to mean 1) against
    the expected squared error fitted as the calibration fits it (log-linear, or above a floor over
    `floor_columns`), with each clip left out in turn: how well the features predict the size of errors on
    clips they were not fitted on (lower is better). The deviance is the fit's own criterion, so it judges
    what the fit tries to get right, the mean squared error, not the Gaussian shape."""
    from handcli.variance.estimate import fit_log_linear_mean, fit_log_linear_mean_above_floor

    target = squared.reshape(len(design), -1).mean(-1)
    target = target / target.mean()
    expected = np.zeros_like(target)
    for clip in np.unique(clip_of):
        train, held = clip_of != clip, clip_of == clip
        if floor_columns is None:
            expected[held] = np.exp(design[held] @ fit_log_linear_mean(design[train], target[train], ridge))
        else:
            above, floor = fit_log_linear_mean_above_floor(design[train], target[train], floor_columns, ridge)
            expected[held] = np.exp(design[held] @ above) + np.exp(design[held] @ floor)
    positive = np.maximum(target, 1e-300)
    return float(np.mean(2.0 * (positive * np.log(positive / expected) - (target - expected))))


def ablation(design, ray, side, articulation, clip_of, ridge: float) -> None:
    """Print the leave-one-clip-out Poisson deviance per frame with every feature and the change with each
    one (and the wobble pair) left out, for the whole hand's error along the ray (above its floor, and without
    the floor), across it, and the articulation (pooled over its 63 coordinates; the calibration fits one
    model per joint). Minutes: the floor's fit is refitted for every clip."""
    from handcli.variance.estimate import FEATURES, RAY_FLOOR_FEATURES

    def deviances(names: list[str]) -> dict:
        kept = [FEATURES.index(name) for name in names]
        floor = [names.index(name) for name in RAY_FLOOR_FEATURES if name in names]
        return {"ray": leave_one_clip_out(design[:, kept], ray, clip_of, ridge, floor),
                "ray without floor": leave_one_clip_out(design[:, kept], ray, clip_of, ridge),
                "side": leave_one_clip_out(design[:, kept], side, clip_of, ridge),
                "articulation": leave_one_clip_out(design[:, kept], articulation, clip_of, ridge)}

    full = deviances(list(FEATURES))
    print("leave-one-clip-out Poisson deviance per frame, all features: "
          + ", ".join(f"{name} {value:.3f}" for name, value in full.items()), flush=True)
    # each feature alone, then the two wobble features together (each stands in for the other when one is left out)
    left_outs = [(feature,) for feature in FEATURES[:-1]] + [("depth_wobble", "size_wobble")]
    for left_out in left_outs:
        change = deviances([feature for feature in FEATURES if feature not in left_out])
        print(f"  without {' + '.join(left_out):28s}" + ", ".join(
            f"{name} {change[name] - full[name]:+.3f}" for name in full), flush=True)


def laplace_ratio(every: int, seed: int) -> tuple[float, int]:
    """mean(e²) / mean(γ²) of the refined output on the keypoint protocol's tuning split, and the frames."""
    sys.path.insert(0, str(REPO / "scripts"))
    from variance_eval import load_bench, refine_with_variance

    bench = load_bench()
    data = bench.corrupt_set(bench.load_fpha(str(bench_fpha()), [1, 2, 3])[::every], "dev", seed)
    refined, _ = refine_with_variance(data, None, None, 20, 0, laplace_scale=1.0)
    squared, variance = [], []
    for i, (_, truth, *_rest) in enumerate(data):
        length = len(truth)
        squared.append(np.sum((refined.keypoints3d[i, :length] - truth) ** 2, -1).ravel())
        variance.append(refined.var_joints[i, :length].ravel())
    squared, variance = np.concatenate(squared), np.concatenate(variance)
    return float(squared.mean() / variance.mean()), int(sum(len(d[1]) for d in data))


def bench_fpha() -> Path:
    return REPO.parent / "shared" / "data" / "mocap" / "fpha"


def main() -> None:
    from handcli.variance.estimate import DEFAULT_CALIBRATION_PATH, fit_error_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split-dir", type=Path, default=REPO / ".bench-video" / "tune")
    parser.add_argument("--tags", default="default,truelen",
                        help="the benchmark variants whose estimates to fit on, comma-separated: default (the hand's "
                             "size unknown) and truelen (video_bench.py --true-hand-length: the size given)")
    parser.add_argument("--every", type=int, default=2, help="keypoint protocol: every n-th tuning sequence")
    parser.add_argument("--seed", type=int, default=7, help="keypoint protocol corruption seed (the bench's)")
    parser.add_argument("--ridge", type=float, default=1e-2)
    parser.add_argument("--laplace-scale", type=float, default=None,
                        help="keep this laplace_scale instead of measuring it (minutes on the keypoint protocol)")
    parser.add_argument("--out", type=Path, default=DEFAULT_CALIBRATION_PATH)
    parser.add_argument("--ablation", action="store_true",
                        help="only print how much each feature (and the ray's floor) adds on clips left out, as "
                             "leave-one-clip-out Poisson deviance (the features' choice; about 10 minutes)")
    args = parser.parse_args()
    tags = [tag.strip() for tag in args.tags.split(",") if tag.strip()]
    design, ray, side, articulation, structure, clips, clip_of = estimate_rows(args.split_dir, tags)
    if args.ablation:
        ablation(design, ray, side, articulation.reshape(len(design), -1), clip_of, args.ridge)
        return
    print(f"estimate errors: {len(design)} frames from {len(clips)} clips; time structure "
          + ", ".join(f"{k} {v:.2f}" for k, v in structure.items()))
    scale, frames = (laplace_ratio(args.every, args.seed) if args.laplace_scale is None
                     else (args.laplace_scale, 0))
    source = (f"keypoint protocol dev, FPHA subjects 1-3, every {args.every}th sequence, seed {args.seed}: "
              f"{frames} frames" if args.laplace_scale is None else "given with --laplace-scale")
    print(f"laplace_scale: {scale:.3f} ({source})")
    fitted_on = {"date": date.today().isoformat(),
                 "estimate": f"video benchmark tuning split ({args.split_dir.name}, tags {', '.join(tags)}): "
                             f"{len(design)} frames of {len(clips)} clips",
                 "laplace_scale": source,
                 "command": "scripts/variance_calibrate.py " + " ".join(sys.argv[1:])}
    calibration = fit_error_model(design, ray, side, articulation, structure["correlation_frames"],
                                  structure["constant_root"], structure["constant_articulation"], fitted_on,
                                  args.ridge, scale)
    calibration.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
