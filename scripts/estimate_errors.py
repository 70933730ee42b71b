"""The estimate stage's error on the video benchmark, decomposed (handcli.videobench.errors): depth bias against
distance, hand size in pixels and the true hand length, rotation error, articulation error, and how each
correlates over time. Reads a benchmark run's outputs (scripts/video_bench.py must have run for --tag).

    .venv/bin/python scripts/estimate_errors.py --split tune --tag default [--stage estimate] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from handcli.artifacts import load_artifact  # noqa: E402
from handcli.handmodels.size import HAND_LENGTH_MEAN_M  # noqa: E402
from handcli.videobench import scoring  # noqa: E402
from handcli.videobench.errors import LAGS, clip_summary, frame_errors  # noqa: E402
from handcli.videobench.report import replace_marked_section  # noqa: E402

RESULTS = REPO / "docs" / "results.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="tune", choices=("tune", "test"))
    parser.add_argument("--tag", default="default")
    parser.add_argument("--stage", default="estimate", choices=("detect", "estimate", "refine"))
    parser.add_argument("--work-dir", type=Path, default=REPO / ".bench-video")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    try:
        vs = scoring.load_videoscore()
    except FileNotFoundError as error:
        print(f"estimate_errors: {error}", file=sys.stderr)
        return 2
    split_dir = args.work_dir / args.split
    rows = []
    for truth_path in sorted(split_dir.glob("clip*_gt.npz")):
        pred_path = split_dir / args.tag / truth_path.name.replace("_gt.npz", f"_{args.stage}.npz")
        if not pred_path.exists():
            continue
        with np.load(truth_path, allow_pickle=False) as data:
            truth, K, params = data["keypoints3d"].astype(np.float64), data["K"], json.loads(str(data["params"]))
        pred = load_artifact(pred_path)
        if pred.num_tracks == 0:
            continue
        picked, covered = vs.pick_track(pred.keypoints3d.astype(np.float64), pred.valid, truth, K)
        summary = clip_summary(frame_errors(picked, covered, truth))
        if summary:
            rows.append({**summary, "situation": params["situation"], "distance": params["distance"],
                         "hand_px": params["hand_px"], "length_ratio": params["hand_length"] / HAND_LENGTH_MEAN_M - 1})
    if not rows:
        print(f"estimate_errors: no {args.stage} outputs under {split_dir / args.tag}", file=sys.stderr)
        return 2
    table = render(rows, args)
    print(table)
    if args.write_docs:
        replace_marked_section(RESULTS, f"<!-- estimate-errors:{args.split}:{args.tag}:{args.stage} -->",
                               "<!-- /estimate-errors -->", table)
    return 0


def render(rows: list[dict], args) -> str:
    """Markdown: per situation the frame-weighted statistics, then what the depth bias follows across clips."""
    lines = [f"Command: `.venv/bin/python scripts/estimate_errors.py --split {args.split} --tag {args.tag} "
             f"--stage {args.stage}{' --write-docs' if args.write_docs else ''}` ({len(rows)} clips with a detection).",
             "",
             "| situation | clips | frames | depth bias % (mean) | depth within clip sd % | depth AC " +
             "/".join(map(str, LAGS)) + " | rot median ° | rot constant part ° | rot within clip sd ° | rot AC " +
             "/".join(map(str, LAGS)) + " | articulation RMS mm | artic AC " + "/".join(map(str, LAGS)) + " |",
             "| --- " * 13 + "|"]
    for situation in sorted({r["situation"] for r in rows}) + ["all"]:
        group = [r for r in rows if situation in ("all", r["situation"])]
        weights = np.array([r["frames"] for r in group], float)

        def mean(key, scale=1.0):
            values = np.array([r[key] for r in group], float)
            keep = np.isfinite(values)
            return scale * float((values[keep] * weights[keep]).sum() / weights[keep].sum()) if keep.any() else np.nan

        def lags(prefix):
            return "/".join(f"{mean(f'{prefix}_ac{lag}'):.2f}" for lag in LAGS)

        lines.append(f"| {situation} | {len(group)} | {int(weights.sum())} | {mean('depth_mean', 100):+.1f} | "
                     f"{mean('depth_sd', 100):.1f} | {lags('depth')} | {mean('rot_median_deg'):.1f} | "
                     f"{mean('rot_mean_part_deg'):.1f} | {mean('rot_sd_deg'):.1f} | {lags('rot')} | "
                     f"{mean('artic_rms_mm'):.1f} | {lags('artic')} |")
    depth = np.array([r["depth_mean"] for r in rows])
    lines += ["", "Across clips, the clip's mean depth error (signed) against (Pearson r, least-squares slope):", ""]
    for key, label in (("length_ratio", "true hand length / prior - 1"), ("distance", "distance (m)"),
                       ("hand_px", "hand size (px)")):
        x = np.array([r[key] for r in rows])
        r = float(np.corrcoef(x, depth)[0, 1]) if len(rows) > 2 else float("nan")
        slope = float(np.polyfit(x, depth, 1)[0]) if len(rows) > 2 else float("nan")
        lines.append(f"- {label}: r = {r:+.2f}, slope {slope:+.3g} per unit")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
