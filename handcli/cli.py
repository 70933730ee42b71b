"""The `handcli` command: parse options, call one stage function, report. No pipeline logic lives here.

Exit codes: 0 success, 2 bad input or usage (or a stage that is not built yet), 3 a stage failed on valid
input, 130 interrupted. Errors are one line on stderr; `--verbose` adds the traceback.
"""

from __future__ import annotations

import os

import logging
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from handcli.errors import EXIT_INTERRUPTED, EXIT_STAGE_FAILED, HandcliError

app = typer.Typer(
    name="handcli",
    help="Video to 4D hand motion: detect -> estimate -> refine -> variance -> render.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)

_VERBOSE = typer.Option(False, "--verbose", "-v", help="Show details (tracebacks) on errors.")
_DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda")
_HAND_MODEL = typer.Option("open", "--hand-model", help="open (bundled, default) | mano (needs MANO files)")
_MANO_DIR = typer.Option(None, "--mano-dir", help="Folder holding MANO_RIGHT.pkl / MANO_LEFT.pkl.")
_FPS = typer.Option(None, "--fps", help="Frame rate of a folder of frames (default 30, with a warning).")
_WORKERS = typer.Option(None, "--workers", help="Processes running the detector on time segments of the video "
                        "(default: one per usable core).")
# torch and numpy take seeds in [0, 2**63): a larger one would overflow inside a stage, after the work before it
_SEED = typer.Option(0, "--seed", min=0, max=2**63 - 1, help="Random seed (0 to 2**63-1).")
_IMAGE_FIT = typer.Option(True, "--image-fit/--no-image-fit", help="Fit the hand model to the 2D keypoints "
                          "through the camera (default, when the input has them); --no-image-fit: fit the "
                          "lifted 3D keypoints instead.")
_PRIOR = typer.Option("lifter", "--prior", help="The image fit's articulation prior: lifter (default: the "
                      "learned lifter of MediaPipe's 2D keypoints and world landmarks) or landmarks (MediaPipe's "
                      "world landmarks alone; docs/hand_models.md).")

# adults' hands run 0.15-0.22 m (docs/hand_models.md); the bounds leave room for children and large hands
_HAND_LENGTH = typer.Option(None, "--hand-length", min=0.08, max=0.3, help="The hand's length in metres, wrist "
                            "crease to middle fingertip, if known (default: the adult mean, 0.1815). One view "
                            "has no size cue: a hand 10 % smaller than assumed is placed 10 % too far.")


def _lifter_share(prior: str) -> float:
    """--prior -> EstimateConfig.lifter_share."""
    from handcli.errors import BadInput

    shares = {"lifter": 1.0, "landmarks": 0.0}
    if prior not in shares:
        raise BadInput(f"--prior {prior!r}: expected one of {', '.join(shares)}")
    return shares[prior]


def _print_version(value: bool) -> None:
    if value:
        from handcli import __version__

        stdout.print(f"handcli {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print handcli's version and exit.")) -> None:
    """Video to 4D hand motion: detect -> estimate -> refine -> variance -> render."""


def _guarded(action, verbose: bool) -> None:
    """Run a stage action; turn every failure into one line on stderr and a documented exit code."""
    if not verbose:  # imageio-ffmpeg's warnings while stopping ffmpeg would add lines to a one-line error
        logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)
    failure: Exception | None = None
    with _interrupts_recorded() as interrupts, _input_warnings_shown():
        try:
            action()
        except KeyboardInterrupt:
            interrupts.append(signal.SIGINT)
        except typer.Exit:
            raise
        except Exception as error:
            failure = error
    if interrupts:
        # after Ctrl-C, a dead decoder or a half-done step is not the error to report; whatever the action
        # wrote is complete (atomic writes), but it did not finish as asked: a shell loop must see 130 to stop
        stderr.print("[yellow]interrupted[/]")
        raise typer.Exit(EXIT_INTERRUPTED)
    if failure is None:
        return
    if verbose:
        traceback.print_exception(failure)
    if isinstance(failure, HandcliError):
        stderr.print(f"[bold red]error:[/] {failure.message}", soft_wrap=True)
        raise typer.Exit(failure.exit_code)
    # our bug on valid input: still one line unless --verbose
    first = str(failure).splitlines()[0] if str(failure) else ""
    stderr.print(f"[bold red]error:[/] internal failure: {type(failure).__name__}: {first}"
                 " (rerun with --verbose for details)", soft_wrap=True)
    raise typer.Exit(EXIT_STAGE_FAILED)


@contextmanager
def _input_warnings_shown():
    """Show every InputWarning (handcli.errors.warn_input) as a `warning:` line, whatever PYTHONWARNINGS says."""
    import warnings

    from handcli.errors import InputWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", InputWarning)
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, InputWarning):
                _warn(str(message))
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


@contextmanager
def _interrupts_recorded():
    """Yield a list that records every SIGINT while Ctrl-C still raises KeyboardInterrupt as usual. Libraries
    can lose that exception (raised inside a fork handler it is only printed as 'Exception ignored') or turn it
    into another one (an extension module whose import was interrupted raises ImportError): the record keeps
    the exit code 130 and silences those printouts."""
    seen: list[int] = []

    def on_interrupt(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    def on_unraisable(unraisable) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous_hook(unraisable)

    try:
        previous_handler = signal.signal(signal.SIGINT, on_interrupt)
    except ValueError:  # not the main thread (an embedding caller): leave signals alone
        yield seen
        return
    previous_hook, sys.unraisablehook = sys.unraisablehook, on_unraisable
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        sys.unraisablehook = previous_hook


def _report(message: str) -> None:
    stderr.print(message, soft_wrap=True)


def _warn(message: str) -> None:
    stderr.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


def _check_output_path(out: Path) -> None:
    """Fail before minutes of work, not at the write (suffix, directory, writability: artifacts.py)."""
    from handcli.artifacts import check_output_path

    check_output_path(out)


@contextmanager
def _stage_progress():
    """A rich progress bar (on a terminal) with one task per stage; yields tick(stage, done, total)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True, disable=not stderr.is_terminal) as bar:
        tasks: dict[str, int] = {}

        def tick(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield tick


@app.command()
def run(
    video: Path = typer.Argument(..., help="Input video file, or a folder of .jpg/.png frames."),
    out: Path = typer.Option(..., "--out", "-o", help="Output artifact (.npz)."),
    device: str = _DEVICE,
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Stage cache (default: .handcli-cache "
                                            "beside the output)."),
    force: Optional[str] = typer.Option(None, "--force", help="Rerun from this stage: "
                                        "detect|estimate|refine|variance|render."),
    focal: Optional[float] = typer.Option(None, "--focal", help="Focal length in pixels."),
    fov: Optional[float] = typer.Option(None, "--fov", help="Field of view in degrees (longer side)."),
    hand_model: str = _HAND_MODEL,
    mano_dir: Optional[Path] = _MANO_DIR,
    seed: int = _SEED,
    image_fit: bool = _IMAGE_FIT,
    prior: str = _PRIOR,
    hand_length: Optional[float] = _HAND_LENGTH,
    fps: Optional[float] = _FPS,
    with_variance: bool = typer.Option(True, "--variance/--no-variance", help="Also the variance maps "
                                       "(var_joints, ...; default) or stop after refine."),
    render: Optional[Path] = typer.Option(None, "--render", help="Also write the overlay video here (coloured "
                                          "by the variance when it was computed)."),
    skeleton: bool = typer.Option(False, "--skeleton", help="--render: also draw the 21 keypoints and bones."),
    workers: Optional[int] = _WORKERS,
    verbose: bool = _VERBOSE,
) -> None:
    """Run the whole pipeline on a video: detect -> estimate -> refine -> variance [-> overlay], each cached."""

    def action() -> None:
        from handcli.stages import run as stage

        _check_output_path(out)
        config = _run_config(focal=focal, fov=fov, fps=fps, workers=workers, hand_model=hand_model,
                             mano_dir=mano_dir, device=device, image_fit=image_fit, prior=prior,
                             hand_length=hand_length, seed=seed, with_variance=with_variance, render=render,
                             skeleton=skeleton, force=force)
        cache = work_dir or (out.parent / ".handcli-cache")
        with _stage_progress() as tick:
            result, records = stage.run_video(video, cache, config, progress=tick, notify=_warn)
        for record in records:
            _report(f"  {record.stage}: {'cached' if record.cached else 'computed'} ({record.path})")
        _write_stage_result(result, out, "run")

    _guarded(action, verbose)


@app.command()
def batch(
    inputs: list[str] = typer.Argument(..., help="Videos, folders (of videos, or of frames) or glob patterns."),
    out_dir: Path = typer.Option(..., "--out-dir", help="One artifact per video: DIR/<name>.npz, plus "
                                 "DIR/batch_manifest.json (and DIR/<name>.mp4 with --render)."),
    engine: str = typer.Option("local", "--engine", help="local (this machine) | ray (a Ray cluster; needs "
                               "handcli[cluster])"),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: the cluster (ray start --head "
                                          "prints it); default: a local Ray instance."),
    jobs: int = typer.Option(1, "--jobs", min=1, max=256, help="local: videos at once, each in its own "
                             "process (the detector's --workers are split between them)."),
    workers: Optional[int] = _WORKERS,
    render: bool = typer.Option(False, "--render", help="Also write each video's overlay (DIR/<name>.mp4)."),
    focal: Optional[float] = typer.Option(None, "--focal", help="Focal length in pixels (every video)."),
    fov: Optional[float] = typer.Option(None, "--fov", help="Field of view in degrees (longer side)."),
    fps: Optional[float] = _FPS,
    with_variance: bool = typer.Option(True, "--variance/--no-variance"),
    device: str = _DEVICE,
    hand_model: str = _HAND_MODEL,
    mano_dir: Optional[Path] = _MANO_DIR,
    seed: int = _SEED,
    image_fit: bool = _IMAGE_FIT,
    prior: str = _PRIOR,
    hand_length: Optional[float] = _HAND_LENGTH,
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Stage cache shared by the videos "
                                            "(default: DIR/.handcli-cache, a folder per video)."),
    verbose: bool = _VERBOSE,
) -> None:
    """Run the whole chain on many videos: resumable (finished videos are skipped), one failure does not stop
    the others; exit 0 when all succeed, 3 when any failed (docs/batch.md)."""

    def action() -> None:
        from handcli.batch import BatchConfig, run_batch
        from handcli.detect.parallel import usable_cores

        detect_workers = workers
        if detect_workers is None:  # the cores are shared by the videos run at once; a Ray task gets one
            detect_workers = 1 if engine == "ray" else max(1, usable_cores() // jobs)
        config = BatchConfig(out_dir=out_dir, engine=engine, jobs=jobs, address=address, work_dir=work_dir,
                             run=_run_config(focal=focal, fov=fov, fps=fps, workers=detect_workers,
                                             hand_model=hand_model, mano_dir=mano_dir, device=device,
                                             image_fit=image_fit, prior=prior, hand_length=hand_length,
                                             seed=seed, with_variance=with_variance,
                                             render=out_dir / "overlay.mp4" if render else None,
                                             skeleton=False, force=None))
        with _stage_progress() as tick:
            result = run_batch(inputs, config, notify=_report, progress=tick if engine == "local" and jobs == 1
                               else None)
        _report(f"{'video':<28} {'status':<8} {'seconds':>8}  error")
        for row in result.rows:
            _report(f"{row['name'][:28]:<28} {row['status']:<8} {row['seconds']:>8.1f}  {row['error'] or ''}")
        done = sum(row["status"] != "failed" for row in result.rows)
        _report(f"batch: {done} of {len(result.rows)} video(s) done, {result.failed} failed; manifest "
                f"{out_dir / 'batch_manifest.json'}")
        if result.failed:
            raise typer.Exit(EXIT_STAGE_FAILED)

    _guarded(action, verbose)


def _run_config(*, focal, fov, fps, workers, hand_model, mano_dir, device, image_fit, prior, hand_length, seed,
                with_variance, render, skeleton, force):
    """The RunConfig of `run` (and of each video of `batch`) from the command's options."""
    from handcli.stages.detect import DetectConfig
    from handcli.stages.estimate import EstimateConfig
    from handcli.stages.refine import RefineConfig
    from handcli.stages.render import RenderConfig
    from handcli.stages.run import RunConfig
    from handcli.stages.variance import VarianceConfig

    return RunConfig(
        detect=DetectConfig(focal=focal, fov=fov, min_frames=2, fps=fps, workers=workers),
        estimate=EstimateConfig(hand_model=hand_model, mano_dir=mano_dir, device=device, image_fit=image_fit,
                                lifter_share=_lifter_share(prior), hand_length=hand_length),
        refine=RefineConfig(device=device, seed=seed, hand_model=hand_model, mano_dir=mano_dir),
        # the chain runs one stage at a time, so the variance stage may use both cores of a small machine
        variance=VarianceConfig(threads=min(2, os.cpu_count() or 1)) if with_variance else None,
        render=(RenderConfig(out=render, variance=with_variance, skeleton=skeleton, hand_model=hand_model,
                             mano_dir=mano_dir) if render is not None else None),
        force=force)


@app.command()
def detect(
    video: Path = typer.Argument(..., help="Input video file, or a folder of .jpg/.png frames."),
    out: Path = typer.Option(..., "--out", "-o"),
    focal: Optional[float] = typer.Option(None, "--focal", help="Focal length in pixels."),
    fov: Optional[float] = typer.Option(None, "--fov", help="Field of view in degrees across the longer image "
                                        "side (default 60)."),
    max_hands: int = typer.Option(2, "--max-hands", help="Hands to look for per frame (1-10)."),
    fps: Optional[float] = _FPS,
    workers: Optional[int] = _WORKERS,
    verbose: bool = _VERBOSE,
) -> None:
    """Detect and track hands in a video (MediaPipe), write 2D keypoints and metric landmarks."""

    def action() -> None:
        from handcli.stages import detect as stage

        _check_output_path(out)
        config = stage.DetectConfig(focal=focal, fov=fov, max_hands=max_hands, fps=fps, workers=workers)
        with _stage_progress() as tick:
            result = stage.detect_file(video, config, progress=lambda done, total: tick("detect", done, total))
        for warning in result.meta.get("warnings", []):
            _warn(warning)
        _write_stage_result(result, out, "detect")

    _guarded(action, verbose)


@app.command()
def estimate(
    input: Path = typer.Option(..., "--input", "-i", help="Detections or any supported per-frame estimate file."),
    out: Path = typer.Option(..., "--out", "-o"),
    hand_model: str = _HAND_MODEL,
    mano_dir: Optional[Path] = _MANO_DIR,
    device: str = _DEVICE,
    image_fit: bool = _IMAGE_FIT,
    prior: str = _PRIOR,
    hand_length: Optional[float] = _HAND_LENGTH,
    verbose: bool = _VERBOSE,
) -> None:
    """Fit the hand model per frame (pose, orientation, translation; one shape per track)."""

    def action() -> None:
        from handcli.stages import estimate as stage

        _check_output_path(out)
        config = stage.EstimateConfig(hand_model=hand_model, mano_dir=mano_dir, device=device, image_fit=image_fit,
                                      lifter_share=_lifter_share(prior), hand_length=hand_length)
        _write_stage_result(stage.estimate_file(input, config), out, "estimate")

    _guarded(action, verbose)


@app.command()
def refine(
    input: Path = typer.Option(..., "--input", "-i", help="Any supported per-frame estimate file."),
    out: Path = typer.Option(..., "--out", "-o"),
    variance: bool = typer.Option(False, "--variance", help="Also compute the variance maps."),
    device: str = _DEVICE,
    seed: int = _SEED,
    samples: int = typer.Option(1, "--samples", min=1, max=256, help="1: the deterministic mean path; more: that "
                                "many stochastic samples, their mean returned."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Refiner weights (default: bundled)."),
    projection_sigma: float = typer.Option(2.0, "--projection-sigma", min=0.0, max=30.0,
                                           help="Move the keypoints onto the fitted hand model, correction "
                                           "smoothed over this many frames (0: the diffusion output as is)."),
    anchor: bool = typer.Option(True, "--anchor/--no-anchor",
                                help="Depth-aware anchoring of the whole-hand position: keep it on the input "
                                "across the input's depth axis, smooth it along that axis, interpolate it over "
                                "short gaps (docs/method.md)."),
    hand_model: str = _HAND_MODEL,
    mano_dir: Optional[Path] = _MANO_DIR,
    verbose: bool = _VERBOSE,
) -> None:
    """Refine per-frame estimates into coherent, physically plausible motion (physics-aware diffusion)."""

    def action() -> None:
        from handcli.stages import refine as stage

        _check_output_path(out)
        config = stage.RefineConfig(device=device, seed=seed, samples=samples, weights=weights,
                                    hand_model=hand_model, mano_dir=mano_dir, variance=variance,
                                    projection_sigma=projection_sigma, anchor=anchor)
        _write_stage_result(stage.refine_file(input, config), out, "refine")

    _guarded(action, verbose)


@app.command()
def variance(
    input: Path = typer.Option(..., "--input", "-i", help="A refined artifact (or any supported estimate file)."),
    out: Path = typer.Option(..., "--out", "-o"),
    samples: int = typer.Option(20, "--samples", min=2, max=256, help="Monte Carlo samples per diffusion step."),
    heatmap: Optional[Path] = typer.Option(None, "--heatmap", help="Also write the joints x time heat map (.png)."),
    chain: bool = typer.Option(False, "--chain", help="Propagate through all reverse steps even when the refiner "
                               "returns its first clean estimate."),
    device: str = _DEVICE,
    seed: int = _SEED,
    weights: Optional[Path] = typer.Option(None, "--weights", help="Refiner weights (default: bundled)."),
    laplace: Optional[Path] = typer.Option(None, "--laplace", help="Variance posterior fitted for those weights "
                                           "(default: bundled)."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="Variance calibration: the "
                                               "per-frame estimate's uncertainty model and the scale of the "
                                               "refiner's own variance (default: bundled)."),
    input_draws: int = typer.Option(8, "--input-draws", min=0, max=256, help="Draws carrying the per-frame "
                                    "estimate's uncertainty through the refiner (inputs from video; 0: off)."),
    hand_model: Optional[str] = typer.Option(None, "--hand-model", help="Default: the one the input was made with."),
    mano_dir: Optional[Path] = _MANO_DIR,
    verbose: bool = _VERBOSE,
) -> None:
    """Per-joint, per-vertex and force variance maps: the per-frame estimate's uncertainty carried through the
    refiner, plus the refiner's own (last-layer Laplace through the diffusion)."""

    def action() -> None:
        from handcli.stages import variance as stage

        _check_output_path(out)
        if heatmap is not None:
            stage.check_heatmap_path(heatmap)
        config = stage.VarianceConfig(samples=samples, seed=seed, device=device, weights=weights, laplace=laplace,
                                      hand_model=hand_model, mano_dir=mano_dir, chain=chain,
                                      calibration=calibration, input_draws=input_draws)
        result = stage.variance_file(input, config, notify=_warn)
        _write_stage_result(result, out, "variance")
        if heatmap is not None:
            _report(f"[green]variance:[/] wrote {stage.write_heatmap(result, heatmap)}")

    _guarded(action, verbose)


@app.command()
def render(
    input: Path = typer.Option(..., "--input", "-i", help="Artifact (or any supported file) to draw."),
    out: Path = typer.Option(..., "--out", "-o", help="Output video (.mp4/.mkv/.mov), or .png with --frame."),
    video: Optional[Path] = typer.Option(None, "--video", help="Draw over this video (the one the input came "
                                         "from); without it: neutral background, camera following the hand."),
    variance: bool = typer.Option(False, "--variance", help="Colour by standard deviation; flag uncertain frames."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="--variance: flag frames above this many "
                                              "mm (default: 2x the clip's median)."),
    side_by_side: bool = typer.Option(False, "--side-by-side", help="Left: the --compare file, or without it the "
                                      "detector's 2D keypoints (needs --video); right: the input."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="--side-by-side: the per-frame estimate file "
                                           "for the left panel."),
    skeleton: bool = typer.Option(False, "--skeleton", help="Also draw the 21 keypoints and bones."),
    frame: Optional[int] = typer.Option(None, "--frame", help="Write output frame N (a video frame number with "
                                        "--video) as a PNG still."),
    backend: str = typer.Option("auto", "--backend", help="auto | gl | painter"),
    size: str = typer.Option("640x480", "--size", help="Canvas WxH without --video."),
    opacity: Optional[float] = typer.Option(None, "--opacity", help="Mesh opacity (default 0.75 over --video, "
                                            "1 on the neutral background)."),
    hand_model: Optional[str] = typer.Option(None, "--hand-model", help="Default: the one the input was made with."),
    mano_dir: Optional[Path] = _MANO_DIR,
    verbose: bool = _VERBOSE,
) -> None:
    """Draw the hand meshes over the video (or on a neutral background)."""

    def action() -> None:
        from handcli.stages import render as stage

        config = stage.RenderConfig(out=out, video=video, variance=variance, side_by_side=side_by_side,
                                    compare=compare, skeleton=skeleton, frame=frame, backend=backend,
                                    hand_model=hand_model, mano_dir=mano_dir, threshold_mm=threshold,
                                    size=stage.parse_size(size), opacity=opacity)
        result = stage.render_file(input, config, notify=_report)
        flagged = "" if result.flagged is None else (f", {result.flagged} frame(s) above "
                                                      f"{result.threshold_mm:.1f} mm")
        if result.extrapolated:
            flagged += f", {result.extrapolated} frame(s) beyond the calibration"
        _report(f"[green]render:[/] wrote {result.out} ({result.frames} frame(s), {result.width}x{result.height}"
                f" @ {result.fps:g} fps, {result.backend} backend, {result.draw_ms:.1f} ms/frame drawing, "
                f"{result.seconds:.1f} s total{flagged})")

    _guarded(action, verbose)


@app.command()
def train(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write the weights (default: the "
                                       "bundled weights file that refine and variance load)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Training steps (default: the shipped "
                                        "recipe's)."),
    seed: int = _SEED,
    device: str = _DEVICE,
    verbose: bool = _VERBOSE,
) -> None:
    """Train the diffusion refiner on synthetic hand motion (no downloads)."""

    def action() -> None:
        from handcli.diffusion.weights import default_weights_path
        from handcli.stages import train as stage

        target = out or default_weights_path()
        stage.train(stage.TrainStageConfig(out=target, steps=steps, seed=seed, device=device))
        if target.resolve() == default_weights_path().resolve():
            _warn("the bundled variance posterior (weights/refiner_laplace.pt) belongs to the previous weights; "
                  "refit it with `python scripts/variance_fit.py` (`make weights` does both)")

    _guarded(action, verbose)


@app.command(name="eval")
def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Predicted artifact (e.g. refine output)."),
    gt: Path = typer.Option(..., "--gt", help="Ground-truth artifact (keypoints3d, valid)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object (for scripts)."),
    bad_frame_mm: float = typer.Option(20.0, "--bad-frame-mm", help="Error above which a frame counts as bad."),
    physics: bool = typer.Option(True, "--physics/--no-physics", help="Report the Euler-Lagrange residual R(q)."),
    verbose: bool = _VERBOSE,
) -> None:
    """Score a prediction against ground truth (MPJPE, PA-MPJPE, acceleration error, R(q), variance)."""

    def action() -> None:
        import json

        from handcli.stages import evaluate as stage

        result = stage.evaluate_files(pred, gt, stage.EvalConfig(bad_frame_mm=bad_frame_mm, physics=physics))
        if json_out:  # strict JSON: a metric without scorable frames (NaN) is null
            clean = {k: None if isinstance(v, float) and v != v else v for k, v in result.items()}
            stdout.print(json.dumps(clean, allow_nan=False), markup=False, soft_wrap=True)
        else:
            for key, value in result.items():
                stdout.print(f"{key:<28}{value:.4g}" if isinstance(value, float) else f"{key:<28}{value}",
                             markup=False)

    _guarded(action, verbose)


@app.command()
def export(
    input: Path = typer.Option(..., "--input", "-i", help="A fitted artifact (or any supported file with "
                               "hand-model parameters)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .glb/.gltf, .bvh, .rrd, .csv or .parquet."),
    format: Optional[str] = typer.Option(None, "--format", help="glb | gltf | bvh | rrd | csv | parquet "
                                         "(default: from the suffix of --out)."),
    track: Optional[int] = typer.Option(None, "--track", help="Export only this track (default: all)."),
    frame: Optional[str] = typer.Option(None, "--frame", help="camera (the artifact's OpenCV axes) | world-up "
                                        "(y up, camera looking down -z); default: world-up for glTF/BVH, camera "
                                        "for the rest."),
    video: Optional[Path] = typer.Option(None, "--video", help=".rrd: show this video (the input's source) "
                                         "under the hands."),
    colours: bool = typer.Option(True, "--colours/--no-colours", help="glTF: vertex colours from the variance."),
    hand_model: Optional[str] = typer.Option(None, "--hand-model", help="Default: the one the input was made with."),
    mano_dir: Optional[Path] = _MANO_DIR,
    verbose: bool = _VERBOSE,
) -> None:
    """Export hand motion to glTF, BVH, Rerun, CSV or Parquet (docs/export.md)."""

    def action() -> None:
        from handcli.export import ExportConfig, export_file

        config = ExportConfig(out=out, format=format, track=track, frame=frame, video=video,
                              hand_model=hand_model, mano_dir=mano_dir, colours=colours)
        result = export_file(input, config, notify=_warn)
        paths = ", ".join(str(p) for p in result.paths)
        _report(f"[green]export:[/] wrote {paths} ({result.format}, {len(result.tracks)} track(s) x "
                f"{result.frames} frame(s), {result.frame} frame, {result.seconds:.1f} s)")

    _guarded(action, verbose)


@app.command()
def info(
    file: Optional[Path] = typer.Argument(None, help="An artifact or importable file to describe."),
    mano_dir: Optional[Path] = _MANO_DIR,
    verbose: bool = _VERBOSE,
) -> None:
    """Versions, device, available hand models; with FILE, what handcli finds in it."""

    def action() -> None:
        from handcli.stages import info as stage

        lines = stage.describe_file(file) if file is not None else stage.describe_environment(mano_dir)
        for line in lines:
            stdout.print(line, soft_wrap=True, markup=False)

    _guarded(action, verbose)


def _write_stage_result(result, out: Path, stage: str) -> None:
    from handcli.artifacts import save_artifact

    started = time.perf_counter()
    save_artifact(result, out)
    _report(f"[green]{stage}:[/] wrote {out} ({result.num_tracks} track(s) x {result.num_frames} frame(s), "
            f"{time.perf_counter() - started:.2f} s to write)")


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except KeyboardInterrupt:  # while parsing options, outside _guarded
        stderr.print("[yellow]interrupted[/]")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as error:
        _usage_error(error)
        raise
    finally:
        # the command is over and its files are complete; Ctrl-C during interpreter teardown should end the
        # process by the signal (a shell sees 130), not print a traceback from some library's exit handler
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(error: Exception) -> None:
    """The option parser's errors (click's UsageError, raised because of standalone_mode=False) as one line and
    exit 2, like every other bad input; `handcli` alone still prints its help."""
    if not (hasattr(error, "format_message") and isinstance(getattr(error, "exit_code", None), int)):
        return
    if type(error).__name__ == "NoArgsIsHelpError":
        error.show()
    else:
        context = getattr(error, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if context is not None else ""
        stderr.print(f"[bold red]error:[/] {error.format_message()}{hint}", soft_wrap=True, markup=True)
    sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
