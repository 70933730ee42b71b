"""Calibration of the variance maps on the video benchmark and on the keypoint protocol (docs/results.md).

    .venv/bin/python scripts/variance_bench.py --split test --clips 27 --null-draws 100 --write-docs --plot docs/images/variance_calibration_video.png
    .venv/bin/python scripts/variance_bench.py --keypoints --subjects 4 --write-docs --plot docs/images/variance_calibration_fpha.png

Video: for every clip of a split whose estimate and refine outputs the video benchmark cached
(`scripts/video_bench.py --split S --tag default`), the variance is computed as `handcli refine --variance`
computes it (observations: the estimate; target: the refined motion) and set against the refined motion's
errors on the track the shared scorer picks: coverage of the nominal 50 % / 90 % radii, observed / predicted RMS
overall and per decile of predicted variance, and AUSE (handcli.variance.calibration), per camera situation and
per distance; with --null-draws, beside each measure the range that exactly calibrated maps would show on the
same clips (their errors are mostly one offset per clip, so a few clips scatter widely). Keypoints: FPHA sequences corrupted with ../shared/bench/handeval_dev.py's dev protocol, refined
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
sys.path.insert(0, str(REPO))
from handcli.videobench import SITUATIONS  # noqa: E402
DISTANCE_BINS = ((0.0, 0.5), (0.5, 0.8), (0.8, 10.0))  # metres to the hand's centre
# the cameras' field of view (degrees), for maps that assumed the focal length: inside the common cameras' range
# the assumption's error bar claims to hold (handcli.variance.estimate.COMMON_FOV_DEGREES), outside it not
FOV_BINS = ((0.0, 60.0), (60.0, 80.0), (80.0, 180.0))


def video_rows(split: str, tag: str, config, clips_per_situation: int | None = None) -> list[dict]:
    """Per clip: situation, distances (N,), errors (N, 21) metres, var_joints (N, 21), var_root (N, 3, 3),
    beyond (N,) bool (the frame's error bars extrapolate the calibration) or None, fps,
    the camera's field of view and whether the maps assumed the focal length; of the split's first
    `clips_per_situation` clips per situation (clip index < 3 x that), or all cached."""
    from handcli.artifacts import load_artifact
    from handcli.stages.variance import compute_variance
    from handcli.videobench.scoring import load_videoscore
    from handcli.videobench.uncertainty import clip_errors

    vs = load_videoscore()
    split_dir = REPO / ".bench-video" / split
    rows = []
    for clip, refined in clip_errors(vs, split_dir, tag, "refine"):
        if clips_per_situation is not None and int(clip.clip[4:]) >= len(SITUATIONS) * clips_per_situation:
            continue
        estimate = load_artifact(split_dir / tag / f"{clip.clip}_estimate.npz")
        maps = compute_variance(estimate, refined, config)
        h, frames = clip.track, clip.frames
        centre = refined.keypoints3d[h, frames].astype(np.float64).mean(1)
        rows.append({"clip": clip.clip, "situation": clip.situation, "distance": np.linalg.norm(centre, axis=-1),
                     "errors": np.linalg.norm(clip.errors, axis=-1), "var_joints": maps.var_joints[h, frames],
                     "var_root": None if maps.var_root is None else maps.var_root[h, frames],
                     "beyond": None if maps.beyond is None else maps.beyond_calibration[h, frames],
                     "fps": float(refined.fps), "seconds": sum(maps.timings.values()), "fov": clip.fov_deg,
                     "focal_assumed": bool(maps.focal_spread)})
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


def _frames(rows: list[dict], select) -> list[dict]:
    """The rows cut to the frames `select(row)` ((N,) bool) keeps; rows with none left out."""
    part = []
    for r in rows:
        m = select(r)
        if m.any():
            part.append({k: (v[m] if isinstance(v, np.ndarray) and len(v) == len(m) else v) for k, v in r.items()})
    return part


def groups(rows: list[dict]) -> list[tuple[str, dict]]:
    """(label, summary) per situation, per distance bin, beyond the calibration's range and within it (when
    any frame is beyond), per camera field of view when the maps assumed the focal length, and over
    everything."""
    out = []
    for situation in sorted({r["situation"] for r in rows}):
        out.append((situation, summarise([r for r in rows if r["situation"] == situation])))
    for low, high in DISTANCE_BINS:
        part = _frames(rows, lambda r: (r["distance"] >= low) & (r["distance"] < high))
        if part:
            out.append((f"{low:.1f}-{high:.1f} m" if high < 10 else f"≥ {low:.1f} m", summarise(part)))
    if any(r.get("beyond") is not None and r["beyond"].any() for r in rows):
        for label, inside in (("beyond the calibration", False), ("within the calibration", True)):
            part = _frames(rows, lambda r: r["beyond"] != inside if r.get("beyond") is not None
                           else np.full(len(r["distance"]), inside))
            if part:
                out.append((label, summarise(part)))
    if any(r.get("focal_assumed") for r in rows):
        for low, high in FOV_BINS:
            part = [r for r in rows if low <= r["fov"] < high]
            if part:
                label = (f"camera < {high:.0f}°" if low == 0 else f"camera ≥ {low:.0f}°" if high >= 180
                         else f"camera {low:.0f}-{high:.0f}°")
                out.append((label, summarise(part)))
    out.append(("all", summarise(rows)))
    return out


def null_ranges(rows: list[dict], draws: int, seed: int = 0) -> dict[str, dict[str, tuple[float, float]]]:
    """Per set of `groups`: the 5-95 % range of each measure over `draws` splits whose errors were drawn from
    the maps themselves (handcli.variance.calibration.calibrated_error_draw, with the calibration file's time
    structure): what exactly calibrated maps would show on these clips."""
    from handcli.variance.calibration import calibrated_error_draw
    from handcli.variance.estimate import VarianceCalibration

    calibration = VarianceCalibration.load()
    rng = np.random.default_rng(seed)
    measures = ("coverage50", "coverage90", "rms_ratio", "decile_ratio_min", "decile_ratio_max")
    values: dict[str, list[list[float]]] = {}
    for _ in range(draws):
        drawn = [{**r, "errors": np.where(np.isfinite(r["errors"]), calibrated_error_draw(
            r["var_joints"], r["var_root"], r["fps"], rng, calibration.correlation_frames,
            calibration.constant_root, calibration.constant_articulation), np.nan)} for r in rows]
        for label, s in groups(drawn):
            values.setdefault(label, []).append([s[m] for m in measures])
    return {label: {m: tuple(np.percentile(np.array(v)[:, i], [5, 95])) for i, m in enumerate(measures)}
            for label, v in values.items()}


def table(summaries: list[tuple[str, dict]], null: dict | None = None) -> str:
    def verdict(value, low, high):
        return "" if low <= value <= high else " ✗"

    def spread(label, measure, scale=1.0, digits=0, high_measure=None):
        """' (5 %–95 %)' of the measure under exact maps (of `high_measure` for the upper end), or ''."""
        if null is None or label not in null:
            return ""
        low, high = null[label][measure][0], null[label][high_measure or measure][1]
        return f" ({scale * low:.{digits}f}–{scale * high:.{digits}f})"

    lines = ["| set | frames | joints | coverage 50 % | coverage 90 % | observed / predicted RMS | decile ratios "
             "(min–max) | AUSE / random |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, s in summaries:
        lines.append(f"| {label} | {s['frames']} | {s['joints']} | {100 * s['coverage50']:.1f}"
                     f"{verdict(s['coverage50'], 0.43, 0.57)}{spread(label, 'coverage50', 100)} | "
                     f"{100 * s['coverage90']:.1f}{verdict(s['coverage90'], 0.83, 0.97)}"
                     f"{spread(label, 'coverage90', 100)} | {s['rms_ratio']:.2f}"
                     f"{verdict(s['rms_ratio'], 0.8, 1.25)}{spread(label, 'rms_ratio', digits=2)} | "
                     f"{s['decile_ratio_min']:.2f}–{s['decile_ratio_max']:.2f}"
                     f"{verdict(s['decile_ratio_min'], 0.8, 1.25) or verdict(s['decile_ratio_max'], 0.8, 1.25)}"
                     f"{spread(label, 'decile_ratio_min', digits=2, high_measure='decile_ratio_max')} | "
                     f"{s['relative']:.2f} |")
    return "\n".join(lines)


def plot(summaries: list[tuple[str, dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.0, 4.4), constrained_layout=True)
    highest = 1.0
    for label, s in summaries:
        if "m" in label and label != "all" and "-" in label or label.startswith(("≥", "camera", "beyond", "within")):
            continue  # distance, field-of-view and calibration-range sets: the table has them
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
    parser.add_argument("--clips", type=int, default=None,
                        help="video: the split's first N clips per situation (default: every clip cached)")
    parser.add_argument("--null-draws", type=int, default=0,
                        help="video: beside each measure, its 5-95 %% range over this many draws of errors from the "
                             "maps themselves (what exactly calibrated maps would show on these clips)")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.keypoints and (args.null_draws or args.clips):
        parser.error("--null-draws and --clips are for the video benchmark")
    null = None
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
        rows = video_rows(args.split, args.tag, config, args.clips)
        if args.null_draws:
            null = null_ranges(rows, args.null_draws)
        name = (f"video-{args.split}" + ("" if args.tag == "default" else f"-{args.tag}")
                + ("-before" if args.before else ""))
        short = f"video benchmark, {args.split} split: refine --variance against the truth"
        what = (f"video benchmark {args.split} split, `{args.tag}` pipeline: {len(rows)} clips, refine output "
                f"against the variance of `refine --variance` "
                + ("as before #8: the refiner's own, uncalibrated)" if args.before else f"({args.input_draws} input draws)"))
    summaries = groups(rows)
    body = table(summaries, null)
    command = "`.venv/bin/python scripts/variance_bench.py " + " ".join(sys.argv[1:]) + "`"
    text = (f"Command: {command} ({time.strftime('%Y-%m-%d')}; {what}; {time.perf_counter() - started:.0f} s).\n\n"
            f"{body}\n\nTargets (#8): coverage 43–57 % and 83–97 %, RMS ratio and every decile's ratio 0.8–1.25 "
            f"(✗: outside). Nominal radii as in docs/variance.md (with `var_root` when the maps have it)."
            + ("" if null is None else f" In brackets: the 5–95 % range of the measure over {args.null_draws} "
               "draws of errors from the maps themselves, with the calibration's time structure (what exactly "
               "calibrated maps would show on these clips; for the deciles, the lowest 5 % and highest 95 % "
               "points)."))
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
