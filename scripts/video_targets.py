"""Issue #12's video-benchmark targets, read off two runs of scripts/video_bench.py on the same renders.

    .venv/bin/python scripts/video_targets.py --baseline .bench-video/test_legacy.json \
        --new .bench-video/test_default.json [--write-docs]

Targets (new pipeline against today's, per camera situation and over all clips): root-relative MPJPE of the
final output at most 0.6x today's; median depth error at most 8 %; median rotation error at most 8 degrees;
2D error of the final keypoints at most 1.1x MediaPipe's own; refine better than estimate on root-relative
MPJPE and on ACCEL.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from handcli.videobench.report import replace_marked_section  # noqa: E402

RESULTS = REPO / "docs" / "results.md"
MARKER, END = "<!-- video-targets -->", "<!-- /video-targets -->"


def rows(baseline: dict, new: dict) -> list[str]:
    out = ["| situation | root-rel final: today → new (ratio, target ≤ 0.6) | depth % (≤ 8) | rot ° (≤ 8) | "
           "2D px final / MediaPipe (≤ 1.1) | refine vs estimate: root-rel | ACCEL |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for situation, stages in new["pooled"].items():
        old = baseline["pooled"][situation]["refine"]
        final, estimate, mediapipe = stages["refine"], stages["estimate"], stages["mediapipe2d"]

        def mark(ok: bool) -> str:
            return "met" if ok else "missed"

        ratio = final["rootrel"] / old["rootrel"]
        px_ratio = final["px"] / mediapipe["px"]
        out.append(
            f"| {situation} | {old['rootrel']:.1f} → {final['rootrel']:.1f} mm ({ratio:.2f}, {mark(ratio <= 0.6)}) | "
            f"{old['depth_pct']:.1f} → {final['depth_pct']:.1f} ({mark(final['depth_pct'] <= 8)}) | "
            f"{old['rot_deg']:.1f} → {final['rot_deg']:.1f} ({mark(final['rot_deg'] <= 8)}) | "
            f"{final['px']:.1f} / {mediapipe['px']:.1f} = {px_ratio:.2f} ({mark(px_ratio <= 1.1)}) | "
            f"{estimate['rootrel']:.1f} → {final['rootrel']:.1f} ({mark(final['rootrel'] < estimate['rootrel'])}) | "
            f"{estimate['accel']:.2f} → {final['accel']:.2f} ({mark(final['accel'] < estimate['accel'])}) |")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="video_bench.py --json of today's pipeline")
    parser.add_argument("--new", type=Path, required=True, help="video_bench.py --json of the new pipeline")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    try:
        baseline, new = (json.loads(path.read_text()) for path in (args.baseline, args.new))
    except (OSError, ValueError) as error:
        print(f"video_targets: {error}", file=sys.stderr)
        return 2
    command = (f"`.venv/bin/python scripts/video_targets.py --baseline {args.baseline} --new {args.new}` "
               f"(today: {baseline['command']}; new: {new['command']})")
    table = "\n".join([command, ""] + rows(baseline, new))
    print(table)
    if args.write_docs:
        replace_marked_section(RESULTS, MARKER, END, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
