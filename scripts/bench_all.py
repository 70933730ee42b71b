"""Speed and memory of every stage, measured in one run; writes the "## all stages (make bench)" section at the
top of docs/benchmarks.md (the other sections are left as they are).

    .venv/bin/python scripts/bench_all.py [--repeats 3] [--refine-frames 1000] [--render-frames 300]
                                          [--clips A.mp4 B.mp4] [--quick] [--no-write] [--refine-only]

Clips: the shared ones (../shared/data/video/*.mp4, skipped when absent) and samples/synthetic_hand.mp4.
Per clip, each stage runs as a user runs it (`handcli detect`, `estimate`, `refine`, `variance`, `render`, and
`run` on a fresh cache), in a new process, `--repeats` times: median wall time, and the peak resident memory
of the process tree (handcli and its ffmpeg children, sampled every 0.1 s). In the same run:
* time added to MediaPipe alone by the detect and estimate stages: scripts/bench_detect.py `overhead
  --with-estimate` (alternating runs in one process), and the detect stage's share;
* refine ms per frame on 1,000 frames of one hand after start-up (refiner loaded, one warm-up call), split into
  the diffusion and the hand-model fit + kinematic projection, and start-up (imports + weight load) in a fresh process;
* drawing speed at 1280x720: scripts/bench_render.py for each backend.
`--refine-only` measures only the refine speed and start-up and prints them (a quick look; docs untouched).
Load from other work distorts wall times; the load average is recorded at the start and the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import bench_detect  # noqa: E402
import bench_render  # noqa: E402

from handcli.artifacts import load_artifact  # noqa: E402
from handcli.cache import code_version  # noqa: E402

SHARED_CLIPS = REPO.parent / "shared" / "data" / "video"
SAMPLE = REPO / "samples" / "synthetic_hand.mp4"
DOC = REPO / "docs" / "benchmarks.md"
HEADING = "## all stages (make bench)"


# ------------------------------------------------------------------------------------------------- machine
def machine() -> dict:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "handcli": code_version(),
            "load_average_start": os.getloadavg(), "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}


# --------------------------------------------------------------------------------------- one command, timed
def measure(command: list[str]) -> dict:
    """Run `handcli COMMAND` in a new process: wall seconds, exit code, peak RSS of the process tree and of the
    handcli process itself, the last stderr line."""
    args = [sys.executable, "-m", "handcli.cli", *command]
    started = time.perf_counter()
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONWARNINGS="ignore"))
    peak, finished = [0], threading.Event()

    def sample() -> None:
        while not finished.wait(0.1):
            peak[0] = max(peak[0], bench_detect._tree_rss_bytes(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr_text: list[str] = []
    reader = threading.Thread(target=lambda: stderr_text.append(process.stderr.read()), daemon=True)
    reader.start()
    _pid, status = os.waitpid(process.pid, 0)
    wall = time.perf_counter() - started
    finished.set()
    sampler.join()
    reader.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    lines = [line for line in "".join(stderr_text).splitlines() if line.strip()]
    return {"wall_s": wall, "exit_code": process.returncode, "peak_tree_rss_mb": peak[0] / 2**20,
            "last_line": lines[-1] if lines else ""}


def stage_commands(clip: Path, scratch: Path) -> list[tuple[str, list[str], Path]]:
    """(stage, handcli arguments, output) in pipeline order; each stage reads the previous stage's output."""
    detected, estimated, refined = scratch / "detect.npz", scratch / "estimate.npz", scratch / "refine.npz"
    return [
        ("detect", ["detect", str(clip), "--out", str(detected)], detected),
        ("estimate", ["estimate", "--input", str(detected), "--out", str(estimated)], estimated),
        ("refine", ["refine", "--input", str(estimated), "--out", str(refined)], refined),
        ("variance", ["variance", "--input", str(refined), "--out", str(scratch / "variance.npz")],
         scratch / "variance.npz"),
        ("render", ["render", "--input", str(refined), "--video", str(clip), "--out", str(scratch / "overlay.mp4")],
         scratch / "overlay.mp4"),
        ("run (all, fresh cache)", ["run", str(clip), "--out", str(scratch / "run.npz"), "--work-dir",
                                    str(scratch / "cache")], scratch / "run.npz"),
    ]


def bench_clip(clip: Path, repeats: int, log) -> dict:
    """Every stage on `clip`, `repeats` times each (stages interleaved per repeat)."""
    runs: dict[str, list[dict]] = {}
    frames = None
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for repeat in range(repeats):
            for stage, command, out in stage_commands(clip, scratch):
                if stage == "variance" and runs.get(stage) and runs[stage][0].get("not_built"):
                    continue
                if stage.startswith("run"):
                    subprocess.run(["rm", "-rf", str(scratch / "cache")], check=True)
                result = measure(command)
                result["not_built"] = result["exit_code"] == 2 and "not built" in result["last_line"]
                runs.setdefault(stage, []).append(result)
                if stage == "detect" and result["exit_code"] == 0:
                    frames = load_artifact(out).num_frames
                log(f"  {clip.name} {stage} #{repeat + 1}: exit {result['exit_code']}, {result['wall_s']:.1f} s, "
                    f"peak {result['peak_tree_rss_mb']:.0f} MB")
    summary = {}
    for stage, results in runs.items():
        ok = [r for r in results if r["exit_code"] == 0]
        summary[stage] = {
            "runs": len(results), "ok": len(ok), "not_built": results[0]["not_built"],
            "wall_s_median": float(np.median([r["wall_s"] for r in ok])) if ok else None,
            "peak_tree_rss_mb": max(r["peak_tree_rss_mb"] for r in ok) if ok else None,
            "error": None if ok or results[0]["not_built"] else results[0]["last_line"]}
    return {"clip": str(clip), "frames": frames, "stages": summary}


# ----------------------------------------------------------------------------------------- refine and start-up
STARTUP_PROBE = """
import json, time
started = time.perf_counter()
import handcli.stages.refine
from handcli.diffusion import load_refiner
imported = time.perf_counter()
load_refiner(None, device="cpu")
print(json.dumps({"import_s": imported - started, "weights_s": time.perf_counter() - imported}))
"""


def startup(repeats: int) -> dict:
    """Imports + weight load, in fresh processes (and the whole process wall time, interpreter start included)."""
    results = []
    for _ in range(repeats):
        started = time.perf_counter()
        output = subprocess.run([sys.executable, "-c", STARTUP_PROBE], cwd=REPO, capture_output=True, text=True,
                                check=True, env=dict(os.environ, PYTHONWARNINGS="ignore")).stdout
        result = json.loads(output.strip().splitlines()[-1])
        result["process_s"] = time.perf_counter() - started
        results.append(result)
    return {key: float(np.median([r[key] for r in results])) for key in results[0]} | {"repeats": repeats}


def refine_speed(num_frames: int, repeats: int) -> dict:
    """The refine stage on one hand over `num_frames` frames (30 fps open-close motion of the open hand model plus
    2 mm noise, as an estimate would give), after start-up: medians of `repeats` timed calls after a warm-up."""
    import torch

    from handcli.artifacts import Artifact
    from handcli.handmodels import load_hand_model
    from handcli.render.synthetic import open_close_motion
    from handcli.stages.refine import RefineConfig, refine

    motion = open_close_motion(num_frames, 30.0)
    model = load_hand_model("open")
    with torch.no_grad():
        joints = model(*(torch.as_tensor(motion[k], dtype=torch.float32) for k in ("global_orient", "hand_pose")),
                       torch.zeros(num_frames, model.num_betas), torch.as_tensor(motion["transl"], dtype=torch.float32),
                       True).joints.numpy()
    noisy = joints + np.random.default_rng(0).normal(0, 0.002, joints.shape)
    artifact = Artifact(keypoints3d=noisy[None].astype(np.float32), valid=np.ones((1, num_frames), bool),
                        is_right=np.array([True]), fps=30.0)
    config = RefineConfig(device="cpu")
    refine(artifact.replace(keypoints3d=artifact.keypoints3d[:, :64], valid=artifact.valid[:, :64]), config)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = refine(artifact, config)
        timings.append({"total_s": time.perf_counter() - started, **result.meta["timings"]})
    median = {key: float(np.median([t[key] for t in timings])) for key in timings[0]}
    return {"frames": num_frames, "repeats": repeats, **median,
            "ms_per_frame": 1000 * median["total_s"] / num_frames,
            "diffusion_ms_per_frame": 1000 * median.get("refine_s", float("nan")) / num_frames,
            "fit_ms_per_frame": 1000 * median.get("fit_s", float("nan")) / num_frames}


def overhead(clip: Path, repeats: int) -> dict:
    """bench_detect's alternating runs of MediaPipe alone and of the stages (detect + estimate + write), plus
    the detect stage's own share in the fastest run of the stages, against the fastest MediaPipe-alone run."""
    result = bench_detect.overhead(clip, repeats, with_estimate=True)
    result["detect_ratio_best_wall"] = result["stages_of_fastest"]["detect_s"] / min(result["wall_s"]["alone"])
    return result


def render_speed(num_frames: int) -> dict:
    artifact, K = bench_render.scene(num_frames)
    results = {}
    for backend in ("gl", "painter"):
        try:
            results[backend] = bench_render.bench_backend(backend, artifact, K, skeleton=False)
        except Exception as error:  # e.g. no EGL on this machine: say so, measure the other
            results[backend] = {"error": f"{type(error).__name__}: {error}"}
    return results


# ------------------------------------------------------------------------------------------------- writing
def _fmt(value, digits: int = 1, unit: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def section(report: dict, command: str) -> str:
    m = report["machine"]
    lines = [HEADING, "",
             f"Written by `{command}` (`make bench`) on {m['date']} (machine clock). Machine: {m['cpu']}, "
             f"{m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads, Python {m['python']}, no "
             f"GPU; handcli {m['handcli']}. Load average at the start "
             f"{' / '.join(f'{x:.2f}' for x in m['load_average_start'])} (1/5/15 min), at the end "
             f"{' / '.join(f'{x:.2f}' for x in report['load_average_end'])}; a load above the core count means "
             "other work shared the machine and wall times are pessimistic.", ""]
    lines += ["### Each stage as a command (new process: start-up included)", "",
              f"Median wall time of {report['repeats']} run(s) per stage, peak resident memory of the process "
              "tree (handcli + ffmpeg, sampled every 0.1 s) over the runs. Each stage reads the previous stage's "
              "output; `run` is the whole chain on an empty cache. (The kernel's own maximum RSS of a child is "
              "not used: after fork it counts the benchmark process's pages.)", "",
              "| clip | frames | stage | wall s (median) | ms / frame | peak RSS MB (tree) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for clip in report["clips"]:
        name = Path(clip["clip"]).name
        if clip.get("skipped"):
            lines.append(f"| {name} | — | — | skipped: {clip['skipped']} | | |")
            continue
        for stage, s in clip["stages"].items():
            if s["not_built"]:
                lines.append(f"| {name} | {clip['frames']} | {stage} | not built yet | | |")
            elif s["error"]:
                lines.append(f"| {name} | {clip['frames']} | {stage} | failed: {s['error'][:80]} | | |")
            else:
                per_frame = 1000 * s["wall_s_median"] / clip["frames"] if clip["frames"] else None
                lines.append(f"| {name} | {clip['frames']} | {stage} | {_fmt(s['wall_s_median'])} | "
                             f"{_fmt(per_frame)} | {_fmt(s['peak_tree_rss_mb'], 0)} |")
    lines += ["", "### Ratios and rates measured in the same run", "",
              "| what | measured | how |", "| --- | --- | --- |"]
    for item in report["overhead"]:
        name = Path(item["video"]).name
        lines.append(f"| detect + estimate + write / MediaPipe alone, {name} | "
                     f"wall {item['ratio_median_pair_wall']:.3f} "
                     f"(median of {len(item['wall_s']['ours'])} alternating pairs), CPU {item['ratio_cpu']:.3f}; "
                     f"detect stage alone {item['detect_ratio_best_wall']:.3f} (fastest runs); MediaPipe alone "
                     f"{item['ms_per_frame_alone_best']:.1f} ms/frame | `bench_detect.overhead --with-estimate`: "
                     "decode + `Hands.process` vs `detect_file` + `estimate` + write, in one process |")
    r = report["refine"]
    lines.append(f"| refine, one hand, {r['frames']} frames, after start-up | {r['ms_per_frame']:.2f} ms/frame "
                 f"(diffusion {r['diffusion_ms_per_frame']:.2f}, hand-model fit + projection {r['fit_ms_per_frame']:.2f}) | "
                 f"median of {r['repeats']} calls of the refine stage after a warm-up |")
    s = report["startup"]
    lines.append(f"| start-up: imports + refiner weights | {s['import_s']:.2f} s + {s['weights_s']:.2f} s "
                 f"({s['process_s']:.2f} s for the whole process) | fresh process, median of {s['repeats']} |")
    for backend, result in report["render"].items():
        measured = (f"{result['fps']:.1f} frames/s (median {result['median_ms']:.1f} ms)" if "fps" in result
                    else f"unavailable: {result['error'][:60]}")
        lines.append(f"| render at 1280×720, {backend} backend, one hand | {measured} | `bench_render.py`, "
                     f"{report['render_frames']} frames, drawing only |")
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    """Replace (or insert before the first other section) the all-stages section of docs/benchmarks.md."""
    doc = DOC.read_text()
    if HEADING in doc:
        start = doc.index(HEADING)
        following = doc.find("\n## ", start + len(HEADING))
        doc = doc[:start] + text + ("\n" + doc[following + 1:] if following >= 0 else "")
    else:
        first = doc.find("\n## ")
        doc = doc[: first + 1] + text + "\n" + doc[first + 1:] if first >= 0 else doc.rstrip() + "\n\n" + text
    DOC.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--refine-frames", type=int, default=1000)
    parser.add_argument("--render-frames", type=int, default=300)
    parser.add_argument("--clips", type=Path, nargs="*", help="default: the shared clips and the bundled sample")
    parser.add_argument("--quick", action="store_true", help="one repeat, the sample only, small sizes "
                        "(checks the script, not a benchmark)")
    parser.add_argument("--no-write", action="store_true", help="print, leave docs/benchmarks.md alone")
    parser.add_argument("--refine-only", action="store_true", help="only refine speed and start-up; print them")
    args = parser.parse_args()
    if args.refine_only:
        print(json.dumps({"refine": refine_speed(args.refine_frames, args.repeats),
                          "startup": startup(args.repeats)}, indent=1))
        return
    if args.quick:
        args.repeats, args.refine_frames, args.render_frames = 1, 120, 30
        args.clips = args.clips or [SAMPLE]
    log = lambda message: print(message, file=sys.stderr, flush=True)
    report = {"machine": machine(), "repeats": args.repeats, "render_frames": args.render_frames}
    log(f"machine: {report['machine']}")
    clips = args.clips if args.clips is not None else sorted(SHARED_CLIPS.glob("*.mp4")) + [SAMPLE]
    report["clips"], report["overhead"] = [], []
    if args.clips is None and not SHARED_CLIPS.is_dir():
        report["clips"].append({"clip": "../shared clips", "skipped": "../shared is absent"})
    for clip in clips:
        if not clip.is_file():
            report["clips"].append({"clip": str(clip), "skipped": "file absent"})
            continue
        log(f"{clip.name}: stages")
        report["clips"].append(bench_clip(clip, args.repeats, log))
        log(f"{clip.name}: overhead over MediaPipe alone")
        report["overhead"].append(overhead(clip, max(2, args.repeats)))
    log("refine speed")
    report["refine"] = refine_speed(args.refine_frames, args.repeats)
    log("start-up")
    report["startup"] = startup(args.repeats)
    log("render speed")
    report["render"] = render_speed(args.render_frames)
    report["load_average_end"] = os.getloadavg()
    command = "python scripts/bench_all.py" + (" --quick" if args.quick else f" --repeats {args.repeats}")
    text = section(report, command)
    print(json.dumps(report, indent=1, default=str))
    print(text)
    if not args.no_write:
        write_section(text)
        log(f"wrote the '{HEADING}' section of {DOC.relative_to(REPO)}")


if __name__ == "__main__":
    main()
