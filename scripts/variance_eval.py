"""Variance calibration on real motion: FPHA ground truth corrupted with ../shared/bench's `dev` protocol.

    .venv/bin/python scripts/variance_eval.py --subjects 1,2,3 --every 2 \
        --plot docs/images/variance_reliability.png --json /tmp/variance_eval.json

Refines every corrupted sequence and computes its variance maps (the `refine --variance` code path, without
the hand-model fit), then scores var_joints as the bench does: Spearman of the per-frame mean variance against
the per-frame error over all frames, AUROC of that variance for the outlier frames among the observed ones,
beside the naive reference (how far the refined output moved from the gap-interpolated input). Adds a
reliability plot: frames binned by predicted variance, predicted RMS error against observed RMS error.
Subjects 1-3 are for tuning; subject 4 is the bench's held-out test set. Needs ../shared (skips without it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BENCH = SHARED / "bench" / "handeval_dev.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("handeval_dev", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refine_with_variance(data, weights, laplace, samples: int, seed: int, chain: bool = False,
                         laplace_scale: float | None = None):
    """Padded (H, T) arrays as the bench feeds them -> (refined artifact with the maps, seconds)."""
    from handcli.artifacts import Artifact
    from handcli.stages.refine import RefineConfig, refine
    from handcli.stages.variance import VarianceConfig, attach_variance

    tracks, frames = len(data), max(len(d[1]) for d in data)
    keypoints = np.full((tracks, frames, 21, 3), np.nan, np.float32)
    valid = np.zeros((tracks, frames), bool)
    for i, (_, _, _, observed, observed_valid, _) in enumerate(data):
        keypoints[i, :len(observed)] = observed
        valid[i, :len(observed)] = observed_valid
    artifact = Artifact(keypoints, valid, np.array([d[2] for d in data]), fps=30.0)
    started = time.perf_counter()
    refined = refine(artifact, RefineConfig(weights=weights, seed=seed, fit_params=False))
    maps = attach_variance(refined, artifact, VarianceConfig(weights=weights, laplace=laplace, samples=samples,
                                                             seed=seed, chain=chain, laplace_scale=laplace_scale))
    return maps, time.perf_counter() - started


def score(bench, data, refined) -> dict:
    from scipy.stats import spearmanr

    errors, variances, naive, outliers, observed, sq_errors, shifts = [], [], [], [], [], [], []
    for i, (_, truth, _, corrupted, valid, outlier) in enumerate(data):
        length = len(truth)
        predicted = refined.keypoints3d[i, :length].astype(float)
        joint_errors = np.linalg.norm(predicted - truth, axis=-1)
        shifts.append(np.linalg.norm((predicted - truth).mean(1), axis=-1) * 1000)
        errors.append(joint_errors.mean(1) * 1000)
        sq_errors.append((joint_errors ** 2).mean(1))
        variances.append(refined.var_joints[i, :length].mean(1))
        naive.append(np.linalg.norm(predicted - bench.interp_missing(corrupted, valid), axis=-1).mean(1))
        outliers.append(outlier & valid)
        observed.append(valid)
    errors, variances, naive, outliers, observed, sq_errors, shifts = map(
        np.concatenate, (errors, variances, naive, outliers, observed, sq_errors, shifts))
    return {"frames": int(len(errors)),
            "mean_error_mm": float(errors.mean()), "whole_hand_error_mm": float(shifts.mean()),
            "spearman_var_vs_err": float(spearmanr(variances, errors)[0]),
            "auroc_outlier_frames": float(bench.auroc(variances[observed], outliers[observed])),
            "naive_spearman": float(spearmanr(naive, errors)[0]),
            "naive_auroc": float(bench.auroc(naive[observed], outliers[observed])),
            "spearman_observed_only": float(spearmanr(variances[observed], errors[observed])[0]),
            "auroc_missing_frames": float(bench.auroc(variances, ~observed)),
            "predicted_over_observed_mse": float(variances.mean() / sq_errors.mean()),
            "reliability": reliability(variances, sq_errors)}


def observable_features(predicted: np.ndarray, observed: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T, F) per-frame quantities any variance could use: gaps, sequence edges, disagreement of the input with
    the output (per joint and whole hand, per frame and smoothed), speed and acceleration of the output."""
    from scipy.ndimage import gaussian_filter1d, uniform_filter1d

    frames = len(predicted)
    time = np.arange(frames)
    offset = observed - predicted
    shift = offset.mean(1)
    local = ((offset - shift[:, None]) ** 2).sum(-1)
    shift2 = (shift ** 2).sum(-1)
    distance = np.abs(time[:, None] - np.flatnonzero(valid)[None]).min(1)
    speed = np.r_[0, np.linalg.norm(np.diff(predicted, axis=0), axis=-1).mean(-1)]
    accel = np.r_[0, np.linalg.norm(predicted[2:] - 2 * predicted[1:-1] + predicted[:-2], axis=-1).mean(-1), 0]
    log = lambda x: np.log(x + 1e-8)
    columns = [~valid, np.log1p(distance), np.log1p(np.minimum(time, frames - 1 - time)), log(local.mean(1)),
               log(local.max(1)), log(shift2), log(uniform_filter1d(shift2, 9)), log(uniform_filter1d(shift2, 31)),
               log(speed), log(accel), np.full(frames, np.log(frames)), np.full(frames, log(shift2[valid].mean())),
               np.full(frames, log(local[valid].mean())), gaussian_filter1d((~valid).astype(float), 5)]
    features = np.stack(columns, 1).astype(float)
    return np.concatenate([features, features ** 2], 1)


def oracle_spearman(bench, data, refined, splits: int = 5) -> float:
    """Held-out Spearman of a ridge regression of log per-frame error on `observable_features`, fitted on the
    error itself (half the sequences, evaluated on the other half, mean over random halves): how well the
    observable quantities can rank the error on this data at all."""
    from scipy.stats import spearmanr

    features, errors, owner = [], [], []
    for i, (_, truth, _, corrupted, valid, _) in enumerate(data):
        predicted = refined.keypoints3d[i, :len(truth)].astype(float)
        features.append(observable_features(predicted, bench.interp_missing(corrupted, valid), valid))
        errors.append(np.linalg.norm(predicted - truth, axis=-1).mean(1))
        owner.append(np.full(len(truth), i))
    features, errors, owner = map(np.concatenate, (features, errors, owner))
    features = (features - features.mean(0)) / (features.std(0) + 1e-9)
    features = np.concatenate([features, np.ones((len(features), 1))], 1)
    rng = np.random.default_rng(0)
    scores = []
    for _ in range(splits):
        train = np.isin(owner, rng.permutation(len(data))[:len(data) // 2])
        weights = np.linalg.solve(features[train].T @ features[train] + np.eye(features.shape[1]),
                                  features[train].T @ np.log(errors[train]))
        scores.append(spearmanr(features[~train] @ weights, errors[~train])[0])
    return float(np.mean(scores))


def reliability(variances: np.ndarray, squared_errors: np.ndarray, bins: int = 10) -> list[dict]:
    """Frames in equal-count bins of predicted variance: predicted and observed RMS joint error (mm)."""
    order = np.argsort(variances)
    out = []
    for chunk in np.array_split(order, bins):
        out.append({"frames": int(len(chunk)), "predicted_rms_mm": float(np.sqrt(variances[chunk].mean()) * 1000),
                    "observed_rms_mm": float(np.sqrt(squared_errors[chunk].mean()) * 1000)})
    return out


def plot(result: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = result["reliability"]
    predicted = [b["predicted_rms_mm"] for b in bins]
    observed = [b["observed_rms_mm"] for b in bins]
    figure, axis = plt.subplots(figsize=(4.6, 4.2), constrained_layout=True)
    low, high = min(predicted + observed) * 0.8, max(predicted + observed) * 1.25
    axis.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    axis.plot(predicted, observed, "o-", color="tab:blue", label="variance deciles")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlim(low, high)
    axis.set_ylim(low, high)
    axis.set_xlabel("predicted RMS joint error (mm) = sqrt(mean var_joints)")
    axis.set_ylabel("observed RMS joint error (mm)")
    axis.set_title(title, fontsize=9)
    axis.text(0.03, 0.97, f"Spearman {result['spearman_var_vs_err']:.2f} (naive {result['naive_spearman']:.2f})\n"
                           f"AUROC outliers {result['auroc_outlier_frames']:.2f} (naive {result['naive_auroc']:.2f})",
              transform=axis.transAxes, va="top", fontsize=8)
    axis.legend(loc="lower right", fontsize=8)
    figure.savefig(path, dpi=130)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", default="1,2,3", help="FPHA subjects (1-3 for tuning, 4 = the bench's test)")
    parser.add_argument("--every", type=int, default=2, help="use every Nth sequence")
    parser.add_argument("--seed", type=int, default=7, help="corruption seed (the bench: 7 for subjects 1-3)")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--laplace", type=Path, default=None)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--chain", action="store_true", help="Algorithm 1 through all N steps (see `handcli variance --chain`)")
    parser.add_argument("--oracle", action="store_true", help="also the ceiling: error ranked by a regression on "
                        "observable quantities fitted to the error itself (held-out sequences)")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not BENCH.is_file():
        print(f"skipped: {BENCH} not found (needs ../shared)")
        return
    bench = load_bench()
    subjects = [int(s) for s in args.subjects.split(",")]
    data = bench.corrupt_set(bench.load_fpha(str(SHARED / "data" / "mocap" / "fpha"), subjects)[::args.every], "dev",
                             args.seed)
    refined, seconds = refine_with_variance(data, args.weights, args.laplace, args.samples, 0, args.chain)
    result = score(bench, data, refined)
    if args.oracle:
        result["oracle_spearman_held_out"] = oracle_spearman(bench, data, refined)
    result.update(subjects=subjects, sequences=len(data), seconds=round(seconds, 1), samples=args.samples,
                  chain=args.chain)
    for key, value in result.items():
        if key != "reliability":
            print(f"{key:<30}{value:.3f}" if isinstance(value, float) else f"{key:<30}{value}")
    for row in result["reliability"]:
        print(f"  predicted {row['predicted_rms_mm']:7.2f} mm   observed {row['observed_rms_mm']:7.2f} mm")
    if args.plot:
        plot(result, args.plot, f"FPHA subjects {args.subjects}, dev protocol, {len(data)} sequences")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
