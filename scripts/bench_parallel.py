"""Segment-parallel detection and long clips (#11 in docs/benchmarks.md, "## parallel and long clips").

    .venv/bin/python scripts/bench_parallel.py [--clip ../shared/data/video/dexretarget_open_close.mp4]
                                               [--long-minutes 10] [--skip-long]

1. Speed, in one run of this script on an otherwise idle machine: MediaPipe alone on the clip (decode + the
   hand landmarker in video mode, nothing else), then the whole `handcli run` (detect -> estimate -> refine ->
   variance, fresh work dir) with --workers 1 and --workers N (N = usable cores); each as a subprocess, wall and
   CPU time (user + system, subprocesses included). The --workers 1 run's CPU time over the N cores is a floor
   no parallel schedule of the same work can beat.
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


def timed(name: str, command: list[str]) -> tuple[float, float, int]:
    """Run `command` (called `name` in a failure message): (wall seconds, CPU seconds (user + system, its waited-for subprocesses included), the
    child's own peak RSS in KiB). Exits with the command's stderr tail when it fails."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{name} failed: {process.stderr.read().decode()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def mediapipe_alone(clip: Path) -> tuple[float, float]:
    """(wall, CPU seconds) of decoding the clip and running MediaPipe's hand landmarker on every frame."""
    code = ("import sys; from handcli.video import probe_video, iter_frames; "
            "from handcli.detect.mediapipe_hands import MediaPipeHands; v = probe_video(sys.argv[1])\n"
            "with MediaPipeHands() as h:\n    [h.process(f) for f in iter_frames(v)]\n")
    wall, cpu, _ = timed("MediaPipe alone", [sys.executable, "-c", code, str(clip)])
    return wall, cpu


def timed_run(clip: Path, work: Path, *extra: str) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in GB of the process tree's largest process) of `handcli run`."""
    work.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "handcli.cli", "run", str(clip), "--out", str(work / "o.npz"),
               "--work-dir", str(work / "cache"), "--force", "detect", *extra]
    wall, cpu, own_rss = timed("handcli run", command)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # segment workers (largest child so far)
    return wall, cpu, max(own_rss, children) / 1024 ** 2


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
        alone, alone_cpu = (0.0, 0.0) if args.only_long else mediapipe_alone(args.clip)
        if alone:
            print(f"{args.clip.name}: MediaPipe alone {alone:.1f} s (CPU {alone_cpu:.1f} s)")
        for workers in sorted({1, cores}) if alone else []:
            work = scratch / f"w{workers}"
            wall, cpu, rss = timed_run(args.clip, work, "--workers", str(workers))
            print(f"  handcli run --workers {workers}: {wall:.1f} s = {wall / alone:.2f}x MediaPipe alone, "
                  f"CPU {cpu:.1f} s, peak RSS {rss:.2f} GB")
            if workers == 1:
                # the least work the run can do: this CPU time spread over every core with nothing idle
                print(f"    floor on {cores} cores: {cpu:.1f} CPU s / {cores} = {cpu / cores:.1f} s = "
                      f"{cpu / cores / alone:.2f}x MediaPipe alone (MediaPipe's share {alone_cpu:.1f} s, the "
                      f"rest {cpu - alone_cpu:.1f} s)")
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
