"""Time the variance stage on one synthetic hand track (S samples, T frames), in-process, after one warm-up.

    .venv/bin/python scripts/bench_variance.py --frames 1000 --samples 20 --repeats 3 [--chain]

Reports the median wall time of `handcli.stages.variance.compute_variance` (refiner and posterior already
loaded, as in `refine --variance`) split into propagation, the estimate's uncertainty carried through the
refiner (the track has 2D keypoints and intrinsics, as from video; `--no-image`: keypoints only), vertex and
force maps. Needs weights/refiner.pt and
weights/refiner_laplace.pt (or --weights / --laplace).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chain", action="store_true", help="Algorithm 1 through all reverse steps")
    parser.add_argument("--force-stride", type=int, default=4)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--laplace", type=Path, default=None)
    parser.add_argument("--image", action=argparse.BooleanOptionalAction, default=True,
                        help="give the track 2D keypoints and intrinsics (a track from video)")
    args = parser.parse_args()

    from handcli.artifacts import Artifact
    from handcli.datagen import corrupt_keypoints, sample_motion
    from handcli.datagen.corruption import default_intrinsics, project
    from handcli.diffusion import load_refiner
    from handcli.stages.variance import VarianceConfig, compute_variance

    rng = np.random.default_rng(0)
    motion = sample_motion(1, args.frames, rng)
    corrupted = corrupt_keypoints(motion.keypoints3d.astype(np.float64), rng)
    keypoints = np.where(corrupted.valid[..., None, None], corrupted.keypoints3d, np.nan).astype(np.float32)
    artifact = Artifact(keypoints, corrupted.valid, np.array([True]), fps=30.0)
    if args.image:  # the corrupted keypoints' projection with 2 px of noise, as a detector's 2D keypoints
        K = default_intrinsics()
        pixels = project(np.nan_to_num(keypoints.astype(np.float64), nan=1.0), K) + rng.normal(0, 2, keypoints.shape[:-1] + (2,))
        keypoints2d = np.concatenate([pixels, np.full(keypoints.shape[:-1] + (1,), 0.9)], -1).astype(np.float32)
        keypoints2d[~corrupted.valid] = np.nan
        artifact = artifact.replace(keypoints2d=keypoints2d, K=K.astype(np.float32),
                                    image_size=np.round(2 * K[:2, 2]).astype(np.int64))
    config = VarianceConfig(samples=args.samples, weights=args.weights, laplace=args.laplace, chain=args.chain,
                            force_stride=args.force_stride, device="cpu")
    refiner = load_refiner(args.weights, device="cpu")
    compute_variance(artifact, artifact, config, refiner)  # warm-up: lazy imports, caches
    runs = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        maps = compute_variance(artifact, artifact, config, refiner)
        runs.append((time.perf_counter() - started, maps.timings))
    total = statistics.median(r[0] for r in runs)
    parts = {k: statistics.median(r[1][k] for r in runs) for k in runs[0][1]}
    load = os.getloadavg()[0]
    mode = ("chain (Algorithm 1, all N steps)" if args.chain else "refiner's own mode") + (
        f", 2D keypoints and intrinsics ({config.input_draws} input draws)" if args.image else ", keypoints only")
    print(f"{args.frames} frames, 1 hand, S = {args.samples}, {mode}, force stride {args.force_stride}: "
          f"median {total:.2f} s over {args.repeats} runs "
          + " ".join(f"{k}={v:.2f}" for k, v in parts.items()) + f" (load average {load:.1f})")


if __name__ == "__main__":
    main()
