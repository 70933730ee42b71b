"""Calibration of the variance maps on the video benchmark and on the keypoint protocol (docs/results.md).

    .venv/bin/python scripts/variance_bench.py --split test --write-docs --plot docs/images/variance_calibration_video.png
    .venv/bin/python scripts/variance_bench.py --keypoints --subjects 4 --write-docs --plot docs/images/variance_calibration_fpha.png

Video: for every clip of a split whose estimate and refine outputs the video benchmark cached
(`scripts/video_bench.py --split S --tag default`), the variance is computed as `handcli refine --variance`
computes it (observations: the estimate; target: the refined motion) and set against the refined motion's
errors on the track the shared scorer picks: coverage of the nominal 50 % / 90 % radii, observed / predicted RMS
overall and per decile of predicted variance, and AUSE (handcli.variance.calibration), per camera situation and
per distance. Keypoints: FPHA sequences corrupted with ../shared/bench/handeval_dev.py's dev protocol, refined
with variance (keypoints only, so the refiner's own variance alone), scored the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DISTANCE_BINS = ((0.0, 0.5), (0.5, 0.8), (0.8, 10.0))  # metres to the hand's centre


def video_rows(split: str, tag: str, config) -> list[dict]:
    """Per clip: situation, distances (N,), errors (N, 21) metres, var_joints (N, 21), var_root (N, 3, 3)."""
    from handcli.artifacts import load_artifact
    from handcli.stages.variance import compute_variance
    from handcli.videobench.scoring import load_videoscore
    from handcli.videobench.uncertainty import clip_errors

    vs = load_videoscore()
    split_dir = REPO / ".bench-video" / split
    rows = []
    for clip, refined in clip_errors(vs, split_dir, tag, "refine"):
        estimate = load_artifact(split_dir / tag / f"{clip.clip}_estimate.npz")
        maps = compute_variance(estimate, refined, config)
        h, frames = clip.track, clip.frames
        centre = refined.keypoints3d[h, frames].astype(np.float64).mean(1)
        rows.append({"clip": clip.clip, "situation": clip.situation, "distance": np.linalg.norm(centre, axis=-1),
                     "errors": np.linalg.norm(clip.errors, axis=-1), "var_joints": maps.var_joints[h, frames],
                     "var_root": None if maps.var_root is None else maps.var_root[h, frames],
                     "seconds": sum(maps.timings.values())})
    return rows


def keypoint_rows(subjects: list[int], every: int, seed: int, laplace_scale: float | None = None) -> list[dict]:
    sys.path.insert(0, str(REPO / "scripts"))
    from variance_eval import load_bench, refine_with_variance

    bench = load_bench()
    data = bench.corrupt_set(bench.load_fpha(str(REPO.parent / "shared" / "data" / "mocap" / "fpha"), subjects)[::every],
                             "dev", seed)
    refined, _ = refine_with_variance(data, None, None, 20, 0, laplace_scale=laplace_scale)
    rows = []
    for i, (_, truth, *_rest) in enumerate(data):
        length = len(truth)
        errors = np.linalg.norm(refined.keypoints3d[i, :length] - truth, axis=-1)
        rows.append({"clip": str(i), "situation": "fpha", "distance": np.linalg.norm(truth.mean(1), axis=-1),
                     "errors": errors, "var_joints": refined.var_joints[i, :length], "var_root": None})
    return rows


def summarise(rows: list[dict]) -> dict:
    from handcli.variance.calibration import calibration_summary

    roots = [r["var_root"] for r in rows]
    var_root = None if any(root is None for root in roots) else np.concatenate(roots)
    return calibration_summary(np.concatenate([r["errors"] for r in rows]),
                               np.concatenate([r["var_joints"] for r in rows]), var_root)


def groups(rows: list[dict]) -> list[tuple[str, dict]]:
    """(label, summary) per situation, per distance bin, and over everything."""
    out = []
    for situation in sorted({r["situation"] for r in rows}):
        out.append((situation, summarise([r for r in rows if r["situation"] == situation])))
    for low, high in DISTANCE_BINS:
        part = []
        for r in rows:
            m = (r["distance"] >= low) & (r["distance"] < high)
            if m.any():
                part.append({k: (v[m] if isinstance(v, np.ndarray) and len(v) == len(m) else v)
                             for k, v in r.items()})
        if part:
            out.append((f"{low:.1f}-{high:.1f} m" if high < 10 else f"≥ {low:.1f} m", summarise(part)))
    out.append(("all", summarise(rows)))
    return out


def table(summaries: list[tuple[str, dict]]) -> str:
    def verdict(value, low, high):
        return "" if low <= value <= high else " ✗"

    lines = ["| set | frames | joints | coverage 50 % | coverage 90 % | observed / predicted RMS | decile ratios "
             "(min–max) | AUSE / random |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, s in summaries:
        lines.append(f"| {label} | {s['frames']} | {s['joints']} | {100 * s['coverage50']:.1f}"
                     f"{verdict(s['coverage50'], 0.43, 0.57)} | {100 * s['coverage90']:.1f}"
                     f"{verdict(s['coverage90'], 0.83, 0.97)} | {s['rms_ratio']:.2f}"
                     f"{verdict(s['rms_ratio'], 0.8, 1.25)} | {s['decile_ratio_min']:.2f}–{s['decile_ratio_max']:.2f}"
                     f"{verdict(s['decile_ratio_min'], 0.8, 1.25) or verdict(s['decile_ratio_max'], 0.8, 1.25)} | "
                     f"{s['relative']:.2f} |")
    return "\n".join(lines)


def plot(summaries: list[tuple[str, dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.0, 4.4), constrained_layout=True)
    highest = 1.0
    for label, s in summaries:
        if "m" in label and label != "all" and "-" in label or label.startswith("≥"):
            continue  # distance bins: the table has them
        predicted = [1000 * d["predicted_rms"] for d in s["deciles"]]
        observed = [1000 * d["observed_rms"] for d in s["deciles"]]
        highest = max(highest, max(predicted), max(observed))
        axis.plot(predicted, observed, "o-", label=label, linewidth=2.2 if label == "all" else 1.2)
    axis.plot([0, highest], [0, highest], color="grey", linestyle="--", linewidth=1, label="calibrated")
    axis.plot([0, highest], [0, 1.25 * highest], color="grey", linestyle=":", linewidth=0.8, label="×0.8 / ×1.25")
    axis.plot([0, highest], [0, 0.8 * highest], color="grey", linestyle=":", linewidth=0.8)
    axis.set_xlabel("predicted RMS joint error (mm), deciles of frames")
    axis.set_ylabel("observed RMS joint error (mm)")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    from handcli.stages.variance import VarianceConfig
    from handcli.videobench.report import replace_marked_section

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("tune", "test"), default="test")
    parser.add_argument("--tag", default="default")
    parser.add_argument("--keypoints", action="store_true", help="the keypoint protocol instead of the video clips")
    parser.add_argument("--subjects", default="4")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--seed", type=int, default=8, help="keypoint protocol corruption seed (the bench's test seed)")
    parser.add_argument("--input-draws", type=int, default=VarianceConfig.input_draws)
    parser.add_argument("--before", action="store_true", help="the maps as they were before #8: the refiner's "
                        "own variance, uncalibrated (laplace_scale 1, no input draws)")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.keypoints:
        subjects = [int(s) for s in args.subjects.split(",")]
        rows = keypoint_rows(subjects, args.every, args.seed, 1.0 if args.before else None)
        name = f"fpha-s{args.subjects.replace(',', '')}" + ("-before" if args.before else "")
        short = f"keypoint protocol, FPHA subject(s) {args.subjects}: refine --variance"
        what = (f"keypoint protocol (dev corruption, seed {args.seed}), FPHA subjects {args.subjects}, every "
                f"{args.every}: {len(rows)} sequences, refine --variance (keypoints only)"
                + (", as before #8 (uncalibrated)" if args.before else ""))
    else:
        config = (VarianceConfig(input_draws=0, laplace_scale=1.0) if args.before
                  else VarianceConfig(input_draws=args.input_draws))
        rows = video_rows(args.split, args.tag, config)
        name = f"video-{args.split}" + ("-before" if args.before else "")
        short = f"video benchmark, {args.split} split: refine --variance against the truth"
        what = (f"video benchmark {args.split} split, `{args.tag}` pipeline: {len(rows)} clips, refine output "
                f"against the variance of `refine --variance` "
                + ("as before #8: the refiner's own, uncalibrated)" if args.before else f"({args.input_draws} input draws)"))
    summaries = groups(rows)
    body = table(summaries)
    command = "`.venv/bin/python scripts/variance_bench.py " + " ".join(sys.argv[1:]) + "`"
    text = (f"Command: {command} ({time.strftime('%Y-%m-%d')}; {what}; {time.perf_counter() - started:.0f} s).\n\n"
            f"{body}\n\nTargets (#8): coverage 43–57 % and 83–97 %, RMS ratio and every decile's ratio 0.8–1.25 "
            f"(✗: outside). Nominal radii as in docs/variance.md (with `var_root` when the maps have it).")
    print(text)
    if args.plot:
        plot(summaries, args.plot, short)
        print(f"wrote {args.plot}")
    if args.json:
        args.json.write_text(json.dumps({label: {k: v for k, v in s.items()} for label, s in summaries},
                                        indent=1, default=float))
    if args.write_docs:
        replace_marked_section(REPO / "docs" / "results.md", f"<!-- variance-calibration:{name} -->",
                               "<!-- /variance-calibration -->", text,
                               heading=f"### Variance calibration: {name}")


if __name__ == "__main__":
    main()
