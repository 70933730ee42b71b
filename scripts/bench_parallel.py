"""Segment-parallel detection and long clips (#11 in docs/benchmarks.md, "## parallel and long clips").

    .venv/bin/python scripts/bench_parallel.py [--clip ../shared/data/video/dexretarget_open_close.mp4]
                                               [--long-minutes 10] [--skip-long]

1. Speed, in one run of this script on an otherwise idle machine: MediaPipe alone on the clip (decode + the
   hand landmarker in video mode, nothing else), then the whole `handcli run` (detect -> estimate -> refine ->
   variance, fresh work dir) with --workers 1 and --workers N (N = usable cores); each as a subprocess, wall time.
2. Long clips: the clip looped (ffmpeg stream copy) to `--long-minutes` and to a quarter of that, each through
   `handcli run` (default workers), wall time and the peak resident memory of the process and its children.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "video" / "dexretarget_open_close.mp4"


def mediapipe_alone(clip: Path) -> float:
    code = ("import time,sys; from handcli.video import probe_video, iter_frames; "
            "from handcli.detect.mediapipe_hands import MediaPipeHands; v = probe_video(sys.argv[1]); "
            "t = time.perf_counter()\n"
            "with MediaPipeHands() as h:\n    [h.process(f) for f in iter_frames(v)]\n"
            "print(time.perf_counter() - t)")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(clip)], check=True, capture_output=True)
    return time.perf_counter() - started


def timed_run(clip: Path, work: Path, *extra: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB of the process tree's largest process) of `handcli run`."""
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "handcli.cli", "run", str(clip), "--out", str(work / "o.npz"),
                                "--work-dir", str(work / "cache"), "--force", "detect", *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"handcli run failed: {process.stderr.read().decode()[-500:]}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # segment workers (largest child so far)
    return wall, max(usage.ru_maxrss, children) / 1024 ** 2


def looped(clip: Path, minutes: float, folder: Path) -> Path:
    import imageio_ffmpeg

    from handcli.video import probe_video

    seconds = probe_video(clip).duration
    loops = max(1, round(minutes * 60 / seconds))
    out = folder / f"loop_{minutes:g}min.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-stream_loop", str(loops - 1),
                    "-i", str(clip), "-c", "copy", str(out)], check=True)
    return out


def main() -> None:
    from handcli.detect.parallel import usable_cores
    from handcli.video import probe_video

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--skip-long", action="store_true")
    parser.add_argument("--only-long", action="store_true", help="skip the speed comparison")
    args = parser.parse_args()
    cores = usable_cores()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        alone = 0.0 if args.only_long else mediapipe_alone(args.clip)
        if alone:
            print(f"{args.clip.name}: MediaPipe alone {alone:.1f} s")
        for workers in sorted({1, cores}) if alone else []:
            work = scratch / f"w{workers}"
            wall, rss = timed_run(args.clip, work, "--workers", str(workers))
            print(f"  handcli run --workers {workers}: {wall:.1f} s = {wall / alone:.2f}x MediaPipe alone, "
                  f"peak RSS {rss:.2f} GB")
        if args.skip_long:
            return
        for minutes in (args.long_minutes / 4, args.long_minutes):
            clip = looped(args.clip, minutes, scratch)
            frames = probe_video(clip).num_frames_estimate
            wall, rss = timed_run(clip, scratch / f"long{minutes:g}")
            print(f"  {minutes:g}-minute clip ({frames} frames, {clip.stat().st_size / 1e6:.0f} MB): handcli run "
                  f"{wall:.0f} s ({1000 * wall / frames:.1f} ms/frame), peak RSS {rss:.2f} GB")


if __name__ == "__main__":
    main()
