"""Time `handcli refine`'s work in-process: start-up (import + weight load) and refining one hand's 1,000-frame
track on CPU, split into the diffusion model and the hand-model fit + kinematic projection.

    .venv/bin/python scripts/refiner_speed.py [--frames 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

started = time.perf_counter()
import numpy as np  # noqa: E402

from handcli.artifacts import Artifact  # noqa: E402
from handcli.diffusion import load_refiner  # noqa: E402
from handcli.stages.refine import RefineConfig, refine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_refiner()
    startup = time.perf_counter() - started
    rng = np.random.default_rng(0)
    hand = rng.normal(0, 0.04, (21, 3))
    track = hand + np.cumsum(rng.normal(0, 0.002, (args.frames, 1, 3)), 0) + np.array([0, 0, 0.5])
    track = (track + rng.normal(0, 0.004, track.shape))[None].astype(np.float32)
    artifact = Artifact(track, np.ones((1, args.frames), bool), np.array([True]), fps=30.0)
    print(f"start-up (import + load) {startup:.2f} s")
    for _ in range(args.repeats):
        begin = time.perf_counter()
        result = refine(artifact, RefineConfig(device="cpu"))
        wall = time.perf_counter() - begin
        timings = result.meta["timings"]
        print(f"refine {args.frames} frames: {wall:.2f} s wall (weights {timings['load_s']:.2f} s, diffusion "
              f"{timings['refine_s']:.2f} s, hand-model fit + projection {timings['fit_s']:.2f} s)")


if __name__ == "__main__":
    main()
