"""Benchmarks for the detect stage (numbers go to docs/benchmarks.md, section "detect").

    python scripts/bench_detect.py quality VIDEO            track coverage and identities on a clip
    python scripts/bench_detect.py overhead VIDEO [--repeats N] [--with-estimate]
                                                            wall time of MediaPipe alone vs the whole stage
    python scripts/bench_detect.py components VIDEO         the added work timed piece by piece
    python scripts/bench_detect.py rss VIDEO                peak RSS of `handcli detect VIDEO` (process tree)
    python scripts/bench_detect.py conventions VIDEO        MediaPipe conventions checked (docs/detect.md)
    python scripts/bench_detect.py draw VIDEO ARTIFACT OUT.png [--frames 0,100,200]
                                                            2D keypoints drawn over a few frames

`overhead` runs, alternately (ABBA order) and `--repeats` times each, (a) MediaPipe alone: imageio-ffmpeg decode and
`Hands.process` on every frame, nothing else, and (b) ours: `detect_file` + `save_artifact`, i.e. probing,
decoding with the frame-rate filter, MediaPipe, tracking, lifting, writing. It reports the fastest run of
each, the median ratio of the alternating pairs, and the ratio of CPU time (process + ffmpeg children),
which other load on a shared machine disturbs less. `--with-estimate` adds the estimate stage to (b): the
hook for issue 3's budget, which covers everything after MediaPipe.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from handcli.artifacts import load_artifact, save_artifact  # noqa: E402
from handcli.stages.detect import DetectConfig, detect_file  # noqa: E402
from handcli.video import iter_frames, probe_video  # noqa: E402


def quality(video: Path) -> dict:
    """Per-track coverage, handedness and identity count of the full detect stage on `video`."""
    started = time.perf_counter()
    artifact = detect_file(video, DetectConfig())
    tracks = [{"track_id": int(artifact.track_id[h]), "right": bool(artifact.is_right[h]),
               "valid_fraction": float(artifact.valid[h].mean()),
               "first_frame": int(np.flatnonzero(artifact.valid[h])[0]),
               "last_frame": int(np.flatnonzero(artifact.valid[h])[-1])} for h in range(artifact.num_tracks)]
    return {"video": str(video), "frames": artifact.num_frames, "tracks": tracks,
            "tracking": artifact.meta["tracking"], "wall_s": time.perf_counter() - started}


def mediapipe_alone(video: Path) -> tuple[float, int]:
    """Seconds and frames for decode + Hands.process with no other work (the baseline)."""
    import imageio_ffmpeg

    from handcli.detect.mediapipe_hands import native_stderr_silenced

    started = time.perf_counter()
    with native_stderr_silenced():
        from mediapipe.python.solutions.hands import Hands

        with Hands(static_image_mode=False, max_num_hands=2) as hands:
            generator = imageio_ffmpeg.read_frames(str(video))
            meta = next(generator)
            width, height = meta["size"]
            frames = 0
            for buffer in generator:
                hands.process(np.frombuffer(buffer, np.uint8).reshape(height, width, 3))
                frames += 1
    return time.perf_counter() - started, frames


def ours(video: Path, out: Path, with_estimate: bool) -> tuple[float, int, dict]:
    """Seconds and frames for the whole detect stage including the write (and estimate if asked)."""
    started = time.perf_counter()
    artifact = detect_file(video, DetectConfig())
    stages = {"detect_s": time.perf_counter() - started}
    if with_estimate:
        from handcli.stages.estimate import EstimateConfig, estimate

        before = time.perf_counter()
        artifact = estimate(artifact, EstimateConfig(device="cpu"))
        stages["estimate_s"] = time.perf_counter() - before
    save_artifact(artifact, out)
    total = time.perf_counter() - started
    stages["write_s"] = total - sum(stages.values())
    stages["inside_detect"] = artifact.meta["history"][0]["timings"] if with_estimate else artifact.meta["timings"]
    return total, artifact.num_frames, stages


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (the ffmpeg decoders)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def overhead(video: Path, repeats: int, with_estimate: bool) -> dict:
    """Alternate the two runs `repeats` times. Reports wall time (fastest of each, and the median of the
    per-pair ratios) and CPU time (less sensitive to other load on a shared machine)."""
    wall = {"alone": [], "ours": []}
    cpu = {"alone": [], "ours": []}
    details = []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(repeats):
            for which in ("alone", "ours") if repeat % 2 == 0 else ("ours", "alone"):  # cancel order effects
                cpu_before = _cpu_seconds()
                if which == "alone":
                    seconds, frames_alone = mediapipe_alone(video)
                else:
                    seconds, frames_ours, stages = ours(video, Path(scratch) / "detect.npz", with_estimate)
                    details.append(stages)
                cpu[which].append(_cpu_seconds() - cpu_before)
                wall[which].append(seconds)
    pair_ratios = np.array(wall["ours"]) / np.array(wall["alone"])
    return {"video": str(video), "frames": {"mediapipe_alone": frames_alone, "ours": frames_ours},
            "load_average": os.getloadavg(), "wall_s": wall, "cpu_s": cpu,
            "ratio_best_wall": min(wall["ours"]) / min(wall["alone"]),
            "ratio_median_pair_wall": float(np.median(pair_ratios)),
            "ratio_cpu": float(np.median(cpu["ours"]) / np.median(cpu["alone"])),
            "ms_per_frame_alone_best": 1000 * min(wall["alone"]) / frames_alone,
            "stages_of_fastest": details[int(np.argmin(wall["ours"]))], "with_estimate": with_estimate}


def components(video: Path, repeats: int = 3) -> dict:
    """The work the stage adds to MediaPipe, timed piece by piece (less exposed to machine load than the
    end-to-end ratio): header probe, tracker update per frame (two synthetic hands), and ffmpeg's CPU time
    to decode the video with and without the frame-rate filter."""
    import imageio_ffmpeg

    from handcli.detect import HandDetection, HandTracker

    probe_s = []
    for _ in range(repeats):
        started = time.perf_counter()
        info = probe_video(video)
        probe_s.append(time.perf_counter() - started)
    rng = np.random.default_rng(0)
    frames = 600
    detections = [[HandDetection(rng.normal(centre, 40, (21, 2)), rng.normal(0, 0.04, (21, 3)), p, 0.9)
                   for centre, p in ((300, 0.9), (900, 0.1))] for _ in range(frames)]
    tracker = HandTracker()
    started = time.perf_counter()
    for frame, pair in enumerate(detections):
        tracker.update(frame, pair)
    tracking_ms = 1000 * (time.perf_counter() - started) / frames
    decode_cpu = {"plain": [], "fps_filter": []}
    for _ in range(repeats):
        for name, params in (("plain", []), ("fps_filter", ["-vf", f"fps={info.fps!r}"])):
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            before = children.ru_utime + children.ru_stime
            generator = imageio_ffmpeg.read_frames(str(video), output_params=params)
            next(generator)
            for _buffer in generator:
                pass
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            decode_cpu[name].append(children.ru_utime + children.ru_stime - before)
    return {"video": str(video), "probe_s_median": float(np.median(probe_s)),
            "tracking_ms_per_frame_two_hands": tracking_ms,
            "decode_ffmpeg_cpu_s_median": {k: float(np.median(v)) for k, v in decode_cpu.items()},
            "load_average": os.getloadavg()}


def conventions(video: Path, every: int = 5) -> dict:
    """Checks behind docs/detect.md: MediaPipe's raw handedness labels, the axes of its world landmarks
    (correlation with image u, v and with its normalised depth, documented as smaller = closer), and how
    the assumed field of view moves the reprojection error and depth of the lifted keypoints3d."""
    from mediapipe.python.solutions.hands import Hands

    from handcli.detect import camera_matrix, project, solve_translation
    from handcli.detect.mediapipe_hands import native_stderr_silenced

    info = probe_video(video)
    labels: dict[str, int] = {}
    correlations, image_points, world_points = [], [], []
    with native_stderr_silenced(), Hands(static_image_mode=False, max_num_hands=2) as hands:
        for index, frame in enumerate(iter_frames(info)):
            result = hands.process(frame)  # every frame, so MediaPipe tracks as it does in the stage
            if index % every or not result.multi_hand_landmarks:
                continue
            label = result.multi_handedness[0].classification[0].label
            labels[label] = labels.get(label, 0) + 1
            image = np.array([(p.x * info.width, p.y * info.height, p.z * info.width)
                              for p in result.multi_hand_landmarks[0].landmark])
            world = np.array([(p.x, p.y, p.z) for p in result.multi_hand_world_landmarks[0].landmark])
            correlations.append([np.corrcoef(image[:, a], world[:, a])[0, 1] for a in range(3)])
            image_points.append(image[:, :2] - 0.5)
            world_points.append(world)
    correlations = np.array(correlations)
    uv, world = np.array(image_points), np.array(world_points)
    by_fov = {}
    for fov in (40, 50, 60, 70, 90):
        K = camera_matrix(info.width, info.height, fov=float(fov))
        translation = solve_translation(world, uv, K)
        placed = world + translation[:, None]
        by_fov[fov] = {"reprojection_px_median": float(np.median(np.linalg.norm(project(placed, K) - uv, axis=-1))),
                       "depth_m_median": float(np.median(translation[:, 2])),
                       "depth_m_range": [float(translation[:, 2].min()), float(translation[:, 2].max())]}
    boxes = uv.max(1) - uv.min(1)
    return {"video": str(video), "frames_checked": len(correlations), "raw_labels": labels,
            "corr_median_u_x": float(np.median(correlations[:, 0])),
            "corr_median_v_y": float(np.median(correlations[:, 1])),
            "corr_median_depth_z": float(np.median(correlations[:, 2])),
            "depth_z_positive_fraction": float(np.mean(correlations[:, 2] > 0)),
            "hand_box_diagonal_px_median": float(np.median(np.hypot(boxes[:, 0], boxes[:, 1]))),
            "by_fov_degrees": by_fov}


def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and all its descendants (Linux /proc)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            with open(f"/proc/{current}/task/{current}/children") as children:
                pending += [int(child) for child in children.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def rss(video: Path) -> dict:
    """Run `handcli detect VIDEO` in a new process; sample the RSS of its process tree every 0.2 s."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "handcli.cli", "detect", str(video), "--out", f"{scratch}/d.npz"]
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak, finished = [0], threading.Event()

        def sample() -> None:
            while not finished.wait(0.2):
                peak[0] = max(peak[0], _tree_rss_bytes(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _pid, status, usage = os.wait4(process.pid, 0)  # reaps the child; usage.ru_maxrss is its own peak
        finished.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr = process.stderr.read()
        artifact = load_artifact(f"{scratch}/d.npz") if process.returncode == 0 else None
    return {"video": str(video), "exit_code": process.returncode, "wall_s": time.perf_counter() - started,
            "peak_tree_rss_mb": peak[0] / 2**20, "max_rss_main_process_mb": usage.ru_maxrss / 1024,
            "frames": artifact.num_frames if artifact else None,
            "tracks": artifact.num_tracks if artifact else None, "stderr": stderr.strip()[-500:]}


def draw(video: Path, artifact_path: Path, out: Path, frames: list[int]) -> None:
    """Panels of the requested frames with each track's 2D skeleton (colour per track, label = id/hand)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from handcli.handmodels.kinematics import CANONICAL_PARENTS

    artifact = load_artifact(artifact_path)
    wanted = {f: None for f in frames if f < artifact.num_frames}
    for index, frame in enumerate(iter_frames(probe_video(video))):
        if index in wanted:
            wanted[index] = frame.copy()
        if index >= max(wanted):
            break
    colours = plt.get_cmap("tab10")
    figure, axes = plt.subplots(1, len(wanted), figsize=(5 * len(wanted), 5 * 0.9), squeeze=False)
    for axis, (index, image) in zip(axes[0], wanted.items()):
        axis.imshow(image)
        for h in range(artifact.num_tracks):
            if not artifact.valid[h, index]:
                continue
            uv = artifact.keypoints2d[h, index, :, :2]
            colour = colours(h % 10)
            for child, parent in enumerate(CANONICAL_PARENTS):
                if parent >= 0:
                    axis.plot(uv[[parent, child], 0], uv[[parent, child], 1], "-", color=colour, lw=2)
            axis.plot(uv[:, 0], uv[:, 1], "o", color="white", ms=3, mec=colour)
            axis.text(uv[0, 0], uv[0, 1] + 12, f"track {artifact.track_id[h]} "
                      f"{'R' if artifact.is_right[h] else 'L'}", color=colour, fontsize=9,
                      bbox=dict(facecolor="black", alpha=0.5, lw=0))
        axis.set_title(f"{video.name} frame {index}", fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(out, dpi=60)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("quality").add_argument("video", type=Path)
    over = commands.add_parser("overhead")
    over.add_argument("video", type=Path)
    over.add_argument("--repeats", type=int, default=2)
    over.add_argument("--with-estimate", action="store_true", help="include the estimate stage in 'ours'")
    commands.add_parser("rss").add_argument("video", type=Path)
    commands.add_parser("conventions").add_argument("video", type=Path)
    commands.add_parser("components").add_argument("video", type=Path)
    drawing = commands.add_parser("draw")
    drawing.add_argument("video", type=Path)
    drawing.add_argument("artifact", type=Path)
    drawing.add_argument("out", type=Path)
    drawing.add_argument("--frames", default="0,100,200")
    args = parser.parse_args()
    if args.command == "quality":
        print(json.dumps(quality(args.video), indent=1))
    elif args.command == "overhead":
        print(json.dumps(overhead(args.video, args.repeats, args.with_estimate), indent=1))
    elif args.command == "rss":
        print(json.dumps(rss(args.video), indent=1))
    elif args.command == "components":
        print(json.dumps(components(args.video), indent=1))
    elif args.command == "conventions":
        print(json.dumps(conventions(args.video), indent=1))
    else:
        draw(args.video, args.artifact, args.out, [int(f) for f in args.frames.split(",")])


if __name__ == "__main__":
    main()
