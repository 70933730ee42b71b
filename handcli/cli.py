"""The `handcli` command: parse options, call one stage function, report. No pipeline logic lives here.

Exit codes: 0 success, 2 bad input or usage (or a stage that is not built yet), 3 a stage failed on valid
input, 130 interrupted. Errors are one line on stderr; `--verbose` adds the traceback.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from handcli.errors import EXIT_INTERRUPTED, EXIT_STAGE_FAILED, HandcliError, NotBuilt

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


def _guarded(action, verbose: bool) -> None:
    """Run a stage action; turn every failure into one line on stderr and a documented exit code."""
    try:
        action()
    except HandcliError as error:
        if verbose:
            traceback.print_exc()
        stderr.print(f"[bold red]error:[/] {error.message}", soft_wrap=True)
        raise typer.Exit(error.exit_code)
    except KeyboardInterrupt:
        stderr.print("[yellow]interrupted[/]")
        raise typer.Exit(EXIT_INTERRUPTED)
    except typer.Exit:
        raise
    except Exception as error:  # our bug on valid input: still one line unless --verbose
        if verbose:
            traceback.print_exc()
        first = str(error).splitlines()[0] if str(error) else ""
        stderr.print(f"[bold red]error:[/] internal failure: {type(error).__name__}: {first}"
                     " (rerun with --verbose for details)", soft_wrap=True)
        raise typer.Exit(EXIT_STAGE_FAILED)


def _report(message: str) -> None:
    stderr.print(message, soft_wrap=True)


def _not_built(stage: str, issue: int) -> None:
    raise NotBuilt(f"stage '{stage}' is not built yet (tracked in issue #{issue}); nothing was written")


@app.command()
def run(
    video: Path = typer.Argument(..., help="Input video file."),
    out: Path = typer.Option(..., "--out", "-o", help="Output artifact (.npz)."),
    device: str = _DEVICE,
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Cache directory for stage artifacts."),
    verbose: bool = _VERBOSE,
) -> None:
    """Run the whole pipeline on a video: detect -> estimate -> refine -> variance."""
    _guarded(lambda: _not_built("run", 3), verbose)


@app.command()
def detect(
    video: Path = typer.Argument(..., help="Input video file."),
    out: Path = typer.Option(..., "--out", "-o"),
    verbose: bool = _VERBOSE,
) -> None:
    """Detect and track hands in a video (MediaPipe), write 2D keypoints and metric landmarks."""
    _guarded(lambda: _not_built("detect", 3), verbose)


@app.command()
def estimate(
    input: Path = typer.Option(..., "--input", "-i", help="Detections or keypoints-only file."),
    out: Path = typer.Option(..., "--out", "-o"),
    hand_model: str = _HAND_MODEL,
    mano_dir: Optional[Path] = _MANO_DIR,
    device: str = _DEVICE,
    verbose: bool = _VERBOSE,
) -> None:
    """Fit the hand model per frame (pose, orientation, translation; one shape per track)."""

    def action() -> None:
        from handcli.stages import estimate as stage

        config = stage.EstimateConfig(hand_model=hand_model, mano_dir=mano_dir, device=device)
        _write_stage_result(stage.estimate_file(input, config), out, "estimate")

    _guarded(action, verbose)


@app.command()
def refine(
    input: Path = typer.Option(..., "--input", "-i", help="Any supported per-frame estimate file."),
    out: Path = typer.Option(..., "--out", "-o"),
    variance: bool = typer.Option(False, "--variance", help="Also compute the variance maps."),
    device: str = _DEVICE,
    seed: int = typer.Option(0, "--seed"),
    samples: int = typer.Option(1, "--samples", min=1, max=256, help="Stochastic samples (mean is returned)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Refiner weights (default: bundled)."),
    hand_model: str = _HAND_MODEL,
    mano_dir: Optional[Path] = _MANO_DIR,
    verbose: bool = _VERBOSE,
) -> None:
    """Refine per-frame estimates into coherent, physically plausible motion (physics-aware diffusion)."""

    def action() -> None:
        if variance:
            _not_built("variance", 5)
        from handcli.stages import refine as stage

        config = stage.RefineConfig(device=device, seed=seed, samples=samples, weights=weights,
                                    hand_model=hand_model, mano_dir=mano_dir)
        _write_stage_result(stage.refine_file(input, config), out, "refine")

    _guarded(action, verbose)


@app.command()
def variance(
    input: Path = typer.Option(..., "--input", "-i"),
    out: Path = typer.Option(..., "--out", "-o"),
    verbose: bool = _VERBOSE,
) -> None:
    """Per-joint, per-vertex and force variance maps (last-layer Laplace through the diffusion)."""
    _guarded(lambda: _not_built("variance", 5), verbose)


@app.command()
def render(
    input: Path = typer.Option(..., "--input", "-i"),
    out: Path = typer.Option(..., "--out", "-o"),
    video: Optional[Path] = typer.Option(None, "--video"),
    verbose: bool = _VERBOSE,
) -> None:
    """Draw the hand meshes over the video (or on a neutral background)."""
    _guarded(lambda: _not_built("render", 5), verbose)


@app.command()
def train(
    out: Path = typer.Option(Path("weights/refiner.pt"), "--out", "-o", help="Where to write the weights."),
    steps: Optional[int] = typer.Option(None, "--steps"),
    seed: int = typer.Option(0, "--seed"),
    device: str = _DEVICE,
    verbose: bool = _VERBOSE,
) -> None:
    """Train the diffusion refiner on synthetic hand motion (no downloads)."""

    def action() -> None:
        from handcli.stages import train as stage

        stage.train(stage.TrainStageConfig(out=out, steps=steps, seed=seed, device=device))

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
        if json_out:
            stdout.print(json.dumps(result), markup=False, soft_wrap=True)
        else:
            for key, value in result.items():
                stdout.print(f"{key:<28}{value:.4g}" if isinstance(value, float) else f"{key:<28}{value}",
                             markup=False)

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
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
