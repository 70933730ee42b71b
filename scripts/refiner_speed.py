"""Time the refiner: start-up (import + weight load) and refining one hand's 1,000-frame track on CPU.

    .venv/bin/python scripts/refiner_speed.py [--frames 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

started = time.perf_counter()
import numpy as np  # noqa: E402

from handcli.diffusion import load_refiner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    refiner = load_refiner()
    startup = time.perf_counter() - started
    rng = np.random.default_rng(0)
    hand = rng.normal(0, 0.04, (21, 3))
    track = hand + np.cumsum(rng.normal(0, 0.002, (args.frames, 1, 3)), 0) + np.array([0, 0, 0.5])
    track = (track + rng.normal(0, 0.004, track.shape))[None]
    valid = np.ones((1, args.frames), bool)
    times = []
    for _ in range(args.repeats):
        begin = time.perf_counter()
        refiner.refine(track, valid, np.array([True]), 30.0)
        times.append(time.perf_counter() - begin)
    print(f"start-up (import + load) {startup:.2f} s; refine {args.frames} frames: "
          + ", ".join(f"{t:.2f}" for t in times) + " s")


if __name__ == "__main__":
    main()
