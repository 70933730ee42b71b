"""Plot the wrist's depth over time for several artifacts of one clip (a real clip has no depth truth, but a
hand that opens and closes in place should not move back and forth).

    .venv/bin/python scripts/plot_wrist_depth.py --out docs/images/open_close_wrist_depth.png \
        "detect=DETECT.npz" "legacy=LEGACY.npz" "image fit=ESTIMATE.npz" "refine=REFINED.npz"

Made for docs/results.md with `handcli run ../shared/data/video/dexretarget_open_close.mp4` (and
`--no-image-fit` for legacy), the artifacts taken from its cache. Prints each curve's median, 5-95 % range and
frame-to-frame RMS change.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handcli.artifacts import load_artifact  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("curves", nargs="+", metavar="LABEL=FILE")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--track", type=int, default=0)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    for item in args.curves:
        label, _, path = item.partition("=")
        depth = load_artifact(path).keypoints3d[args.track, :, 0, 2].astype(np.float64)
        ax.plot(depth, label=label, lw=1)
        low, high = np.percentile(depth, [5, 95])
        print(f"{label}: median {np.median(depth):.3f} m, 5-95 % range {1000 * (high - low):.0f} mm, "
              f"frame-to-frame RMS change {1000 * np.sqrt(np.mean(np.diff(depth) ** 2)):.1f} mm")
    ax.set_xlabel("frame")
    ax.set_ylabel("wrist depth (m)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    return 0


if __name__ == "__main__":
    sys.exit(main())
