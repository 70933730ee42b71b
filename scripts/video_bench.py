"""The video benchmark (docs/video_bench.md): FPHA hand motion rendered as videos with exact camera-frame 3D
ground truth in three camera situations, the pipeline run on them in-process, every stage scored with the
shared video scorer (../shared/bench/videoscore.py, imported by path).

    .venv/bin/python scripts/video_bench.py --split tune|test [--clips 6] [--situations egocentric,frontal]
        [--tag NAME] [--estimate-set KEY=VALUE ...] [--refine-set KEY=VALUE ...] [--json PATH] [--write-docs]

Renders and detections are cached in --work-dir/<split>/ and reused; estimate/refine outputs are kept per
--tag in --work-dir/<split>/<tag>/. Tune on --split tune (FPHA subjects 1-3); --split test (subject 4) only
scores settings already fixed. Exit 2 when ../shared (scorer or mocap) is missing or an option is bad.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from handcli.errors import BadInput  # noqa: E402
from handcli.videobench import SITUATIONS  # noqa: E402

SHARED = REPO.parent / "shared"
FPHA_ROOT = SHARED / "data" / "mocap" / "fpha"
FOOTAGE = SHARED / "data" / "video"
RESULTS = REPO / "docs" / "results.md"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("tune", "test"), default="tune")
    parser.add_argument("--clips", type=int, default=6, help="clips per situation (default 6)")
    parser.add_argument("--situations", default=",".join(SITUATIONS),
                        help=f"comma-separated subset of {','.join(SITUATIONS)}")
    parser.add_argument("--tag", default="default", help="name of the pipeline variant (its outputs' folder)")
    parser.add_argument("--estimate-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an EstimateConfig field (repeatable; int/float/bool/str)")
    parser.add_argument("--refine-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a RefineConfig field (repeatable)")
    parser.add_argument("--true-hand-length", action="store_true",
                        help="give each clip's estimate its rendered hand's true length (EstimateConfig.hand_length, "
                             "handcli run --hand-length): a user who knows their hand size; use its own --tag")
    parser.add_argument("--assumed-focal", action="store_true",
                        help="run the pipeline without the true focal length, as a user who gives none (detect's "
                             "default field of view; the renders' fields of view span 45-90 degrees)")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".bench-video")
    parser.add_argument("--json", type=Path, default=None, help="per-clip rows + pooled table as JSON")
    parser.add_argument("--write-docs", action="store_true",
                        help="replace this split/tag's marked section of docs/results.md with the table")
    parser.add_argument("--backend", default="auto", choices=("auto", "gl", "painter"))
    parser.add_argument("--force", action="store_true", help="recompute detect/estimate/refine even if cached")
    parser.add_argument("--preview", type=Path, default=None,
                        help="write one PNG per clip (middle frame, ground truth drawn over it) into this folder")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    from handcli.videobench import scoring

    try:
        vs = scoring.load_videoscore()
    except FileNotFoundError as error:
        print(f"video_bench: {error}; this benchmark needs ../shared", file=sys.stderr)
        return 2
    if not FPHA_ROOT.is_dir():
        print(f"video_bench: FPHA mocap not found at {FPHA_ROOT}; this benchmark needs ../shared", file=sys.stderr)
        return 2
    situations = tuple(s.strip() for s in args.situations.split(",") if s.strip())
    try:
        if not situations or set(situations) - set(SITUATIONS):
            raise BadInput(f"--situations: choose from {','.join(SITUATIONS)}, got {args.situations!r}")
        if args.clips < 1:
            raise BadInput(f"--clips must be at least 1, got {args.clips}")
        return run(args, situations, vs, started)
    except BadInput as error:
        print(f"video_bench: {error.message}", file=sys.stderr)
        return 2


def run(args, situations, vs, started: float) -> int:
    import torch

    from handcli.handmodels import load_hand_model
    from handcli.stages.estimate import EstimateConfig
    from handcli.stages.refine import RefineConfig
    from handcli.videobench import clips as clipset
    from handcli.videobench import pipeline, report, scoring
    from handcli.videobench.aggregate import aggregate
    from handcli.videobench.backgrounds import FootagePool

    # the fit pins itself to one thread; the refiner's network and MediaPipe's own pool share the 2 cores
    torch.set_num_threads(max(1, args.threads))
    estimate_overrides = pipeline.parse_overrides(args.estimate_set, EstimateConfig, "--estimate-set")
    refine_overrides = pipeline.parse_overrides(args.refine_set, RefineConfig, "--refine-set")
    split_dir = args.work_dir / args.split
    specs = clipset.clip_specs(args.split, FPHA_ROOT, args.clips, situations)
    say = lambda message: print(message, file=sys.stderr, flush=True)

    model, pool = load_hand_model("open"), FootagePool(FOOTAGE)
    timings = {"render_s": 0.0, "pipeline_s": 0.0, "score_s": 0.0}
    clips, rendered, computed = [], 0, 0
    for spec in specs:
        t0 = time.perf_counter()
        video, truth, reused = clipset.ensure_clip(spec, split_dir, model, pool, args.backend, say)
        rendered += not reused
        t1 = time.perf_counter()
        # --true-hand-length: what a user who measured their hand gets (handcli run --hand-length)
        clip_estimate = ({**estimate_overrides, "hand_length": float(truth["params"]["hand_length"])}
                         if args.true_hand_length else estimate_overrides)
        focal = None if args.assumed_focal else truth["params"]["focal"]
        artifacts, hits = pipeline.run_clip(video, focal, spec.name, split_dir, args.tag,
                                            clip_estimate, refine_overrides, args.force)
        computed += sum(not hit for hit in hits.values())
        t2 = time.perf_counter()
        scores = scoring.score_clip(vs, truth, artifacts)
        t3 = time.perf_counter()
        timings["render_s"] += t1 - t0
        timings["pipeline_s"] += t2 - t1
        timings["score_s"] += t3 - t2
        clips.append({"name": spec.name, "situation": spec.situation, "params": truth["params"], "scores": scores})
        say(f"{spec.name} {spec.situation:<10} {truth['params']['width']}x{truth['params']['height']} "
            f"d={truth['params']['distance']:.2f} m hand={truth['params']['hand_px']:.0f} px  "
            f"coverage {scores['detect']['coverage']:.2f}  refine MPJPE {scores['refine']['mpjpe']:.1f} mm  "
            f"render {t1 - t0:.1f} s{' (cached)' if reused else ''}, pipeline {t2 - t1:.1f} s")
        if args.preview:
            write_preview(args.preview / f"{args.split}_{spec.name}.png", video, truth, artifacts)
    timings["wall_s"] = time.perf_counter() - started
    pooled = aggregate(clips, ("mediapipe2d", "detect", "estimate", "gaussian(2)", "refine"))
    sizes = report.size_summary([c["params"] for c in clips])
    metrics = report.table(pooled)
    frames = sum(c["params"]["frames"] for c in clips)
    command = ".venv/bin/python scripts/video_bench.py " + " ".join(shlex.quote(a) for a in recorded_args(sys.argv[1:]))
    summary = (f"{len(clips)} clips, {frames} frames; {rendered} rendered, {len(clips) - rendered} from cache; "
               f"{computed} stage outputs computed. Wall {timings['wall_s']:.0f} s (render "
               f"{timings['render_s']:.0f} s, pipeline {timings['pipeline_s']:.0f} s, scoring "
               f"{timings['score_s']:.0f} s), torch threads {args.threads}.")
    print(sizes + "\n\n" + metrics + "\n\n" + summary)
    if args.json:
        report.write_json(args.json, {"command": command, "split": args.split, "tag": args.tag,
                                      "estimate_overrides": estimate_overrides, "refine_overrides": refine_overrides,
                                      "timings": timings, "pooled": pooled, "rows": report.json_rows(clips)})
    if args.write_docs:
        date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        body = (f"Command: `{command}` ({date}; {summary})\n\n{sizes}\n\n{metrics}\n\n"
                "`mediapipe2d`: MediaPipe's own 2D keypoints (detect's `keypoints2d`) against the projected truth. "
                "Means pooled by frames, depth % / rot ° medians over frames, signed depth % < 0 = placed too near "
                "(docs/video_bench.md).")
        report.write_docs_section(RESULTS, args.split, args.tag, body)
    return 0


def recorded_args(argv: list[str]) -> list[str]:
    """The command line as the docs and JSON record it: without --preview (it writes pictures, changes no
    number, and its folder is the runner's own)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--preview":
            skip = True
        elif not arg.startswith("--preview="):
            out.append(arg)
    return out


def write_preview(path: Path, video: Path, truth: dict, artifacts: dict) -> None:
    """The clip's middle frame with the projected ground truth (skeleton) and the refine output (red dots)."""
    import cv2
    import numpy as np

    from handcli.render.camera import project
    from handcli.render.overlay import draw_skeleton
    from handcli.video import iter_frames, probe_video

    middle = len(truth["keypoints3d"]) // 2
    for index, frame in enumerate(iter_frames(probe_video(video))):
        if index == middle:
            image = frame.copy()
            break
    draw_skeleton(image, project(truth["keypoints3d"][middle], truth["K"])[0], (255, 255, 255))
    refined = artifacts["refine"]
    for h in range(refined.num_tracks):
        if refined.valid[h, middle]:
            for u, v in project(refined.keypoints3d[h, middle].astype(float), truth["K"])[0]:
                if np.isfinite(u) and np.isfinite(v):
                    cv2.circle(image, (int(round(u)), int(round(v))), 3, (255, 40, 40), -1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    sys.exit(main())
