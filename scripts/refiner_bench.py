"""Score the refiner in-process on FPHA under the dev noise protocol, using the shared benchmark's own
functions (/work/shared/bench/handeval_dev.py, imported, never copied).

    .venv/bin/python scripts/refiner_bench.py [--weights weights/refiner.pt] [--split test|tune] [--samples 1]

--split test: subject 4 exactly as the benchmark corrupts it (seed 7 + 1); --split tune: subjects 1-3
(every 2nd sequence, the benchmark's seed 7), the only split to tune on. Prints MPJPE / PA-MPJPE / ACCEL (mm)
of raw input, the benchmark's Gaussian filter and the refiner, plus the refiner's wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO.parent / "shared" / "bench"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--split", choices=("test", "tune"), default="tune")
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--stride", type=int, default=None)
    parser.add_argument("--every", type=int, default=1, help="score every Nth sequence")
    parser.add_argument("--direct", choices=("auto", "yes", "no"), default="auto",
                        help="samples=1 estimate: the weights' choice, the first clean estimate, or the mean path")
    parser.add_argument("--project", choices=("auto", "yes", "no"), default="auto",
                        help="re-impose the track bone lengths on the output: the weights' choice, or force")
    parser.add_argument("--projection-sigma", type=float, default=None,
                        help="kinematic projection as `handcli refine` does it (default: the stage's setting; "
                        "0: the diffusion output alone)")
    parser.add_argument("--no-anchor", action="store_true",
                        help="without the depth-aware anchoring of the whole-hand position (as `--no-anchor`)")
    parser.add_argument("--anchor-set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override AnchorConfig fields, e.g. gap_seconds=0 scale_shrink=0")
    parser.add_argument("--physics", action="store_true", help="also R(q), PAD-Hand eq. 28 (slower)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not (BENCH / "handeval_dev.py").is_file():
        print(f"benchmark not found at {BENCH}; this script needs the shared benchmark", file=sys.stderr)
        return 2
    sys.path.insert(0, str(BENCH))
    import handeval_dev as bench
    import numpy as np

    sys.path.insert(0, str(REPO))
    from handcli.diffusion import load_refiner
    from handcli.stages.refine import RefineConfig, fit_and_project
    from handcli.stages.tracks import observed_span

    fpha = BENCH.parent / "data" / "mocap" / "fpha"
    if args.split == "test":
        data = bench.corrupt_set(bench.load_fpha(str(fpha), [4]), "dev", 7 + 1)[::args.every]
    else:
        data = bench.corrupt_set(bench.load_fpha(str(fpha), [1, 2, 3])[::2], "dev", 7)[::args.every]
    started = time.perf_counter()
    refiner = load_refiner(args.weights)
    if args.stride:
        refiner.stride = args.stride
    if args.direct != "auto":
        refiner.direct = args.direct == "yes"
    if args.project != "auto":
        refiner.project_output = args.project == "yes"
    load_seconds = time.perf_counter() - started
    # one call over all tracks padded to the longest, as `handcli refine` receives them from the benchmark
    length = max(len(d[1]) for d in data)
    keypoints = np.full((len(data), length, 21, 3), np.nan, np.float32)
    valid = np.zeros((len(data), length), bool)
    for i, (_, _, _, observed, seen, _) in enumerate(data):
        keypoints[i, :len(observed)] = observed
        valid[i, :len(observed)] = seen
    started = time.perf_counter()
    from handcli.diffusion.anchoring import AnchorConfig

    overrides = {field: float(value) for field, value in (item.split("=", 1) for item in args.anchor_set)}
    anchor = None if args.no_anchor else AnchorConfig(**overrides)
    result = refiner.refine(keypoints, valid, np.array([d[2] for d in data]), 30.0, samples=args.samples,
                            anchor=anchor)
    refined = result.keypoints3d
    config = RefineConfig() if args.projection_sigma is None else RefineConfig(projection_sigma=args.projection_sigma)
    if config.projection_sigma > 0:  # the stage's own span: each track's first to last observed frame
        refined = fit_and_project(refined, observed_span(valid), np.array([d[2] for d in data]), config)[1]
    refine_seconds = time.perf_counter() - started
    estimates = {"raw": [bench.interp_missing(d[3], d[4]) for d in data],
                 "gaussian(2)": [bench.FILTERS["gaussian"](bench.interp_missing(d[3], d[4]), 2) for d in data],
                 "refiner": [refined[i, :len(d[1])].astype(float) for i, d in enumerate(data)]}
    rows = {}
    for name, tracks in estimates.items():
        total = dict(mpjpe=0.0, pa_mpjpe=0.0, accel=0.0)
        frames = 0
        for track, (_, truth, *_rest) in zip(tracks, data):
            metrics = bench.metrics(track, truth)
            for key in total:
                total[key] += metrics[key] * len(truth)
            frames += len(truth)
        rows[name] = {k: v / frames for k, v in total.items()}
        if args.physics:  # R(q) per track, frame-weighted like the other metrics
            from handcli.physics.metric import residual_metric

            weighted = sum(residual_metric(track[None], truth[None], np.ones((1, len(truth)), bool),
                                           np.array([right]), 30.0) * len(truth)
                           for track, (_, truth, right, *_rest) in zip(tracks, data))
            rows[name]["R_q"] = weighted / frames
    print(f"split={args.split} sequences={len(data)} frames={frames} load={load_seconds:.2f}s "
          f"refine={refine_seconds:.2f}s samples={args.samples} direct={refiner.direct} "
          f"project_output={refiner.project_output} projection_sigma={config.projection_sigma} "
          f"anchor={anchor}")
    print(f"{'method':<14}{'MPJPE':>8}{'PA-MPJPE':>10}{'ACCEL':>8}" + (f"{'R(q)':>10}" if args.physics else ""))
    for name, row in rows.items():
        print(f"{name:<14}{row['mpjpe']:>8.2f}{row['pa_mpjpe']:>10.2f}{row['accel']:>8.2f}"
              + (f"{row['R_q']:>10.3f}" if args.physics else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "refine_s": refine_seconds, "load_s": load_seconds,
                                               "frames": frames}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
